//! Workspace scopes: the catalogue of the 61 Prefect Cloud scope names, their implication graph,
//! and `ScopeSet`, a 64-bit set closed over implications. Pure: no I/O, no async.

use serde::Serialize;
use utoipa::ToSchema;

macro_rules! scopes {
    ($( $variant:ident = $name:literal, $title:literal, $group:literal, [$($implied:ident),*] ;)*) => {
        /// One workspace scope. The discriminant is the bit position in a [`ScopeSet`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Scope { $($variant),* }

        impl Scope {
            /// Every scope, in catalogue order.
            pub const ALL: &'static [Scope] = &[$(Scope::$variant),*];

            /// The wire name (`see_flows`, …).
            pub const fn name(self) -> &'static str {
                match self { $(Scope::$variant => $name),* }
            }

            /// Human title shown in the dashboard and the catalogue.
            pub const fn title(self) -> &'static str {
                match self { $(Scope::$variant => $title),* }
            }

            /// Feature group used to group scopes in pickers.
            pub const fn feature_group(self) -> &'static str {
                match self { $(Scope::$variant => $group),* }
            }

            /// Scopes directly implied by this one (one step of the graph).
            pub const fn implies(self) -> &'static [Scope] {
                match self { $(Scope::$variant => &[$(Scope::$implied),*]),* }
            }

            /// Parses a wire name.
            pub fn parse(s: &str) -> Option<Scope> {
                match s { $($name => Some(Scope::$variant),)* _ => None }
            }
        }
    };
}

