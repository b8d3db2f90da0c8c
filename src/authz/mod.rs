//! Authorization: principals, the in-memory permission index and the checks every service
//! function starts with. Pure and synchronous: the index is built from rows the services load,
//! and time is passed in. Must not import `store`, `http` or `services`.

use crate::domain::object_acl::{ObjectAcl, ObjectKind};
use crate::domain::plan::{FeatureSet, PlanType};
use crate::domain::role::{AccountPermission, AccountRole, BuiltinWorkspaceRole};
use crate::domain::scope::{Scope, ScopeSet};
use crate::domain::{AccountId, ApiKeyId, RoleId, UserId, WorkspaceId};
use arc_swap::ArcSwap;
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use uuid::Uuid;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: UserId,
    /// Display name for audit records (the user's email).
    pub name: String,
    pub site_admin: bool,
    pub credential: Credential,
    /// Client address and user agent of the request, for audit records.
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// For a service account: its account (`user_id` then holds the service account's id). `None`
    /// for users.
    pub bot_account: Option<AccountId>,
}

impl Principal {
    /// True for service accounts.
    pub fn is_bot(&self) -> bool {
        self.bot_account.is_some()
    }

    /// Someone not signed in (a failed sign-in), from `ip` with `user_agent`: the actor of the
    /// refusals recorded before anyone is known.
    pub fn anonymous(ip: Option<&str>, user_agent: Option<&str>) -> Principal {
        Principal {
            user_id: UserId(uuid::Uuid::nil()),
            name: "anonymous".into(),
            site_admin: false,
            credential: Credential::Cli,
            ip: ip.map(str::to_string),
            user_agent: user_agent.map(str::to_string),
            bot_account: None,
        }
    }

    /// An operator acting through the CLI on the server's machine, as `user`.
    pub fn cli(user_id: UserId, name: String) -> Principal {
        Principal {
            user_id,
            name,
            site_admin: true,
            credential: Credential::Cli,
            ip: None,
            user_agent: Some("atrium-cli".into()),
            bot_account: None,
        }
    }
}

/// How the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A dashboard/API session; carries the hash of the session id (to end it on logout).
    Session {
        id_hash: String,
    },
    ApiKey {
        key_id: ApiKeyId,
    },
    /// Operator commands run on the server's machine (`atrium …` CLI).
    Cli,
    /// An account's SCIM token: it may do SCIM for that account and nothing else (the principal's
    /// `user_id` holds the token's id).
    Scim {
        token_id: Uuid,
        account: AccountId,
    },
}

/// Why a check failed. `NotFound` hides the existence of other tenants' objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    NotFound,
    Forbidden(String),
}

/// One account member as the index holds it.
#[derive(Debug, Clone, Copy)]
pub struct MemberEntry {
    pub role: AccountRole,
    pub active: bool,
}

/// One grant as the index holds it: the role's closed scope set and an expiry in Unix
/// microseconds (`i64::MAX` = never).
#[derive(Debug, Clone, Copy)]
pub struct GrantEntry {
    pub role_id: RoleId,
    pub scopes: ScopeSet,
    pub expires_at_us: i64,
}

/// A workspace's access data.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceEntry {
    pub default_role: Option<(RoleId, ScopeSet)>,
    /// Direct grants by user or service-account id.
    pub grants: FxHashMap<Uuid, GrantEntry>,
    /// Team grants by team id.
    pub team_grants: FxHashMap<Uuid, GrantEntry>,
    /// The workspace's object ACLs (shared between snapshots: they change rarely).
    pub acls: Arc<WorkspaceAcls>,
}

/// A workspace's object ACLs, by kind ([`ObjectKind`] as index) and key.
#[derive(Debug, Default)]
pub struct WorkspaceAcls(pub [FxHashMap<Box<str>, ObjectAcl>; 3]);

impl WorkspaceAcls {
    pub fn get(&self, kind: ObjectKind, key: &str) -> Option<&ObjectAcl> {
        self.0[kind as usize].get(key)
    }

    pub fn of_kind(&self, kind: ObjectKind) -> &FxHashMap<Box<str>, ObjectAcl> {
        &self.0[kind as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|m| m.is_empty())
    }
}

