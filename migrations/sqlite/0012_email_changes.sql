-- A user's request to change their email address: confirmed by a single-use token mailed to
-- the new address (stored only as its SHA-256), expiring. One pending request per user.
CREATE TABLE email_changes (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    new_email TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created BIGINT NOT NULL
);
