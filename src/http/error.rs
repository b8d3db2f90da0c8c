//! The one mapping from service errors to HTTP: status + `{"detail": …}`. Exhaustive, no
//! catch-all arm, so a new error kind cannot silently become a 500.

use crate::services::Error;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, detail) = match &self {
            Error::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
            Error::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, m.clone()),
            Error::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone()),
            Error::Conflict(m) => (StatusCode::CONFLICT, m.clone()),
            Error::Validation(m) => (StatusCode::UNPROCESSABLE_ENTITY, m.clone()),
            Error::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, self.to_string()),
            Error::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, self.to_string()),
            Error::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, self.to_string()),
            Error::Unexpected(e) => {
                let id = uuid::Uuid::new_v4();
                tracing::error!(request_error_id = %id, error = ?e, "unexpected error");
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Json(json!({"detail": "internal error", "error_id": id})),
                )
                    .into_response();
            }
        };
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
