-- Webhooks (issue 20): a public URL per webhook ({public_url}/hooks/{slug}) whose calls are
-- rendered through the webhook's template into a Prefect event and emitted into the workspace's
-- upstream. The slug is a bearer secret: looked up by its SHA-256, kept readable only sealed with
-- the installation's key (the CLI lists it), never logged or audited.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    template TEXT NOT NULL,
    enabled BIGINT NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    slug_hash TEXT NOT NULL UNIQUE,
    slug_sealed TEXT NOT NULL,
    service_account_id TEXT,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    FOREIGN KEY (account_id, workspace_id) REFERENCES workspaces (account_id, id) ON DELETE CASCADE,
    FOREIGN KEY (service_account_id) REFERENCES bots (id) ON DELETE SET NULL
);
CREATE INDEX webhooks_workspace ON webhooks (account_id, workspace_id);
