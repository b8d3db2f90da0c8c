-- Single sign-on: identity providers per account, the email domains an account has proven it
-- owns, IdP group → team mappings, and sign-in attempts in flight (single use, short-lived).

CREATE TABLE sso_providers (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('oidc', 'saml')),
    name TEXT NOT NULL,
    issuer TEXT NOT NULL DEFAULT '',
    client_id TEXT NOT NULL DEFAULT '',
    client_secret_enc TEXT NOT NULL DEFAULT '',
    scopes TEXT NOT NULL DEFAULT '',
    email_claim TEXT NOT NULL DEFAULT 'email',
    name_claim TEXT NOT NULL DEFAULT 'name',
    groups_claim TEXT NOT NULL DEFAULT '',
    enabled INTEGER NOT NULL DEFAULT 1,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    UNIQUE (account_id, name),
    UNIQUE (account_id, id)
);

CREATE TABLE sso_domains (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    domain TEXT NOT NULL,
    token TEXT NOT NULL,
    verified_at BIGINT,
    checked_at BIGINT,
    failing_since BIGINT,
    created BIGINT NOT NULL,
    UNIQUE (account_id, domain)
);
-- A domain is verified by one account at most.
CREATE UNIQUE INDEX sso_domains_verified ON sso_domains (domain) WHERE verified_at IS NOT NULL;

CREATE TABLE sso_group_mappings (
    account_id TEXT NOT NULL,
    provider_id TEXT NOT NULL,
    grp TEXT NOT NULL,
    team_id TEXT NOT NULL,
    PRIMARY KEY (provider_id, grp, team_id),
    FOREIGN KEY (account_id, provider_id) REFERENCES sso_providers (account_id, id) ON DELETE CASCADE,
    FOREIGN KEY (account_id, team_id) REFERENCES teams (account_id, id) ON DELETE CASCADE
);

-- One row per sign-in sent to an IdP, keyed by the SHA-256 of its `state`; deleted when the IdP's
-- answer arrives (so an answer is used once) or when it expires.
CREATE TABLE sso_logins (
    state_hash TEXT PRIMARY KEY,
    provider_id TEXT NOT NULL REFERENCES sso_providers (id) ON DELETE CASCADE,
    account_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier_enc TEXT NOT NULL,
    next TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
