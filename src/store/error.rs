//! The store's error: what a service may act on (a unique or foreign-key violation, the database
//! being unavailable or aborting the transaction) without knowing the driver, and everything else
//! with the place in the store where it happened.

use std::panic::Location;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A unique constraint refused the write (the service knows what it means: a taken name).
    #[error("a unique constraint refused the write")]
    UniqueViolation,
    /// A foreign key refused the write (for example, a role still in use).
    #[error("a foreign key refused the write")]
    ForeignKey,
    /// The database cannot be reached, or the pool is exhausted or closed.
    #[error("the database is unavailable ({0})")]
    Unavailable(String),
    /// The database rolled the transaction back (deadlock, serialization failure); it may be
    /// retried whole.
    #[error("the database aborted the transaction ({0})")]
    Aborted(String),
    /// Anything else, with the store statement that failed.
    #[error("database error at {at}: {source}")]
    Other {
        #[source]
        source: sqlx::Error,
        at: &'static Location<'static>,
    },
}

impl From<sqlx::Error> for Error {
    /// Classifies a driver error; `at` is where the `?` that converted it stands (the failing
    /// step), so logs say which statement failed.
    #[track_caller]
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Error::Unavailable(e.to_string())
            }
            sqlx::Error::Database(ref d) if d.is_unique_violation() => Error::UniqueViolation,
            sqlx::Error::Database(ref d) if d.is_foreign_key_violation() => Error::ForeignKey,
            sqlx::Error::Database(ref d)
                if matches!(d.code().as_deref(), Some("40P01") | Some("40001")) =>
            {
                Error::Aborted(e.to_string())
            }
            source => Error::Other {
                source,
                at: Location::caller(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failure nobody anticipated names the store statement that failed (the line of its `?`),
    /// so a log line says which step broke.
    #[test]
    fn an_unexpected_failure_names_the_line_of_the_failing_step() {
        fn step() -> Result<(), Error> {
            Err(sqlx::Error::RowNotFound)?;
            Ok(())
        }
        let expected_line = line!() - 3;
        match step() {
            Err(Error::Other { at, .. }) => {
                assert_eq!((at.file(), at.line()), (file!(), expected_line));
            }
            other => panic!("expected Other, got {other:?}"),
        }
    }

    #[test]
    fn pool_exhaustion_is_unavailable_not_unexpected() {
        assert!(matches!(
            Error::from(sqlx::Error::PoolTimedOut),
            Error::Unavailable(_)
        ));
    }
}