/// One way a principal holds scopes in a workspace (for explanations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessPath {
    /// Account Owners and Admins are implicit workspace Owners.
    AccountRole(AccountRole),
    /// The workspace's role for every account member.
    DefaultRole(RoleId),
    /// A grant to the principal itself.
    Direct { role_id: RoleId, expires_at_us: i64 },
    /// A grant to a team the principal belongs to.
    Team {
        team: Uuid,
        role_id: RoleId,
        grant_expires_at_us: i64,
        membership_expires_at_us: i64,
    },
}

/// A path with the scopes it gives.
#[derive(Debug, Clone)]
pub struct Explained {
    pub path: AccessPath,
    pub scopes: ScopeSet,
}

/// Immutable access data of one account. Replaced whole when anything in it changes (what-if
/// clones one and edits the copy).
#[derive(Debug, Clone)]
pub struct AccountSnapshot {
    /// Process-local build counter (tells snapshots apart in logs and metrics).
    pub version: u64,
    /// The account's `access_version` in the database when the rows were read; a higher value in
    /// the database means this snapshot is stale.
    pub db_version: i64,
    pub plan: PlanType,
    pub features: FeatureSet,
    pub members: FxHashMap<Uuid, MemberEntry>,
    pub workspaces: FxHashMap<Uuid, WorkspaceEntry>,
    /// Teams of each member, with the membership's expiry (µs; `i64::MAX` = never).
    pub member_teams: FxHashMap<Uuid, Vec<(Uuid, i64)>>,
}

/// Rows an account snapshot is built from.
#[derive(Debug, Clone)]
pub struct SnapshotRows {
    pub db_version: i64,
    pub plan: PlanType,
    pub features: FeatureSet,
    pub members: Vec<(UserId, AccountRole, bool)>,
    /// (workspace, default role id with its closed scopes)
    pub workspaces: Vec<(WorkspaceId, Option<(RoleId, ScopeSet)>)>,
    /// (workspace, user, role, closed scopes, expiry µs or None)
    pub grants: Vec<(WorkspaceId, UserId, RoleId, ScopeSet, Option<i64>)>,
    /// (member, team, expiry µs or None)
    pub team_members: Vec<(Uuid, Uuid, Option<i64>)>,
    /// (workspace, team, role, closed scopes, expiry µs or None)
    pub team_grants: Vec<(WorkspaceId, Uuid, RoleId, ScopeSet, Option<i64>)>,
    /// (workspace, kind, key, ACL)
    pub acls: Vec<(WorkspaceId, ObjectKind, String, ObjectAcl)>,
}

/// One user's access rows, re-read after a change that touched only them.
#[derive(Debug, Clone)]
pub struct MemberRows {
    pub user: Uuid,
    /// Their membership (role, active), `None` when they are no longer a member.
    pub member: Option<(AccountRole, bool)>,
    /// (team, expiry µs or None)
    pub teams: Vec<(Uuid, Option<i64>)>,
    /// (workspace, role, closed scopes, expiry µs or None)
    pub grants: Vec<(WorkspaceId, RoleId, ScopeSet, Option<i64>)>,
}

static VERSION: AtomicU64 = AtomicU64::new(1);

impl AccountSnapshot {
    pub fn build(rows: SnapshotRows) -> AccountSnapshot {
        let mut s = AccountSnapshot {
            version: VERSION.fetch_add(1, Ordering::Relaxed),
            db_version: rows.db_version,
            plan: rows.plan,
            features: rows.features,
            members: FxHashMap::default(),
            workspaces: FxHashMap::default(),
            member_teams: FxHashMap::default(),
        };
        for (user, role, active) in rows.members {
            s.members.insert(user.0, MemberEntry { role, active });
        }
        for (ws, default_role) in rows.workspaces {
            s.workspaces.insert(
                ws.0,
                WorkspaceEntry {
                    default_role,
                    grants: FxHashMap::default(),
                    team_grants: FxHashMap::default(),
                    acls: Arc::default(),
                },
            );
        }
        let mut acls: FxHashMap<Uuid, WorkspaceAcls> = FxHashMap::default();
        for (ws, kind, key, acl) in rows.acls {
            acls.entry(ws.0).or_default().0[kind as usize].insert(key.into(), acl);
        }
        for (ws, a) in acls {
            if let Some(w) = s.workspaces.get_mut(&ws) {
                w.acls = Arc::new(a);
            }
        }
        for (ws, user, role_id, scopes, expires) in rows.grants {
            if let Some(w) = s.workspaces.get_mut(&ws.0) {
                w.grants.insert(
                    user.0,
                    GrantEntry {
                        role_id,
                        scopes,
                        expires_at_us: expires.unwrap_or(i64::MAX),
                    },
                );
            }
        }
        for (ws, team, role_id, scopes, expires) in rows.team_grants {
            if let Some(w) = s.workspaces.get_mut(&ws.0) {
                w.team_grants.insert(
                    team,
                    GrantEntry {
                        role_id,
                        scopes,
                        expires_at_us: expires.unwrap_or(i64::MAX),
                    },
                );
            }
        }
        for (member, team, expires) in rows.team_members {
            s.member_teams
                .entry(member)
                .or_default()
                .push((team, expires.unwrap_or(i64::MAX)));
        }
        s
    }

