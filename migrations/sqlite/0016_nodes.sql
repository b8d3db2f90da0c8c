-- The servers sharing this database (issue 19): each one upserts its row every few seconds, so
-- every server knows how many are live (for an equal share of the rate-limit budget without
-- Redis) and operators can see them (`atrium nodes`).
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    seen_at BIGINT NOT NULL
);
CREATE INDEX nodes_seen ON nodes (seen_at);
