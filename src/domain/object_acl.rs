//! Object access control lists (Prefect Cloud's Enterprise ACLs) for deployments, work pools and
//! block documents: what an ACL holds, who it lets through at which level, and which gateway
//! routes it governs. Pure: the gateway (`services::object_acls`) applies these rules to calls.
//!
//! Semantics (docs/gateway.md, "Object access control lists"):
//! - An object without an ACL is governed by workspace roles alone. Setting every level to `*`
//!   (what the Terraform provider does on destroy) removes the ACL.
//! - With an ACL, a caller needs its workspace scope for the route **and** a place on the ACL at
//!   the route's level or above (manage ⇒ run ⇒ view): the ACL narrows, it never grants.
//! - Holders of `manage_acls` (workspace Owners, account Owners and Admins) are not restricted.
//! - A deployment whose work pool has an ACL is governed by the pool's ACL, its own is ignored.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The kinds of object an ACL can govern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    Deployment,
    WorkPool,
    BlockDocument,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 3] = [
        ObjectKind::Deployment,
        ObjectKind::WorkPool,
        ObjectKind::BlockDocument,
    ];

    /// The name stored in the database and shown in audit events.
    pub const fn code(self) -> &'static str {
        match self {
            ObjectKind::Deployment => "deployment",
            ObjectKind::WorkPool => "work_pool",
            ObjectKind::BlockDocument => "block_document",
        }
    }

    pub fn parse(s: &str) -> Option<ObjectKind> {
        Self::ALL.into_iter().find(|k| k.code() == s)
    }

    /// Block documents have no run level.
    pub const fn has_run(self) -> bool {
        !matches!(self, ObjectKind::BlockDocument)
    }

    /// The key an object is known by: deployments and block documents by id (lower-case UUID),
    /// work pools by name (as Prefect Cloud's routes name them). `None` for a malformed id.
    pub fn key(self, raw: &str) -> Option<String> {
        match self {
            ObjectKind::WorkPool => (!raw.is_empty() && raw.len() <= 200).then(|| raw.to_string()),
            _ => Uuid::try_parse(raw).ok().map(|u| u.to_string()),
        }
    }
}

/// Access levels, each implying the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    View = 0,
    Run = 1,
    Manage = 2,
}

impl Level {
    pub const fn name(self) -> &'static str {
        match self {
            Level::View => "view",
            Level::Run => "run",
            Level::Manage => "manage",
        }
    }
}

/// Who an ACL entry names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Accessor {
    /// Everyone whose workspace role reaches the object (`*`).
    #[serde(rename = "*")]
    Everyone,
    /// A user: `id` is the user id (what a caller is known by), `actor_id` what the API shows.
    User {
        id: Uuid,
        actor_id: Uuid,
    },
    ServiceAccount {
        id: Uuid,
        actor_id: Uuid,
    },
    Team {
        id: Uuid,
    },
}

/// One object's ACL: the accessors listed at each level (index: [`Level`] as usize).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectAcl {
    pub manage: Vec<Accessor>,
    #[serde(default)]
    pub run: Vec<Accessor>,
    pub view: Vec<Accessor>,
}

impl ObjectAcl {
    pub fn level(&self, l: Level) -> &[Accessor] {
        match l {
            Level::View => &self.view,
            Level::Run => &self.run,
            Level::Manage => &self.manage,
        }
    }

    /// True when every level the kind has is exactly `*`: the object is governed by roles alone
    /// (no ACL is stored).
    pub fn is_open(&self, kind: ObjectKind) -> bool {
        let star = |v: &[Accessor]| v == [Accessor::Everyone];
        star(&self.manage) && star(&self.view) && (!kind.has_run() || star(&self.run))
    }

    /// Whether a caller (`principal`: a user or service-account id; `in_team`: whether they are
    /// a current member of a team) is on this ACL at `level` or above.
    pub fn allows(&self, level: Level, principal: &Uuid, in_team: impl Fn(&Uuid) -> bool) -> bool {
        [Level::Manage, Level::Run, Level::View]
            .into_iter()
            .filter(|l| *l >= level)
            .flat_map(|l| self.level(l))
            .any(|a| match a {
                Accessor::Everyone => true,
                Accessor::User { id, .. } | Accessor::ServiceAccount { id, .. } => id == principal,
                Accessor::Team { id } => in_team(id),
            })
    }
}

