//! `/api/me/…`: the caller's own profile, accounts, workspaces, scopes and keys.

use super::{AccountPath, ErrorBody, KeyPath, WorkspacePath};
use crate::app::App;
use crate::domain::scope::ScopeInfo;
use crate::domain::{ApiKeyCreated, ApiKeyInfo, MeAccount, MeWorkspace, User};
use crate::http::extract::{Auth, Json, Path, Query};
use crate::services::users::CreateApiKey;
use crate::services::{me, memberships, roles, users, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as Out;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

/// The caller's user.
#[utoipa::path(get, path = "/api/me", tag = "me", responses((status = 200, body = User), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_me(State(app): State<App>, Auth(p): Auth) -> Result<Out<User>> {
    Ok(Out(me::read_me(&app, &p).await?))
}

/// Workspaces the caller holds any scope in (what `prefect cloud login` lists).
#[utoipa::path(get, path = "/api/me/workspaces", tag = "me", responses((status = 200, body = Vec<MeWorkspace>), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn my_workspaces(State(app): State<App>, Auth(p): Auth) -> Result<Out<Vec<MeWorkspace>>> {
    Ok(Out(me::my_workspaces(&app, &p).await?))
}

/// Scope names the caller holds in a workspace.
#[utoipa::path(get, path = "/api/me/workspaces/{workspace_id}/scopes", tag = "me", params(WorkspacePath),
    responses((status = 200, body = Vec<String>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn my_scopes(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<WorkspacePath>,
) -> Result<Out<Vec<&'static str>>> {
    Ok(Out(me::my_scopes(&app, &p, w.workspace_id).await?))
}

use crate::domain::role::PermissionName;
use crate::domain::scope::ScopeName;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScopeQuery {
    /// One of the workspace scope names (`GET /api/workspace_scopes`).
    #[param(value_type = ScopeName, inline)]
    pub scope: String,
}

/// Whether the caller holds a scope in a workspace.
#[utoipa::path(get, path = "/api/me/workspaces/{workspace_id}/has_scope", tag = "me", params(WorkspacePath, ScopeQuery),
    responses((status = 200, body = bool), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn has_scope(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<WorkspacePath>,
    Query(q): Query<ScopeQuery>,
) -> Result<Out<bool>> {
    Ok(Out(me::has_scope(&app, &p, w.workspace_id, &q.scope).await?))
}

/// The caller's accounts.
#[utoipa::path(get, path = "/api/me/accounts", tag = "me", responses((status = 200, body = Vec<MeAccount>)), security(("bearer" = [])))]
pub async fn my_accounts(State(app): State<App>, Auth(p): Auth) -> Result<Out<Vec<MeAccount>>> {
    Ok(Out(me::my_accounts(&app, &p).await?))
}

/// The caller's account permissions.
#[utoipa::path(get, path = "/api/me/accounts/{account_id}/permissions", tag = "me", params(AccountPath),
    responses((status = 200, body = Vec<String>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn my_permissions(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
) -> Result<Out<Vec<&'static str>>> {
    Ok(Out(me::my_permissions(&app, &p, a.account_id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PermissionQuery {
    /// One of the account permission names.
    #[param(value_type = PermissionName, inline)]
    pub permission: String,
}

/// Whether the caller holds an account permission.
#[utoipa::path(get, path = "/api/me/accounts/{account_id}/has_permission", tag = "me", params(AccountPath, PermissionQuery),
    responses((status = 200, body = bool), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn has_permission(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Query(q): Query<PermissionQuery>,
) -> Result<Out<bool>> {
    Ok(Out(me::has_permission(
        &app,
        &p,
        a.account_id,
        &q.permission,
    )
    .await?))
}

/// Leaves an account (the last Owner cannot: 409).
#[utoipa::path(delete, path = "/api/me/accounts/{account_id}", tag = "me", params(AccountPath),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn leave_account(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
) -> Result<StatusCode> {
    memberships::leave_account(&app, &p, a.account_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NameQuery {
    pub name: Option<String>,
}

/// The caller's API keys (masked).
#[utoipa::path(get, path = "/api/me/api_keys", tag = "me", params(NameQuery), responses((status = 200, body = Vec<ApiKeyInfo>)), security(("bearer" = [])))]
pub async fn list_my_api_keys(
    State(app): State<App>,
    Auth(p): Auth,
    Query(q): Query<NameQuery>,
) -> Result<Out<Vec<ApiKeyInfo>>> {
    Ok(Out(users::list_api_keys(
        &app,
        &p,
        p.user_id,
        q.name.as_deref(),
        None,
        None,
    )
    .await?))
}

/// Creates a key for the caller; the secret is in the response only.
#[utoipa::path(post, path = "/api/me/api_keys", tag = "me", request_body = CreateApiKey,
    responses((status = 201, body = ApiKeyCreated), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_my_api_key(
    State(app): State<App>,
    Auth(p): Auth,
    Json(b): Json<CreateApiKey>,
) -> Result<(StatusCode, Out<ApiKeyCreated>)> {
    Ok((
        StatusCode::CREATED,
        Out(users::create_api_key(&app, &p, p.user_id, b).await?),
    ))
}

/// `POST /api/me/api_keys/filter` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterApiKeys {
    #[schema(minimum = 0)]
    pub limit: Option<i64>,
    #[schema(minimum = 0)]
    pub offset: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub api_keys: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Lists the caller's keys with paging.
#[utoipa::path(post, path = "/api/me/api_keys/filter", tag = "me", request_body = FilterApiKeys,
    responses((status = 200, body = Vec<ApiKeyInfo>)), security(("bearer" = [])))]
pub async fn filter_my_api_keys(
    State(app): State<App>,
    Auth(p): Auth,
    Json(b): Json<FilterApiKeys>,
) -> Result<Out<Vec<ApiKeyInfo>>> {
    Ok(Out(users::list_api_keys(
        &app, &p, p.user_id, None, b.limit, b.offset,
    )
    .await?))
}

/// Deletes one of the caller's keys.
#[utoipa::path(delete, path = "/api/me/api_keys/{key_id}", tag = "me", params(KeyPath),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_my_api_key(
    State(app): State<App>,
    Auth(p): Auth,
    Path(k): Path<KeyPath>,
) -> Result<StatusCode> {
    users::delete_api_key(&app, &p, p.user_id, k.key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The workspace scope catalogue (no authentication needed).
#[utoipa::path(get, path = "/api/workspace_scopes", tag = "roles", responses((status = 200, body = Vec<ScopeInfo>)))]
pub async fn workspace_scopes() -> Out<Vec<ScopeInfo>> {
    Out(roles::workspace_scopes())
}
