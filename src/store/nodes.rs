//! The node registry (servers sharing the database, by heartbeat), job leadership on
//! PostgreSQL (a session advisory lock) and the database's migration level.

use super::{micros, Conn, Error};
use crate::domain::Time;
use sqlx::Row;

/// Records that node `id` is alive at `now`.
pub async fn heartbeat(
    c: &mut Conn,
    id: &str,
    version: &str,
    started: Time,
    now: Time,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO nodes (id, version, started_at, seen_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at, version = excluded.version",
    )
    .bind(id)
    .bind(version)
    .bind(micros(started))
    .bind(micros(now))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Removes a node's row (it stopped cleanly) and rows not seen since `before`.
pub async fn forget(c: &mut Conn, id: &str, before: Time) -> Result<(), Error> {
    sqlx::query("DELETE FROM nodes WHERE id = $1 OR seen_at < $2")
        .bind(id)
        .bind(micros(before))
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// A registered node.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Node {
    pub id: String,
    pub version: String,
    pub started_at: Time,
    pub seen_at: Time,
}

/// Nodes seen since `since`, oldest start first.
pub async fn live(c: &mut Conn, since: Time) -> Result<Vec<Node>, Error> {
    sqlx::query(
        "SELECT id, version, started_at, seen_at FROM nodes WHERE seen_at >= $1 \
         ORDER BY started_at, id",
    )
    .bind(micros(since))
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(|r| {
        Ok(Node {
            id: r.try_get("id")?,
            version: r.try_get("version")?,
            started_at: super::time(r.try_get("started_at")?),
            seen_at: super::time(r.try_get("seen_at")?),
        })
    })
    .collect()
}

/// The two keys of the PostgreSQL advisory lock that makes one server the jobs' leader: a
/// constant and the schema, so installations in different schemas of one database (tests) each
/// have their own leader.
const LEADER_LOCK: &str = "pg_try_advisory_lock(19019, hashtext(current_schema()))";

/// Tries to take job leadership on `c`, a connection of its own held for as long as it leads
/// (PostgreSQL only: the lock ends with the session, so a server that dies — and its
/// connection with it — hands leadership on). A session the leader stops using is ended by the
/// server after `idle_session_timeout`, which covers a leader that vanished without closing its
/// connection.
pub async fn try_lead(c: &mut Conn, idle_timeout_secs: u64) -> Result<bool, Error> {
    // PostgreSQL 14 and later; earlier servers rely on TCP keepalive alone.
    let _ = sqlx::query(&format!(
        "SET idle_session_timeout = '{}s'",
        idle_timeout_secs.max(1)
    ))
    .execute(&mut *c)
    .await;
    let got: bool = sqlx::query(&format!("SELECT {LEADER_LOCK} AS got"))
        .fetch_one(&mut *c)
        .await?
        .try_get("got")?;
    Ok(got)
}

/// True while the leader's connection is alive (and so still holds the lock).
pub async fn still_leading(c: &mut Conn) -> bool {
    sqlx::query("SELECT 1").execute(&mut *c).await.is_ok()
}

/// The highest migration version applied to the database.
pub async fn migration_level(c: &mut Conn) -> Result<i64, Error> {
    let v: Option<i64> =
        sqlx::query("SELECT MAX(version) AS v FROM _sqlx_migrations WHERE success = TRUE")
            .fetch_one(&mut *c)
            .await?
            .try_get("v")?;
    Ok(v.unwrap_or(0))
}

/// Announces something on a PostgreSQL channel (the caller checked the engine).
pub async fn announce(c: &mut Conn, channel: &str) -> Result<(), Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(channel)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// SQLite's `data_version`: changes when another connection committed (read on a connection of
/// its own, it moves at every commit made elsewhere).
pub async fn data_version(c: &mut Conn) -> Result<i64, Error> {
    Ok(sqlx::query("PRAGMA data_version")
        .fetch_one(&mut *c)
        .await?
        .try_get(0)?)
}
