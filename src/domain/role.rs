//! Roles: the built-in workspace roles with their scope sets, the system account roles
//! (Owner, Admin, Member) with their permission sets, and the account-permission catalogue.
//! Pure: no I/O.

use super::scope::{Scope, ScopeSet};
use uuid::Uuid;

/// The five built-in workspace roles. Their ids are fixed so they are the same on every
/// installation and can be referenced from the database (migrations insert matching rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuiltinWorkspaceRole {
    Owner,
    Developer,
    Runner,
    Viewer,
    Worker,
}

impl BuiltinWorkspaceRole {
    pub const ALL: [BuiltinWorkspaceRole; 5] = [
        BuiltinWorkspaceRole::Owner,
        BuiltinWorkspaceRole::Developer,
        BuiltinWorkspaceRole::Runner,
        BuiltinWorkspaceRole::Viewer,
        BuiltinWorkspaceRole::Worker,
    ];

    pub const fn id(self) -> Uuid {
        Uuid::from_u128(match self {
            BuiltinWorkspaceRole::Owner => 0x0000_0000_0000_4000_8000_0000_0000_0101,
            BuiltinWorkspaceRole::Developer => 0x0000_0000_0000_4000_8000_0000_0000_0102,
            BuiltinWorkspaceRole::Runner => 0x0000_0000_0000_4000_8000_0000_0000_0103,
            BuiltinWorkspaceRole::Viewer => 0x0000_0000_0000_4000_8000_0000_0000_0104,
            BuiltinWorkspaceRole::Worker => 0x0000_0000_0000_4000_8000_0000_0000_0105,
        })
    }

    pub fn from_id(id: Uuid) -> Option<BuiltinWorkspaceRole> {
        Self::ALL.into_iter().find(|r| r.id() == id)
    }

    pub const fn name(self) -> &'static str {
        match self {
            BuiltinWorkspaceRole::Owner => "Owner",
            BuiltinWorkspaceRole::Developer => "Developer",
            BuiltinWorkspaceRole::Runner => "Runner",
            BuiltinWorkspaceRole::Viewer => "Viewer",
            BuiltinWorkspaceRole::Worker => "Worker",
        }
    }

    pub const fn description(self) -> &'static str {
        match self {
            BuiltinWorkspaceRole::Owner => {
                "Everything in the workspace, including its members and settings"
            }
            BuiltinWorkspaceRole::Developer => {
                "Build and run flows and deployments, manage blocks and automations"
            }
            BuiltinWorkspaceRole::Runner => "View everything and run deployments",
            BuiltinWorkspaceRole::Viewer => "View flows, runs, deployments, work pools and blocks",
            BuiltinWorkspaceRole::Worker => {
                "The minimum a worker needs to poll for and submit work"
            }
        }
    }

    /// The closed scope set of the role (see docs/access.md, "Built-in roles", for where these come from).
    pub fn scopes(self) -> ScopeSet {
        use Scope::*;
        let viewer: ScopeSet = Scope::ALL
            .iter()
            .copied()
            .filter(|s| {
                s.name().starts_with("see_")
                    && !matches!(
                        s,
                        SeeSecretBlocks
                            | SeeWorkspaceSettings
                            | SeeWorkspaceUsers
                            | SeeWorkspaceServiceAccounts
                    )
            })
            .collect();
        // Runner: run deployments, and host them with `flow.serve()` — which registers the
        // deployment, executes its runs (states, logs, events) and subscribes to events.
        let runner = viewer.union(
            [
                RunDeployments,
                WriteDeployments,
                RunFlows,
                RunTasks,
                ManageEvents,
            ]
            .into_iter()
            .collect(),
        );
        let developer = runner.union(
            [
                RunFlows,
                RunTasks,
                ManageFlows,
                ManageSavedSearch,
                ManageDeployments,
                ManageWorkPools,
                ManageWorkQueues,
                ManageWorkers,
                SeeSecretBlocks,
                ManageBlocks,
                ManageAutomations,
                ManageVariables,
                ManageConcurrencyLimits,
                ManageArtifacts,
                ManageAssets,
                ManageEvents,
                ManageNotifications,
                SeeWorkspaceSettings,
                ManageTags,
                ManageWebhooks,
                ManageIncidents,
            ]
            .into_iter()
            .collect(),
        );
        let set = match self {
            BuiltinWorkspaceRole::Owner => ScopeSet::all(),
            BuiltinWorkspaceRole::Developer => developer,
            BuiltinWorkspaceRole::Runner => runner,
            BuiltinWorkspaceRole::Viewer => viewer,
            BuiltinWorkspaceRole::Worker => [
                SeeWorkPools,
                SeeWorkQueues,
                WriteWorkers,
                SeeDeployments,
                SeeFlows,
                RunFlows,
                RunTasks,
                SeeBlocks,
                SeeSecretBlocks,
                SeeVariables,
                SeeConcurrencyLimits,
                ManageEvents,
            ]
            .into_iter()
            .collect(),
        };
        set.closed()
    }
}

