-- Object access control lists (issue 20): one row per deployment, work pool or block document
-- that has an ACL (an object without a row is governed by workspace roles alone). The entries are
-- a JSON document {"manage": [...], "run": [...], "view": [...]} of accessors
-- ({"type": "*"} | {"type": "user"|"service_account", "id", "actor_id"} | {"type": "team", "id"}),
-- read whole into the permission index; it is never queried by content.
CREATE TABLE object_acls (
    account_id TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    object_kind TEXT NOT NULL CHECK (object_kind IN ('deployment', 'work_pool', 'block_document')),
    object_key TEXT NOT NULL,
    entries TEXT NOT NULL,
    updated BIGINT NOT NULL,
    PRIMARY KEY (account_id, workspace_id, object_kind, object_key),
    FOREIGN KEY (account_id, workspace_id) REFERENCES workspaces (account_id, id) ON DELETE CASCADE
);
