//! `/api/accounts/{a}/workspace_roles…`.

use super::{AccountPath, ErrorBody, RolePath};
use crate::app::App;
use crate::domain::WorkspaceRole;
use crate::http::extract::{Auth, Json, Path};
use crate::services::roles::{
    self, CreateWorkspaceRole, FilterWorkspaceRoles, UpdateWorkspaceRole,
};
use crate::services::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as Out;

/// Creates a custom workspace role (`create:workspace_role`).
#[utoipa::path(post, path = "/api/accounts/{account_id}/workspace_roles", tag = "roles", params(AccountPath), request_body = CreateWorkspaceRole,
    responses((status = 201, body = WorkspaceRole), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_role(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<CreateWorkspaceRole>,
) -> Result<(StatusCode, Out<WorkspaceRole>)> {
    Ok((
        StatusCode::CREATED,
        Out(roles::create_role(&app, &p, a.account_id, b).await?),
    ))
}

/// Reads a built-in or custom role (`read:workspace_role`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/workspace_roles/{role_id}", tag = "roles", params(RolePath),
    responses((status = 200, body = WorkspaceRole), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_role(
    State(app): State<App>,
    Auth(p): Auth,
    Path(r): Path<RolePath>,
) -> Result<Out<WorkspaceRole>> {
    Ok(Out(
        roles::read_role(&app, &p, r.account_id, r.role_id).await?
    ))
}

/// Updates a custom role (`update:workspace_role`); holders see the change at their next request.
#[utoipa::path(patch, path = "/api/accounts/{account_id}/workspace_roles/{role_id}", tag = "roles", params(RolePath), request_body = UpdateWorkspaceRole,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_role(
    State(app): State<App>,
    Auth(p): Auth,
    Path(r): Path<RolePath>,
    Json(b): Json<UpdateWorkspaceRole>,
) -> Result<StatusCode> {
    roles::update_role(&app, &p, r.account_id, r.role_id, b).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a custom role not in use (`delete:workspace_role`; in use → 409).
#[utoipa::path(delete, path = "/api/accounts/{account_id}/workspace_roles/{role_id}", tag = "roles", params(RolePath),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_role(
    State(app): State<App>,
    Auth(p): Auth,
    Path(r): Path<RolePath>,
) -> Result<StatusCode> {
    roles::delete_role(&app, &p, r.account_id, r.role_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Built-in and custom roles (`read:workspace_role`).
#[utoipa::path(post, path = "/api/accounts/{account_id}/workspace_roles/filter", tag = "roles", params(AccountPath), request_body = FilterWorkspaceRoles,
    responses((status = 200, body = Vec<WorkspaceRole>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn filter_roles(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<FilterWorkspaceRoles>,
) -> Result<Out<Vec<WorkspaceRole>>> {
    Ok(Out(roles::filter_roles(&app, &p, a.account_id, b).await?))
}
