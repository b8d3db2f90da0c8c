//! The service-layer error: every failure a caller can see, mapped to HTTP in one place
//! (`http::error`), to a message in the CLI.

use crate::authz::Denied;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Validation(String),
    #[error("request body is larger than the 5 MiB limit")]
    PayloadTooLarge,
    #[error("rate limit exceeded; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the database is unavailable")]
    Unavailable,
    #[error("{0}")]
    BadRequest(String),
    #[error("Content-Length is required on POST, PUT and PATCH requests")]
    LengthRequired,
    /// The gateway's upstream refused or broke the connection.
    #[error("{0}")]
    BadGateway(String),
    /// The gateway has no upstream for the workspace.
    #[error("{0}")]
    ServiceUnavailable(String),
    #[error("{0}")]
    GatewayTimeout(String),
    #[error("unexpected error")]
    Unexpected(#[source] anyhow::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn not_found(what: &str) -> Error {
        Error::NotFound(format!("{what} not found"))
    }
    pub fn validation(msg: impl Into<String>) -> Error {
        Error::Validation(msg.into())
    }
    pub fn conflict(msg: impl Into<String>) -> Error {
        Error::Conflict(msg.into())
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                tracing::warn!(error = %e, "database unavailable");
                Error::Unavailable
            }
            // A deadlock or serialization failure rolled the transaction back whole: the
            // client may retry (503), which is not a server fault. Lock order (see
            // `Store::begin_account`) keeps these rare.
            sqlx::Error::Database(ref d)
                if matches!(d.code().as_deref(), Some("40P01") | Some("40001")) =>
            {
                tracing::warn!(error = %e, "transaction aborted by the database; the client may retry");
                Error::Unavailable
            }
            other => Error::Unexpected(anyhow::Error::new(other).context("database error")),
        }
    }
}

impl From<Denied> for Error {
    fn from(d: Denied) -> Self {
        match d {
            Denied::NotFound => Error::NotFound("not found".into()),
            Denied::Forbidden(m) => Error::Forbidden(m),
        }
    }
}

/// Maps a unique violation to a 409 with `msg`, anything else as usual.
pub fn unique_or(e: sqlx::Error, msg: impl Into<String>) -> Error {
    if crate::store::is_unique_violation(&e) {
        Error::Conflict(msg.into())
    } else {
        e.into()
    }
}
