//! The gate: the one place that answers "may this caller do this?" — account permissions,
//! workspace scopes, which workspaces a caller may see, which account a workspace belongs to,
//! and whether a caller outranks the principal they act on. Every answer applies, in this order:
//!
//! 1. **tenant** — a caller who is not an active member of the account (or cannot reach the
//!    workspace) gets 404, as if it did not exist;
//! 2. **IP allowlist** of the account concerned — a member calling from outside an enforced
//!    allowlist gets 403 (recorded as `request.access-denied.ip-allowlist`);
//! 3. **role or scope** — a member without the permission or scope gets 403;
//! 4. refusals of members are **audited**.
//!
//! The permission index is private to this module (the [`Gate`]'s field; `clippy.toml` also
//! refuses the index type anywhere else): no other service, handler, extractor or dashboard page
//! reads it, and none parses a request path to find an account. Its child module [`index`] keeps
//! it in step with the database.

pub mod index;

use crate::app::App;
use crate::authz::{AccountSnapshot, Denied, Principal};
use crate::domain::object_acl::{Level, ObjectKind};
use crate::domain::plan::{FeatureSet, PlanType};
use crate::domain::role::{AccountPermission, AccountRole};
use crate::domain::scope::{Scope, ScopeSet};
use crate::domain::{AccountId, WorkspaceId};
use crate::services::audit::{self, NewEvent};
use crate::services::{ip_allowlist, Error, Result};
use std::sync::Arc;

/// The permission index, reachable only through this module's functions.
#[derive(Default)]
pub struct Gate {
    #[allow(clippy::disallowed_types)] // the one owner of the index
    index: crate::authz::Index,
    /// Per account, the reloads after commits in flight (see `index::reload_after_commit`).
    reloads: std::sync::Mutex<rustc_hash::FxHashMap<AccountId, Arc<index::Reloads>>>,
}

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }
}

/// Step 1: what the caller may see of the account, or 404 when they are not an active member.
fn tenant(app: &App, p: &Principal, account: AccountId) -> Result<Access> {
    let snap = app
        .gate
        .index
        .snapshot(&account.0)
        .ok_or(Denied::NotFound)?;
    let role = snap.active_role(&p.user_id.0).ok_or(Denied::NotFound)?;
    Ok(Access {
        role,
        snap,
        user: p.user_id.0,
        now_us: app.now().timestamp_micros(),
    })
}

/// Step 2 for a caller already known to be a member: refuses (and records) a request from outside
/// the account's enforced allowlist. One in-memory lookup.
fn allowlist(app: &App, p: &Principal, account: AccountId) -> Result<()> {
    if admitted(app, p, account) {
        return Ok(());
    }
    let e = NewEvent::new("request", "access-denied.ip-allowlist", p.user_id.0)
        .payload(serde_json::json!({"ip": p.ip}));
    audit::record_refusal(app, p, account.0, e);
    Err(Error::Forbidden(format!(
        "this account only accepts requests from its IP allowlist; {} is not on it",
        p.ip.as_deref().unwrap_or("your address")
    )))
}

/// True when the account's allowlist lets the caller's address in (no audit).
fn admitted(app: &App, p: &Principal, account: AccountId) -> bool {
    match app
        .upstreams
        .account(&account.0)
        .and_then(|g| g.ip_allowlist.clone())
    {
        None => true,
        Some(networks) => {
            ip_allowlist::exempt(p) || ip_allowlist::allowed_by(&networks, p.ip.as_deref())
        }
    }
}

/// What a caller who passed the tenant and allowlist steps may see of one account: their role
/// and, per workspace, their scopes. Obtained only from the gate.
pub struct Access {
    role: AccountRole,
    snap: Arc<AccountSnapshot>,
    user: uuid::Uuid,
    now_us: i64,
}

impl Access {
    /// The caller's account role.
    pub fn role(&self) -> AccountRole {
        self.role
    }

    /// May the caller do this at account level?
    pub fn can(&self, perm: AccountPermission) -> bool {
        self.role.permissions().contains(perm)
    }

    /// The caller's scopes in a workspace of the account; `None` when they cannot reach it.
    pub fn scopes(&self, workspace: WorkspaceId) -> Option<ScopeSet> {
        self.snap
            .workspace_scopes(&self.user, &workspace.0, self.now_us)
            .filter(|s| !s.is_empty())
    }