scopes! {
    SeeFlows = "see_flows", "View flows and flow runs", "Flows", [];
    RunFlows = "run_flows", "Create, update and run flows", "Flows", [SeeFlows];
    RunTasks = "run_tasks", "Run tasks and task workers", "Flows", [SeeFlows];
    ManageFlows = "manage_flows", "Delete flows, flow runs and task runs", "Flows", [RunFlows];
    ManageSavedSearch = "manage_saved_search", "Create, update and delete saved searches", "Flows", [];
    SeeDeployments = "see_deployments", "View deployments", "Deployments", [];
    RunDeployments = "run_deployments", "Run deployments", "Deployments", [SeeDeployments];
    WriteDeployments = "write_deployments", "Create and edit deployments", "Deployments", [SeeDeployments];
    ManageDeployments = "manage_deployments", "Delete deployments", "Deployments", [WriteDeployments];
    SeeWorkPools = "see_work_pools", "View work pools", "Work pools", [];
    WriteWorkPools = "write_work_pools", "Create and edit work pools", "Work pools", [SeeWorkPools];
    ManageWorkPools = "manage_work_pools", "Delete work pools", "Work pools", [WriteWorkPools];
    SeeWorkQueues = "see_work_queues", "View work queues", "Work queues", [];
    WriteWorkQueues = "write_work_queues", "Create and edit work queues", "Work queues", [SeeWorkQueues];
    ManageWorkQueues = "manage_work_queues", "Delete work queues", "Work queues", [WriteWorkQueues];
    SeeWorkers = "see_workers", "View workers", "Workers", [];
    WriteWorkers = "write_workers", "Register workers (heartbeat)", "Workers", [SeeWorkers];
    ManageWorkers = "manage_workers", "Delete workers", "Workers", [WriteWorkers];
    SeeBlocks = "see_blocks", "View blocks", "Blocks", [];
    SeeSecretBlocks = "see_secret_blocks", "View secret block data", "Blocks", [SeeBlocks];
    ManageBlocks = "manage_blocks", "Create, edit and delete blocks", "Blocks", [SeeBlocks];
    SeeAutomations = "see_automations", "View automations", "Automations", [];
    ManageAutomations = "manage_automations", "Create, edit and delete automations", "Automations", [SeeAutomations];
    SeeConcurrencyLimits = "see_concurrency_limits", "View concurrency limits", "Concurrency limits", [];
    ManageConcurrencyLimits = "manage_concurrency_limits", "Create, edit and delete concurrency limits", "Concurrency limits", [SeeConcurrencyLimits];
    SeeVariables = "see_variables", "View variables", "Variables", [];
    WriteVariables = "write_variables", "Create and edit variables", "Variables", [SeeVariables];
    ManageVariables = "manage_variables", "Delete variables", "Variables", [WriteVariables];
    SeeArtifacts = "see_artifacts", "View artifacts", "Artifacts", [];
    WriteArtifacts = "write_artifacts", "Create and edit artifacts", "Artifacts", [SeeArtifacts];
    ManageArtifacts = "manage_artifacts", "Delete artifacts", "Artifacts", [WriteArtifacts];
    SeeAssets = "see_assets", "View assets", "Assets", [];
    WriteAssets = "write_assets", "Create and edit assets", "Assets", [SeeAssets];
    ManageAssets = "manage_assets", "Delete assets", "Assets", [WriteAssets];
    SeeEvents = "see_events", "Read events", "Events", [];
    ManageEvents = "manage_events", "Emit events", "Events", [SeeEvents];
    SeeEventPublications = "see_event_publications", "View event publications", "Event forwarding", [];
    ManageEventPublications = "manage_event_publications", "Manage event publications", "Event forwarding", [SeeEventPublications];
    SeeEventSubscriptions = "see_event_subscriptions", "View event subscriptions", "Event forwarding", [];
    ManageEventSubscriptions = "manage_event_subscriptions", "Manage event subscriptions", "Event forwarding", [SeeEventSubscriptions];
    SeeNotifications = "see_notifications", "View notification policies", "Notifications", [];
    WriteNotifications = "write_notifications", "Create and edit notification policies", "Notifications", [SeeNotifications];
    ManageNotifications = "manage_notifications", "Delete notification policies", "Notifications", [WriteNotifications];
    SeeWebhooks = "see_webhooks", "View webhooks", "Webhooks", [];
    ManageWebhooks = "manage_webhooks", "Create, edit and delete webhooks", "Webhooks", [SeeWebhooks];
    SeeIncidents = "see_incidents", "View incidents", "Incidents", [];
    WriteIncidents = "write_incidents", "Create and edit incidents", "Incidents", [SeeIncidents];
    ManageIncidents = "manage_incidents", "Delete incidents", "Incidents", [WriteIncidents];
    SeeTags = "see_tags", "View tags", "Tags", [];
    ManageTags = "manage_tags", "Manage tags", "Tags", [SeeTags];
    ManageAcls = "manage_acls", "Set object access control lists", "Access control", [];
    ManageMexDeploy = "manage_mex_deploy", "Deploy to managed work pools", "Managed execution", [];
    ManageMexStorage = "manage_mex_storage", "Manage managed-execution storage", "Managed execution", [];
    SeeWorkspaceSettings = "see_workspace_settings", "View workspace settings", "Workspace", [];
    WriteWorkspaceSettings = "write_workspace_settings", "Edit workspace settings", "Workspace", [SeeWorkspaceSettings];
    ManageWorkspaceSettings = "manage_workspace_settings", "Delete the workspace", "Workspace", [WriteWorkspaceSettings];
    SeeWorkspaceUsers = "see_workspace_users", "View workspace users", "Workspace", [];
    ManageWorkspaceUsers = "manage_workspace_users", "Grant and revoke user access", "Workspace", [SeeWorkspaceUsers];
    SeeWorkspaceServiceAccounts = "see_workspace_service_accounts", "View workspace service accounts", "Workspace", [];
    ManageWorkspaceServiceAccounts = "manage_workspace_service_accounts", "Grant and revoke service-account access", "Workspace", [SeeWorkspaceServiceAccounts];
    ManageWorkspaceTeams = "manage_workspace_teams", "Grant and revoke team access", "Workspace", [];
}

impl Scope {
    /// The `see_*` scope of this scope's resource, if it has one distinct from itself.
    pub fn see_scope(self) -> Option<Scope> {
        let mut current = self;
        while let [next, ..] = current.implies() {
            current = *next;
        }
        (current != self && current.name().starts_with("see_")).then_some(current)
    }

    const fn bit(self) -> u64 {
        1u64 << (self as u8)
    }
}

/// A set of scopes as a bitset. Sets built with [`ScopeSet::closed`] include every implied scope,
/// so checking a scope is one bit test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ScopeSet(u64);

impl ScopeSet {
    pub const EMPTY: ScopeSet = ScopeSet(0);

    /// Every scope in the catalogue.
    pub fn all() -> ScopeSet {
        Scope::ALL.iter().copied().collect()
    }

    pub const fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn insert(&mut self, scope: Scope) {
        self.0 |= scope.bit();
    }