macro_rules! permissions {
    ($($variant:ident = $name:literal),* $(,)?) => {
        /// An account-level permission (`verb:object`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum AccountPermission { $($variant),* }

        impl AccountPermission {
            pub const ALL: &'static [AccountPermission] = &[$(AccountPermission::$variant),*];
            pub const fn name(self) -> &'static str {
                match self { $(AccountPermission::$variant => $name),* }
            }
            pub fn parse(s: &str) -> Option<AccountPermission> {
                match s { $($name => Some(AccountPermission::$variant),)* _ => None }
            }
        }
    };
}

permissions! {
    AddAccountMember = "add:account_member",
    AdministrateSso = "administrate:sso",
    AdministrateWorkspace = "administrate:workspace",
    BypassSso = "bypass:sso",
    CreateAccountRole = "create:account_role",
    CreateAuditEvent = "create:audit_event",
    CreateBot = "create:bot",
    CreateInvitation = "create:invitation",
    CreateTeam = "create:team",
    CreateWorkspace = "create:workspace",
    CreateWorkspaceInvitation = "create:workspace_invitation",
    CreateWorkspaceRole = "create:workspace_role",
    DeleteAccount = "delete:account",
    DeleteAccountMembership = "delete:account_membership",
    DeleteAccountRole = "delete:account_role",
    DeleteBot = "delete:bot",
    DeleteMexStorage = "delete:mex-storage",
    DeleteTeam = "delete:team",
    DeleteWorkspace = "delete:workspace",
    DeleteWorkspaceRole = "delete:workspace_role",
    ReadAccount = "read:account",
    ReadAccountMembership = "read:account_membership",
    ReadAccountRole = "read:account_role",
    ReadAuditEvent = "read:audit_event",
    ReadBilling = "read:billing",
    ReadBot = "read:bot",
    ReadIntegrations = "read:integrations",
    ReadInvitation = "read:invitation",
    ReadIpAllowlist = "read:ip_allowlist",
    ReadMexStorage = "read:mex-storage",
    ReadSso = "read:sso",
    ReadTeam = "read:team",
    ReadWorkspace = "read:workspace",
    ReadWorkspaceInvitation = "read:workspace_invitation",
    ReadWorkspaceRole = "read:workspace_role",
    UpdateAccount = "update:account",
    UpdateAccountMembership = "update:account_membership",
    UpdateAccountRole = "update:account_role",
    UpdateBilling = "update:billing",
    UpdateBot = "update:bot",
    UpdateIntegrations = "update:integrations",
    UpdateInvitation = "update:invitation",
    UpdateIpAllowlist = "update:ip_allowlist",
    UpdateMexStorage = "update:mex-storage",
    UpdateTeam = "update:team",
    UpdateWorkspaceInvitation = "update:workspace_invitation",
    UpdateWorkspaceRole = "update:workspace_role",
}

/// A set of account permissions as a bitset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PermissionSet(u64);

impl PermissionSet {
    pub const fn contains(self, p: AccountPermission) -> bool {
        self.0 & (1u64 << (p as u8)) != 0
    }
    pub fn names(self) -> Vec<&'static str> {
        AccountPermission::ALL
            .iter()
            .filter(|p| self.contains(**p))
            .map(|p| p.name())
            .collect()
    }
    pub const fn is_superset(self, other: PermissionSet) -> bool {
        other.0 & !self.0 == 0
    }
}

impl FromIterator<AccountPermission> for PermissionSet {
    fn from_iter<T: IntoIterator<Item = AccountPermission>>(iter: T) -> Self {
        PermissionSet(iter.into_iter().fold(0, |acc, p| acc | (1u64 << (p as u8))))
    }
}

/// The system account roles. Ordered: a higher role holds every permission of a lower one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccountRole {
    Member,
    Admin,
    Owner,
}

impl AccountRole {
    pub const ALL: [AccountRole; 3] = [AccountRole::Owner, AccountRole::Admin, AccountRole::Member];

