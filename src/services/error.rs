//! The service-layer error: every failure a caller can see, in the service's own terms (no
//! transport variants: request framing and size limits are `http::error::HttpError`'s), mapped to
//! HTTP in one place (`http::error`), to a message in the CLI.

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
    #[error("rate limit exceeded; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the database is unavailable")]
    Unavailable,
    /// A request the service cannot read unambiguously (it refuses rather than guess).
    #[error("{0}")]
    Malformed(String),
    /// A server Atrium calls for the user — a workspace's Prefect server, an identity provider, a
    /// DNS server — refused or broke the connection, or answered nonsense.
    #[error("{0}")]
    UpstreamFailed(String),
    /// The workspace has no Prefect server connected.
    #[error("{0}")]
    NoUpstream(String),
    /// A workspace's Prefect server did not answer in time.
    #[error("{0}")]
    UpstreamTimeout(String),
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

impl From<crate::store::Error> for Error {
    fn from(e: crate::store::Error) -> Self {
        use crate::store::Error as S;
        match e {
            S::Unavailable(_) => {
                tracing::warn!(error = %e, "database unavailable");
                Error::Unavailable
            }
            // A deadlock or serialization failure rolled the transaction back whole: the
            // client may retry (503), which is not a server fault. Lock order (see
            // `Store::begin_account`) keeps these rare.
            S::Aborted(_) => {
                tracing::warn!(error = %e, "transaction aborted by the database; the client may retry");
                Error::Unavailable
            }
            // A constraint the service did not anticipate (it maps the ones it knows with
            // `unique_or`): the request conflicts with what is stored — a client's 409, never a 500.
            S::UniqueViolation => {
                Error::Conflict("the change conflicts with an existing record".into())
            }
            S::ForeignKey => {
                Error::Conflict("the change refers to, or removes, a record still in use".into())
            }
            S::Other { .. } => Error::Unexpected(anyhow::Error::new(e)),
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
pub fn unique_or(e: crate::store::Error, msg: impl Into<String>) -> Error {
    if matches!(e, crate::store::Error::UniqueViolation) {
        Error::Conflict(msg.into())
    } else {
        e.into()
    }
}
