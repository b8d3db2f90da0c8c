//! SCIM tokens of an account: `/api/accounts/{a}/scim_tokens…` (the SCIM protocol itself is
//! `http::scim`).

use super::{AccountPath, ErrorBody};
use crate::app::App;
use crate::domain::AccountId;
use crate::http::extract::{Auth, Json, Path};
use crate::services::scim::{self, CreateScimToken, ScimTokenCreated, ScimTokenView};
use crate::services::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as Out;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TokenPath {
    pub account_id: AccountId,
    pub token_id: Uuid,
}

/// Creates a SCIM token (Owners, plan feature `scim`). The token is in this answer only;
/// `base_url` is what to give the identity provider.
#[utoipa::path(post, path = "/api/accounts/{account_id}/scim_tokens", tag = "scim", params(AccountPath), request_body = CreateScimToken,
    responses((status = 201, body = ScimTokenCreated), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_scim_token(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<CreateScimToken>,
) -> Result<(StatusCode, Out<ScimTokenCreated>)> {
    let made = scim::create_token(&app, &p, a.account_id, b).await?;
    Ok((StatusCode::CREATED, Out(made)))
}

/// The account's SCIM tokens (`read:sso`), with when each was last used; never the tokens.
#[utoipa::path(get, path = "/api/accounts/{account_id}/scim_tokens", tag = "scim", params(AccountPath),
    responses((status = 200, body = Vec<ScimTokenView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_scim_tokens(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
) -> Result<Out<Vec<ScimTokenView>>> {
    Ok(Out(scim::list_tokens(&app, &p, a.account_id).await?))
}

/// Revokes a SCIM token (`administrate:sso`); its next request is refused.
#[utoipa::path(delete, path = "/api/accounts/{account_id}/scim_tokens/{token_id}", tag = "scim", params(TokenPath),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_scim_token(
    State(app): State<App>,
    Auth(p): Auth,
    Path(t): Path<TokenPath>,
) -> Result<StatusCode> {
    scim::delete_token(&app, &p, t.account_id, t.token_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
