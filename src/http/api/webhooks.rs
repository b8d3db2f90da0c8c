//! Webhooks: `…/workspaces/{w}/webhooks/…` (the routes `prefect cloud webhook` calls) and the
//! receiver `/hooks/{slug}` (public; its slug is the credential, an API key when the webhook or
//! the account requires one).

use super::{AccountWorkspacePath, ErrorBody};
use crate::app::App;
use crate::domain::{AccountId, WorkspaceId};
use crate::http::error::HttpError;
use crate::http::extract::{bearer, Auth, Json, Path};
use crate::services::webhooks::{
    self, Change, FilterWebhooks, WebhookInput, WebhookPatch, WebhookView,
};
use crate::services::Result;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::Json as Out;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::IntoParams;
use uuid::Uuid;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct WebhookPath {
    pub account_id: AccountId,
    pub workspace_id: WorkspaceId,
    pub webhook_id: Uuid,
}

/// Creates a webhook (`manage_webhooks`): its URL is `{public_url}/hooks/{slug}`.
#[utoipa::path(post, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/webhooks", tag = "webhooks",
    params(AccountWorkspacePath), request_body = WebhookInput,
    responses((status = 201, body = WebhookView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_webhook(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<AccountWorkspacePath>,
    Json(b): Json<WebhookInput>,
) -> Result<(StatusCode, Out<WebhookView>)> {
    let v = webhooks::create(&app, &p, w.account_id, w.workspace_id, b).await?;
    Ok((StatusCode::CREATED, Out(v)))
}

/// Lists the workspace's webhooks (`see_webhooks`); the body is optional.
#[utoipa::path(post, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/webhooks/filter", tag = "webhooks",
    params(AccountWorkspacePath), request_body(content = Option<FilterWebhooks>),
    responses((status = 200, body = Vec<WebhookView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn filter_webhooks(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<AccountWorkspacePath>,
    req: Request,
) -> std::result::Result<Out<Vec<WebhookView>>, HttpError> {
    let f: FilterWebhooks = crate::http::extract::optional_json(req, &app).await?;
    Ok(Out(webhooks::filter(
        &app,
        &p,
        w.account_id,
        w.workspace_id,
        f,
    )
    .await?))
}

/// Reads a webhook (`see_webhooks`).
#[utoipa::path(get, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(WebhookPath),
    responses((status = 200, body = WebhookView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn read_webhook(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<WebhookPath>,
) -> Result<Out<WebhookView>> {
    Ok(Out(webhooks::read(
        &app,
        &p,
        w.account_id,
        w.workspace_id,
        w.webhook_id,
    )
    .await?))
}

/// Replaces a webhook's name, description, template (and optionally `enabled`,
/// `service_account_id`) (`manage_webhooks`).
#[utoipa::path(put, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(WebhookPath), request_body = WebhookInput,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn replace_webhook(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<WebhookPath>,
    Json(b): Json<WebhookInput>,
) -> Result<StatusCode> {
    webhooks::change(
        &app,
        &p,
        w.account_id,
        w.workspace_id,
        w.webhook_id,
        Change::Replace(b),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes some of a webhook's fields — `enabled` turns it on or off (`manage_webhooks`).
#[utoipa::path(patch, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(WebhookPath), request_body = WebhookPatch,
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn patch_webhook(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<WebhookPath>,
    Json(b): Json<WebhookPatch>,
) -> Result<StatusCode> {
    webhooks::change(
        &app,
        &p,
        w.account_id,
        w.workspace_id,
        w.webhook_id,
        Change::Patch(b),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a webhook (`manage_webhooks`); its URL answers 404 from then on.
#[utoipa::path(delete, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/webhooks/{webhook_id}", tag = "webhooks",
    params(WebhookPath),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_webhook(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<WebhookPath>,
) -> Result<StatusCode> {
    webhooks::delete(&app, &p, w.account_id, w.workspace_id, w.webhook_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Gives a webhook a new URL; the old one answers 404 from then on (`manage_webhooks`).
#[utoipa::path(post, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/webhooks/{webhook_id}/rotate", tag = "webhooks",
    params(WebhookPath),
    responses((status = 200, body = WebhookView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn rotate_webhook(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<WebhookPath>,
) -> Result<Out<WebhookView>> {
    Ok(Out(webhooks::change(
        &app,
        &p,
        w.account_id,
        w.workspace_id,
        w.webhook_id,
        Change::Rotate,
    )
    .await?))
}

/// `ANY /hooks/{slug}`: a call to a webhook. 204 once the event is in the workspace's Prefect
/// server; 404 for an unknown slug or a disabled webhook; 400 when the template fails.
pub async fn receive(
    State(app): State<App>,
    axum::extract::Path(slug): axum::extract::Path<String>,
    req: Request,
) -> std::result::Result<StatusCode, HttpError> {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, crate::http::MAX_BODY)
        .await
        .map_err(|_| HttpError::PayloadTooLarge)?;
    let caller = match bearer(&parts) {
        Some(key) => Some(crate::services::auth::authenticate_key(&app, key).await?),
        None => None,
    };
    // The caller's credentials never reach the template.
    let headers: Map<String, Value> = parts
        .headers
        .iter()
        .filter(|(n, _)| !matches!(n.as_str(), "authorization" | "cookie"))
        .filter_map(|(n, v)| {
            Some((
                n.as_str().to_string(),
                Value::String(v.to_str().ok()?.to_string()),
            ))
        })
        .collect();
    let query: Map<String, Value> = parts
        .uri
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect()
        })
        .unwrap_or_default();
    let call = webhooks::Incoming {
        method: parts.method.as_str(),
        headers,
        query,
        body: &body,
        caller,
    };
    webhooks::receive(&app, &slug, call).await?;
    Ok(StatusCode::NO_CONTENT)
}
