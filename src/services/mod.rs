//! One function per use case, called alike by the API, the dashboard and the CLI:
//! authorize → load → apply the domain rule → persist in one transaction → refresh the index.
//! The only layer that calls both `authz` and `store`.

pub mod access;
pub mod accounts;
pub mod auth;
pub mod credentials;
pub mod error;
pub mod index;
pub mod input;
pub mod me;
pub mod memberships;
pub mod roles;
pub mod users;
pub mod workspaces;

pub use error::{Error, Result};

/// Requires `scope` in a workspace at the clock's current instant.
pub(crate) fn require_scope(
    app: &crate::app::App,
    p: &crate::authz::Principal,
    account: crate::domain::AccountId,
    workspace: crate::domain::WorkspaceId,
    scope: crate::domain::scope::Scope,
) -> Result<crate::domain::scope::ScopeSet> {
    Ok(app
        .index
        .require_scope(p, account, workspace, scope, app.now().timestamp_micros())?)
}
