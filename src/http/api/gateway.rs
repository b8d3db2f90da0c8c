//! Gateway administration: a workspace's upstream Prefect server
//! (`/api/accounts/{a}/workspaces/{w}/upstream`) and the account's rate-limit status.

use super::{AccountPath, AccountWorkspacePath, ErrorBody};
use crate::app::App;
use crate::http::extract::{Auth, Json, Path};
use crate::services::gateway::{self, RateLimitStatus};
use crate::services::upstreams::{self, SetUpstream, UpstreamView};
use crate::services::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as Out;

/// Binds the workspace to an upstream Prefect server (`administrate:workspace`). The auth string
/// is stored encrypted and never returned.
#[utoipa::path(put, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/upstream", tag = "gateway", params(AccountWorkspacePath), request_body = SetUpstream,
    responses((status = 200, body = UpstreamView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn set_upstream(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<AccountWorkspacePath>,
    Json(b): Json<SetUpstream>,
) -> Result<Out<UpstreamView>> {
    Ok(Out(upstreams::set_upstream(
        &app,
        &p,
        w.account_id,
        w.workspace_id,
        b,
    )
    .await?))
}

/// The workspace's upstream (`administrate:workspace`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/upstream", tag = "gateway", params(AccountWorkspacePath),
    responses((status = 200, body = UpstreamView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_upstream(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<AccountWorkspacePath>,
) -> Result<Out<UpstreamView>> {
    Ok(Out(upstreams::read_upstream(
        &app,
        &p,
        w.account_id,
        w.workspace_id,
    )
    .await?))
}

/// Unbinds the workspace (`administrate:workspace`); its gateway calls answer 503 until rebound.
#[utoipa::path(delete, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/upstream", tag = "gateway", params(AccountWorkspacePath),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_upstream(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<AccountWorkspacePath>,
) -> Result<StatusCode> {
    upstreams::delete_upstream(&app, &p, w.account_id, w.workspace_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which rate-limit buckets are exhausted, and each bucket's consumption (`update:account`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/rate-limits/status", tag = "gateway", params(AccountPath),
    responses((status = 200, body = RateLimitStatus), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn rate_limit_status(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
) -> Result<Out<RateLimitStatus>> {
    Ok(Out(
        gateway::rate_limit_status(&app, &p, a.account_id).await?
    ))
}
