-- Workspace gateway: the upstream Prefect server each workspace forwards to. The auth string is
-- stored encrypted (ChaCha20-Poly1305, see services::upstreams); it is never returned.
CREATE TABLE workspace_upstreams (
    workspace_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    url TEXT NOT NULL,
    auth_string_enc TEXT,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    FOREIGN KEY (account_id, workspace_id) REFERENCES workspaces (account_id, id) ON DELETE CASCADE
);
CREATE INDEX workspace_upstreams_account ON workspace_upstreams (account_id);
