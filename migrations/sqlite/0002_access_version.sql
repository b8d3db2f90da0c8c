-- Access version: bumped in every transaction that changes who may do what in an account, so any
-- process can tell that its in-memory permission snapshot of that account is stale.
ALTER TABLE accounts ADD COLUMN access_version INTEGER NOT NULL DEFAULT 0;
