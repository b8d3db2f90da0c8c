//! The gateway's route → scope table: every route of the Prefect 3 OSS server API (as served under
//! `/api`), with the workspace scope it needs (reference §3.3, following the `see_`/`write_`/
//! `run_`/`manage_` convention). A test checks the table against the route list of a real
//! `prefect` server (tests/fixtures/prefect-routes.txt). Routes not in the table need workspace
//! Owner.

use crate::domain::scope::Scope::{self, *};
use std::sync::OnceLock;

/// What a route needs beyond access to the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any scope in the workspace (health, version, CSRF token probe).
    Member,
    Scope(Scope),
    /// A read that returns block documents and takes `include_secrets` (in the query for GET, in
    /// the JSON body for POST): `see_blocks`; for a caller without `see_secret_blocks` the gateway
    /// forwards it with `include_secrets` removed from the query and set to `false` in the body,
    /// whatever the client sent (`services::gateway::authorize_call`). A test checks that every
    /// route of the real Prefect server taking `include_secrets` is one of these.
    Secrets,
    /// A read every member may make whose answer only holders of the scope see: for the others
    /// the gateway answers `{}` in place of a successful answer. `GET admin/settings` (the Prefect
    /// server's configuration): Prefect's UI reads it on every page, and a Viewer, who lacks
    /// `see_workspace_settings`, must still be able to browse.
    Redacted(Scope),
    /// `DELETE automations/owned-by/{resource}`: a deployment's own automations are part of the
    /// deployment (`flow.serve()` replaces them), so `write_deployments` suffices for
    /// `prefect.deployment.*` resources; anything else needs `manage_automations`.
    AutomationsOwnedBy,
}

/// Which rate-limit bucket a call is counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// One unit of the API bucket.
    Api,
    /// One unit of the logs + events bucket per item of the JSON array body.
    Items,
}

#[derive(Debug, Clone, Copy)]
pub struct RouteRule {
    pub method: &'static str,
    pub pattern: &'static str,
    pub need: Need,
    pub charge: Charge,
    /// A Prefect Cloud route the OSS server serves under another path: forwarded there (the
    /// path below the workspace, without query).
    pub upstream_path: Option<&'static str>,
}

const fn s(method: &'static str, pattern: &'static str, scope: Scope) -> RouteRule {
    RouteRule {
        method,
        pattern,
        need: Need::Scope(scope),
        charge: Charge::Api,
        upstream_path: None,
    }
}

const fn redacted(method: &'static str, pattern: &'static str, scope: Scope) -> RouteRule {
    RouteRule {
        method,
        pattern,
        need: Need::Redacted(scope),
        charge: Charge::Api,
        upstream_path: None,
    }
}

const fn any(method: &'static str, pattern: &'static str) -> RouteRule {
    RouteRule {
        method,
        pattern,
        need: Need::Member,
        charge: Charge::Api,
        upstream_path: None,
    }
}

const fn secrets(method: &'static str, pattern: &'static str) -> RouteRule {
    RouteRule {
        method,
        pattern,
        need: Need::Secrets,
        charge: Charge::Api,
        upstream_path: None,
    }
}

/// A Cloud route answered by the OSS server at `upstream_path`.
const fn alias(
    method: &'static str,
    pattern: &'static str,
    scope: Scope,
    upstream_path: &'static str,
) -> RouteRule {
    RouteRule {
        method,
        pattern,
        need: Need::Scope(scope),
        charge: Charge::Api,
        upstream_path: Some(upstream_path),
    }
}

const fn items(method: &'static str, pattern: &'static str, scope: Scope) -> RouteRule {
    RouteRule {
        method,
        pattern,
        need: Need::Scope(scope),
        charge: Charge::Items,
        upstream_path: None,
    }
}