    pub const fn id(self) -> Uuid {
        Uuid::from_u128(match self {
            AccountRole::Owner => 0x0000_0000_0000_4000_8000_0000_0000_0001,
            AccountRole::Admin => 0x0000_0000_0000_4000_8000_0000_0000_0002,
            AccountRole::Member => 0x0000_0000_0000_4000_8000_0000_0000_0003,
        })
    }

    pub fn from_id(id: Uuid) -> Option<AccountRole> {
        Self::ALL.into_iter().find(|r| r.id() == id)
    }

    pub const fn name(self) -> &'static str {
        match self {
            AccountRole::Owner => "Owner",
            AccountRole::Admin => "Admin",
            AccountRole::Member => "Member",
        }
    }

    /// Storage code (kept stable in the database).
    pub const fn code(self) -> &'static str {
        match self {
            AccountRole::Owner => "owner",
            AccountRole::Admin => "admin",
            AccountRole::Member => "member",
        }
    }

    pub fn from_code(code: &str) -> Option<AccountRole> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    pub fn permissions(self) -> PermissionSet {
        use AccountPermission::*;
        match self {
            AccountRole::Owner => AccountPermission::ALL.iter().copied().collect(),
            AccountRole::Admin => AccountPermission::ALL
                .iter()
                .copied()
                .filter(|p| !matches!(p, BypassSso | DeleteAccount))
                .collect(),
            AccountRole::Member => [
                ReadAccount,
                ReadWorkspace,
                ReadAccountMembership,
                ReadAccountRole,
                ReadBot,
                ReadTeam,
                ReadWorkspaceRole,
            ]
            .into_iter()
            .collect(),
        }
    }

    /// Account Owners and Admins hold implicit workspace Owner on every workspace.
    pub const fn implicit_workspace_owner(self) -> bool {
        matches!(self, AccountRole::Owner | AccountRole::Admin)
    }
}

/// An account permission name as requests carry it (its schema lists the names).
pub struct PermissionName;
impl utoipa::PartialSchema for PermissionName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(AccountPermission::ALL.iter().map(|p| p.name())))
            .into()
    }
}
impl utoipa::ToSchema for PermissionName {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_roles_nest_viewer_runner_developer_owner() {
        let v = BuiltinWorkspaceRole::Viewer.scopes();
        let r = BuiltinWorkspaceRole::Runner.scopes();
        let d = BuiltinWorkspaceRole::Developer.scopes();
        let o = BuiltinWorkspaceRole::Owner.scopes();
        assert!(r.is_superset(v) && d.is_superset(r) && o.is_superset(d));
        assert!(r.contains(Scope::RunDeployments) && !v.contains(Scope::RunDeployments));
        assert!(!d.contains(Scope::ManageWorkspaceUsers));
        assert!(o.contains(Scope::ManageWorkspaceUsers));
        assert!(!v.contains(Scope::SeeSecretBlocks));
    }

    #[test]
    fn builtin_role_ids_round_trip_and_are_distinct() {
        for r in BuiltinWorkspaceRole::ALL {
            assert_eq!(BuiltinWorkspaceRole::from_id(r.id()), Some(r));
            assert_eq!(AccountRole::from_id(r.id()), None);
        }
        for r in AccountRole::ALL {
            assert_eq!(AccountRole::from_id(r.id()), Some(r));
            assert_eq!(AccountRole::from_code(r.code()), Some(r));
        }
    }

    #[test]
    fn account_permissions_are_the_reference_strings_and_nest() {
        // The reference says "48 strings" but lists 47; we carry exactly the listed ones.
        assert_eq!(AccountPermission::ALL.len(), 47);
        let owner = AccountRole::Owner.permissions();
        let admin = AccountRole::Admin.permissions();
        let member = AccountRole::Member.permissions();
        assert_eq!(owner.names().len(), 47);
        assert!(owner.is_superset(admin) && admin.is_superset(member));
        assert!(!admin.contains(AccountPermission::BypassSso));
        assert!(!member.contains(AccountPermission::UpdateAccountMembership));
        assert!(member.contains(AccountPermission::ReadAccountMembership));
    }

    #[test]
    fn worker_can_heartbeat_and_emit_events_but_not_deploy() {
        let w = BuiltinWorkspaceRole::Worker.scopes();
        assert!(w.contains(Scope::WriteWorkers) && w.contains(Scope::SeeWorkers));
        assert!(w.contains(Scope::ManageEvents));
        assert!(!w.contains(Scope::WriteDeployments));
    }
}
