//! `/api/accounts/{a}/workspaces/{w}/user_access…`.

use super::{AccessPath, AccountWorkspacePath, ErrorBody};
use crate::app::App;
use crate::domain::UserAccess;
use crate::http::extract::{Auth, Json, Path};
use crate::services::grants::{self, FilterUserAccess, UserAccessUpsert};
use crate::services::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as Out;

/// Grants users a role in the workspace, replacing their previous grant (`manage_workspace_users`;
/// only roles whose scopes you hold yourself).
#[utoipa::path(post, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/user_access", tag = "access", params(AccountWorkspacePath), request_body = UserAccessUpsert,
    responses((status = 200, body = Vec<UserAccess>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn upsert_user_access(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<AccountWorkspacePath>,
    Json(b): Json<UserAccessUpsert>,
) -> Result<Out<Vec<UserAccess>>> {
    Ok(Out(grants::upsert_user_access(
        &app,
        &p,
        w.account_id,
        w.workspace_id,
        b,
    )
    .await?))
}

/// Lists user grants (`see_workspace_users`).
#[utoipa::path(post, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/user_access/filter", tag = "access", params(AccountWorkspacePath), request_body = FilterUserAccess,
    responses((status = 200, body = Vec<UserAccess>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn filter_user_access(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<AccountWorkspacePath>,
    Json(b): Json<FilterUserAccess>,
) -> Result<Out<Vec<UserAccess>>> {
    Ok(Out(grants::filter_user_access(
        &app,
        &p,
        w.account_id,
        w.workspace_id,
        b,
    )
    .await?))
}

/// Reads one grant (`see_workspace_users`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/user_access/{access_id}", tag = "access", params(AccessPath),
    responses((status = 200, body = UserAccess), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_user_access(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccessPath>,
) -> Result<Out<UserAccess>> {
    Ok(Out(grants::read_user_access(
        &app,
        &p,
        a.account_id,
        a.workspace_id,
        a.access_id,
    )
    .await?))
}

/// Revokes a grant (`manage_workspace_users`); effective at the next request.
#[utoipa::path(delete, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/user_access/{access_id}", tag = "access", params(AccessPath),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_user_access(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccessPath>,
) -> Result<StatusCode> {
    grants::revoke(
        &app,
        &p,
        a.account_id,
        a.workspace_id,
        crate::domain::Grantee::User,
        a.access_id.0,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
