-- engine-specific: this migration differs by engine on purpose (tests/it/migrations.rs).
-- SQLite only (one statement per audit append there, see the SQLite migration of the same name).
-- On PostgreSQL the append claims the head row with UPDATE … RETURNING, which also serializes
-- concurrent writers of one chain across processes; nothing to change.
SELECT 1;
