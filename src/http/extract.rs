//! Extractors: the authenticated principal (bearer key or session cookie), JSON bodies and path
//! parameters whose rejections become `{"detail": …}` errors with the right status.

use crate::app::App;
use crate::authz::Principal;
use crate::services::{auth, Error};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

pub const SESSION_COOKIE: &str = "atrium_session";
pub const SECURE_SESSION_COOKIE: &str = "__Host-atrium_session";

/// The caller. Missing or bad credentials → 401.
pub struct Auth(pub Principal);

/// The bearer token of the Authorization header, if any.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The session id from the cookie header, if any.
pub fn session_cookie(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE || *k == SECURE_SESSION_COOKIE)
        .map(|(_, v)| v)
}

impl FromRequestParts<App> for Auth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let mut p = if let Some(key) = bearer(parts) {
            auth::authenticate_key(app, key).await?
        } else if let Some(sid) = session_cookie(parts) {
            auth::authenticate_session(app, sid).await?
        } else {
            return Err(Error::Unauthenticated(
                "not authenticated: send Authorization: Bearer <API key> or sign in".into(),
            ));
        };
        p.ip = client_ip(parts);
        p.user_agent = user_agent(parts);
        crate::services::ip_allowlist::check_path(app, &p, parts.uri.path()).await?;
        Ok(Auth(p))
    }
}

/// The caller when credentials are given (and valid), else `None`.
pub struct MaybeAuth(pub Option<Principal>);

impl FromRequestParts<App> for MaybeAuth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        if bearer(parts).is_none() && session_cookie(parts).is_none() {
            return Ok(MaybeAuth(None));
        }
        Auth::from_request_parts(parts, app)
            .await
            .map(|Auth(p)| MaybeAuth(Some(p)))
    }
}

/// JSON body with our error mapping (bad JSON or unknown fields → 422, too large → 413).
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(JsonRejection::BytesRejection(b))
                if b.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(Error::PayloadTooLarge)
            }
            Err(JsonRejection::JsonDataError(e)) => Err(Error::Validation(format!(
                "invalid request body: {}",
                std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string())
            ))),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(Error::Validation(format!(
                "request body is not valid JSON: {}",
                std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string())
            ))),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(Error::Validation(
                "expected a JSON body with Content-Type: application/json".into(),
            )),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(Error::PayloadTooLarge),
            Err(e) => Err(Error::Validation(e.body_text())),
        }
    }
}

/// Path parameters; a malformed id → 422.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e: PathRejection| {
                Error::Validation(format!("invalid path: {}", e.body_text()))
            })
    }
}

/// Query string; bad values → 422.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e: QueryRejection| {
                Error::Validation(format!("invalid query: {}", e.body_text()))
            })
    }
}

/// The client's address: the one a trusted reverse proxy forwarded for (see
/// [`forwarded_client`]), else the socket's peer when served over TCP.
pub(crate) fn client_ip(parts: &Parts) -> Option<String> {
    if let Some(ClientAddr(ip)) = parts.extensions.get::<ClientAddr>() {
        return Some(ip.clone());
    }
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

/// The client address resolved from a trusted proxy's `X-Forwarded-For`.
#[derive(Clone)]
pub struct ClientAddr(pub String);

/// The client behind trusted proxies: `X-Forwarded-For` is read from the right (the entry the
/// nearest proxy appended), skipping addresses of trusted proxies; the first address that is not
/// a trusted proxy is the client. A peer that is not a trusted proxy is the client itself, and
/// anything unparsable stops the walk (a client can only prepend entries, never replace what
/// the proxies appended).
pub fn forwarded_client(
    peer: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[crate::domain::ipnet::IpNetwork],
) -> std::net::IpAddr {
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    let entries = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    for entry in entries.rsplit(',') {
        let Ok(ip) = entry.trim().parse::<std::net::IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// The request's User-Agent, cut to 256 characters.
pub fn user_agent(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect())
}

/// The client's socket address when served over TCP (absent in in-process tests). Forwarded-for
/// headers are not trusted.
pub struct ClientIp(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}
