-- Service accounts ("bots"): members of one account, with their own API keys and workspace grants.

CREATE TABLE bots (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    actor_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    account_role TEXT NOT NULL CHECK (account_role IN ('owner', 'admin', 'member')),
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    UNIQUE (account_id, name),
    UNIQUE (account_id, id)
);

CREATE TABLE bot_api_keys (
    id TEXT PRIMARY KEY,
    bot_id TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    masked_key TEXT NOT NULL,
    expires_at BIGINT,
    last_used BIGINT,
    created BIGINT NOT NULL
);
CREATE INDEX bot_api_keys_bot ON bot_api_keys (bot_id);

CREATE TABLE workspace_bot_access (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    bot_id TEXT NOT NULL,
    workspace_role_id TEXT NOT NULL REFERENCES workspace_roles (id),
    expires_at BIGINT,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    UNIQUE (workspace_id, bot_id),
    FOREIGN KEY (account_id, workspace_id) REFERENCES workspaces (account_id, id) ON DELETE CASCADE,
    FOREIGN KEY (account_id, bot_id) REFERENCES bots (account_id, id) ON DELETE CASCADE
);
CREATE INDEX workspace_bot_access_account ON workspace_bot_access (account_id);
CREATE INDEX workspace_bot_access_role ON workspace_bot_access (workspace_role_id);
