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
            audit::record_denial(app, p, account, perm.name(), None).await;
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
                audit::record_denial(app, p, account, scope.name(), Some(workspace)).await;
                return Err(Error::Forbidden(m));
            }
            other => other?,
        };
    ip_allowlist::check(app, p, account).await?;
    Ok(held)
}

/// A refusal decided by a service rule (escalation guards): recorded like any denial.
pub(crate) async fn deny(app: &App, p: &Principal, account: AccountId, msg: String) -> Error {
    audit::record_denial(app, p, account, &msg, None).await;
    Error::Forbidden(msg)
}
