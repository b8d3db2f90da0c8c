-- engine-specific: this migration differs by engine on purpose (tests/it/migrations.rs).
-- The chain head follows every inserted event inside SQLite, so an append is one statement from
-- the application (see store::audit::append). An event must extend the head exactly: its seq is the
-- head's seq + 1 and its prev_hash the head's hash (the first event of a chain links to the genesis
-- hash); anything else aborts the insert, which makes the chain link a database invariant.
CREATE TRIGGER audit_events_link BEFORE INSERT ON audit_events
WHEN NEW.seq != COALESCE((SELECT seq FROM audit_heads WHERE account_id = NEW.account_id), 0) + 1
  OR NEW.prev_hash != COALESCE((SELECT hash FROM audit_heads WHERE account_id = NEW.account_id),
                               '0000000000000000000000000000000000000000000000000000000000000000')
BEGIN
    SELECT RAISE(ABORT, 'audit event does not extend its chain head');
END;

CREATE TRIGGER audit_events_move_head AFTER INSERT ON audit_events
BEGIN
    INSERT INTO audit_heads (account_id, seq, hash) VALUES (NEW.account_id, NEW.seq, NEW.hash)
    ON CONFLICT (account_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash;
END;
