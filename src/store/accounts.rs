//! Accounts and their settings.

use super::Error;
use super::{get_uuid, micros, time, AccessTx, Conn};
use crate::domain::{AccountId, Time};
use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::Row;

/// An account row as stored; services add plan-derived fields to build the API object.
#[derive(Debug, Clone)]
pub struct AccountRow {
    pub id: AccountId,
    pub handle: String,
    pub name: String,
    pub location: Option<String>,
    pub link: Option<String>,
    pub billing_email: Option<String>,
    pub auth_expiration_seconds: Option<i64>,
    pub settings: Map<String, Value>,
    /// Plan code (`hobby` … `enterprise`).
    pub plan: String,
    /// Per-account entitlement overrides (JSON of `domain::plan::EntitlementsPatch`).
    pub plan_overrides: String,
    /// The IP allowlist entries (JSON, see `services::ip_allowlist`).
    pub ip_allowlist: String,
    pub created: Time,
    pub updated: Time,
}

const COLS: &str = "id, handle, name, location, link, billing_email, auth_expiration_seconds, \
                    settings, plan, plan_overrides, ip_allowlist, created, updated";

fn account_from(row: &AnyRow) -> Result<AccountRow, Error> {
    let settings: String = row.try_get("settings")?;
    Ok(AccountRow {
        id: AccountId(get_uuid(row, "id")?),
        handle: row.try_get("handle")?,
        name: row.try_get("name")?,
        location: row.try_get("location")?,
        link: row.try_get("link")?,
        billing_email: row.try_get("billing_email")?,
        auth_expiration_seconds: row.try_get("auth_expiration_seconds")?,
        settings: serde_json::from_str(&settings).unwrap_or_default(),
        plan: row.try_get("plan")?,
        plan_overrides: row.try_get("plan_overrides")?,
        ip_allowlist: row.try_get("ip_allowlist")?,
        created: time(row.try_get("created")?),
        updated: time(row.try_get("updated")?),
    })
}

