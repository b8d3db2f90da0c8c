//! Persistence only: one set of queries for SQLite and PostgreSQL through sqlx's `Any` driver
//! (`$n` placeholders work on both). Returns domain types, never sees a principal, never decides
//! permissions. Every query that reads tenant data takes the account id. Engine differences live
//! in [`dialect`].

pub mod accounts;
pub mod api_keys;
pub mod audit;
pub mod dialect;
pub mod error;
pub mod grants;
pub mod scim;
pub mod service_accounts;
pub mod shared_limits;
pub mod sso;

pub use error::Error;
pub mod invitations;
pub mod memberships;
pub mod nodes;
pub mod object_acls;
pub mod roles;
pub mod teams;
pub mod upstreams;
pub mod users;
pub mod webhooks;
pub mod workspaces;

use crate::domain::Time;
use anyhow::Context;
use chrono::{TimeZone, Utc};
use rustc_hash::FxHashMap;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Row};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

pub use dialect::Engine;

pub type Tx = sqlx::Transaction<'static, sqlx::Any>;
pub type Conn = AnyConnection;
/// A pooled connection for reads.
pub type Reader = sqlx::pool::PoolConnection<sqlx::Any>;

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Database handles. On SQLite all writes go through a single-connection pool, so writers queue
/// in-process instead of failing with SQLITE_BUSY, while reads use a pool of their own (WAL lets
/// them run beside the writer). On PostgreSQL both handles are the same pool.
#[derive(Clone, Debug)]
pub struct Store {
    write: AnyPool,
    read: AnyPool,
    pub engine: Engine,
    /// SQLite: the last known head `(seq, hash)` of each audit chain (see `audit::append`). A hint
    /// only — every use re-checks it in the database.
    audit_heads: Arc<Mutex<FxHashMap<String, (i64, String)>>>,
}

impl Store {
    /// Connects to `url` (`sqlite:…` or `postgres://…`). `schema`, for PostgreSQL only, puts
    /// every connection in that schema (tests use one fresh schema each).
    pub async fn connect(url: &str, schema: Option<&str>) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let engine = Engine::from_url(url)?;
        let store = match engine {
            Engine::Sqlite => {
                ensure_sqlite_dir(url)?;
                let write = sqlite_pool(url, 1).await?;
                let read = sqlite_pool(url, 8).await?;
                Store {
                    write,
                    read,
                    engine,
                    audit_heads: Arc::default(),
                }
            }
            Engine::Postgres => {
                let schema = schema.map(str::to_string);
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(5))
                    .after_connect(move |conn, _| {
                        let schema = schema.clone();
                        Box::pin(async move {
                            if let Some(s) = schema {
                                sqlx::query(&format!("SET search_path TO \"{s}\""))
                                    .execute(&mut *conn)
                                    .await?;
                            }
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await
                    .context("connecting to PostgreSQL")?;
                Store {
                    write: pool.clone(),
                    read: pool,
                    engine,
                    audit_heads: Arc::default(),
                }
            }
        };
        Ok(store)
    }

    pub(crate) fn audit_head(&self, account: &str) -> Option<(i64, String)> {
        self.audit_heads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(account)
            .cloned()
    }

    pub(crate) fn remember_audit_head(&self, account: String, seq: i64, hash: String) {
        self.audit_heads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(account, (seq, hash));
    }

    /// Applies pending migrations of this engine.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.engine {
            Engine::Sqlite => &SQLITE_MIGRATOR,
            Engine::Postgres => &POSTGRES_MIGRATOR,
        };
        migrator
            .run(&self.write)
            .await
            .context("applying migrations")?;
        Ok(())
    }

    /// Begins a write transaction.
    pub async fn begin(&self) -> Result<Write, Error> {
        Ok(Write {
            tx: self.write.begin().await?,
            engine: self.engine,
            changed: Vec::new(),
            members_only: Vec::new(),
        })
    }

    /// Begins a write transaction on an account's data, holding the account's row lock from the
    /// start (PostgreSQL; SQLite has one writer). Every write transaction of an account locks in
    /// the same order — the account row first, then whatever the change touches, its audit head
    /// and the access version last — so concurrent writers queue instead of deadlocking
    /// (before, a workspace creation locked the account then the audit head while a rename
    /// locked the audit head then the account's access version).
    pub async fn begin_account(&self, account: crate::domain::AccountId) -> Result<Write, Error> {
        let mut tx = self.begin().await?;
        accounts::lock_account(&mut tx, self.engine, account).await?;
        Ok(tx)
    }

    /// A connection for reads.
    pub async fn reader(&self) -> Result<Reader, Error> {
        Ok(self.read.acquire().await?)
    }

