-- Account IP allowlist: the entries as JSON ([{ip_network, enabled, description}]), enforced
-- when the account setting enforce_ip_allowlist is on (services::ip_allowlist).
ALTER TABLE accounts ADD COLUMN ip_allowlist TEXT NOT NULL DEFAULT '[]';
