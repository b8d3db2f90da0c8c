//! Invitations: `/api/accounts/{a}/invitations…`, the workspace-level equivalents, and
//! `/api/invitations/{id}/accept|reject?invite_code=…`.

use super::{AccountPath, AccountWorkspacePath, ErrorBody};
use crate::app::App;
use crate::domain::{AccountId, WorkspaceId};
use crate::http::extract::{Auth, Json, MaybeAuth, Path, Query};
use crate::services::invitations::{self, FilterInvitations, InvitationView, InviteBody};
use crate::services::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as Out;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct InvitationPath {
    pub account_id: AccountId,
    pub invitation_id: Uuid,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WorkspaceInvitationPath {
    pub account_id: AccountId,
    pub workspace_id: WorkspaceId,
    pub invitation_id: Uuid,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct BareInvitationPath {
    pub invitation_id: Uuid,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CodeQuery {
    pub invite_code: String,
}

/// Invites people by email (`create:invitation`; seats are checked; one email each is queued).
#[utoipa::path(post, path = "/api/accounts/{account_id}/invitations", tag = "invitations", params(AccountPath), request_body = InviteBody,
    responses((status = 201, body = Vec<InvitationView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_invitations(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<InviteBody>,
) -> Result<(StatusCode, Out<Vec<InvitationView>>)> {
    Ok((
        StatusCode::CREATED,
        Out(invitations::invite(&app, &p, a.account_id, None, b).await?),
    ))
}

/// Lists invitations (`read:invitation`).
#[utoipa::path(post, path = "/api/accounts/{account_id}/invitations/filter", tag = "invitations", params(AccountPath), request_body = FilterInvitations,
    responses((status = 200, body = Vec<InvitationView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn filter_invitations(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<FilterInvitations>,
) -> Result<Out<Vec<InvitationView>>> {
    Ok(Out(invitations::filter_invitations(
        &app,
        &p,
        a.account_id,
        None,
        b,
    )
    .await?))
}

/// Counts invitations (`read:invitation`).
#[utoipa::path(post, path = "/api/accounts/{account_id}/invitations/count", tag = "invitations", params(AccountPath), request_body = FilterInvitations,
    responses((status = 200, body = i64), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn count_invitations(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<FilterInvitations>,
) -> Result<Out<i64>> {
    Ok(Out(invitations::count_invitations(
        &app,
        &p,
        a.account_id,
        b,
    )
    .await?))
}

/// One invitation (`read:invitation`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/invitations/{invitation_id}", tag = "invitations", params(InvitationPath),
    responses((status = 200, body = InvitationView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_invitation(
    State(app): State<App>,
    Auth(p): Auth,
    Path(i): Path<InvitationPath>,
) -> Result<Out<InvitationView>> {
    Ok(Out(invitations::read_invitation(
        &app,
        &p,
        i.account_id,
        None,
        i.invitation_id,
    )
    .await?))
}

/// Revokes a pending invitation (`update:invitation`).
#[utoipa::path(post, path = "/api/accounts/{account_id}/invitations/{invitation_id}/revoke", tag = "invitations", params(InvitationPath),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn revoke_invitation(
    State(app): State<App>,
    Auth(p): Auth,
    Path(i): Path<InvitationPath>,
) -> Result<StatusCode> {
    invitations::revoke(&app, &p, i.account_id, None, i.invitation_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends an invitation again with a new link; the old link stops working (`update:invitation`).
#[utoipa::path(post, path = "/api/accounts/{account_id}/invitations/{invitation_id}/resend", tag = "invitations", params(InvitationPath),
    responses((status = 200, body = InvitationView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn resend_invitation(
    State(app): State<App>,
    Auth(p): Auth,
    Path(i): Path<InvitationPath>,
) -> Result<Out<InvitationView>> {
    Ok(Out(invitations::resend(
        &app,
        &p,
        i.account_id,
        i.invitation_id,
    )
    .await?))
}

/// Invites people to a workspace (account Member plus a workspace role).
#[utoipa::path(post, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/invitations", tag = "invitations", params(AccountWorkspacePath), request_body = InviteBody,
    responses((status = 201, body = Vec<InvitationView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_workspace_invitations(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<AccountWorkspacePath>,
    Json(b): Json<InviteBody>,
) -> Result<(StatusCode, Out<Vec<InvitationView>>)> {
    Ok((
        StatusCode::CREATED,
        Out(invitations::invite(&app, &p, w.account_id, Some(w.workspace_id), b).await?),
    ))
}

/// Lists a workspace's invitations.
#[utoipa::path(post, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/invitations/filter", tag = "invitations", params(AccountWorkspacePath), request_body = FilterInvitations,
    responses((status = 200, body = Vec<InvitationView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn filter_workspace_invitations(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<AccountWorkspacePath>,
    Json(b): Json<FilterInvitations>,
) -> Result<Out<Vec<InvitationView>>> {
    Ok(Out(invitations::filter_invitations(
        &app,
        &p,
        w.account_id,
        Some(w.workspace_id),
        b,
    )
    .await?))
}

/// One workspace invitation.
#[utoipa::path(get, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/invitations/{invitation_id}", tag = "invitations", params(WorkspaceInvitationPath),
    responses((status = 200, body = InvitationView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_workspace_invitation(
    State(app): State<App>,
    Auth(p): Auth,
    Path(i): Path<WorkspaceInvitationPath>,
) -> Result<Out<InvitationView>> {
    Ok(Out(invitations::read_invitation(
        &app,
        &p,
        i.account_id,
        Some(i.workspace_id),
        i.invitation_id,
    )
    .await?))
}

/// Revokes a workspace invitation.
#[utoipa::path(post, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/invitations/{invitation_id}/revoke", tag = "invitations", params(WorkspaceInvitationPath),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn revoke_workspace_invitation(
    State(app): State<App>,
    Auth(p): Auth,
    Path(i): Path<WorkspaceInvitationPath>,
) -> Result<StatusCode> {
    invitations::revoke(
        &app,
        &p,
        i.account_id,
        Some(i.workspace_id),
        i.invitation_id,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accepts an invitation as the signed-in user, whose email must be the invited one.
#[utoipa::path(post, path = "/api/invitations/{invitation_id}/accept", tag = "invitations", params(BareInvitationPath, CodeQuery),
    responses((status = 200, body = InvitationView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn accept_invitation(
    State(app): State<App>,
    Auth(p): Auth,
    Path(i): Path<BareInvitationPath>,
    Query(q): Query<CodeQuery>,
) -> Result<Out<InvitationView>> {
    Ok(Out(invitations::accept(
        &app,
        &p,
        i.invitation_id,
        &q.invite_code,
    )
    .await?))
}

/// Declines an invitation (the code is enough; no sign-in needed).
#[utoipa::path(post, path = "/api/invitations/{invitation_id}/reject", tag = "invitations", params(BareInvitationPath, CodeQuery),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn reject_invitation(
    State(app): State<App>,
    MaybeAuth(p): MaybeAuth,
    Path(i): Path<BareInvitationPath>,
    Query(q): Query<CodeQuery>,
) -> Result<StatusCode> {
    invitations::reject(&app, p.as_ref(), i.invitation_id, &q.invite_code).await?;
    Ok(StatusCode::NO_CONTENT)
}