    /// A connection of its own, outside the pools, for as long as the caller keeps it (job
    /// leadership holds its lock on one; the SQLite change watch polls on one).
    pub async fn dedicated(&self) -> Result<Conn, Error> {
        Ok(self.read.acquire().await?.detach())
    }

    /// SQLite: writes a consistent copy of the database (one read snapshot) to a new file.
    pub async fn backup_sqlite(&self, to: &str) -> Result<(), Error> {
        let mut c = self.read.acquire().await?;
        sqlx::query("VACUUM INTO $1")
            .bind(to)
            .execute(&mut *c)
            .await?;
        Ok(())
    }

    /// The newest migration this build knows.
    pub fn known_migration_level(&self) -> i64 {
        let m = match self.engine {
            Engine::Sqlite => &SQLITE_MIGRATOR,
            Engine::Postgres => &POSTGRES_MIGRATOR,
        };
        m.iter().map(|m| m.version).max().unwrap_or(0)
    }

    /// True when the database answers.
    pub async fn ping(&self) -> bool {
        let probe = async {
            let mut c = self.read.acquire().await?;
            sqlx::query("SELECT 1").execute(&mut *c).await
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), probe).await,
            Ok(Ok(_))
        )
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// A write transaction. It knows its engine, and which accounts' access data it changed: the
/// functions that write what the permission index and the gateway registry are built from
/// (memberships, service accounts and their grants, roles, workspaces, user and team grants, team
/// members, an account's plan, settings, allowlist and upstreams) take an [`AccessTx`], which only
/// [`Write::access`] hands out. [`Write::commit`] bumps those accounts' access versions (last, in
/// the lock order of [`Store::begin_account`]), commits, and answers them as a [`Changed`] that
/// must be used: the service layer's unit of work (`services::unit`) refreshes the index from it.
pub struct Write {
    tx: Tx,
    engine: Engine,
    changed: Vec<crate::domain::AccountId>,
    /// Accounts whose access change touched only these users' rows (their membership, team
    /// memberships and direct grants) — see [`Write::only_members`].
    members_only: Vec<(crate::domain::AccountId, Vec<uuid::Uuid>)>,
}

impl std::ops::Deref for Write {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.tx
    }
}

impl std::ops::DerefMut for Write {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.tx
    }
}

impl Write {
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// This transaction, for a write to `account`'s access data (recorded for [`Write::commit`]).
    pub fn access(&mut self, account: crate::domain::AccountId) -> AccessTx<'_> {
        if !self.changed.contains(&account) {
            self.changed.push(account);
        }
        AccessTx(&mut self.tx)
    }

    /// Declares that, for `account`, this transaction changes access rows of `users` only (their
    /// membership, team memberships and direct grants), so the index may re-read just those. A
    /// change of anything else in the same transaction must not be declared so.
    pub fn only_members(&mut self, account: crate::domain::AccountId, users: Vec<uuid::Uuid>) {
        self.members_only.push((account, users));
    }

    /// Bumps the access version of every account whose access data changed, then commits.
    pub async fn commit(mut self) -> Result<Changed, Error> {
        self.changed.sort();
        let mut out = Vec::with_capacity(self.changed.len());
        for a in &self.changed {
            let version = accounts::bump_access_version(&mut self.tx, self.engine, *a).await?;
            let users = self
                .members_only
                .iter()
                .filter(|(x, _)| x == a)
                .map(|(_, u)| u.clone())
                .reduce(|mut all, more| {
                    all.extend(more);
                    all
                });
            out.push(ChangedAccount {
                account: *a,
                version,
                only_members: users,
            });
        }
        self.tx.commit().await?;
        Ok(Changed(out))
    }
}

/// A transaction that records a change of an account's access data (from [`Write::access`]).
pub struct AccessTx<'a>(&'a mut Conn);

impl std::ops::Deref for AccessTx<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.0
    }
}

impl std::ops::DerefMut for AccessTx<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.0
    }
}

/// The accounts whose access data a committed transaction changed.
#[must_use = "the permission index of these accounts must be refreshed (services::unit does)"]
pub struct Changed(pub Vec<ChangedAccount>);

/// One account a committed transaction changed: the access version it gave the account, and the
/// users whose rows alone changed when the transaction declared so.
pub struct ChangedAccount {
    pub account: crate::domain::AccountId,
    pub version: i64,
    pub only_members: Option<Vec<uuid::Uuid>>,
}

fn ensure_sqlite_dir(url: &str) -> anyhow::Result<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(dir) = std::path::Path::new(path).parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating data directory {}", dir.display()))?;
        }
    }
    Ok(())
}

