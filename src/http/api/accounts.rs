//! `/api/accounts…`: accounts, settings, account roles, the permission catalogue.

use super::{AccountPath, ErrorBody, RolePath};
use crate::app::App;
use crate::domain::{Account, AccountRoleView};
use crate::http::extract::{Auth, Json, Path};
use crate::services::accounts::{self, CreateAccount, UpdateAccount};
use crate::services::input::AnyOf;
use crate::services::ip_allowlist::{self, IpAllowlist, MyAccess};
use crate::services::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as Out;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Creates an account; the caller becomes its Owner. Site admins only unless
/// `ATRIUM_ACCOUNT_CREATION=anyone`.
#[utoipa::path(post, path = "/api/accounts", tag = "accounts", request_body = CreateAccount,
    responses((status = 201, body = Account), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_account(
    State(app): State<App>,
    Auth(p): Auth,
    Json(b): Json<CreateAccount>,
) -> Result<(StatusCode, Out<Account>)> {
    Ok((
        StatusCode::CREATED,
        Out(accounts::create_account(&app, &p, b).await?),
    ))
}

/// Reads an account (`read:account`).
#[utoipa::path(get, path = "/api/accounts/{account_id}", tag = "accounts", params(AccountPath),
    responses((status = 200, body = Account), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_account(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
) -> Result<Out<Account>> {
    Ok(Out(accounts::read_account(&app, &p, a.account_id).await?))
}

/// Updates an account (`update:account`).
#[utoipa::path(patch, path = "/api/accounts/{account_id}", tag = "accounts", params(AccountPath), request_body = UpdateAccount,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_account(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<UpdateAccount>,
) -> Result<StatusCode> {
    accounts::update_account(&app, &p, a.account_id, b).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes an account and everything in it (`delete:account`, Owners).
#[utoipa::path(delete, path = "/api/accounts/{account_id}", tag = "accounts", params(AccountPath),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_account(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
) -> Result<StatusCode> {
    accounts::delete_account(&app, &p, a.account_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Account settings, every known key present (`read:account`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/settings", tag = "accounts", params(AccountPath),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_settings(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
) -> Result<Out<Map<String, Value>>> {
    Ok(Out(accounts::read_settings(&app, &p, a.account_id).await?))
}

/// Changes some settings (`update:account`); unknown keys or wrong types → 422.
#[utoipa::path(patch, path = "/api/accounts/{account_id}/settings", tag = "accounts", params(AccountPath), request_body = accounts::SettingsPatch,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_settings(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<Map<String, Value>>,
) -> Result<StatusCode> {
    accounts::update_settings(&app, &p, a.account_id, b).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The IP allowlist (`read:ip_allowlist`; plan feature `ip_allowlist`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/ip_allowlist", tag = "accounts", params(AccountPath),
    responses((status = 200, body = IpAllowlist), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_ip_allowlist(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
) -> Result<Out<IpAllowlist>> {
    Ok(Out(ip_allowlist::read(&app, &p, a.account_id).await?))
}

/// Replaces the IP allowlist (`update:ip_allowlist`). Networks must be valid CIDR; while the
/// allowlist is enforced, a list that shuts out the caller's own address is refused (422).
#[utoipa::path(put, path = "/api/accounts/{account_id}/ip_allowlist", tag = "accounts", params(AccountPath), request_body = IpAllowlist,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn replace_ip_allowlist(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<IpAllowlist>,
) -> Result<StatusCode> {
    ip_allowlist::replace(&app, &p, a.account_id, b).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether the caller's address would be let in if the allowlist were enforced.
#[utoipa::path(get, path = "/api/accounts/{account_id}/ip_allowlist/my_access", tag = "accounts", params(AccountPath),
    responses((status = 200, body = MyAccess), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn my_ip_access(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
) -> Result<Out<MyAccess>> {
    Ok(Out(ip_allowlist::my_access(&app, &p, a.account_id).await?))
}

/// Every account permission string.
#[utoipa::path(get, path = "/api/accounts/permissions", tag = "accounts", responses((status = 200, body = Vec<String>)))]
pub async fn list_permissions() -> Out<Vec<&'static str>> {
    Out(accounts::all_permissions())
}

/// `account_roles` part of the filter body.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct AccountRoleFields {
    pub name: Option<AnyOf<String>>,
}

/// `POST …/account_roles/filter` body.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct FilterAccountRoles {
    #[schema(minimum = 0)]
    pub limit: Option<i64>,
    #[schema(minimum = 0)]
    pub offset: Option<i64>,
    pub account_roles: Option<AccountRoleFields>,
}

/// Account roles (`read:account_role`).
#[utoipa::path(post, path = "/api/accounts/{account_id}/account_roles/filter", tag = "roles", params(AccountPath), request_body = FilterAccountRoles,
    responses((status = 200, body = Vec<AccountRoleView>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn filter_account_roles(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<FilterAccountRoles>,
) -> Result<Out<Vec<AccountRoleView>>> {
    crate::services::input::page(b.limit, b.offset)?;
    let names = b.account_roles.and_then(|r| r.name).map(|n| n.any_);
    Ok(Out(accounts::list_account_roles(
        &app,
        &p,
        a.account_id,
        names,
    )
    .await?))
}

/// One account role (`read:account_role`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/account_roles/{role_id}", tag = "roles", params(RolePath),
    responses((status = 200, body = AccountRoleView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_account_role(
    State(app): State<App>,
    Auth(p): Auth,
    Path(r): Path<RolePath>,
) -> Result<Out<AccountRoleView>> {
    Ok(Out(accounts::read_account_role(
        &app,
        &p,
        r.account_id,
        r.role_id,
    )
    .await?))
}