/// How the gateway treats a governed route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclRoute {
    /// The object named by path segment `segment` (0-based, below the workspace), at `level`.
    Path {
        kind: ObjectKind,
        segment: usize,
        level: Level,
    },
    /// `PATCH deployments/{id}`: manage on the deployment, and manage on the work pool named by a
    /// `work_pool_name` in the body (moving a deployment into a pool makes it the pool's).
    PatchDeployment,
    /// `POST deployments` (an upsert by flow and name): manage on the pool named by
    /// `work_pool_name`, and on the deployment it would replace.
    CreateDeployment,
    /// `POST flow_runs` with a `deployment_id`: run on that deployment.
    CreateFlowRun,
    /// `POST deployments/get_scheduled_flow_runs` (a runner polling): run on each of the body's
    /// `deployment_ids`.
    DeploymentIds,
    /// `POST deployments/bulk_delete`: refused to callers an ACL keeps from managing a deployment
    /// or work pool of the workspace (the filter could reach them).
    BulkDelete,
    /// A read answering one object found by name: 404 unless the caller may view it.
    Object(ObjectKind),
    /// A list (a JSON array, or a `paginate` page): the objects the caller may not view are
    /// left out, and a page's count with them.
    List { kind: ObjectKind, paginate: bool },
    /// A count: the objects the caller may not view are not counted.
    Count(ObjectKind),
}

impl AclRoute {
    /// Whether the gateway must read the call's body to decide.
    pub fn needs_body(self) -> bool {
        matches!(
            self,
            AclRoute::PatchDeployment
                | AclRoute::CreateDeployment
                | AclRoute::CreateFlowRun
                | AclRoute::DeploymentIds
                | AclRoute::List { paginate: true, .. }
                | AclRoute::Count(_)
        )
    }

    /// The kinds whose ACLs bear on this route (a deployment's pool's ACL included).
    pub fn kinds(self) -> &'static [ObjectKind] {
        use ObjectKind::*;
        match self {
            AclRoute::Path { kind: WorkPool, .. }
            | AclRoute::Object(WorkPool)
            | AclRoute::List { kind: WorkPool, .. }
            | AclRoute::Count(WorkPool) => &[WorkPool],
            AclRoute::Path {
                kind: BlockDocument,
                ..
            }
            | AclRoute::Object(BlockDocument)
            | AclRoute::List {
                kind: BlockDocument,
                ..
            }
            | AclRoute::Count(BlockDocument) => &[BlockDocument],
            _ => &[Deployment, WorkPool],
        }
    }
}