    /// This snapshot with the rows of some users replaced, at `db_version`: what a rebuild from
    /// the database would give when only those users' rows changed since this one was read.
    pub fn with_members(&self, db_version: i64, rows: &[MemberRows]) -> AccountSnapshot {
        let mut s = self.clone();
        s.version = VERSION.fetch_add(1, Ordering::Relaxed);
        s.db_version = db_version;
        for r in rows {
            match r.member {
                Some((role, active)) => {
                    s.members.insert(r.user, MemberEntry { role, active });
                }
                None => {
                    s.members.remove(&r.user);
                }
            }
            if r.teams.is_empty() {
                s.member_teams.remove(&r.user);
            } else {
                s.member_teams.insert(
                    r.user,
                    r.teams
                        .iter()
                        .map(|(t, e)| (*t, e.unwrap_or(i64::MAX)))
                        .collect(),
                );
            }
            for w in s.workspaces.values_mut() {
                w.grants.remove(&r.user);
            }
            for (ws, role_id, scopes, expires) in &r.grants {
                if let Some(w) = s.workspaces.get_mut(&ws.0) {
                    w.grants.insert(
                        r.user,
                        GrantEntry {
                            role_id: *role_id,
                            scopes: *scopes,
                            expires_at_us: expires.unwrap_or(i64::MAX),
                        },
                    );
                }
            }
        }
        s
    }

    /// Every path by which `user` holds scopes in `workspace` at `now_us` (expired grants and
    /// memberships left out). `None` when the user is not an active member or the workspace is not
    /// in this account.
    pub fn explain(&self, user: &Uuid, workspace: &Uuid, now_us: i64) -> Option<Vec<Explained>> {
        let role = self.active_role(user)?;
        let ws = self.workspaces.get(workspace)?;
        let mut out = Vec::new();
        if role.implicit_workspace_owner() {
            out.push(Explained {
                path: AccessPath::AccountRole(role),
                scopes: owner_scopes(),
            });
        }
        if let Some((id, scopes)) = ws.default_role {
            out.push(Explained {
                path: AccessPath::DefaultRole(id),
                scopes,
            });
        }
        if let Some(g) = ws.grants.get(user).filter(|g| g.expires_at_us > now_us) {
            out.push(Explained {
                path: AccessPath::Direct {
                    role_id: g.role_id,
                    expires_at_us: g.expires_at_us,
                },
                scopes: g.scopes,
            });
        }
        for (team, member_exp) in self
            .member_teams
            .get(user)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            if *member_exp <= now_us {
                continue;
            }
            if let Some(g) = ws
                .team_grants
                .get(team)
                .filter(|g| g.expires_at_us > now_us)
            {
                out.push(Explained {
                    path: AccessPath::Team {
                        team: *team,
                        role_id: g.role_id,
                        grant_expires_at_us: g.expires_at_us,
                        membership_expires_at_us: *member_exp,
                    },
                    scopes: g.scopes,
                });
            }
        }
        Some(out)
    }

    /// The active member's account role, if the user is an active member.
    pub fn active_role(&self, user: &Uuid) -> Option<AccountRole> {
        self.members.get(user).filter(|m| m.active).map(|m| m.role)
    }

    /// Effective scopes of `user` in `workspace` at `now_us`: direct grant (unless expired) ∪ the
    /// workspace default role ∪ implicit Owner for account Owners/Admins. `None` when the user is
    /// not an active member or the workspace is not in this account.
    /// Whether `member` belongs to `team` at `now_us` (membership not expired).
    pub fn in_team(&self, member: &Uuid, team: &Uuid, now_us: i64) -> bool {
        self.member_teams
            .get(member)
            .is_some_and(|ts| ts.iter().any(|(t, exp)| t == team && *exp > now_us))
    }

    #[inline]
    pub fn workspace_scopes(&self, user: &Uuid, workspace: &Uuid, now_us: i64) -> Option<ScopeSet> {
        let role = self.active_role(user)?;
        let ws = self.workspaces.get(workspace)?;
        if role.implicit_workspace_owner() {
            return Some(owner_scopes());
        }
        let mut set = ws.default_role.map(|(_, s)| s).unwrap_or_default();
        if let Some(g) = ws.grants.get(user) {
            if g.expires_at_us > now_us {
                set = set.union(g.scopes);
            }
        }
        if !ws.team_grants.is_empty() {
            if let Some(teams) = self.member_teams.get(user) {
                for (team, member_exp) in teams {
                    if *member_exp > now_us {
                        if let Some(g) = ws.team_grants.get(team) {
                            if g.expires_at_us > now_us {
                                set = set.union(g.scopes);
                            }
                        }
                    }
                }
            }
        }
        Some(set)
    }
}