/// `*` matches one path segment. Patterns are written without the trailing slash Prefect puts on
/// collection routes; matching ignores one trailing slash (the request is forwarded as sent).
/// `WS` is a websocket upgrade.
pub const TABLE: &[RouteRule] = &[
    any("GET", "health"),
    any("GET", "version"),
    any("GET", "hello"),
    any("GET", "ready"),
    any("GET", "csrf-token"),
    any("GET", "admin/version"),
    redacted("GET", "admin/settings", SeeWorkspaceSettings),
    // Every flow run reads the default result storage.
    s("GET", "admin/storage", SeeFlows),
    s("PUT", "admin/storage", ManageWorkspaceSettings),
    s("DELETE", "admin/storage", ManageWorkspaceSettings),
    // Artifacts
    s("POST", "artifacts", WriteArtifacts),
    s("POST", "artifacts/count", SeeArtifacts),
    s("POST", "artifacts/filter", SeeArtifacts),
    s("POST", "artifacts/latest/count", SeeArtifacts),
    s("POST", "artifacts/latest/filter", SeeArtifacts),
    s("GET", "artifacts/*", SeeArtifacts),
    s("PATCH", "artifacts/*", WriteArtifacts),
    s("DELETE", "artifacts/*", ManageArtifacts),
    s("GET", "artifacts/*/latest", SeeArtifacts),
    // Automations
    s("POST", "automations", ManageAutomations),
    s("POST", "automations/count", SeeAutomations),
    s("POST", "automations/filter", SeeAutomations),
    RouteRule {
        method: "DELETE",
        pattern: "automations/owned-by/*",
        need: Need::AutomationsOwnedBy,
        charge: Charge::Api,
        upstream_path: None,
    },
    s("GET", "automations/related-to/*", SeeAutomations),
    s("POST", "automations/templates/validate", SeeAutomations),
    s("GET", "automations/*", SeeAutomations),
    s("PATCH", "automations/*", ManageAutomations),
    s("PUT", "automations/*", ManageAutomations),
    s("DELETE", "automations/*", ManageAutomations),
    s("POST", "templates/validate", SeeAutomations),
    // Blocks
    s("GET", "block_capabilities", SeeBlocks),
    s("POST", "block_documents", ManageBlocks),
    s("POST", "block_documents/count", SeeBlocks),
    secrets("POST", "block_documents/filter"),
    secrets("GET", "block_documents/*"),
    s("PATCH", "block_documents/*", ManageBlocks),
    s("DELETE", "block_documents/*", ManageBlocks),
    s("POST", "block_schemas", ManageBlocks),
    s("POST", "block_schemas/filter", SeeBlocks),
    s("GET", "block_schemas/checksum/*", SeeBlocks),
    s("GET", "block_schemas/*", SeeBlocks),
    s("DELETE", "block_schemas/*", ManageBlocks),
    s("POST", "block_types", ManageBlocks),
    s("POST", "block_types/filter", SeeBlocks),
    s(
        "POST",
        "block_types/install_system_block_types",
        ManageBlocks,
    ),
    s("GET", "block_types/slug/*", SeeBlocks),
    secrets("GET", "block_types/slug/*/block_documents"),
    secrets("GET", "block_types/slug/*/block_documents/name/*"),
    s("GET", "block_types/*", SeeBlocks),
    s("PATCH", "block_types/*", ManageBlocks),
    s("DELETE", "block_types/*", ManageBlocks),
    s("GET", "collections/views/*", SeeWorkPools),
    // Prefect Cloud's route for the same catalogue (CloudClient.read_worker_metadata, what
    // `prefect work-pool create` and the `prefect deploy` prompts read in Cloud mode): the OSS
    // server's aggregate worker metadata, which has the same shape.
    alias(
        "GET",
        "collections/work_pool_types",
        SeeWorkPools,
        "collections/views/aggregate-worker-metadata",
    ),
    // Concurrency limits, v1 (by tag) and v2 (global). Taking and releasing slots is part of
    // running flows and tasks.
    s("POST", "concurrency_limits", ManageConcurrencyLimits),
    s("POST", "concurrency_limits/filter", SeeConcurrencyLimits),
    s("POST", "concurrency_limits/increment", RunFlows),
    s("POST", "concurrency_limits/decrement", RunFlows),
    s("GET", "concurrency_limits/tag/*", SeeConcurrencyLimits),
    s(
        "DELETE",
        "concurrency_limits/tag/*",
        ManageConcurrencyLimits,
    ),
    s(
        "POST",
        "concurrency_limits/tag/*/reset",
        ManageConcurrencyLimits,
    ),
    s("GET", "concurrency_limits/*", SeeConcurrencyLimits),
    s("DELETE", "concurrency_limits/*", ManageConcurrencyLimits),
    s("POST", "v2/concurrency_limits", ManageConcurrencyLimits),
    s("POST", "v2/concurrency_limits/filter", SeeConcurrencyLimits),
    s("POST", "v2/concurrency_limits/increment", RunFlows),
    s(
        "POST",
        "v2/concurrency_limits/increment-with-lease",
        RunFlows,
    ),
    s("POST", "v2/concurrency_limits/decrement", RunFlows),
    s(
        "POST",
        "v2/concurrency_limits/decrement-with-lease",
        RunFlows,
    ),
    s("POST", "v2/concurrency_limits/leases/*/renew", RunFlows),
    s("GET", "v2/concurrency_limits/*", SeeConcurrencyLimits),
    s("PATCH", "v2/concurrency_limits/*", ManageConcurrencyLimits),
    s("DELETE", "v2/concurrency_limits/*", ManageConcurrencyLimits),
    // Deployments and schedules
    s("POST", "deployments", WriteDeployments),
    s("POST", "deployments/bulk_delete", ManageDeployments),
    s("POST", "deployments/count", SeeDeployments),
    s("POST", "deployments/filter", SeeDeployments),
    s("POST", "deployments/paginate", SeeDeployments),
    s(
        "POST",
        "deployments/get_scheduled_flow_runs",
        SeeDeployments,
    ),
    s("GET", "deployments/name/*/*", SeeDeployments),
    s("GET", "deployments/*", SeeDeployments),
    s("PATCH", "deployments/*", WriteDeployments),
    s("DELETE", "deployments/*", ManageDeployments),
    s("POST", "deployments/*/create_flow_run", RunDeployments),
    s("POST", "deployments/*/create_flow_run/bulk", RunDeployments),
    s("POST", "deployments/*/pause_deployment", WriteDeployments),
    s("POST", "deployments/*/resume_deployment", WriteDeployments),
    s("POST", "deployments/*/schedule", WriteDeployments),
    s("GET", "deployments/*/schedules", SeeDeployments),
    s("POST", "deployments/*/schedules", WriteDeployments),
    s("PATCH", "deployments/*/schedules/*", WriteDeployments),
    s("DELETE", "deployments/*/schedules/*", WriteDeployments),
    s("GET", "deployments/*/work_queue_check", SeeDeployments),
    // Events
    items("POST", "events", ManageEvents),
    s("POST", "events/filter", SeeEvents),
    s("GET", "events/filter/next", SeeEvents),
    s("POST", "events/count-by/*", SeeEvents),
    s("WS", "events/in", ManageEvents),
    s("WS", "events/out", SeeEvents),
    // Flows, flow runs, task runs, states, logs
    s("POST", "flows", RunFlows),
    s("POST", "flows/bulk_delete", ManageFlows),
    s("POST", "flows/count", SeeFlows),
    s("POST", "flows/filter", SeeFlows),
    s("POST", "flows/paginate", SeeFlows),
    s("GET", "flows/name/*", SeeFlows),
    s("GET", "flows/*", SeeFlows),
    s("PATCH", "flows/*", RunFlows),
    s("DELETE", "flows/*", ManageFlows),
    s("POST", "flow_runs", RunFlows),
    s("POST", "flow_runs/bulk_delete", ManageFlows),
    s("POST", "flow_runs/bulk_set_state", RunFlows),
    s("POST", "flow_runs/count", SeeFlows),
    s("POST", "flow_runs/filter", SeeFlows),
    s("POST", "flow_runs/history", SeeFlows),
    s("POST", "flow_runs/lateness", SeeFlows),
    s("POST", "flow_runs/paginate", SeeFlows),
    s("GET", "flow_runs/*", SeeFlows),
    s("PATCH", "flow_runs/*", RunFlows),
    s("DELETE", "flow_runs/*", ManageFlows),
    s("GET", "flow_runs/*/graph", SeeFlows),
    s("GET", "flow_runs/*/graph-v2", SeeFlows),
    s("POST", "flow_runs/*/input", RunFlows),
    s("POST", "flow_runs/*/input/filter", SeeFlows),
    s("GET", "flow_runs/*/input/*", SeeFlows),
    s("DELETE", "flow_runs/*/input/*", RunFlows),
    s("PATCH", "flow_runs/*/labels", RunFlows),
    s("GET", "flow_runs/*/logs/download", SeeFlows),
    s("POST", "flow_runs/*/resume", RunFlows),
    s("POST", "flow_runs/*/set_state", RunFlows),
    s("GET", "flow_run_states", SeeFlows),
    s("GET", "flow_run_states/*", SeeFlows),
    s("POST", "task_runs", RunFlows),
    s("POST", "task_runs/count", SeeFlows),
    s("POST", "task_runs/filter", SeeFlows),
    s("POST", "task_runs/history", SeeFlows),
    s("POST", "task_runs/paginate", SeeFlows),
    s("GET", "task_runs/*", SeeFlows),
    s("PATCH", "task_runs/*", RunFlows),
    s("DELETE", "task_runs/*", ManageFlows),
    s("POST", "task_runs/*/set_state", RunFlows),
    s("WS", "task_runs/subscriptions/scheduled", RunTasks),
    s("GET", "task_run_states", SeeFlows),
    s("GET", "task_run_states/*", SeeFlows),
    s("POST", "task_workers/filter", SeeWorkers),
    s("GET", "observed-states", SeeFlows),
    items("POST", "logs", RunFlows),
    s("POST", "logs/filter", SeeFlows),
    s("WS", "logs/out", SeeFlows),
    // Saved searches
    s("PUT", "saved_searches", ManageSavedSearch),
    s("POST", "saved_searches/filter", SeeFlows),
    s("GET", "saved_searches/*", SeeFlows),
    s("DELETE", "saved_searches/*", ManageSavedSearch),
    // UI helper routes (reads)
    s("POST", "ui/flow_runs/count-task-runs", SeeFlows),
    s("POST", "ui/flow_runs/history", SeeFlows),
    s("POST", "ui/flows/count-deployments", SeeFlows),
    s("POST", "ui/flows/next-runs", SeeFlows),
    s("POST", "ui/schemas/validate", SeeDeployments),
    s("POST", "ui/task_runs/count", SeeFlows),
    s("POST", "ui/task_runs/dashboard/counts", SeeFlows),
    s("GET", "ui/task_runs/*", SeeFlows),
    // Variables
    s("POST", "variables", WriteVariables),
    s("POST", "variables/count", SeeVariables),
    s("POST", "variables/filter", SeeVariables),
    s("GET", "variables/name/*", SeeVariables),
    s("PATCH", "variables/name/*", WriteVariables),
    s("DELETE", "variables/name/*", ManageVariables),
    s("GET", "variables/*", SeeVariables),
    s("PATCH", "variables/*", WriteVariables),
    s("DELETE", "variables/*", ManageVariables),
    // Work pools, their queues and workers
    s("POST", "work_pools", WriteWorkPools),
    s("POST", "work_pools/count", SeeWorkPools),
    s("POST", "work_pools/filter", SeeWorkPools),
    s("GET", "work_pools/*", SeeWorkPools),
    s("PATCH", "work_pools/*", WriteWorkPools),
    s("DELETE", "work_pools/*", ManageWorkPools),
    s("POST", "work_pools/*/concurrency_status", SeeWorkPools),
    s(
        "POST",
        "work_pools/*/get_scheduled_flow_runs",
        SeeWorkQueues,
    ),
    s("POST", "work_pools/*/queues", WriteWorkQueues),
    s("POST", "work_pools/*/queues/filter", SeeWorkQueues),
    s("GET", "work_pools/*/queues/*", SeeWorkQueues),
    s("PATCH", "work_pools/*/queues/*", WriteWorkQueues),
    s("DELETE", "work_pools/*/queues/*", ManageWorkQueues),
    s("POST", "work_pools/*/workers/filter", SeeWorkers),
    s("POST", "work_pools/*/workers/heartbeat", WriteWorkers),
    s("DELETE", "work_pools/*/workers/*", ManageWorkers),
    s("WS", "work_pools/*/workers/connect", WriteWorkers),
    s("POST", "work_queues", WriteWorkQueues),
    s("POST", "work_queues/filter", SeeWorkQueues),
    s("GET", "work_queues/name/*", SeeWorkQueues),
    s("GET", "work_queues/*", SeeWorkQueues),
    s("PATCH", "work_queues/*", WriteWorkQueues),
    s("DELETE", "work_queues/*", ManageWorkQueues),
    s("POST", "work_queues/*/concurrency_status", SeeWorkQueues),
    s("POST", "work_queues/*/get_runs", SeeWorkQueues),
    s("GET", "work_queues/*/status", SeeWorkQueues),
];

