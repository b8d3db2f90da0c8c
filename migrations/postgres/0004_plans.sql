-- Plans: each account's plan and its per-account entitlement overrides (JSON, see
-- domain::plan::EntitlementsPatch).
ALTER TABLE accounts ADD COLUMN plan TEXT NOT NULL DEFAULT 'enterprise';
ALTER TABLE accounts ADD COLUMN plan_overrides TEXT NOT NULL DEFAULT '{}';
