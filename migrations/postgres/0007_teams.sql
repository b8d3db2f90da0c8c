-- Teams: users and service accounts of one account, granted workspace roles together.

CREATE TABLE teams (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    UNIQUE (account_id, name),
    UNIQUE (account_id, id)
);

-- member_id is a user id or a service account id (member_type says which); the service layer
-- checks membership, and removing a member or a service account removes these rows.
CREATE TABLE team_members (
    account_id TEXT NOT NULL,
    team_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    member_type TEXT NOT NULL CHECK (member_type IN ('user', 'service_account')),
    expires_at BIGINT,
    created BIGINT NOT NULL,
    PRIMARY KEY (team_id, member_id),
    FOREIGN KEY (account_id, team_id) REFERENCES teams (account_id, id) ON DELETE CASCADE
);
CREATE INDEX team_members_account ON team_members (account_id, member_id);

CREATE TABLE workspace_team_access (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    team_id TEXT NOT NULL,
    workspace_role_id TEXT NOT NULL REFERENCES workspace_roles (id),
    expires_at BIGINT,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    UNIQUE (workspace_id, team_id),
    FOREIGN KEY (account_id, workspace_id) REFERENCES workspaces (account_id, id) ON DELETE CASCADE,
    FOREIGN KEY (account_id, team_id) REFERENCES teams (account_id, id) ON DELETE CASCADE
);
CREATE INDEX workspace_team_access_account ON workspace_team_access (account_id);
CREATE INDEX workspace_team_access_role ON workspace_team_access (workspace_role_id);
