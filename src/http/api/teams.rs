//! Teams: `/api/accounts/{a}/teams…`, `…/workspaces/{w}/team_access…`, and the access views
//! `…/workspaces/{w}/access` and `…/workspaces/{w}/explain`.

use super::{AccountPath, AccountWorkspacePath, ErrorBody};
use crate::app::App;
use crate::domain::{AccountId, WorkspaceId};
use crate::http::extract::{Auth, Json, Path, Query};
use crate::services::grants::{self, AccessActor, Explanation};
use crate::services::teams::{self, AddMembers, FilterTeams, TeamInput, TeamView};
use crate::services::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as Out;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TeamPath {
    pub account_id: AccountId,
    pub team_id: crate::domain::TeamId,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TeamMemberPath {
    pub account_id: AccountId,
    pub team_id: crate::domain::TeamId,
    /// The member's actor id (or user / service-account id).
    pub actor_id: Uuid,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TeamAccessPath {
    pub account_id: AccountId,
    pub workspace_id: WorkspaceId,
    pub team_id: crate::domain::TeamId,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExplainQuery {
    /// A user id or a service-account id.
    pub actor_id: Uuid,
    #[param(value_type = crate::domain::scope::ScopeName, inline)]
    pub scope: String,
}

/// Creates a team (`create:team`, plan feature `teams`).
#[utoipa::path(post, path = "/api/accounts/{account_id}/teams", tag = "teams", params(AccountPath), request_body = TeamInput,
    responses((status = 201, body = TeamView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_team(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<TeamInput>,
) -> Result<(StatusCode, Out<TeamView>)> {
    Ok((
        StatusCode::CREATED,
        Out(teams::create_team(&app, &p, a.account_id, b).await?),
    ))
}

/// A team with its members and workspaces (`read:team`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/teams/{team_id}", tag = "teams", params(TeamPath),
    responses((status = 200, body = TeamView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_team(
    State(app): State<App>,
    Auth(p): Auth,
    Path(t): Path<TeamPath>,
) -> Result<Out<TeamView>> {
    Ok(Out(
        teams::read_team(&app, &p, t.account_id, t.team_id).await?
    ))
}

/// Renames or redescribes a team (`update:team`).
#[utoipa::path(put, path = "/api/accounts/{account_id}/teams/{team_id}", tag = "teams", params(TeamPath), request_body = TeamInput,
    responses((status = 200, body = TeamView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_team(
    State(app): State<App>,
    Auth(p): Auth,
    Path(t): Path<TeamPath>,
    Json(b): Json<TeamInput>,
) -> Result<Out<TeamView>> {
    Ok(Out(teams::update_team(
        &app,
        &p,
        t.account_id,
        t.team_id.0,
        b,
    )
    .await?))
}

/// Deletes a team; its grants stop counting at once (`delete:team`).
#[utoipa::path(delete, path = "/api/accounts/{account_id}/teams/{team_id}", tag = "teams", params(TeamPath),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_team(
    State(app): State<App>,
    Auth(p): Auth,
    Path(t): Path<TeamPath>,
) -> Result<StatusCode> {
    teams::delete_team(&app, &p, t.account_id, t.team_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists teams (`read:team`).
#[utoipa::path(post, path = "/api/accounts/{account_id}/teams/filter", tag = "teams", params(AccountPath), request_body = FilterTeams,
    responses((status = 200, body = Vec<TeamView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn filter_teams(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(f): Json<FilterTeams>,
) -> Result<Out<Vec<TeamView>>> {
    Ok(Out(teams::filter_teams(&app, &p, a.account_id, f).await?))
}

/// Adds users and service accounts to a team (`update:team`).
#[utoipa::path(put, path = "/api/accounts/{account_id}/teams/{team_id}/members", tag = "teams", params(TeamPath), request_body = AddMembers,
    responses((status = 200, body = TeamView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn add_members(
    State(app): State<App>,
    Auth(p): Auth,
    Path(t): Path<TeamPath>,
    Json(b): Json<AddMembers>,
) -> Result<Out<TeamView>> {
    Ok(Out(teams::add_members(
        &app,
        &p,
        t.account_id,
        t.team_id.0,
        b,
    )
    .await?))
}

/// Removes a member from a team; effective at the next request (`update:team`).
#[utoipa::path(delete, path = "/api/accounts/{account_id}/teams/{team_id}/members/{actor_id}", tag = "teams", params(TeamMemberPath),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn remove_member(
    State(app): State<App>,
    Auth(p): Auth,
    Path(m): Path<TeamMemberPath>,
) -> Result<StatusCode> {
    teams::remove_member(&app, &p, m.account_id, m.team_id.0, m.actor_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Users, service accounts and teams with access to the workspace (`see_workspace_users`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/access", tag = "access", params(AccountWorkspacePath),
    responses((status = 200, body = Vec<AccessActor>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_access(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<AccountWorkspacePath>,
) -> Result<Out<Vec<AccessActor>>> {
    Ok(Out(grants::list_access(
        &app,
        &p,
        w.account_id,
        w.workspace_id,
    )
    .await?))
}

/// Whether an actor holds a scope in the workspace and every path that gives it (`see_workspace_users`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/explain", tag = "access", params(AccountWorkspacePath, ExplainQuery),
    responses((status = 200, body = Explanation), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn explain(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<AccountWorkspacePath>,
    Query(q): Query<ExplainQuery>,
) -> Result<Out<Explanation>> {
    Ok(Out(grants::explain(
        &app,
        &p,
        w.account_id,
        w.workspace_id,
        q.actor_id,
        &q.scope,
    )
    .await?))
}

/// Evaluates a proposed access change without applying it: who would gain or lose which scopes
/// in which workspaces (`administrate:workspace`).
#[utoipa::path(post, path = "/api/accounts/{account_id}/access/what_if", tag = "access", params(AccountPath), request_body = crate::services::whatif::ProposedChange,
    responses((status = 200, body = crate::services::whatif::WhatIf), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn what_if(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<crate::services::whatif::ProposedChange>,
) -> Result<Out<crate::services::whatif::WhatIf>> {
    Ok(Out(crate::services::whatif::what_if(
        &app,
        &p,
        a.account_id,
        b,
    )
    .await?))
}