#[inline]
fn owner_scopes() -> ScopeSet {
    use std::sync::OnceLock;
    static OWNER: OnceLock<ScopeSet> = OnceLock::new();
    *OWNER.get_or_init(|| BuiltinWorkspaceRole::Owner.scopes())
}

type Slot = Arc<ArcSwap<AccountSnapshot>>;

/// The permission index: one snapshot per account behind an atomic pointer. Readers never lock
/// or allocate; writers build a new snapshot and swap it in. Only `services::gate` holds one (the
/// `allow`s here and there are the only ones; `clippy.toml` refuses the type elsewhere).
#[allow(clippy::disallowed_types)]
#[derive(Default)]
pub struct Index {
    accounts: ArcSwap<FxHashMap<Uuid, Slot>>,
}

#[allow(clippy::disallowed_types)]
impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    /// Installs (or replaces) an account's snapshot — unless the one installed was read at a
    /// later access version: two rebuilds racing (each writer rebuilds after its commit) must not
    /// let the one that read the database first overwrite the other, or a writer's very next
    /// request would miss its own change until the sweep.
    pub fn put(&self, account: AccountId, snapshot: AccountSnapshot) {
        let snapshot = Arc::new(snapshot);
        if let Some(slot) = self.accounts.load().get(&account.0) {
            slot.rcu(|current| {
                if snapshot.db_version >= current.db_version {
                    snapshot.clone()
                } else {
                    current.clone()
                }
            });
            return;
        }
        self.accounts.rcu(|map| {
            let mut m = FxHashMap::clone(map);
            m.insert(account.0, Arc::new(ArcSwap::new(snapshot.clone())));
            m
        });
    }

    /// Installs `make(current)` only while the installed snapshot is still at `expected` access
    /// version (a change read from it must not land on a newer one); false when it was not.
    pub fn put_if(
        &self,
        account: AccountId,
        expected: i64,
        make: impl Fn(&AccountSnapshot) -> AccountSnapshot,
    ) -> bool {
        let Some(slot) = self.accounts.load().get(&account.0).cloned() else {
            return false;
        };
        let mut swapped = false;
        slot.rcu(|current| {
            if current.db_version == expected {
                swapped = true;
                Arc::new(make(current))
            } else {
                swapped = false;
                current.clone()
            }
        });
        swapped
    }

    /// Forgets a deleted account.
    pub fn remove(&self, account: AccountId) {
        self.accounts.rcu(|map| {
            let mut m = FxHashMap::clone(map);
            m.remove(&account.0);
            m
        });
    }

    /// The current snapshot of an account.
    pub fn snapshot(&self, account: &Uuid) -> Option<Arc<AccountSnapshot>> {
        self.accounts
            .load()
            .get(account)
            .map(|slot| slot.load_full())
    }

    /// The account's plan and features.
    pub fn plan(&self, account: AccountId) -> Option<(PlanType, FeatureSet)> {
        self.snapshot(&account.0).map(|s| (s.plan, s.features))
    }

    /// How many accounts and workspace grants (direct and team) the index holds.
    pub fn size(&self) -> (usize, usize) {
        let accounts = self.accounts.load();
        let grants = accounts
            .values()
            .map(|slot| {
                let s = slot.load();
                s.workspaces
                    .values()
                    .map(|w| w.grants.len() + w.team_grants.len())
                    .sum::<usize>()
            })
            .sum();
        (accounts.len(), grants)
    }

    /// (account, database access version) of every snapshot held.
    pub fn versions(&self) -> Vec<(Uuid, i64)> {
        self.accounts
            .load()
            .iter()
            .map(|(k, slot)| (*k, slot.load().db_version))
            .collect()
    }

    /// The check as a request carries it: ids as strings. No allocation, no database.
    #[inline]
    pub fn check_str(
        &self,
        account: &str,
        user: &str,
        workspace: &str,
        scope: Scope,
        now_us: i64,
    ) -> bool {
        let (Ok(a), Ok(u), Ok(w)) = (
            Uuid::try_parse(account),
            Uuid::try_parse(user),
            Uuid::try_parse(workspace),
        ) else {
            return false;
        };
        self.check(&a, &u, &w, scope, now_us)
    }

    /// One scope check by parsed ids.
    #[inline]
    pub fn check(
        &self,
        account: &Uuid,
        user: &Uuid,
        workspace: &Uuid,
        scope: Scope,
        now_us: i64,
    ) -> bool {
        let accounts = self.accounts.load();
        let Some(slot) = accounts.get(account) else {
            return false;
        };
        let snap = slot.load();
        snap.workspace_scopes(user, workspace, now_us)
            .is_some_and(|s| s.contains(scope))
    }

    /// Account membership check: the caller's role, or `NotFound` when they are not an active
    /// member (other tenants' accounts do not exist for them).
    pub fn account_role(&self, p: &Principal, account: AccountId) -> Result<AccountRole, Denied> {
        self.snapshot(&account.0)
            .and_then(|s| s.active_role(&p.user_id.0))
            .ok_or(Denied::NotFound)
    }

    /// The account role of a member (user or service account) of `account`, active or not;
    /// `None` when it is not one.
    pub fn member_role(&self, account: AccountId, member: &Uuid) -> Option<AccountRole> {
        self.snapshot(&account.0)
            .and_then(|s| s.members.get(member).map(|m| m.role))
    }

    /// Requires an account permission.
    pub fn require_permission(
        &self,
        p: &Principal,
        account: AccountId,
        perm: AccountPermission,
    ) -> Result<AccountRole, Denied> {
        let role = self.account_role(p, account)?;
        if role.permissions().contains(perm) {
            Ok(role)
        } else {
            Err(Denied::Forbidden(format!(
                "missing account permission {} (your role: {})",
                perm.name(),
                role.name()
            )))
        }
    }

    /// The caller's scopes in a workspace; `NotFound` when the caller is not an active member of
    /// the account, the workspace is not in it, or the caller holds no scope there.
    pub fn workspace_scopes(
        &self,
        p: &Principal,
        account: AccountId,
        workspace: WorkspaceId,
        now_us: i64,
    ) -> Result<ScopeSet, Denied> {
        let snap = self.snapshot(&account.0).ok_or(Denied::NotFound)?;
        match snap.workspace_scopes(&p.user_id.0, &workspace.0, now_us) {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(Denied::NotFound),
        }
    }

    /// Requires a workspace scope.
    pub fn require_scope(
        &self,
        p: &Principal,
        account: AccountId,
        workspace: WorkspaceId,
        scope: Scope,
        now_us: i64,
    ) -> Result<ScopeSet, Denied> {
        let set = self.workspace_scopes(p, account, workspace, now_us)?;
        if set.contains(scope) {
            Ok(set)
        } else {
            Err(Denied::Forbidden(format!(
                "missing workspace scope {}",
                scope.name()
            )))
        }
    }
}

