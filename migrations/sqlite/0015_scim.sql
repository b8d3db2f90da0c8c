-- SCIM 2.0 provisioning: per-account bearer tokens (stored as SHA-256 only), and which members
-- and teams the identity provider manages (its externalId, and when it last changed them; NULL =
-- managed by hand).

CREATE TABLE scim_tokens (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    masked TEXT NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    created INTEGER NOT NULL,
    expires_at INTEGER,
    last_used INTEGER,
    UNIQUE (account_id, name)
);

-- For a member the IdP provisioned: its userName (unique per account, ignoring case), externalId,
-- the SCIM attributes it last sent that Atrium keeps as given (name, displayName, emails; JSON),
-- and when it last changed the member.
ALTER TABLE account_memberships ADD COLUMN scim_user_name TEXT;
ALTER TABLE account_memberships ADD COLUMN scim_user_name_lower TEXT;
ALTER TABLE account_memberships ADD COLUMN scim_external_id TEXT;
ALTER TABLE account_memberships ADD COLUMN scim_attrs TEXT;
ALTER TABLE account_memberships ADD COLUMN scim_synced INTEGER;
CREATE UNIQUE INDEX account_memberships_scim_user_name
    ON account_memberships (account_id, scim_user_name_lower);
ALTER TABLE teams ADD COLUMN scim_external_id TEXT;
ALTER TABLE teams ADD COLUMN scim_synced INTEGER;
-- Group names are unique per account already (teams); a SCIM displayName is the team name.