#[derive(Default)]
struct Node {
    literal: Vec<(&'static str, Node)>,
    wildcard: Option<Box<Node>>,
    rules: Vec<&'static RouteRule>,
}

impl Node {
    fn insert(&mut self, segments: &[&'static str], rule: &'static RouteRule) {
        match segments.split_first() {
            None => self.rules.push(rule),
            Some((&"*", rest)) => self
                .wildcard
                .get_or_insert_with(Default::default)
                .insert(rest, rule),
            Some((seg, rest)) => {
                let i = match self.literal.iter().position(|(s, _)| s == seg) {
                    Some(i) => i,
                    None => {
                        self.literal.push((seg, Node::default()));
                        self.literal.len() - 1
                    }
                };
                self.literal[i].1.insert(rest, rule);
            }
        }
    }

    /// Literal segments win over wildcards; on a dead end the wildcard is tried.
    fn find<'a, I>(&self, mut segments: I, method: &str) -> Option<&'static RouteRule>
    where
        I: Iterator<Item = &'a str> + Clone,
    {
        match segments.next() {
            None => self.rules.iter().find(|r| r.method == method).copied(),
            Some(seg) => {
                if let Some((_, n)) = self.literal.iter().find(|(s, _)| *s == seg) {
                    if let Some(r) = n.find(segments.clone(), method) {
                        return Some(r);
                    }
                }
                self.wildcard.as_ref()?.find(segments, method)
            }
        }
    }
}

fn tree() -> &'static Node {
    static TREE: OnceLock<Node> = OnceLock::new();
    TREE.get_or_init(|| {
        let mut root = Node::default();
        for r in TABLE {
            let segs: Vec<&'static str> = r.pattern.split('/').collect();
            root.insert(&segs, r);
        }
        root
    })
}

/// The rule for a canonical path (below the workspace prefix, no leading slash; one trailing
/// slash ignored). `method` is the HTTP method, or `WS` for a websocket upgrade.
pub fn lookup(method: &str, path: &str) -> Option<&'static RouteRule> {
    let path = path.strip_suffix('/').unwrap_or(path);
    tree().find(path.split('/'), method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_segments_win_and_wildcards_match_one_segment() {
        assert_eq!(
            lookup("POST", "flow_runs/filter").map(|r| r.need),
            Some(Need::Scope(SeeFlows))
        );
        assert_eq!(
            lookup("POST", "flow_runs/").map(|r| r.need),
            Some(Need::Scope(RunFlows))
        );
        assert_eq!(
            lookup("GET", "variables/name/x").map(|r| r.need),
            Some(Need::Scope(SeeVariables))
        );
        // `deployments/name/*/*` and `deployments/*` both start with a segment that could be
        // `name`; the id route still matches a plain id.
        assert_eq!(
            lookup("GET", "deployments/3c5c1f36-8d0a-4c56-9f55-8f3c3b2a1d11").map(|r| r.need),
            Some(Need::Scope(SeeDeployments))
        );
        assert_eq!(
            lookup("POST", "deployments/abc/create_flow_run").map(|r| r.need),
            Some(Need::Scope(RunDeployments))
        );
        assert!(lookup("GET", "flow_runs/a/b/c/d").is_none());
        assert!(lookup("PUT", "flows/x").is_none());
        assert_eq!(
            lookup("POST", "logs/").map(|r| r.charge),
            Some(Charge::Items)
        );
    }
}