/// May a caller whose account role is `caller` act on a principal whose role is `target` — its
/// keys, role, name, grants, team memberships, membership? Only at or below their own role: a
/// key issued for someone above you, or a role given to them, is a promotion of yourself.
pub fn may_act_on(caller: AccountRole, target: AccountRole) -> bool {
    caller >= target
}

/// Resolves a role id to its closed scope set: built-ins from code, custom roles from `custom`.
pub fn role_scopes(id: RoleId, custom: &FxHashMap<Uuid, ScopeSet>) -> Option<ScopeSet> {
    BuiltinWorkspaceRole::from_id(id.0)
        .map(BuiltinWorkspaceRole::scopes)
        .or_else(|| custom.get(&id.0).copied())
}

/// A custom role's effective scopes: its own plus its inherited built-in's, closed.
pub fn custom_role_scopes(own: ScopeSet, inherited: Option<RoleId>) -> ScopeSet {
    let base = inherited
        .and_then(|r| BuiltinWorkspaceRole::from_id(r.0))
        .map(BuiltinWorkspaceRole::scopes)
        .unwrap_or_default();
    own.union(base).closed()
}

#[cfg(test)]
#[allow(clippy::disallowed_types)]
mod tests {
    use super::*;

    fn p(user: UserId) -> Principal {
        let mut p = Principal::cli(user, "test".into());
        p.site_admin = false;
        p
    }

