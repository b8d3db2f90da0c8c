//! The audit log: `/api/accounts/{a}/events…`, the workspace-level equivalents, the checkpoint
//! public key, on-demand checkpoints and verification.

use super::{AccountPath, AccountWorkspacePath, ErrorBody};
use crate::app::App;
use crate::domain::audit::Checkpoint;
use crate::http::error::HttpError;
use crate::http::extract::{Auth, Json, Path, Query};
use crate::services::audit::{
    self, ChainReport, CountBucket, CountEvents, EventPage, FilterEvents, PublicKey,
};
use crate::services::gateway;
use crate::services::Result;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json as Out;
use serde::Deserialize;
use utoipa::IntoParams;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageTokenQuery {
    #[serde(rename = "page-token")]
    #[param(rename = "page-token")]
    pub page_token: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CountPath {
    pub account_id: crate::domain::AccountId,
    /// `time`, `day` or `event`.
    #[param(pattern = "^(time|day|event)$")]
    pub countable: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WorkspaceCountPath {
    pub account_id: crate::domain::AccountId,
    pub workspace_id: crate::domain::WorkspaceId,
    /// `time`, `day` or `event`.
    #[param(pattern = "^(time|day|event)$")]
    pub countable: String,
}

/// Audit events of the account, newest first (`read:audit_event`; at most 14 days per query).
#[utoipa::path(post, path = "/api/accounts/{account_id}/events/filter", tag = "audit", params(AccountPath), request_body = FilterEvents,
    responses((status = 200, body = EventPage), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn filter_events(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Json(b): Json<FilterEvents>,
) -> Result<Out<EventPage>> {
    Ok(Out(
        audit::filter_events(&app, &p, a.account_id, None, b).await?
    ))
}

/// The next page of a query (keyset paging).
#[utoipa::path(get, path = "/api/accounts/{account_id}/events/filter/next", tag = "audit", params(AccountPath, PageTokenQuery),
    responses((status = 200, body = EventPage), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn filter_events_next(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
    Query(q): Query<PageTokenQuery>,
) -> Result<Out<EventPage>> {
    Ok(Out(audit::filter_events_next(
        &app,
        &p,
        a.account_id,
        None,
        &q.page_token,
    )
    .await?))
}

/// Counts of matching events per time bucket or event name.
#[utoipa::path(post, path = "/api/accounts/{account_id}/events/count-by/{countable}", tag = "audit", params(CountPath), request_body = CountEvents,
    responses((status = 200, body = Vec<CountBucket>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn count_events(
    State(app): State<App>,
    Auth(p): Auth,
    Path(c): Path<CountPath>,
    Json(b): Json<CountEvents>,
) -> Result<Out<Vec<CountBucket>>> {
    Ok(Out(audit::count_events(
        &app,
        &p,
        c.account_id,
        None,
        &c.countable,
        b,
    )
    .await?))
}

/// On a workspace bound to an upstream Prefect server these paths belong to Prefect's events API:
/// a call goes to the upstream through the gateway unless it asks only for audit events
/// (`prefect-cloud.*` names or prefixes, or one of Atrium's page tokens). Returns the request back
/// when Atrium answers it, with the body read.
async fn audit_or_gateway(
    app: &App,
    w: &AccountWorkspacePath,
    req: Request,
) -> std::result::Result<(Parts, Bytes), Response> {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, crate::http::MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return Err(crate::http::error::HttpError::PayloadTooLarge.into_response()),
    };
    let token = parts
        .uri
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("page-token=")));
    let audit_only = audit::asks_for_audit_only(&bytes, token);
    if !audit_only && gateway::bound(app, w.account_id, w.workspace_id) {
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        return Err(crate::http::gateway::hand_over(app.clone(), req).await);
    }
    Ok((parts, bytes))
}

async fn auth_and_json<T: serde::de::DeserializeOwned>(
    app: &App,
    mut parts: Parts,
    bytes: Bytes,
) -> Result<(crate::authz::Principal, T), HttpError> {
    let Auth(p) = Auth::from_request_parts(&mut parts, app).await?;
    let req = Request::from_parts(parts, axum::body::Body::from(bytes));
    let Json(b) = Json::<T>::from_request(req, app).await?;
    Ok((p, b))
}

/// Audit events about one workspace (`read:audit_event`, plan feature `audit_log`). On a workspace
/// with an upstream, non-audit queries are Prefect's events API (`see_events`), forwarded.
#[utoipa::path(post, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/events/filter", tag = "audit", params(AccountWorkspacePath), request_body = FilterEvents,
    responses((status = 200, body = EventPage), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn filter_workspace_events(
    State(app): State<App>,
    Path(w): Path<AccountWorkspacePath>,
    req: Request,
) -> Result<Response, HttpError> {
    let (parts, bytes) = match audit_or_gateway(&app, &w, req).await {
        Ok(x) => x,
        Err(forwarded) => return Ok(forwarded),
    };
    let (p, b) = auth_and_json::<FilterEvents>(&app, parts, bytes).await?;
    Ok(
        Out(audit::filter_events(&app, &p, w.account_id, Some(w.workspace_id), b).await?)
            .into_response(),
    )
}

/// The next page of a workspace query.
#[utoipa::path(get, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/events/filter/next", tag = "audit", params(AccountWorkspacePath, PageTokenQuery),
    responses((status = 200, body = EventPage), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn filter_workspace_events_next(
    State(app): State<App>,
    Path(w): Path<AccountWorkspacePath>,
    req: Request,
) -> Result<Response> {
    let (mut parts, _) = match audit_or_gateway(&app, &w, req).await {
        Ok(x) => x,
        Err(forwarded) => return Ok(forwarded),
    };
    let Auth(p) = Auth::from_request_parts(&mut parts, &app).await?;
    let Query(q) = Query::<PageTokenQuery>::from_request_parts(&mut parts, &app).await?;
    Ok(Out(
        audit::filter_events_next(&app, &p, w.account_id, Some(w.workspace_id), &q.page_token)
            .await?,
    )
    .into_response())
}

/// Counts of a workspace's events.
#[utoipa::path(post, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/events/count-by/{countable}", tag = "audit", params(WorkspaceCountPath), request_body = CountEvents,
    responses((status = 200, body = Vec<CountBucket>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn count_workspace_events(
    State(app): State<App>,
    Path(c): Path<WorkspaceCountPath>,
    req: Request,
) -> Result<Response, HttpError> {
    let w = AccountWorkspacePath {
        account_id: c.account_id,
        workspace_id: c.workspace_id,
    };
    let (parts, bytes) = match audit_or_gateway(&app, &w, req).await {
        Ok(x) => x,
        Err(forwarded) => return Ok(forwarded),
    };
    let (p, b) = auth_and_json::<CountEvents>(&app, parts, bytes).await?;
    Ok(Out(audit::count_events(
        &app,
        &p,
        c.account_id,
        Some(c.workspace_id),
        &c.countable,
        b,
    )
    .await?)
    .into_response())
}

/// The Ed25519 public key that signs audit checkpoints (no authentication needed).
#[utoipa::path(get, path = "/api/audit/public_key", tag = "audit", responses((status = 200, body = PublicKey)))]
pub async fn public_key(State(app): State<App>) -> Out<PublicKey> {
    Out(audit::public_key(&app))
}

/// Signs the account chain's current head now (`read:audit_event`); 204 when there are no events.
#[utoipa::path(post, path = "/api/accounts/{account_id}/audit/checkpoint", tag = "audit", params(AccountPath),
    responses((status = 201, body = Checkpoint), (status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn checkpoint(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
) -> Result<Response> {
    Ok(
        match audit::checkpoint_account(&app, &p, a.account_id).await? {
            Some(cp) => (StatusCode::CREATED, Out(cp)).into_response(),
            None => StatusCode::NO_CONTENT.into_response(),
        },
    )
}

/// Recomputes the account's chain and checks its checkpoints (`read:audit_event`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/audit/verify", tag = "audit", params(AccountPath),
    responses((status = 200, body = ChainReport), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn verify(
    State(app): State<App>,
    Auth(p): Auth,
    Path(a): Path<AccountPath>,
) -> Result<Out<ChainReport>> {
    Ok(Out(audit::verify_account(&app, &p, a.account_id).await?))
}