pub async fn insert_account(
    c: &mut AccessTx<'_>,
    id: AccountId,
    name: &str,
    handle: &str,
    plan: &str,
    now: Time,
) -> Result<(), Error> {
    let c: &mut Conn = c;
    sqlx::query(
        "INSERT INTO accounts (id, handle, name, settings, plan, created, updated) \
         VALUES ($1, $2, $3, '{}', $5, $4, $4)",
    )
    .bind(id.to_string())
    .bind(handle)
    .bind(name)
    .bind(micros(now))
    .bind(plan)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn find_account(c: &mut Conn, id: AccountId) -> Result<Option<AccountRow>, Error> {
    sqlx::query(&format!("SELECT {COLS} FROM accounts WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(&mut *c)
        .await?
        .map(|r| account_from(&r))
        .transpose()
}

pub async fn find_account_by_handle(
    c: &mut Conn,
    handle: &str,
) -> Result<Option<AccountRow>, Error> {
    sqlx::query(&format!("SELECT {COLS} FROM accounts WHERE handle = $1"))
        .bind(handle)
        .fetch_optional(&mut *c)
        .await?
        .map(|r| account_from(&r))
        .transpose()
}

/// Every account id (for building the permission index at start-up).
pub async fn find_account_ids(c: &mut Conn) -> Result<Vec<AccountId>, Error> {
    sqlx::query("SELECT id FROM accounts")
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|r| get_uuid(r, "id").map(AccountId))
        .collect()
}

/// Writes every mutable column of `a` (the service loads, changes and saves inside one transaction).
pub async fn update_account(c: &mut AccessTx<'_>, a: &AccountRow, now: Time) -> Result<(), Error> {
    let c: &mut Conn = c;
    sqlx::query(
        "UPDATE accounts SET handle = $2, name = $3, location = $4, link = $5, billing_email = $6, \
         auth_expiration_seconds = $7, settings = $8, updated = $9 WHERE id = $1",
    )
    .bind(a.id.to_string())
    .bind(&a.handle)
    .bind(&a.name)
    .bind(&a.location)
    .bind(&a.link)
    .bind(&a.billing_email)
    .bind(a.auth_expiration_seconds)
    .bind(Value::Object(a.settings.clone()).to_string())
    .bind(micros(now))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Replaces the account's IP allowlist (JSON).
pub async fn set_ip_allowlist(
    c: &mut AccessTx<'_>,
    id: AccountId,
    entries: &str,
    now: Time,
) -> Result<(), Error> {
    let c: &mut Conn = c;
    sqlx::query("UPDATE accounts SET ip_allowlist = $2, updated = $3 WHERE id = $1")
        .bind(id.to_string())
        .bind(entries)
        .bind(micros(now))
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn delete_account(c: &mut AccessTx<'_>, id: AccountId) -> Result<bool, Error> {
    let c: &mut Conn = c;
    let r = sqlx::query("DELETE FROM accounts WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Locks the account row for the rest of the transaction (see `Engine::lock_account_sql`).
pub async fn lock_account(
    c: &mut Conn,
    engine: super::Engine,
    id: AccountId,
) -> Result<bool, Error> {
    Ok(sqlx::query(engine.lock_account_sql())
        .bind(id.to_string())
        .fetch_optional(&mut *c)
        .await?
        .is_some())
}

/// Bumps the account's access version and, on PostgreSQL, queues a notification delivered at
/// commit. Call inside the transaction that changes access.
pub async fn bump_access_version(
    c: &mut Conn,
    engine: super::Engine,
    id: AccountId,
) -> Result<i64, Error> {
    sqlx::query("UPDATE accounts SET access_version = access_version + 1 WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut *c)
        .await?;
    notify_access(c, engine, id).await?;
    // The version this transaction gave the account (its writers hold the account lock, or the
    // single SQLite writer, until commit).
    Ok(find_access_version(c, id).await?.unwrap_or(0))
}

/// Announces an access change to the other processes (PostgreSQL; delivered at commit).
async fn notify_access(c: &mut Conn, engine: super::Engine, id: AccountId) -> Result<(), Error> {
    if let Some(sql) = engine.notify_access_sql() {
        sqlx::query(sql)
            .bind(id.to_string())
            .fetch_optional(&mut *c)
            .await?;
    }
    Ok(())
}

/// The access version of one account.
pub async fn find_access_version(c: &mut Conn, id: AccountId) -> Result<Option<i64>, Error> {
    Ok(
        sqlx::query("SELECT access_version FROM accounts WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut *c)
            .await?
            .map(|r| r.try_get("access_version"))
            .transpose()?,
    )
}

/// Every account's access version (for the staleness sweep).
pub async fn find_access_versions(c: &mut Conn) -> Result<Vec<(AccountId, i64)>, Error> {
    sqlx::query("SELECT id, access_version FROM accounts")
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|r| Ok((AccountId(get_uuid(r, "id")?), r.try_get("access_version")?)))
        .collect()
}

/// Sets the account's plan and overrides.
pub async fn update_plan(
    c: &mut AccessTx<'_>,
    id: AccountId,
    plan: &str,
    overrides: &str,
    now: Time,
) -> Result<bool, Error> {
    let c: &mut Conn = c;
    let r = sqlx::query(
        "UPDATE accounts SET plan = $2, plan_overrides = $3, updated = $4 WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(plan)
    .bind(overrides)
    .bind(micros(now))
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Workspaces of the account (for the plan's workspace limit).
pub async fn count_workspaces(c: &mut Conn, id: AccountId) -> Result<i64, Error> {
    Ok(
        sqlx::query("SELECT COUNT(*) AS n FROM workspaces WHERE account_id = $1")
            .bind(id.to_string())
            .fetch_one(&mut *c)
            .await?
            .try_get("n")?,
    )
}

/// The shortest `auth_expiration_seconds` among the accounts `user` is an active member of
/// (`None`: none of them sets one).
pub async fn find_auth_bound_for_user(
    c: &mut Conn,
    user: crate::domain::UserId,
) -> Result<Option<i64>, Error> {
    Ok(sqlx::query(
        "SELECT MIN(a.auth_expiration_seconds) AS s FROM accounts a \
         JOIN account_memberships m ON m.account_id = a.id \
         WHERE m.user_id = $1 AND m.active = 1 AND a.auth_expiration_seconds IS NOT NULL",
    )
    .bind(user.to_string())
    .fetch_one(&mut *c)
    .await?
    .try_get("s")?)
}