/// The ACL treatment of a gateway route (`method`, `pattern` of its route-table rule); `None`
/// for routes ACLs do not govern (flows, flow runs, artifacts… stay visible, as in Prefect Cloud).
pub fn route(method: &str, pattern: &str) -> Option<AclRoute> {
    use AclRoute::*;
    use Level::*;
    use ObjectKind::*;
    let path = |kind, level| {
        Some(Path {
            kind,
            segment: 1,
            level,
        })
    };
    match (method, pattern) {
        ("POST", "deployments") => Some(CreateDeployment),
        ("POST", "deployments/bulk_delete") => Some(BulkDelete),
        ("POST", "deployments/count") => Some(Count(Deployment)),
        ("POST", "deployments/filter") => Some(List {
            kind: Deployment,
            paginate: false,
        }),
        ("POST", "deployments/paginate") => Some(List {
            kind: Deployment,
            paginate: true,
        }),
        ("POST", "deployments/get_scheduled_flow_runs") => Some(DeploymentIds),
        ("GET", "deployments/name/*/*") => Some(Object(Deployment)),
        ("PATCH", "deployments/*") => Some(PatchDeployment),
        ("POST", "deployments/*/create_flow_run" | "deployments/*/create_flow_run/bulk") => {
            path(Deployment, Run)
        }
        ("GET", "deployments/*" | "deployments/*/schedules" | "deployments/*/work_queue_check") => {
            path(Deployment, View)
        }
        (_, p) if p.starts_with("deployments/*") => path(Deployment, Manage),
        ("POST", "flow_runs") => Some(CreateFlowRun),
        ("POST", "work_pools/count") => Some(Count(WorkPool)),
        ("POST", "work_pools/filter") => Some(List {
            kind: WorkPool,
            paginate: false,
        }),
        ("POST", "work_pools/*/get_scheduled_flow_runs" | "work_pools/*/workers/heartbeat")
        | ("WS", "work_pools/*/workers/connect") => path(WorkPool, Run),
        ("GET", "work_pools/*" | "work_pools/*/queues/*")
        | (
            "POST",
            "work_pools/*/concurrency_status"
            | "work_pools/*/queues/filter"
            | "work_pools/*/workers/filter",
        ) => path(WorkPool, View),
        (_, p) if p.starts_with("work_pools/*") => path(WorkPool, Manage),
        ("POST", "block_documents/count") => Some(Count(BlockDocument)),
        ("POST", "block_documents/filter") | ("GET", "block_types/slug/*/block_documents") => {
            Some(List {
                kind: BlockDocument,
                paginate: false,
            })
        }
        ("GET", "block_types/slug/*/block_documents/name/*") => Some(Object(BlockDocument)),
        ("GET", "block_documents/*") => path(BlockDocument, View),
        (_, "block_documents/*") => path(BlockDocument, Manage),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::gateway_routes::TABLE;

    fn user(n: u128) -> Accessor {
        Accessor::User {
            id: Uuid::from_u128(n),
            actor_id: Uuid::from_u128(n + 1000),
        }
    }

    #[test]
    fn higher_levels_imply_lower_ones_and_teams_count_when_current() {
        let acl = ObjectAcl {
            manage: vec![user(1)],
            run: vec![Accessor::Team {
                id: Uuid::from_u128(7),
            }],
            view: vec![user(3)],
        };
        let none = |_: &Uuid| false;
        let team7 = |t: &Uuid| *t == Uuid::from_u128(7);
        let u = Uuid::from_u128;
        assert!(acl.allows(Level::Manage, &u(1), none));
        assert!(acl.allows(Level::View, &u(1), none), "manage implies view");
        assert!(!acl.allows(Level::Run, &u(3), none), "view is not run");
        assert!(acl.allows(Level::View, &u(3), none));
        assert!(acl.allows(Level::Run, &u(9), team7), "a team member runs");
        assert!(!acl.allows(Level::Manage, &u(9), team7));
        assert!(!acl.allows(Level::View, &u(9), none), "not listed");
        // The actor id is not what a caller is known by.
        assert!(!acl.allows(Level::View, &u(1001), none));
        let open = ObjectAcl {
            manage: vec![Accessor::Everyone],
            run: vec![Accessor::Everyone],
            view: vec![Accessor::Everyone],
        };
        assert!(open.is_open(ObjectKind::Deployment));
        assert!(!acl.is_open(ObjectKind::Deployment));
        let block = ObjectAcl {
            run: vec![],
            ..open
        };
        assert!(block.is_open(ObjectKind::BlockDocument));
        assert!(!block.is_open(ObjectKind::WorkPool));
    }

    #[test]
    fn every_route_touching_a_governed_object_is_classified() {
        // Routes of the governed collections that ACLs deliberately leave alone: creating a new
        // object (nothing to govern yet) and the catalogue of block types and schemas.
        let ungoverned = [("POST", "work_pools"), ("POST", "block_documents")];
        for r in TABLE {
            let governed_prefix = ["deployments", "work_pools", "block_documents"]
                .iter()
                .any(|p| r.pattern == *p || r.pattern.starts_with(&format!("{p}/")))
                || r.pattern.starts_with("block_types/slug/*/block_documents");
            if !governed_prefix || ungoverned.contains(&(r.method, r.pattern)) {
                continue;
            }
            assert!(
                route(r.method, r.pattern).is_some(),
                "{} {} touches a governed object but has no ACL treatment",
                r.method,
                r.pattern
            );
        }
        assert_eq!(
            route("POST", "deployments/*/create_flow_run"),
            Some(AclRoute::Path {
                kind: ObjectKind::Deployment,
                segment: 1,
                level: Level::Run
            })
        );
        assert_eq!(
            route("DELETE", "deployments/*/schedules/*"),
            Some(AclRoute::Path {
                kind: ObjectKind::Deployment,
                segment: 1,
                level: Level::Manage
            })
        );
        assert_eq!(
            route("WS", "work_pools/*/workers/connect"),
            Some(AclRoute::Path {
                kind: ObjectKind::WorkPool,
                segment: 1,
                level: Level::Run
            })
        );
        assert_eq!(route("POST", "flows/filter"), None);
        assert_eq!(route("GET", "block_types/slug/*"), None);
    }

    #[test]
    fn keys_are_canonical_ids_or_names() {
        let id = "3C5C1F36-8D0A-4C56-9F55-8F3C3B2A1D11";
        assert_eq!(
            ObjectKind::Deployment.key(id).as_deref(),
            Some("3c5c1f36-8d0a-4c56-9f55-8f3c3b2a1d11")
        );
        assert_eq!(ObjectKind::BlockDocument.key("nope"), None);
        assert_eq!(ObjectKind::WorkPool.key("k8s").as_deref(), Some("k8s"));
        assert_eq!(ObjectKind::WorkPool.key(""), None);
    }
}
