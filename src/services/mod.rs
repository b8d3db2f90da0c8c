//! One function per use case, called alike by the API, the dashboard and the CLI:
//! authorize → load → apply the domain rule → persist in one transaction → refresh the index.
//! The only layer that calls both `authz` and `store`.

pub mod access;
pub mod accounts;
pub mod audit;
pub mod auth;
pub mod bots;
pub mod credentials;
pub mod error;
pub mod gateway;
pub mod index;
pub mod input;
pub mod invitations;
pub mod ip_allowlist;
pub mod mail;
pub mod me;
pub mod memberships;
pub mod plans;
pub mod ratelimit;
pub mod retention;
pub mod roles;
pub mod setup;
pub mod teams;
pub mod upstreams;
pub mod users;
pub mod whatif;
pub mod workspaces;

pub use error::{Error, Result};

use crate::app::App;
use crate::authz::{Denied, Principal};
use crate::domain::role::{AccountPermission, AccountRole};
use crate::domain::scope::{Scope, ScopeSet};
use crate::domain::{AccountId, WorkspaceId};

/// Requires an account permission; a refusal of a member is recorded in the audit log.
pub(crate) async fn authorize(
    app: &App,
    p: &Principal,
    account: AccountId,
    perm: AccountPermission,
) -> Result<AccountRole> {
    let role = match app.index.require_permission(p, account, perm) {
        Err(Denied::Forbidden(m)) => {
            audit::record_denial(app, p, account, perm.name(), None);
            return Err(Error::Forbidden(m));
        }
        other => other?,
    };
    ip_allowlist::check(app, p, account).await?;
    Ok(role)
}

/// Requires `scope` in a workspace at the clock's current instant; a refusal of someone who can
/// see the workspace is recorded in the audit log.
pub(crate) async fn require_scope(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    scope: Scope,
) -> Result<ScopeSet> {
    let held =
        match app
            .index
            .require_scope(p, account, workspace, scope, app.now().timestamp_micros())
        {
            Err(Denied::Forbidden(m)) => {
                audit::record_denial(app, p, account, scope.name(), Some(workspace));
                return Err(Error::Forbidden(m));
            }
            other => other?,
        };
    ip_allowlist::check(app, p, account).await?;
    Ok(held)
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
    let caller = app.index.account_role(p, account)?;
    let Some(role) = app.index.member_role(account, &target) else {
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