async fn sqlite_pool(url: &str, max: u32) -> anyhow::Result<AnyPool> {
    let url = if url.contains('?') {
        url.to_string()
    } else {
        format!("{url}?mode=rwc")
    };
    AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(|conn, _| {
            Box::pin(async move {
                for pragma in [
                    "PRAGMA journal_mode = WAL",
                    "PRAGMA synchronous = NORMAL",
                    "PRAGMA foreign_keys = ON",
                    "PRAGMA busy_timeout = 5000",
                    // Deleted content is overwritten, not left in free pages.
                    "PRAGMA secure_delete = ON",
                ] {
                    sqlx::query(pragma).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await
        .with_context(|| format!("opening SQLite database {url}"))
}

// ---- value conversions shared by the query modules ----

pub(crate) fn micros(t: Time) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn time(us: i64) -> Time {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

pub(crate) fn opt_time(us: Option<i64>) -> Option<Time> {
    us.map(time)
}

pub(crate) fn get_uuid(row: &AnyRow, col: &str) -> Result<Uuid, Error> {
    let s: String = row.try_get(col)?;
    Ok(Uuid::from_str(&s).map_err(|e| sqlx::Error::ColumnDecode {
        index: col.to_string(),
        source: Box::new(e),
    })?)
}

pub(crate) fn get_opt_uuid(row: &AnyRow, col: &str) -> Result<Option<Uuid>, Error> {
    let s: Option<String> = row.try_get(col)?;
    Ok(s.map(|s| Uuid::from_str(&s))
        .transpose()
        .map_err(|e| sqlx::Error::ColumnDecode {
            index: col.to_string(),
            source: Box::new(e),
        })?)
}

/// An account role stored as its code; an unknown code is a decode error (the store never
/// guesses a role).
pub(crate) fn get_account_role(
    row: &AnyRow,
    col: &str,
) -> Result<crate::domain::role::AccountRole, Error> {
    let code: String = row.try_get(col)?;
    Ok(
        crate::domain::role::AccountRole::from_code(&code).ok_or_else(|| {
            sqlx::Error::ColumnDecode {
                index: col.into(),
                source: format!("unknown account role {code:?}").into(),
            }
        })?,
    )
}

pub(crate) fn get_bool(row: &AnyRow, col: &str) -> Result<bool, Error> {
    let v: i64 = row.try_get(col)?;
    Ok(v != 0)
}

/// Builds SQL with `$n` placeholders for optional filters, binding values in order.
#[derive(Default)]
pub(crate) struct Sql {
    pub text: String,
    pub args: Vec<Arg>,
}

#[derive(Clone, Debug)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

impl Sql {
    pub fn new(base: &str) -> Sql {
        Sql {
            text: base.to_string(),
            args: Vec::new(),
        }
    }

    /// Appends `fragment`, replacing each `?` with the next placeholder bound to `arg`.
    pub fn push(&mut self, fragment: &str, args: impl IntoIterator<Item = Arg>) -> &mut Self {
        let mut args = args.into_iter();
        for ch in fragment.chars() {
            if ch == '?' {
                if let Some(a) = args.next() {
                    self.args.push(a);
                    self.text.push_str(&format!("${}", self.args.len()));
                    continue;
                }
            }
            self.text.push(ch);
        }
        self
    }

    /// Appends ` AND col IN ($a, $b, …)`; an empty list matches nothing.
    pub fn and_in(&mut self, col: &str, values: &[String]) -> &mut Self {
        if values.is_empty() {
            self.text.push_str(" AND 1 = 0");
            return self;
        }
        let marks = vec!["?"; values.len()].join(", ");
        self.push(
            &format!(" AND {col} IN ({marks})"),
            values.iter().cloned().map(Arg::Text),
        )
    }

    pub fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        let mut q = sqlx::query(&self.text);
        for a in &self.args {
            q = match a {
                Arg::Text(s) => q.bind(s.clone()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

/// (workspace, subject, role, expiry) of a grant.
pub type GrantTuple = (
    crate::domain::WorkspaceId,
    Uuid,
    crate::domain::RoleId,
    Option<Time>,
);

/// Every grant of the account in one of the grant tables (`workspace_user_access`,
/// `workspace_bot_access`, `workspace_team_access`), whose subject column is `subject`.
pub(crate) async fn grant_rows(
    c: &mut Conn,
    table: &'static str,
    subject: &'static str,
    account: crate::domain::AccountId,
) -> Result<Vec<GrantTuple>, Error> {
    sqlx::query(&format!(
        "SELECT workspace_id, {subject} AS subject, workspace_role_id, expires_at FROM {table} WHERE account_id = $1"
    ))
    .bind(account.to_string())
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(|r| {
        Ok((
            crate::domain::WorkspaceId(get_uuid(r, "workspace_id")?),
            get_uuid(r, "subject")?,
            crate::domain::RoleId(get_uuid(r, "workspace_role_id")?),
            opt_time(r.try_get("expires_at")?),
        ))
    })
    .collect()
}