    /// The workspaces of the account where the caller holds `scope`.
    pub fn workspaces_with(&self, scope: Scope) -> Vec<WorkspaceId> {
        self.snap
            .workspaces
            .keys()
            .map(|w| WorkspaceId(*w))
            .filter(|w| self.scopes(*w).is_some_and(|s| s.contains(scope)))
            .collect()
    }

    /// Can the caller reach this workspace (hold any scope in it)?
    pub fn sees(&self, workspace: WorkspaceId) -> bool {
        self.scopes(workspace).is_some()
    }

    /// How object ACLs restrict the caller in a workspace where they hold `held`: `None` when
    /// they do not (the plan lacks `object_acls`, the workspace has no ACL, or they hold
    /// `manage_acls`, which ACLs never restrict).
    pub fn object_acls(&self, workspace: WorkspaceId, held: ScopeSet) -> Option<AclView> {
        if !self
            .snap
            .features
            .contains(crate::domain::plan::Feature::ObjectAcls)
            || held.contains(Scope::ManageAcls)
        {
            return None;
        }
        let acls = self.snap.workspaces.get(&workspace.0)?.acls.clone();
        (!acls.is_empty()).then(|| AclView {
            snap: self.snap.clone(),
            acls,
            user: self.user,
            now_us: self.now_us,
        })
    }

    /// The account's access data as the gate decided on it, for services that explain or
    /// simulate access (`explain`, the access list, what-if). Read-only.
    pub fn snapshot(&self) -> &AccountSnapshot {
        &self.snap
    }
}

/// A caller's place on one workspace's object ACLs (from [`Access::object_acls`]): answers
/// whether they may reach an object at a level. Objects without an ACL are not restricted.
#[derive(Clone)]
pub struct AclView {
    snap: Arc<AccountSnapshot>,
    acls: Arc<crate::authz::WorkspaceAcls>,
    user: uuid::Uuid,
    now_us: i64,
}

impl AclView {
    /// Whether the caller may reach the object `key` of `kind` at `level` by its own ACL (no
    /// delegation: see [`AclView::deployment`]).
    pub fn allows(&self, kind: ObjectKind, key: &str, level: Level) -> bool {
        self.acls.get(kind, key).is_none_or(|acl| {
            acl.allows(level, &self.user, |t| {
                self.snap.in_team(&self.user, t, self.now_us)
            })
        })
    }

    /// Whether the caller may reach a deployment at `level`: by its work pool's ACL when the pool
    /// (`pool`: its name, when known) has one, else by its own.
    pub fn deployment(&self, id: &str, pool: Option<&str>, level: Level) -> bool {
        match pool.filter(|p| self.acls.get(ObjectKind::WorkPool, p).is_some()) {
            Some(p) => self.allows(ObjectKind::WorkPool, p, level),
            None => self.allows(ObjectKind::Deployment, id, level),
        }
    }

    /// Whether any object of `kind` has an ACL.
    pub fn has(&self, kind: ObjectKind) -> bool {
        !self.acls.of_kind(kind).is_empty()
    }

    /// Whether `key` of `kind` has an ACL.
    pub fn governed(&self, kind: ObjectKind, key: &str) -> bool {
        self.acls.get(kind, key).is_some()
    }

    /// The objects of `kind` whose own ACL keeps the caller below `level`.
    pub fn denied(&self, kind: ObjectKind, level: Level) -> Vec<String> {
        self.acls
            .of_kind(kind)
            .keys()
            .filter(|k| !self.allows(kind, k, level))
            .map(|k| k.to_string())
            .collect()
    }
}

fn access(app: &App, p: &Principal, account: AccountId) -> Result<Access> {
    let a = tenant(app, p, account)?;
    allowlist(app, p, account)?;
    Ok(a)
}

/// Any active member of the account: their [`Access`] (tenant → allowlist).
pub async fn member(app: &App, p: &Principal, account: AccountId) -> Result<Access> {
    access(app, p, account)
}

