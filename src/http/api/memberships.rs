//! `/api/accounts/{a}/account_memberships…`.

use super::{AccountPath, AccountUserPath, ErrorBody, MembershipPath};
use crate::app::App;
use crate::domain::Membership;
use crate::http::extract::{Auth, Json, Path};
use crate::services::memberships::{
    self, FilterMemberships, SetActive, SetActiveMany, UpdateMembership,
};
use crate::services::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as Out;

/// Lists members (`read:account_membership`).
#[utoipa::path(post, path = "/api/accounts/{account_id}/account_memberships/filter", tag = "memberships", params(AccountPath), request_body = FilterMemberships,
    responses((status = 200, body = Vec<Membership>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn filter_memberships(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<FilterMemberships>,
) -> Result<Out<Vec<Membership>>> {
    Ok(Out(memberships::filter_memberships(
        &app,
        &p,
        a.account_id,
        b,
    )
    .await?))
}

/// Counts members (`read:account_membership`).
#[utoipa::path(post, path = "/api/accounts/{account_id}/account_memberships/count", tag = "memberships", params(AccountPath), request_body = FilterMemberships,
    responses((status = 200, body = i64), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn count_memberships(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<FilterMemberships>,
) -> Result<Out<i64>> {
    Ok(Out(memberships::count_memberships(
        &app,
        &p,
        a.account_id,
        b,
    )
    .await?))
}

/// One membership (`read:account_membership`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/account_memberships/{membership_id}", tag = "memberships", params(MembershipPath),
    responses((status = 200, body = Membership), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_membership(
    State(app): State<App>,
    Auth(p): Auth,
    Path(m): Path<MembershipPath>,
) -> Result<Out<Membership>> {
    Ok(Out(memberships::read_membership(
        &app,
        &p,
        m.account_id,
        m.membership_id,
    )
    .await?))
}

/// A user's membership (`read:account_membership`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/account_memberships/by-user/{user_id}", tag = "memberships", params(AccountUserPath),
    responses((status = 200, body = Membership), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_membership_by_user(
    State(app): State<App>,
    Auth(p): Auth,
    Path(m): Path<AccountUserPath>,
) -> Result<Out<Membership>> {
    Ok(Out(memberships::read_membership_by_user(
        &app,
        &p,
        m.account_id,
        m.user_id,
    )
    .await?))
}

/// Changes a member's role (`update:account_membership`; never above your own; the last Owner stays).
#[utoipa::path(patch, path = "/api/accounts/{account_id}/account_memberships/{membership_id}", tag = "memberships", params(MembershipPath), request_body = UpdateMembership,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_membership(
    State(app): State<App>,
    Auth(p): Auth,
    Path(m): Path<MembershipPath>,
    Json(b): Json<UpdateMembership>,
) -> Result<StatusCode> {
    memberships::update_membership(&app, &p, m.account_id, m.membership_id, b).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a member (`delete:account_membership`; the last Owner stays).
#[utoipa::path(delete, path = "/api/accounts/{account_id}/account_memberships/{membership_id}", tag = "memberships", params(MembershipPath),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_membership(
    State(app): State<App>,
    Auth(p): Auth,
    Path(m): Path<MembershipPath>,
) -> Result<StatusCode> {
    memberships::delete_membership(&app, &p, m.account_id, m.membership_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deactivates or reactivates a member (`update:account_membership`).
#[utoipa::path(patch, path = "/api/accounts/{account_id}/account_memberships/{membership_id}/active", tag = "memberships", params(MembershipPath), request_body = SetActive,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn set_membership_active(
    State(app): State<App>,
    Auth(p): Auth,
    Path(m): Path<MembershipPath>,
    Json(b): Json<SetActive>,
) -> Result<StatusCode> {
    memberships::set_active(&app, &p, m.account_id, &[m.membership_id], b.active).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deactivates or reactivates several members at once, all or nothing.
#[utoipa::path(post, path = "/api/accounts/{account_id}/account_memberships/set_active", tag = "memberships", params(AccountPath), request_body = SetActiveMany,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn set_memberships_active(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<SetActiveMany>,
) -> Result<StatusCode> {
    memberships::set_active(&app, &p, a.account_id, &b.membership_ids, b.active).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Members as CSV (`read:account_membership`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/account_memberships/download", tag = "memberships", params(AccountPath),
    responses((status = 200, content_type = "text/csv", body = String), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn download_memberships(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
) -> Result<axum::response::Response> {
    use axum::response::IntoResponse;
    let csv = memberships::download_memberships(&app, &p, a.account_id).await?;
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                axum::http::header::CONTENT_DISPOSITION,
                "attachment; filename=\"members.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
}
