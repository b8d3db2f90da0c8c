//! The one mapping from service errors to HTTP: status + `{"detail": …}`. Exhaustive, no
//! catch-all arm, so a new error kind cannot silently become a 500.

use crate::services::Error;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

impl Error {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Error::Malformed(_) => StatusCode::BAD_REQUEST,
            Error::UpstreamFailed(_) => StatusCode::BAD_GATEWAY,
            Error::NoUpstream(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Error::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Error::Unexpected(e) = &self {
            let id = uuid::Uuid::new_v4();
            tracing::error!(request_error_id = %id, error = ?e, "unexpected error");
            return (
                status,
                Json(json!({"detail": "internal error", "error_id": id})),
            )
                .into_response();
        }
        let detail = self.to_string();
        let mut resp = (status, Json(json!({ "detail": detail }))).into_response();
        if let Error::RateLimited { retry_after_secs } = self {
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// An error of the HTTP layer: a service error, or a request refused for its framing before any
/// service saw it.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Service(#[from] Error),
    #[error("request body is larger than the 5 MiB limit")]
    PayloadTooLarge,
    #[error("Content-Length is required on POST, PUT and PATCH requests")]
    LengthRequired,
}

impl HttpError {
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::Service(e) => e.status(),
            HttpError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::LengthRequired => StatusCode::LENGTH_REQUIRED,
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        match self {
            HttpError::Service(e) => e.into_response(),
            e => (e.status(), Json(json!({ "detail": e.to_string() }))).into_response(),
        }
    }
}
