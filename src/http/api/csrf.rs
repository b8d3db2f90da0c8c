//! `GET …/workspaces/{w}/csrf-token?client=C`: Prefect's CSRF token route, answered by Atrium for
//! the Prefect UI it serves. The token is bound to the caller's session and the UI's client id
//! (`http::ui::prefect_csrf_token`); a write with the session cookie must carry it
//! (`extract::check_cookie_call`). API keys need no CSRF token: for them the route answers as a
//! Prefect server with CSRF protection off does (422), which the `prefect` client understands.

use super::{AccountWorkspacePath, ErrorBody};
use crate::app::App;
use crate::authz::Credential;
use crate::http::extract::{Auth, Path, Query};
use crate::services::{gate, Error, Result};
use axum::extract::State;
use axum::Json as Out;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// How long a token is valid (Prefect's default `PREFECT_SERVER_CSRF_TOKEN_EXPIRATION`); the UI
/// fetches a new one at three quarters of it.
const LIFETIME_SECS: i64 = 3600;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CsrfQuery {
    /// The UI's client id (it sends it again in `Prefect-Csrf-Client`).
    #[param(min_length = 1, max_length = 255)]
    pub client: String,
}

/// Prefect's `CsrfToken`.
#[derive(Serialize, ToSchema)]
pub struct CsrfToken {
    pub id: uuid::Uuid,
    pub created: chrono::DateTime<chrono::Utc>,
    pub updated: chrono::DateTime<chrono::Utc>,
    pub token: String,
    pub client: String,
    pub expiration: chrono::DateTime<chrono::Utc>,
}

/// A CSRF token for the signed-in user's Prefect UI (any role in the workspace).
#[utoipa::path(get, path = "/api/accounts/{account_id}/workspaces/{workspace_id}/csrf-token", tag = "gateway",
    params(AccountWorkspacePath, CsrfQuery),
    responses((status = 200, body = CsrfToken), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn csrf_token(
    State(app): State<App>,
    Auth(p): Auth,
    Path(w): Path<AccountWorkspacePath>,
    Query(q): Query<CsrfQuery>,
) -> Result<Out<CsrfToken>> {
    gate::workspace(&app, &p, w.account_id, w.workspace_id).await?;
    let Credential::Session { id_hash } = &p.credential else {
        return Err(Error::Validation("CSRF protection is disabled.".into()));
    };
    if q.client.is_empty() || q.client.len() > 255 || q.client.chars().any(char::is_control) {
        return Err(Error::validation(
            "client: between 1 and 255 printable characters",
        ));
    }
    let now = app.now();
    let expiration = now + chrono::Duration::seconds(LIFETIME_SECS);
    let token = crate::http::ui::prefect_csrf_token(
        &app,
        id_hash,
        &q.client,
        expiration.timestamp_micros(),
    );
    Ok(Out(CsrfToken {
        id: uuid::Uuid::new_v4(),
        created: now,
        updated: now,
        token,
        client: q.client,
        expiration,
    }))
}
