-- Core schema: users, credentials, accounts, memberships, workspaces, workspace roles and access.
-- Timestamps are UTC microseconds since the Unix epoch; ids are canonical UUID text.
-- Keep in step with migrations/postgres/0001_core.sql (same tables, columns and constraints).

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    actor_id TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    email_lower TEXT NOT NULL UNIQUE,
    handle TEXT NOT NULL UNIQUE,
    first_name TEXT NOT NULL DEFAULT '',
    last_name TEXT NOT NULL DEFAULT '',
    location TEXT,
    title TEXT,
    image_location TEXT,
    settings TEXT NOT NULL DEFAULT '{}',
    password_hash TEXT,
    site_admin INTEGER NOT NULL DEFAULT 0 CHECK (site_admin IN (0, 1)),
    last_login INTEGER,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);

CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ip_address TEXT,
    user_agent TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    masked_key TEXT NOT NULL,
    expires_at INTEGER,
    last_used INTEGER,
    created INTEGER NOT NULL
);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    handle TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    location TEXT,
    link TEXT,
    billing_email TEXT,
    auth_expiration_seconds INTEGER,
    settings TEXT NOT NULL DEFAULT '{}',
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);

CREATE TABLE account_memberships (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    UNIQUE (account_id, user_id)
);
CREATE INDEX account_memberships_user ON account_memberships (user_id);

CREATE TABLE workspace_roles (
    id TEXT PRIMARY KEY,
    account_id TEXT REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    scopes TEXT NOT NULL DEFAULT '',
    inherited_role_id TEXT REFERENCES workspace_roles (id),
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
CREATE UNIQUE INDEX workspace_roles_account_name ON workspace_roles (account_id, name);

-- Built-in roles: rows exist so grants can reference them; their scopes live in code.
INSERT INTO workspace_roles (id, account_id, name, description, scopes, created, updated) VALUES
    ('00000000-0000-4000-8000-000000000101', NULL, 'Owner', '', '', 0, 0),
    ('00000000-0000-4000-8000-000000000102', NULL, 'Developer', '', '', 0, 0),
    ('00000000-0000-4000-8000-000000000103', NULL, 'Runner', '', '', 0, 0),
    ('00000000-0000-4000-8000-000000000104', NULL, 'Viewer', '', '', 0, 0),
    ('00000000-0000-4000-8000-000000000105', NULL, 'Worker', '', '', 0, 0);

CREATE TABLE workspaces (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    handle TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    default_workspace_role_id TEXT REFERENCES workspace_roles (id),
    is_public INTEGER NOT NULL DEFAULT 0 CHECK (is_public IN (0, 1)),
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    UNIQUE (account_id, handle),
    UNIQUE (account_id, id)
);

-- A grant needs a membership in the same account and a workspace of that account: both are
-- composite foreign keys, so removing a member removes their grants in the same statement.
CREATE TABLE workspace_user_access (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    workspace_role_id TEXT NOT NULL REFERENCES workspace_roles (id),
    expires_at INTEGER,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    UNIQUE (workspace_id, user_id),
    FOREIGN KEY (account_id, workspace_id) REFERENCES workspaces (account_id, id) ON DELETE CASCADE,
    FOREIGN KEY (account_id, user_id) REFERENCES account_memberships (account_id, user_id) ON DELETE CASCADE
);
CREATE INDEX workspace_user_access_account ON workspace_user_access (account_id);
CREATE INDEX workspace_user_access_role ON workspace_user_access (workspace_role_id);
