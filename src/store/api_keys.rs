//! Personal API keys, stored only as SHA-256 of the secret.

use super::Error;
use super::{get_uuid, micros, opt_time, time, Conn};
use crate::domain::{ApiKeyId, ApiKeyInfo, Time, UserId};
use sqlx::any::AnyRow;
use sqlx::Row;

fn key_from(row: &AnyRow) -> Result<ApiKeyInfo, Error> {
    Ok(ApiKeyInfo {
        id: ApiKeyId(get_uuid(row, "id")?),
        created: time(row.try_get("created")?),
        name: row.try_get("name")?,
        expiration: opt_time(row.try_get("expires_at")?),
        masked_key: row.try_get("masked_key")?,
    })
}

pub struct NewApiKey<'a> {
    pub id: ApiKeyId,
    pub user_id: UserId,
    pub name: &'a str,
    pub key_hash: &'a str,
    pub masked_key: &'a str,
    pub expires_at: Option<Time>,
}

pub async fn insert_api_key(c: &mut Conn, k: NewApiKey<'_>, now: Time) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO api_keys (id, user_id, name, key_hash, masked_key, expires_at, created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(k.id.to_string())
    .bind(k.user_id.to_string())
    .bind(k.name)
    .bind(k.key_hash)
    .bind(k.masked_key)
    .bind(k.expires_at.map(micros))
    .bind(micros(now))
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn find_api_keys_by_user(
    c: &mut Conn,
    user: UserId,
    name: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<ApiKeyInfo>, Error> {
    sqlx::query(
        "SELECT id, created, name, expires_at, masked_key FROM api_keys \
         WHERE user_id = $1 AND ($2 IS NULL OR name = $2) \
         ORDER BY created, id LIMIT $3 OFFSET $4",
    )
    .bind(user.to_string())
    .bind(name)
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(key_from)
    .collect()
}

pub async fn find_api_key(
    c: &mut Conn,
    user: UserId,
    id: ApiKeyId,
) -> Result<Option<ApiKeyInfo>, Error> {
    sqlx::query(
        "SELECT id, created, name, expires_at, masked_key FROM api_keys \
         WHERE user_id = $1 AND id = $2",
    )
    .bind(user.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut *c)
    .await?
    .map(|r| key_from(&r))
    .transpose()
}

/// Deletes a key of `user` and announces it to other processes; false when there was none.
pub async fn delete_api_key(
    c: &mut Conn,
    engine: super::Engine,
    user: UserId,
    id: ApiKeyId,
) -> Result<bool, Error> {
    let r = sqlx::query("DELETE FROM api_keys WHERE user_id = $1 AND id = $2")
        .bind(user.to_string())
        .bind(id.to_string())
        .execute(&mut *c)
        .await?;
    notify_key_revoked(c, engine, id).await?;
    Ok(r.rows_affected() > 0)
}

/// Tells every process (PostgreSQL) that a key stopped or will stop working, so they drop it from
/// their caches.
pub async fn notify_key_revoked(
    c: &mut Conn,
    engine: super::Engine,
    id: ApiKeyId,
) -> Result<(), Error> {
    if let Some(sql) = engine.notify_key_sql() {
        sqlx::query(sql)
            .bind(id.to_string())
            .fetch_optional(&mut *c)
            .await?;
    }
    Ok(())
}

/// The owner and expiry of the key with this hash.
pub struct KeyOwner {
    pub key_id: ApiKeyId,
    pub user_id: UserId,
    pub expires_at: Option<Time>,
    pub site_admin: bool,
    pub email: String,
}

pub async fn find_key_owner_by_hash(
    c: &mut Conn,
    key_hash: &str,
) -> Result<Option<KeyOwner>, Error> {
    let row = sqlx::query(
        "SELECT k.id, k.user_id, k.expires_at, u.site_admin, u.email FROM api_keys k \
         JOIN users u ON u.id = k.user_id WHERE k.key_hash = $1",
    )
    .bind(key_hash)
    .fetch_optional(&mut *c)
    .await?;
    row.map(|r| {
        Ok(KeyOwner {
            key_id: ApiKeyId(get_uuid(&r, "id")?),
            user_id: UserId(get_uuid(&r, "user_id")?),
            expires_at: opt_time(r.try_get("expires_at")?),
            site_admin: super::get_bool(&r, "site_admin")?,
            email: r.try_get("email")?,
        })
    })
    .transpose()
}

/// Records last use for a batch of keys (called by the batching flusher, not per request).
pub async fn update_last_used(c: &mut Conn, ids: &[ApiKeyId], now: Time) -> Result<(), Error> {
    for id in ids {
        for table in ["api_keys", "bot_api_keys"] {
            sqlx::query(&format!("UPDATE {table} SET last_used = $2 WHERE id = $1"))
                .bind(id.to_string())
                .bind(micros(now))
                .execute(&mut *c)
                .await?;
        }
    }
    Ok(())
}
