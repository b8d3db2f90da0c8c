//! Plans, limits and usage: `/api/accounts/{a}/usage_limits`, `/usage`, `/plan`, and the site-admin
//! `PUT /api/admin/accounts/{a}/plan`.

use super::{AccountPath, ErrorBody};
use crate::app::App;
use crate::http::extract::{Auth, Json, Path};
use crate::services::plans::{self, PlanView, SetPlan, UsageLimits, WorkspaceUsage};
use crate::services::Result;
use axum::extract::State;
use axum::Json as Out;

/// The plan's limits in the reference's shape (`read:account`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/usage_limits", tag = "plans", params(AccountPath),
    responses((status = 200, body = UsageLimits), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn usage_limits(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
) -> Result<Out<UsageLimits>> {
    Ok(Out(plans::usage_limits(&app, &p, a.account_id).await?))
}

/// Per-workspace usage (`read:billing`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/usage", tag = "plans", params(AccountPath),
    responses((status = 200, body = Vec<WorkspaceUsage>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn usage(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
) -> Result<Out<Vec<WorkspaceUsage>>> {
    Ok(Out(plans::usage(&app, &p, a.account_id).await?))
}

/// The account's plan and entitlements (`read:account`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/plan", tag = "plans", params(AccountPath),
    responses((status = 200, body = PlanView), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_plan(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
) -> Result<Out<PlanView>> {
    Ok(Out(plans::read_plan(&app, &p, a.account_id).await?))
}

/// Sets an account's plan and per-account overrides (site admins only; others get 404).
#[utoipa::path(put, path = "/api/admin/accounts/{account_id}/plan", tag = "plans", params(AccountPath), request_body = SetPlan,
    responses((status = 200, body = PlanView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn set_plan(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<SetPlan>,
) -> Result<Out<PlanView>> {
    Ok(Out(plans::set_plan(&app, &p, a.account_id, b).await?))
}