    struct World {
        index: Index,
        account: AccountId,
        ws: WorkspaceId,
        other_ws: WorkspaceId,
        owner: UserId,
        admin: UserId,
        member: UserId,
        viewer: UserId,
        expired: UserId,
        inactive: UserId,
        outsider: UserId,
    }

    fn world(default_role: Option<BuiltinWorkspaceRole>) -> World {
        let w = World {
            index: Index::new(),
            account: AccountId::new(),
            ws: WorkspaceId::new(),
            other_ws: WorkspaceId::new(),
            owner: UserId::new(),
            admin: UserId::new(),
            member: UserId::new(),
            viewer: UserId::new(),
            expired: UserId::new(),
            inactive: UserId::new(),
            outsider: UserId::new(),
        };
        let viewer = BuiltinWorkspaceRole::Viewer;
        let dev = BuiltinWorkspaceRole::Developer;
        let snap = AccountSnapshot::build(SnapshotRows {
            db_version: 0,
            plan: PlanType::Enterprise,
            features: FeatureSet::all(),
            members: vec![
                (w.owner, AccountRole::Owner, true),
                (w.admin, AccountRole::Admin, true),
                (w.member, AccountRole::Member, true),
                (w.viewer, AccountRole::Member, true),
                (w.expired, AccountRole::Member, true),
                (w.inactive, AccountRole::Admin, false),
            ],
            workspaces: vec![
                (w.ws, default_role.map(|r| (RoleId(r.id()), r.scopes()))),
                (w.other_ws, None),
            ],
            grants: vec![
                (w.ws, w.viewer, RoleId(viewer.id()), viewer.scopes(), None),
                (w.ws, w.expired, RoleId(dev.id()), dev.scopes(), Some(1_000)),
                (w.ws, w.inactive, RoleId(dev.id()), dev.scopes(), None),
            ],
            team_members: vec![],
            team_grants: vec![],
            acls: vec![],
        });
        w.index.put(w.account, snap);
        w
    }

    #[test]
    fn matrix_of_principals_and_scopes() {
        let w = world(None);
        let now = 500;
        let can =
            |u: UserId, ws: WorkspaceId, s: Scope| w.index.check(&w.account.0, &u.0, &ws.0, s, now);
        // (principal, see_flows, run_deployments, manage_workspace_users) in ws
        let table = [
            (w.owner, true, true, true),
            (w.admin, true, true, true),
            (w.member, false, false, false),
            (w.viewer, true, false, false),
            (w.expired, true, true, false),
            (w.inactive, false, false, false),
            (w.outsider, false, false, false),
        ];
        for (u, see, run, manage) in table {
            assert_eq!(can(u, w.ws, Scope::SeeFlows), see, "{u:?} see_flows");
            assert_eq!(
                can(u, w.ws, Scope::RunDeployments),
                run,
                "{u:?} run_deployments"
            );
            assert_eq!(
                can(u, w.ws, Scope::ManageWorkspaceUsers),
                manage,
                "{u:?} manage users"
            );
        }
        // The viewer's grant is for ws only.
        assert!(!can(w.viewer, w.other_ws, Scope::SeeFlows));
    }

