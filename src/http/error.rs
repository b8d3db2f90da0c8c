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
            Error::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::LengthRequired => StatusCode::LENGTH_REQUIRED,
            Error::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Error::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
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
