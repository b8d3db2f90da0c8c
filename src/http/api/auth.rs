//! Sign-up, login, logout (session cookie) and health.

use crate::app::App;
use crate::domain::User;
use crate::http::extract::{ClientIp, Json, Leaving, SECURE_SESSION_COOKIE, SESSION_COOKIE};
use crate::services::{auth, Result};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;

/// `POST /api/auth/signup` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupBody {
    #[schema(
        max_length = 254,
        pattern = r"^\s*[^\s@\x00-\x1F\x7F-\x9F]+@[^\s@.\x00-\x1F\x7F-\x9F]+(\.[^\s@.\x00-\x1F\x7F-\x9F]+)+\s*$"
    )]
    pub email: String,
    #[schema(min_length = 8, max_length = 1024)]
    pub password: String,
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
    )]
    pub handle: Option<String>,
    #[schema(max_length = 100, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub first_name: Option<String>,
    #[schema(max_length = 100, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub last_name: Option<String>,
    /// With `invite_code`: sign up through an invitation (allowed even when sign-up is by
    /// invitation only) and accept it.
    pub invitation_id: Option<uuid::Uuid>,
    pub invite_code: Option<String>,
}

/// Creates a user (when the sign-up policy is `open`, or through an invitation).
#[utoipa::path(post, path = "/api/auth/signup", tag = "auth", request_body = SignupBody,
    responses((status = 201, body = User), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody), (status = 422, body = super::ErrorBody)))]
pub async fn signup(
    State(app): State<App>,
    Json(b): Json<SignupBody>,
) -> Result<(StatusCode, axum::Json<User>)> {
    let user = auth::signup(
        &app,
        auth::Signup {
            email: b.email,
            password: b.password,
            handle: b.handle,
            first_name: b.first_name,
            last_name: b.last_name,
        },
        b.invitation_id.zip(b.invite_code),
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

/// `POST /api/auth/login` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub email: String,
    pub password: String,
}

/// The session cookie as a header value.
pub fn session_cookie_header(
    app: &App,
    value: &str,
    max_age: i64,
) -> Result<axum::http::HeaderValue, axum::http::header::InvalidHeaderValue> {
    axum::http::HeaderValue::from_str(&cookie(app, value, max_age))
}

fn cookie(app: &App, value: &str, max_age: i64) -> String {
    let (name, secure) = if app.config.secure_cookies() {
        (SECURE_SESSION_COOKIE, "; Secure")
    } else {
        (SESSION_COOKIE, "")
    };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// Signs in with email and password; sets a fresh session cookie.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, body = User), (status = 401, body = super::ErrorBody), (status = 422, body = super::ErrorBody), (status = 429, body = super::ErrorBody)))]
pub async fn login(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Json(b): Json<LoginBody>,
) -> Result<Response> {
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let s = auth::login(&app, &b.email, b.password, ip.as_deref(), ua).await?;
    let max_age = (s.expires_at - app.now()).num_seconds();
    Ok((
        [(header::SET_COOKIE, cookie(&app, &s.id, max_age))],
        axum::Json(s.user),
    )
        .into_response())
}

/// Ends the current session and clears the cookie.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = super::ErrorBody)), security(("bearer" = [])))]
pub async fn logout(State(app): State<App>, Leaving(p): Leaving) -> Result<Response> {
    auth::logout(&app, &p).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, cookie(&app, "", 0))],
    )
        .into_response())
}

/// Whether this server should get traffic (load balancers' readiness check): the database
/// answers, migrations are current, the permission index is loaded and kept current, and the
/// server is not shutting down. 200 with every check, or 503 with the same body and a `detail`.
#[utoipa::path(get, path = "/api/ready", tag = "health",
    responses((status = 200, body = crate::services::node::Readiness),
        (status = 503, body = crate::services::node::Readiness)))]
pub async fn ready(State(app): State<App>) -> Response {
    let r = crate::services::node::readiness(&app).await;
    if r.ready {
        return axum::Json(r).into_response();
    }
    let failed: Vec<String> = r
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    let mut body = serde_json::to_value(&r).unwrap_or_default();
    body["detail"] = serde_json::Value::String(format!("not ready ({})", failed.join("; ")));
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

/// `true` when the database answers; 503 otherwise.
#[utoipa::path(get, path = "/api/health", tag = "health",
    responses((status = 200, body = bool), (status = 503, body = super::ErrorBody)))]
pub async fn health(State(app): State<App>) -> Response {
    if app.store.ping().await {
        axum::Json(true).into_response()
    } else {
        crate::services::Error::Unavailable.into_response()
    }
}