    #[test]
    fn a_snapshot_read_at_an_older_access_version_never_replaces_a_newer_one() {
        let w = world(None);
        let rows = |db_version, with_member: bool| SnapshotRows {
            db_version,
            plan: PlanType::Enterprise,
            features: FeatureSet::all(),
            members: if with_member {
                vec![(w.member, AccountRole::Member, true)]
            } else {
                vec![]
            },
            workspaces: vec![],
            grants: vec![],
            team_members: vec![],
            team_grants: vec![],
            acls: vec![],
        };
        // The rebuild that read version 7 lands first; one that read version 6 lands after it.
        w.index
            .put(w.account, AccountSnapshot::build(rows(7, true)));
        w.index
            .put(w.account, AccountSnapshot::build(rows(6, false)));
        let p = p(w.member);
        assert_eq!(w.index.account_role(&p, w.account), Ok(AccountRole::Member));
        // The same or a later version replaces it.
        w.index
            .put(w.account, AccountSnapshot::build(rows(7, false)));
        assert_eq!(w.index.account_role(&p, w.account), Err(Denied::NotFound));
    }

    #[test]
    fn a_grant_stops_counting_at_its_expiry_instant() {
        let w = world(None);
        assert!(w
            .index
            .check(&w.account.0, &w.expired.0, &w.ws.0, Scope::RunFlows, 999));
        assert!(!w
            .index
            .check(&w.account.0, &w.expired.0, &w.ws.0, Scope::RunFlows, 1_000));
    }

    #[test]
    fn default_role_reaches_every_active_member_and_unions_with_grants() {
        let w = world(Some(BuiltinWorkspaceRole::Runner));
        let now = 0;
        assert!(w.index.check(
            &w.account.0,
            &w.member.0,
            &w.ws.0,
            Scope::RunDeployments,
            now
        ));
        assert!(!w
            .index
            .check(&w.account.0, &w.member.0, &w.ws.0, Scope::ManageFlows, now));
        assert!(!w
            .index
            .check(&w.account.0, &w.inactive.0, &w.ws.0, Scope::SeeFlows, now));
        assert!(!w
            .index
            .check(&w.account.0, &w.outsider.0, &w.ws.0, Scope::SeeFlows, now));
    }

    #[test]
    fn string_ids_are_parsed_and_garbage_is_refused() {
        let w = world(None);
        let (a, u, ws) = (
            w.account.to_string(),
            w.viewer.to_string(),
            w.ws.to_string(),
        );
        assert!(w.index.check_str(&a, &u, &ws, Scope::SeeFlows, 0));
        assert!(!w.index.check_str("nope", &u, &ws, Scope::SeeFlows, 0));
        assert!(!w
            .index
            .check_str(&a, &u, &w.account.to_string(), Scope::SeeFlows, 0));
    }

    #[test]
    fn account_permission_denials_distinguish_not_found_from_forbidden() {
        let w = world(None);
        assert_eq!(
            w.index
                .require_permission(&p(w.outsider), w.account, AccountPermission::ReadAccount),
            Err(Denied::NotFound)
        );
        assert_eq!(
            w.index
                .require_permission(&p(w.inactive), w.account, AccountPermission::ReadAccount),
            Err(Denied::NotFound)
        );
        assert!(matches!(
            w.index.require_permission(&p(w.member), w.account, AccountPermission::UpdateAccount),
            Err(Denied::Forbidden(m)) if m.contains("update:account")
        ));
        assert_eq!(
            w.index
                .require_permission(&p(w.admin), w.account, AccountPermission::UpdateAccount),
            Ok(AccountRole::Admin)
        );
    }

    #[test]
    fn replacing_a_snapshot_is_seen_by_the_next_check() {
        let w = world(None);
        assert!(w
            .index
            .check(&w.account.0, &w.viewer.0, &w.ws.0, Scope::SeeFlows, 0));
        w.index.put(
            w.account,
            AccountSnapshot::build(SnapshotRows {
                db_version: 1,
                plan: PlanType::Enterprise,
                features: FeatureSet::all(),
                members: vec![(w.viewer, AccountRole::Member, true)],
                workspaces: vec![(w.ws, None)],
                grants: vec![],
                team_members: vec![],
                team_grants: vec![],
                acls: vec![],
            }),
        );
        assert!(!w
            .index
            .check(&w.account.0, &w.viewer.0, &w.ws.0, Scope::SeeFlows, 0));
    }

    #[test]
    fn custom_roles_include_the_inherited_builtin() {
        let own: ScopeSet = [Scope::ManageVariables].into_iter().collect();
        let s = custom_role_scopes(own, Some(RoleId(BuiltinWorkspaceRole::Viewer.id())));
        assert!(s.contains(Scope::SeeFlows));
        assert!(s.contains(Scope::WriteVariables));
        assert!(!s.contains(Scope::RunDeployments));
    }
}
