//! `/api/accounts/{a}/workspaces…` and `/api/workspaces/{w}`.

use super::{AccountPath, AccountWorkspacePath, ErrorBody, WorkspacePath};
use crate::app::App;
use crate::domain::Workspace;
use crate::http::extract::{Auth, Json, Path};
use crate::services::workspaces::{self, CreateWorkspace, FilterWorkspaces, UpdateWorkspace};
use crate::services::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as Out;

/// Creates a workspace (`create:workspace`).
#[utoipa::path(post, path = "/api/accounts/{account_id}/workspaces", tag = "workspaces", params(AccountPath), request_body = CreateWorkspace,
    responses((status = 201, body = Workspace), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_workspace(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<CreateWorkspace>,
) -> Result<(StatusCode, Out<Workspace>)> {
    Ok((
        StatusCode::CREATED,
        Out(workspaces::create_workspace(&app, &p, a.account_id, b).await?),
    ))
}

/// Reads a workspace you can reach.
#[utoipa::path(get, path = "/api/accounts/{account_id}/workspaces/{workspace_id}", tag = "workspaces", params(AccountWorkspacePath),
    responses((status = 200, body = Workspace), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_workspace(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<AccountWorkspacePath>,
) -> Result<Out<Workspace>> {
    Ok(Out(workspaces::read_workspace(
        &app,
        &p,
        w.account_id,
        w.workspace_id,
    )
    .await?))
}

/// Updates a workspace (`write_workspace_settings`; the default role also needs `manage_workspace_users`).
#[utoipa::path(patch, path = "/api/accounts/{account_id}/workspaces/{workspace_id}", tag = "workspaces", params(AccountWorkspacePath), request_body = UpdateWorkspace,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_workspace(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<AccountWorkspacePath>,
    Json(b): Json<UpdateWorkspace>,
) -> Result<StatusCode> {
    workspaces::update_workspace(&app, &p, w.account_id, w.workspace_id, b).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a workspace (`delete:workspace`).
#[utoipa::path(delete, path = "/api/accounts/{account_id}/workspaces/{workspace_id}", tag = "workspaces", params(AccountWorkspacePath),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_workspace(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<AccountWorkspacePath>,
) -> Result<StatusCode> {
    workspaces::delete_workspace(&app, &p, w.account_id, w.workspace_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists the workspaces you can reach (`read:workspace`).
#[utoipa::path(post, path = "/api/accounts/{account_id}/workspaces/filter", tag = "workspaces", params(AccountPath), request_body = FilterWorkspaces,
    responses((status = 200, body = Vec<Workspace>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn filter_workspaces(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<FilterWorkspaces>,
) -> Result<Out<Vec<Workspace>>> {
    Ok(Out(workspaces::filter_workspaces(
        &app,
        &p,
        a.account_id,
        b,
    )
    .await?))
}

/// Counts the workspaces you can reach.
#[utoipa::path(post, path = "/api/accounts/{account_id}/workspaces/count", tag = "workspaces", params(AccountPath), request_body = FilterWorkspaces,
    responses((status = 200, body = i64), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn count_workspaces(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<FilterWorkspaces>,
) -> Result<Out<i64>> {
    Ok(Out(
        workspaces::count_workspaces(&app, &p, a.account_id, b).await?
    ))
}

/// Finds a workspace you can reach by id alone.
#[utoipa::path(get, path = "/api/workspaces/{workspace_id}", tag = "workspaces", params(WorkspacePath),
    responses((status = 200, body = Workspace), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_workspace_by_id(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<WorkspacePath>,
) -> Result<Out<Workspace>> {
    Ok(Out(workspaces::read_workspace_by_id(
        &app,
        &p,
        w.workspace_id,
    )
    .await?))
}
