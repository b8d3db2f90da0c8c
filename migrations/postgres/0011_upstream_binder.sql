-- Who bound each upstream: 1 when a site admin or the CLI did (it may point outside the
-- operator's upstream_networks), 0 when an account Owner or Admin did (it must stay inside them,
-- checked again at every connection). Rows bound before this release count as operator-bound:
-- they were made under the old rules, and the addresses nobody may reach (link-local, metadata,
-- Atrium's own listener) are refused at connection time whoever bound them.
ALTER TABLE workspace_upstreams ADD COLUMN operator_bound INTEGER NOT NULL DEFAULT 1;
