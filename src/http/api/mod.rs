//! JSON API handlers (Prefect Cloud–compatible shapes). Each handler extracts, calls one service
//! function and renders; the doc comment names what it requires.

pub mod access;
pub mod accounts;
pub mod auth;
pub mod csrf;
pub mod events;
pub mod gateway;
pub mod invitations;
pub mod me;
pub mod memberships;
pub mod object_acls;
pub mod plans;
pub mod roles;
pub mod scim_tokens;
pub mod service_accounts;
pub mod sso;
pub mod teams;
pub mod users;
pub mod webhooks;
pub mod workspaces;

use crate::domain::*;
use serde::Deserialize;
use utoipa::IntoParams;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AccountPath {
    pub account_id: AccountId,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AccountWorkspacePath {
    pub account_id: AccountId,
    pub workspace_id: WorkspaceId,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WorkspacePath {
    pub workspace_id: WorkspaceId,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserPath {
    pub user_id: UserId,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct UserKeyPath {
    pub user_id: UserId,
    pub key_id: ApiKeyId,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KeyPath {
    pub key_id: ApiKeyId,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MembershipPath {
    pub account_id: AccountId,
    pub membership_id: MembershipId,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AccountUserPath {
    pub account_id: AccountId,
    pub user_id: UserId,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RolePath {
    pub account_id: AccountId,
    pub role_id: RoleId,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AccessPath {
    pub account_id: AccountId,
    pub workspace_id: WorkspaceId,
    pub access_id: AccessId,
}

/// `{"detail": "..."}` error body.
#[derive(utoipa::ToSchema, serde::Serialize)]
pub struct ErrorBody {
    pub detail: String,
}
