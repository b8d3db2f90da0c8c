-- Invitations (one pending invitation per email and account) and the email outbox.

CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    email_lower TEXT NOT NULL,
    account_role TEXT NOT NULL CHECK (account_role IN ('owner', 'admin', 'member')),
    workspace_id TEXT,
    workspace_role_id TEXT REFERENCES workspace_roles (id),
    status TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected', 'revoked')),
    token_hash TEXT NOT NULL UNIQUE,
    expires_at INTEGER NOT NULL,
    invited_by TEXT,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    FOREIGN KEY (account_id, workspace_id) REFERENCES workspaces (account_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX invitations_one_pending ON invitations (account_id, email_lower) WHERE status = 'pending';
CREATE INDEX invitations_account ON invitations (account_id, created);

-- Email waiting to be sent. The body carries the invitation link, so it is erased once sent.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    account_id TEXT,
    invitation_id TEXT,
    to_addr TEXT NOT NULL,
    subject TEXT NOT NULL,
    body_text TEXT,
    body_html TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    created INTEGER NOT NULL,
    sent_at INTEGER
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_invitation ON outbox (invitation_id);
