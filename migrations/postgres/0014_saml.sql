-- SAML 2.0 identity providers: the IdP's metadata (as uploaded, or as fetched from its URL), the
-- per-provider switch for IdP-initiated sign-in, and the assertion ids already used (replays are
-- refused until the assertion would have expired anyway).
ALTER TABLE sso_providers ADD COLUMN metadata_xml TEXT NOT NULL DEFAULT '';
ALTER TABLE sso_providers ADD COLUMN metadata_url TEXT NOT NULL DEFAULT '';
ALTER TABLE sso_providers ADD COLUMN idp_initiated INTEGER NOT NULL DEFAULT 0;

CREATE TABLE sso_assertions (
    provider_id TEXT NOT NULL REFERENCES sso_providers (id) ON DELETE CASCADE,
    assertion_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (provider_id, assertion_id)
);