/// The account's [`Access`] for a caller's own lists (`/api/me/…`): `None` — the account is left
/// out, nothing is refused or recorded — when they are not a member or the account's allowlist
/// refuses their address.
pub fn listed(app: &App, p: &Principal, account: AccountId) -> Option<Access> {
    let a = tenant(app, p, account).ok()?;
    admitted(app, p, account).then_some(a)
}

/// A SCIM call: the caller's SCIM token must be this account's (else 404, as for any tenant
/// mismatch) and the call must come from the account's allowlist when one is enforced.
pub fn scim(app: &App, p: &Principal, account: AccountId) -> Result<()> {
    match &p.credential {
        crate::authz::Credential::Scim { account: a, .. } if *a == account => {
            allowlist(app, p, account)
        }
        _ => Err(Denied::NotFound.into()),
    }
}

/// Where a caller admitted to a long-lived stream (a websocket) stands now: re-asked for each
/// message it relays, so a member removed, deactivated, moved off the allowlist or stripped of the
/// scope stops receiving on the next message. Nothing is recorded (the stream was admitted; it
/// just ends or narrows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Still allowed.
    Holds,
    /// Still a member, but no longer allowed this part of the stream.
    Lacks,
    /// No longer a member the account admits: end the stream.
    Gone,
}

/// [`Standing`] of a caller for `scope` in `workspace` (`None`: any scope there).
pub fn standing_in(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    scope: Option<Scope>,
) -> Standing {
    match listed(app, p, account) {
        None => Standing::Gone,
        Some(a) => match a.scopes(workspace) {
            Some(held) if scope.is_none_or(|s| held.contains(s)) => Standing::Holds,
            _ => Standing::Lacks,
        },
    }
}

/// [`Standing`] of a caller for an account permission.
pub fn standing(app: &App, p: &Principal, account: AccountId, perm: AccountPermission) -> Standing {
    match listed(app, p, account) {
        None => Standing::Gone,
        Some(a) if a.can(perm) => Standing::Holds,
        Some(_) => Standing::Lacks,
    }
}

/// Requires an account permission (tenant → allowlist → permission); a refusal is audited.
pub async fn authorize(
    app: &App,
    p: &Principal,
    account: AccountId,
    perm: AccountPermission,
) -> Result<AccountRole> {
    Ok(authorize_access(app, p, account, perm).await?.role)
}

/// [`authorize`], answering the caller's [`Access`] for what the operation shows next.
pub async fn authorize_access(
    app: &App,
    p: &Principal,
    account: AccountId,
    perm: AccountPermission,
) -> Result<Access> {
    let a = access(app, p, account)?;
    if a.can(perm) {
        return Ok(a);
    }
    audit::record_denial(app, p, account, perm.name(), None);
    Err(Error::Forbidden(format!(
        "missing account permission {} (your role: {})",
        perm.name(),
        a.role.name()
    )))
}

/// The caller's [`Access`] and scopes in a workspace they can reach (tenant, workspace reachable
/// → allowlist): 404 when they hold no scope there.
fn workspace_access(
    app: &App,
    p: &Principal,
    account: AccountId,
    ws: WorkspaceId,
) -> Result<(Access, ScopeSet)> {
    let a = tenant(app, p, account)?;
    let held = a.scopes(ws).ok_or(Denied::NotFound)?;
    allowlist(app, p, account)?;
    Ok((a, held))
}

/// The caller's scopes in a workspace they can reach (tenant, workspace reachable → allowlist):
/// 404 when they hold none there.
pub async fn workspace(
    app: &App,
    p: &Principal,
    account: AccountId,
    ws: WorkspaceId,
) -> Result<ScopeSet> {
    Ok(workspace_access(app, p, account, ws)?.1)
}

/// [`workspace`], answering the caller's [`Access`] too.
pub async fn workspace_and_access(
    app: &App,
    p: &Principal,
    account: AccountId,
    ws: WorkspaceId,
) -> Result<(Access, ScopeSet)> {
    workspace_access(app, p, account, ws)
}

/// Requires `scope` in a workspace at the clock's current instant (tenant → allowlist → scope); a
/// refusal of someone who can see the workspace is audited.
pub async fn require_scope(
    app: &App,
    p: &Principal,
    account: AccountId,
    ws: WorkspaceId,
    scope: Scope,
) -> Result<ScopeSet> {
    Ok(require_scope_access(app, p, account, ws, scope).await?.1)
}

