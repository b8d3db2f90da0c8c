//! Service accounts: `/api/accounts/{a}/bots…`, `…/account_memberships/by-bot/{id}` and
//! `…/workspaces/{w}/bot_access…`.

use super::{AccountPath, ErrorBody};
use crate::app::App;
use crate::domain::{AccountId, ApiKeyId, Membership};
use crate::http::extract::{Auth, Json, Path};
use crate::services::service_accounts::{
    self, CreateServiceAccount, FilterServiceAccounts, RotateKey, ServiceAccountKeys,
    ServiceAccountView, UpdateServiceAccount,
};
use crate::services::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as Out;
use serde::Deserialize;
use utoipa::IntoParams;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ServiceAccountPath {
    pub account_id: AccountId,
    pub bot_id: crate::domain::ServiceAccountId,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ServiceAccountKeyPath {
    pub account_id: AccountId,
    pub bot_id: crate::domain::ServiceAccountId,
    pub api_key_id: ApiKeyId,
}

/// Creates a service account; its key is in this response only (`create:bot`, plan feature `service_accounts`).
#[utoipa::path(post, path = "/api/accounts/{account_id}/bots", tag = "service accounts", params(AccountPath), request_body = CreateServiceAccount,
    responses((status = 201, body = ServiceAccountView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_bot(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<CreateServiceAccount>,
) -> Result<(StatusCode, Out<ServiceAccountView>)> {
    Ok((
        StatusCode::CREATED,
        Out(service_accounts::create_bot(&app, &p, a.account_id, b).await?),
    ))
}

/// A service account with its masked key (`read:bot`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/bots/{bot_id}", tag = "service accounts", params(ServiceAccountPath),
    responses((status = 200, body = ServiceAccountView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_bot(
    State(app): State<App>,
    Auth(p): Auth,
    Path(b): Path<ServiceAccountPath>,
) -> Result<Out<ServiceAccountView>> {
    Ok(Out(service_accounts::read_bot(
        &app,
        &p,
        b.account_id,
        b.bot_id,
    )
    .await?))
}

/// Renames a service account or changes its account role (`update:bot`).
#[utoipa::path(patch, path = "/api/accounts/{account_id}/bots/{bot_id}", tag = "service accounts", params(ServiceAccountPath), request_body = UpdateServiceAccount,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_bot(
    State(app): State<App>,
    Auth(p): Auth,
    Path(b): Path<ServiceAccountPath>,
    Json(u): Json<UpdateServiceAccount>,
) -> Result<StatusCode> {
    service_accounts::update_bot(&app, &p, b.account_id, b.bot_id.0, u).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a service account; its keys stop working at once (`delete:bot`).
#[utoipa::path(delete, path = "/api/accounts/{account_id}/bots/{bot_id}", tag = "service accounts", params(ServiceAccountPath),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_bot(
    State(app): State<App>,
    Auth(p): Auth,
    Path(b): Path<ServiceAccountPath>,
) -> Result<StatusCode> {
    service_accounts::delete_bot(&app, &p, b.account_id, b.bot_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists service accounts (`read:bot`).
#[utoipa::path(post, path = "/api/accounts/{account_id}/bots/filter", tag = "service accounts", params(AccountPath), request_body = FilterServiceAccounts,
    responses((status = 200, body = Vec<ServiceAccountView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn filter_bots(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(f): Json<FilterServiceAccounts>,
) -> Result<Out<Vec<ServiceAccountView>>> {
    Ok(Out(service_accounts::filter_bots(
        &app,
        &p,
        a.account_id,
        f,
    )
    .await?))
}

/// Issues a new key; older keys stop now or after `old_key_expires_in_seconds` (≤ 48 h) (`update:bot`).
#[utoipa::path(post, path = "/api/accounts/{account_id}/bots/{bot_id}/rotate_api_key", tag = "service accounts", params(ServiceAccountPath), request_body = RotateKey,
    responses((status = 201, body = ServiceAccountView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn rotate_key(
    State(app): State<App>,
    Auth(p): Auth,
    Path(b): Path<ServiceAccountPath>,
    Json(r): Json<RotateKey>,
) -> Result<(StatusCode, Out<ServiceAccountView>)> {
    Ok((
        StatusCode::CREATED,
        Out(service_accounts::rotate_key(&app, &p, b.account_id, b.bot_id.0, r).await?),
    ))
}

/// The active key and the keys still inside their rotation overlap (`read:bot`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/bots/{bot_id}/read_bot_api_keys", tag = "service accounts", params(ServiceAccountPath),
    responses((status = 200, body = ServiceAccountKeys), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_keys(
    State(app): State<App>,
    Auth(p): Auth,
    Path(b): Path<ServiceAccountPath>,
) -> Result<Out<ServiceAccountKeys>> {
    Ok(Out(service_accounts::read_keys(
        &app,
        &p,
        b.account_id,
        b.bot_id,
    )
    .await?))
}

/// Revokes one key of a service account at once (`update:bot`).
#[utoipa::path(delete, path = "/api/accounts/{account_id}/bots/{bot_id}/delete_bot_api_key/{api_key_id}", tag = "service accounts", params(ServiceAccountKeyPath),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_key(
    State(app): State<App>,
    Auth(p): Auth,
    Path(k): Path<ServiceAccountKeyPath>,
) -> Result<StatusCode> {
    service_accounts::delete_key(&app, &p, k.account_id, k.bot_id.0, k.api_key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A service account as an account membership (`read:account_membership`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/account_memberships/by-bot/{bot_id}", tag = "memberships", params(ServiceAccountPath),
    responses((status = 200, body = Membership), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn membership_by_bot(
    State(app): State<App>,
    Auth(p): Auth,
    Path(b): Path<ServiceAccountPath>,
) -> Result<Out<Membership>> {
    Ok(Out(service_accounts::membership_by_bot(
        &app,
        &p,
        b.account_id,
        b.bot_id.0,
    )
    .await?))
}
