//! `/api/users/{id}…`: a user's own profile and personal API keys.

use super::{ErrorBody, UserKeyPath, UserPath};
use crate::app::App;
use crate::domain::{ApiKeyCreated, ApiKeyInfo, User};
use crate::http::api::me::NameQuery;
use crate::http::extract::{Auth, Json, Path, Query};
use crate::services::users::{
    self, ConfirmEmailChange, CreateApiKey, RequestEmailChange, UpdateUser,
};
use crate::services::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as Out;

/// Reads a user (yourself; site admins any).
#[utoipa::path(get, path = "/api/users/{user_id}", tag = "users", params(UserPath),
    responses((status = 200, body = User), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_user(
    State(app): State<App>,
    Auth(p): Auth,
    Path(u): Path<UserPath>,
) -> Result<Out<User>> {
    Ok(Out(users::read_user(&app, &p, u.user_id).await?))
}

/// Updates your own profile.
#[utoipa::path(patch, path = "/api/users/{user_id}", tag = "users", params(UserPath), request_body = UpdateUser,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_user(
    State(app): State<App>,
    Auth(p): Auth,
    Path(u): Path<UserPath>,
    Json(b): Json<UpdateUser>,
) -> Result<StatusCode> {
    users::update_user(&app, &p, u.user_id, b).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts changing your email address: confirm with your current password; the new address
/// gets a single-use link (valid one hour) and the old one a notice. Nothing changes until the
/// link is followed (`POST /api/auth/email_change/confirm`).
/// Deletes your own user (nobody else's: 404): you leave every account — refused (409) while you
/// are the last active Owner of one — and your sessions and keys stop at once.
#[utoipa::path(delete, path = "/api/users/{user_id}", tag = "users", params(UserPath),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_user(
    State(app): State<App>,
    Auth(p): Auth,
    Path(u): Path<UserPath>,
) -> Result<StatusCode> {
    users::delete_user(&app, &p, u.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/users/{user_id}/email_change", tag = "users", params(UserPath), request_body = RequestEmailChange,
    responses((status = 202), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)), security(("bearer" = [])))]
pub async fn request_email_change(
    State(app): State<App>,
    Auth(p): Auth,
    Path(u): Path<UserPath>,
    Json(b): Json<RequestEmailChange>,
) -> Result<StatusCode> {
    users::request_email_change(&app, &p, u.user_id, b).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Completes an email change with the token from the link mailed to the new address (no sign-in
/// needed: the token is the proof; it works once).
#[utoipa::path(post, path = "/api/auth/email_change/confirm", tag = "auth", request_body = ConfirmEmailChange,
    responses((status = 200, body = User), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn confirm_email_change(
    State(app): State<App>,
    Json(b): Json<ConfirmEmailChange>,
) -> Result<Out<User>> {
    Ok(Out(users::confirm_email_change(&app, b).await?))
}

/// Creates a personal API key (shown once).
#[utoipa::path(post, path = "/api/users/{user_id}/api_keys", tag = "users", params(UserPath), request_body = CreateApiKey,
    responses((status = 201, body = ApiKeyCreated), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_api_key(
    State(app): State<App>,
    Auth(p): Auth,
    Path(u): Path<UserPath>,
    Json(b): Json<CreateApiKey>,
) -> Result<(StatusCode, Out<ApiKeyCreated>)> {
    Ok((
        StatusCode::CREATED,
        Out(users::create_api_key(&app, &p, u.user_id, b).await?),
    ))
}

/// Lists your keys (masked).
#[utoipa::path(get, path = "/api/users/{user_id}/api_keys", tag = "users", params(UserPath, NameQuery),
    responses((status = 200, body = Vec<ApiKeyInfo>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_api_keys(
    State(app): State<App>,
    Auth(p): Auth,
    Path(u): Path<UserPath>,
    Query(q): Query<NameQuery>,
) -> Result<Out<Vec<ApiKeyInfo>>> {
    Ok(Out(users::list_api_keys(
        &app,
        &p,
        u.user_id,
        q.name.as_deref(),
        None,
        None,
    )
    .await?))
}

/// Reads one of your keys (masked).
#[utoipa::path(get, path = "/api/users/{user_id}/api_keys/{key_id}", tag = "users", params(UserKeyPath),
    responses((status = 200, body = ApiKeyInfo), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_api_key(
    State(app): State<App>,
    Auth(p): Auth,
    Path(k): Path<UserKeyPath>,
) -> Result<Out<ApiKeyInfo>> {
    Ok(Out(
        users::read_api_key(&app, &p, k.user_id, k.key_id).await?
    ))
}

/// Deletes one of your keys; it stops working at once.
#[utoipa::path(delete, path = "/api/users/{user_id}/api_keys/{key_id}", tag = "users", params(UserKeyPath),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_api_key(
    State(app): State<App>,
    Auth(p): Auth,
    Path(k): Path<UserKeyPath>,
) -> Result<StatusCode> {
    users::delete_api_key(&app, &p, k.user_id, k.key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
