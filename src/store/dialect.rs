//! The one place that knows how SQLite and PostgreSQL differ.

/// Which database engine a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn from_url(url: &str) -> anyhow::Result<Engine> {
        if url.starts_with("sqlite:") {
            Ok(Engine::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Engine::Postgres)
        } else {
            anyhow::bail!("unsupported database URL (use sqlite:PATH or postgres://…)")
        }
    }

    /// The engine's name in logs.
    pub const fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgresql",
        }
    }

    /// A statement that takes the account row's write lock for the rest of the transaction, so
    /// counted invariants (at least one Owner) are checked by one writer at a time. SQLite
    /// serializes writers already (single write connection, database-level lock), so a plain read
    /// does; PostgreSQL needs `FOR UPDATE`.
    pub const fn lock_account_sql(self) -> &'static str {
        match self {
            Engine::Sqlite => "SELECT id FROM accounts WHERE id = $1",
            Engine::Postgres => "SELECT id FROM accounts WHERE id = $1 FOR UPDATE",
        }
    }

    /// A statement that announces a change of an account's access data to every process at
    /// commit (PostgreSQL `NOTIFY` is transactional). SQLite has no such channel; other processes
    /// notice through the access-version sweep.
    pub const fn notify_access_sql(self) -> Option<&'static str> {
        match self {
            Engine::Sqlite => None,
            Engine::Postgres => Some("SELECT pg_notify('atrium_access', $1)"),
        }
    }

    /// Announces a revoked API key (by id) to every process at commit.
    pub const fn notify_key_sql(self) -> Option<&'static str> {
        match self {
            Engine::Sqlite => None,
            Engine::Postgres => Some("SELECT pg_notify('atrium_keys', $1)"),
        }
    }
}

/// The PostgreSQL channel access changes are announced on.
pub const ACCESS_CHANNEL: &str = "atrium_access";

/// The PostgreSQL channel revoked API keys are announced on.
pub const KEYS_CHANNEL: &str = "atrium_keys";

/// The PostgreSQL channel that wakes the jobs leader's email outbox when another server queued
/// a message.
pub const OUTBOX_CHANNEL: &str = "atrium_outbox";