    pub const fn union(self, other: ScopeSet) -> ScopeSet {
        ScopeSet(self.0 | other.0)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True when every scope of `other` is in `self`.
    pub const fn is_superset(self, other: ScopeSet) -> bool {
        other.0 & !self.0 == 0
    }

    /// This set plus everything its members imply, transitively.
    pub fn closed(self) -> ScopeSet {
        let mut out = self;
        loop {
            let mut next = out;
            for s in out.iter() {
                for implied in s.implies() {
                    next.insert(*implied);
                }
            }
            if next == out {
                return out;
            }
            out = next;
        }
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL
            .iter()
            .copied()
            .filter(move |s| self.contains(*s))
    }

    /// Wire names, in catalogue order.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::name).collect()
    }

    /// Parses wire names; returns the first unknown name as the error.
    pub fn parse_names<'a, I: IntoIterator<Item = &'a str>>(names: I) -> Result<ScopeSet, String> {
        let mut set = ScopeSet::EMPTY;
        for n in names {
            set.insert(Scope::parse(n).ok_or_else(|| n.to_string())?);
        }
        Ok(set)
    }

    /// Raw bits, for storage-free comparisons and benchmarks.
    pub const fn bits(self) -> u64 {
        self.0
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<T: IntoIterator<Item = Scope>>(iter: T) -> Self {
        let mut set = ScopeSet::EMPTY;
        for s in iter {
            set.insert(s);
        }
        set
    }
}

/// One entry of `GET /api/workspace_scopes`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeInfo {
    pub name: &'static str,
    pub title: &'static str,
    pub feature_group: &'static str,
    /// Every scope this one grants, transitively (not including itself).
    pub includes_scopes: Vec<&'static str>,
    pub see_scope: Option<&'static str>,
}

/// The catalogue, in order.
pub fn catalogue() -> Vec<ScopeInfo> {
    Scope::ALL
        .iter()
        .map(|s| {
            let mut includes = std::iter::once(*s).collect::<ScopeSet>().closed();
            includes = ScopeSet(includes.0 & !s.bit());
            ScopeInfo {
                name: s.name(),
                title: s.title(),
                feature_group: s.feature_group(),
                includes_scopes: includes.names(),
                see_scope: s.see_scope().map(Scope::name),
            }
        })
        .collect()
}

/// A workspace scope name as requests carry it (its schema lists the names).
pub struct ScopeName;
impl utoipa::PartialSchema for ScopeName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(Scope::ALL.iter().map(|s| s.name())))
            .into()
    }
}
impl utoipa::ToSchema for ScopeName {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_has_the_61_reference_scopes_with_unique_names() {
        assert_eq!(Scope::ALL.len(), 61);
        let mut names: Vec<_> = Scope::ALL.iter().map(|s| s.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 61);
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.name()), Some(*s));
        }
    }

    #[test]
    fn closure_follows_manage_write_see_chains() {
        let set: ScopeSet = [Scope::ManageDeployments].into_iter().collect();
        let closed = set.closed();
        assert!(closed.contains(Scope::WriteDeployments));
        assert!(closed.contains(Scope::SeeDeployments));
        assert!(!closed.contains(Scope::RunDeployments));
        let flows: ScopeSet = [Scope::ManageFlows].into_iter().collect();
        assert_eq!(
            flows.closed().names(),
            vec!["see_flows", "run_flows", "manage_flows"]
        );
    }

    #[test]
    fn closure_is_idempotent_and_monotone_for_every_single_scope() {
        for s in Scope::ALL {
            let one: ScopeSet = [*s].into_iter().collect();
            let c = one.closed();
            assert!(c.contains(*s));
            assert_eq!(c.closed(), c);
            for implied in s.implies() {
                assert!(
                    c.contains(*implied),
                    "{} must imply {}",
                    s.name(),
                    implied.name()
                );
            }
        }
    }

    #[test]
    fn parse_names_reports_the_unknown_name() {
        assert_eq!(
            ScopeSet::parse_names(["see_flows", "fly_to_moon"]),
            Err("fly_to_moon".to_string())
        );
    }

    #[test]
    fn see_scope_points_to_the_resource_read_scope() {
        assert_eq!(
            Scope::ManageWorkPools.see_scope(),
            Some(Scope::SeeWorkPools)
        );
        assert_eq!(Scope::SeeWorkPools.see_scope(), None);
        assert_eq!(Scope::ManageAcls.see_scope(), None);
    }
}
