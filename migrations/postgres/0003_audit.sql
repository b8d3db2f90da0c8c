-- Audit log: one hash chain per account (the nil UUID holds user-level events), its head, and
-- signed checkpoints. Events are kept when their account is deleted (no foreign key).

CREATE TABLE audit_heads (
    account_id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);

CREATE TABLE audit_events (
    account_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    occurred BIGINT NOT NULL,
    event TEXT NOT NULL,
    workspace_id TEXT,
    actor_kind TEXT NOT NULL,
    actor_id TEXT,
    actor_name TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    resource_name TEXT,
    related TEXT NOT NULL,
    payload TEXT NOT NULL,
    ip TEXT,
    user_agent TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (account_id, seq)
);
CREATE INDEX audit_events_time ON audit_events (account_id, occurred, seq);
CREATE INDEX audit_events_workspace_time ON audit_events (account_id, workspace_id, occurred, seq);

CREATE TABLE audit_checkpoints (
    account_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    signed_at BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (account_id, seq)
);
