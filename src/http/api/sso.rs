//! Single sign-on configuration: `/api/accounts/{a}/sso/providers…` and `…/sso/domains…`.

use super::{AccountPath, ErrorBody};
use crate::app::App;
use crate::domain::AccountId;
use crate::http::extract::{Auth, Json, Path};
use crate::services::sso::{
    self, AddDomain, CreateProvider, DomainView, GroupMapping, ProviderView, UpdateProvider,
};
use crate::services::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as Out;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProviderPath {
    pub account_id: AccountId,
    pub provider_id: Uuid,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DomainPath {
    pub account_id: AccountId,
    pub domain_id: Uuid,
}

/// Adds an identity provider (`administrate:sso`, plan feature `sso`); OIDC issuers must answer
/// discovery. Answers the redirect URI to register at the IdP.
#[utoipa::path(post, path = "/api/accounts/{account_id}/sso/providers", tag = "sso", params(AccountPath), request_body = CreateProvider,
    responses((status = 201, body = ProviderView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_provider(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<CreateProvider>,
) -> Result<(StatusCode, Out<ProviderView>)> {
    let made = sso::create_provider(&app, &p, a.account_id, b).await?;
    Ok((StatusCode::CREATED, Out(made)))
}

/// The account's identity providers (`read:sso`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/sso/providers", tag = "sso", params(AccountPath),
    responses((status = 200, body = Vec<ProviderView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_providers(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
) -> Result<Out<Vec<ProviderView>>> {
    Ok(Out(sso::list_providers(&app, &p, a.account_id).await?))
}

/// One identity provider (`read:sso`); never its client secret.
#[utoipa::path(get, path = "/api/accounts/{account_id}/sso/providers/{provider_id}", tag = "sso", params(ProviderPath),
    responses((status = 200, body = ProviderView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_provider(
    State(app): State<App>,
    Auth(p): Auth,
    Path(i): Path<ProviderPath>,
) -> Result<Out<ProviderView>> {
    Ok(Out(sso::read_provider(
        &app,
        &p,
        i.account_id,
        i.provider_id,
    )
    .await?))
}

/// Changes an identity provider (`administrate:sso`).
#[utoipa::path(patch, path = "/api/accounts/{account_id}/sso/providers/{provider_id}", tag = "sso", params(ProviderPath), request_body = UpdateProvider,
    responses((status = 200, body = ProviderView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_provider(
    State(app): State<App>,
    Auth(p): Auth,
    Path(i): Path<ProviderPath>,
    Json(b): Json<UpdateProvider>,
) -> Result<Out<ProviderView>> {
    Ok(Out(sso::update_provider(
        &app,
        &p,
        i.account_id,
        i.provider_id,
        b,
    )
    .await?))
}

/// Removes an identity provider (`administrate:sso`); sign-ins through it stop at once.
#[utoipa::path(delete, path = "/api/accounts/{account_id}/sso/providers/{provider_id}", tag = "sso", params(ProviderPath),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_provider(
    State(app): State<App>,
    Auth(p): Auth,
    Path(i): Path<ProviderPath>,
) -> Result<StatusCode> {
    sso::delete_provider(&app, &p, i.account_id, i.provider_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces the provider's IdP group → team mappings (`administrate:sso`), applied at every
/// sign-in through it.
#[utoipa::path(put, path = "/api/accounts/{account_id}/sso/providers/{provider_id}/group_mappings", tag = "sso", params(ProviderPath), request_body = Vec<GroupMapping>,
    responses((status = 200, body = Vec<GroupMapping>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn set_group_mappings(
    State(app): State<App>,
    Auth(p): Auth,
    Path(i): Path<ProviderPath>,
    Json(b): Json<Vec<GroupMapping>>,
) -> Result<Out<Vec<GroupMapping>>> {
    Ok(Out(sso::set_group_mappings(
        &app,
        &p,
        i.account_id,
        i.provider_id,
        b,
    )
    .await?))
}

/// The provider's IdP group → team mappings (`read:sso`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/sso/providers/{provider_id}/group_mappings", tag = "sso", params(ProviderPath),
    responses((status = 200, body = Vec<GroupMapping>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn group_mappings(
    State(app): State<App>,
    Auth(p): Auth,
    Path(i): Path<ProviderPath>,
) -> Result<Out<Vec<GroupMapping>>> {
    Ok(Out(sso::group_mappings(
        &app,
        &p,
        i.account_id,
        i.provider_id,
    )
    .await?))
}

/// Adds an email domain to verify (`administrate:sso`): answers the TXT record to publish.
#[utoipa::path(post, path = "/api/accounts/{account_id}/sso/domains", tag = "sso", params(AccountPath), request_body = AddDomain,
    responses((status = 201, body = DomainView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn add_domain(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<AddDomain>,
) -> Result<(StatusCode, Out<DomainView>)> {
    let d = sso::add_domain(&app, &p, a.account_id, b).await?;
    Ok((StatusCode::CREATED, Out(d)))
}

/// The account's domains and their state (`read:sso`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/sso/domains", tag = "sso", params(AccountPath),
    responses((status = 200, body = Vec<DomainView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_domains(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
) -> Result<Out<Vec<DomainView>>> {
    Ok(Out(sso::list_domains(&app, &p, a.account_id).await?))
}

/// Removes a domain (`administrate:sso`).
#[utoipa::path(delete, path = "/api/accounts/{account_id}/sso/domains/{domain_id}", tag = "sso", params(DomainPath),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_domain(
    State(app): State<App>,
    Auth(p): Auth,
    Path(d): Path<DomainPath>,
) -> Result<StatusCode> {
    sso::delete_domain(&app, &p, d.account_id, d.domain_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Looks the domain's TXT record up now (`administrate:sso`): 200 verified, or 409 naming what the
/// resolver saw.
#[utoipa::path(post, path = "/api/accounts/{account_id}/sso/domains/{domain_id}/verify", tag = "sso", params(DomainPath),
    responses((status = 200, body = DomainView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 502, body = ErrorBody)), security(("bearer" = [])))]
pub async fn verify_domain(
    State(app): State<App>,
    Auth(p): Auth,
    Path(d): Path<DomainPath>,
) -> Result<Out<DomainView>> {
    Ok(Out(
        sso::verify_domain(&app, &p, d.account_id, d.domain_id).await?
    ))
}