/// [`require_scope`], answering the caller's [`Access`] too.
pub async fn require_scope_access(
    app: &App,
    p: &Principal,
    account: AccountId,
    ws: WorkspaceId,
    scope: Scope,
) -> Result<(Access, ScopeSet)> {
    let (access, held) = workspace_access(app, p, account, ws)?;
    if held.contains(scope) {
        return Ok((access, held));
    }
    audit::record_denial(app, p, account, scope.name(), Some(ws));
    Err(Error::Forbidden(format!(
        "missing workspace scope {}",
        scope.name()
    )))
}

/// Which account a workspace belongs to, for routes that name only the workspace
/// (`/api/workspaces/{w}`, `/api/me/workspaces/{w}/…`): the account and the caller's scopes,
/// through the same steps as [`workspace`]. 404 when the caller cannot reach it.
pub async fn account_of_workspace(
    app: &App,
    p: &Principal,
    ws: WorkspaceId,
) -> Result<(AccountId, ScopeSet)> {
    let account = {
        let mut c = app.store.reader().await?;
        crate::store::workspaces::find_workspace_any_account(&mut c, ws)
            .await?
            .ok_or_else(|| Error::not_found("workspace"))?
            .account_id
    };
    let held = workspace(app, p, account, ws).await.map_err(|e| match e {
        Error::NotFound(_) => Error::not_found("workspace"),
        e => e,
    })?;
    Ok((account, held))
}

/// The account's plan and features (no caller: plan limits are not a permission).
pub fn plan(app: &App, account: AccountId) -> Option<(PlanType, FeatureSet)> {
    app.gate.index.plan(account)
}

/// How many accounts and workspace grants the index holds (for `/metrics`).
pub fn size(app: &App) -> (usize, usize) {
    app.gate.index.size()
}

/// A refusal decided by a service rule (escalation guards): recorded like any denial.
pub(crate) fn deny(app: &App, p: &Principal, account: AccountId, msg: String) -> Error {
    audit::record_denial(app, p, account, &msg, None);
    Error::Forbidden(msg)
}

/// What an operation on a principal (an account member or a service account) does to it; named
/// in the refusal and listed by the adversarial tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalOp {
    ChangeRole,
    Update,
    Remove,
    SetActive,
    IssueKey,
    RotateKey,
    RevokeKey,
    Grant,
    RevokeGrant,
    TeamMembership,
}

impl PrincipalOp {
    fn verb(self) -> &'static str {
        match self {
            PrincipalOp::ChangeRole => "change the role of",
            PrincipalOp::Update => "change",
            PrincipalOp::Remove => "remove",
            PrincipalOp::SetActive => "deactivate or reactivate",
            PrincipalOp::IssueKey => "create an API key for",
            PrincipalOp::RotateKey => "rotate the API key of",
            PrincipalOp::RevokeKey => "revoke an API key of",
            PrincipalOp::Grant => "grant workspace access to",
            PrincipalOp::RevokeGrant => "remove workspace access of",
            PrincipalOp::TeamMembership => "change the team memberships of",
        }
    }
}

/// The escalation guard of every operation on a principal (GUIDE §4), in one place: the caller
/// must hold an account role at least as high as the target's (`authz::may_act_on`). `target`
/// is a user id or a service account id of `account`; one that is not a member of the account
/// is left to the caller's own lookup (its 404). Answers the target's role. Call it before the
/// transaction that makes the change; a refusal is audited.
pub(crate) fn require_outranks(
    app: &App,
    p: &Principal,
    account: AccountId,
    target: uuid::Uuid,
    op: PrincipalOp,
) -> Result<Option<AccountRole>> {
    let a = tenant(app, p, account)?;
    let caller = a.role;
    let Some(role) = a.snap.members.get(&target).map(|m| m.role) else {
        return Ok(None);
    };
    if crate::authz::may_act_on(caller, role) {
        return Ok(Some(role));
    }
    Err(deny(
        app,
        p,
        account,
        format!(
            "your account role ({}) may not {} a principal whose account role ({}) is above it",
            caller.name(),
            op.verb(),
            role.name()
        ),
    ))
}
