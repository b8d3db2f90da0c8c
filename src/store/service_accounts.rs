//! Service accounts ("bots"), their API keys and their workspace grants.

use super::Error;
use super::{get_uuid, micros, opt_time, time, AccessTx, Arg, Conn, Sql};
use crate::domain::role::AccountRole;
use crate::domain::{AccountId, ActorId, ApiKeyId, ApiKeyInfo, ServiceAccountId, Time};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

/// A bot as stored.
#[derive(Debug, Clone)]
pub struct ServiceAccountRow {
    pub id: crate::domain::ServiceAccountId,
    pub account_id: AccountId,
    pub actor_id: ActorId,
    pub name: String,
    pub account_role: AccountRole,
    pub created: Time,
    pub updated: Time,
}

const COLS: &str = "id, account_id, actor_id, name, account_role, created, updated";

fn bot_from(r: &AnyRow) -> Result<ServiceAccountRow, Error> {
    Ok(ServiceAccountRow {
        id: ServiceAccountId(get_uuid(r, "id")?),
        account_id: AccountId(get_uuid(r, "account_id")?),
        actor_id: ActorId(get_uuid(r, "actor_id")?),
        name: r.try_get("name")?,
        account_role: super::get_account_role(r, "account_role")?,
        created: time(r.try_get("created")?),
        updated: time(r.try_get("updated")?),
    })
}

pub async fn insert_bot(c: &mut AccessTx<'_>, b: &ServiceAccountRow) -> Result<(), Error> {
    let c: &mut Conn = c;
    sqlx::query(
        "INSERT INTO bots (id, account_id, actor_id, name, account_role, created, updated) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(b.id.to_string())
    .bind(b.account_id.to_string())
    .bind(b.actor_id.to_string())
    .bind(&b.name)
    .bind(b.account_role.code())
    .bind(micros(b.created))
    .bind(micros(b.updated))
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn find_bot(
    c: &mut Conn,
    account: AccountId,
    id: ServiceAccountId,
) -> Result<Option<ServiceAccountRow>, Error> {
    sqlx::query(&format!(
        "SELECT {COLS} FROM bots WHERE account_id = $1 AND id = $2"
    ))
    .bind(account.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut *c)
    .await?
    .map(|r| bot_from(&r))
    .transpose()
}

pub async fn find_bots(
    c: &mut Conn,
    account: AccountId,
    names: Option<&[String]>,
    limit: i64,
    offset: i64,
) -> Result<Vec<ServiceAccountRow>, Error> {
    let mut s = Sql::new(&format!("SELECT {COLS} FROM bots WHERE account_id = "));
    s.push("?", [Arg::Text(account.to_string())]);
    if let Some(n) = names {
        s.and_in("name", n);
    }
    s.push(
        " ORDER BY name, id LIMIT ? OFFSET ?",
        [Arg::Int(limit), Arg::Int(offset)],
    );
    s.query()
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(bot_from)
        .collect()
}

pub async fn update_bot(c: &mut AccessTx<'_>, b: &ServiceAccountRow) -> Result<(), Error> {
    let c: &mut Conn = c;
    sqlx::query("UPDATE bots SET name = $3, account_role = $4, updated = $5 WHERE account_id = $1 AND id = $2")
        .bind(b.account_id.to_string())
        .bind(b.id.to_string())
        .bind(&b.name)
        .bind(b.account_role.code())
        .bind(micros(b.updated))
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn delete_bot(
    c: &mut AccessTx<'_>,
    account: AccountId,
    id: ServiceAccountId,
) -> Result<bool, Error> {
    let c: &mut Conn = c;
    let r = sqlx::query("DELETE FROM bots WHERE account_id = $1 AND id = $2")
        .bind(account.to_string())
        .bind(id.to_string())
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// (bot, role) of every bot of the account, for the permission index.
pub async fn find_bot_roles(
    c: &mut Conn,
    account: AccountId,
) -> Result<Vec<(Uuid, AccountRole)>, Error> {
    sqlx::query("SELECT id, account_role FROM bots WHERE account_id = $1")
        .bind(account.to_string())
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|r| {
            Ok((
                get_uuid(r, "id")?,
                super::get_account_role(r, "account_role")?,
            ))
        })
        .collect()
}

// ---- keys ----

/// A new key of a bot.
pub struct NewServiceAccountKey<'a> {
    pub id: ApiKeyId,
    pub bot: Uuid,
    pub name: &'a str,
    pub key_hash: &'a str,
    pub masked: &'a str,
    pub expires_at: Option<Time>,
}

pub async fn insert_key(c: &mut Conn, k: NewServiceAccountKey<'_>, now: Time) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO bot_api_keys (id, bot_id, name, key_hash, masked_key, expires_at, created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(k.id.to_string())
    .bind(k.bot.to_string())
    .bind(k.name)
    .bind(k.key_hash)
    .bind(k.masked)
    .bind(k.expires_at.map(micros))
    .bind(micros(now))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// A bot's keys, newest first.
pub async fn find_keys(c: &mut Conn, bot: Uuid) -> Result<Vec<ApiKeyInfo>, Error> {
    sqlx::query(
        "SELECT id, created, name, expires_at, masked_key FROM bot_api_keys WHERE bot_id = $1 \
         ORDER BY created DESC, id",
    )
    .bind(bot.to_string())
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(|r| {
        Ok(ApiKeyInfo {
            id: ApiKeyId(get_uuid(r, "id")?),
            created: time(r.try_get("created")?),
            name: r.try_get("name")?,
            expiration: opt_time(r.try_get("expires_at")?),
            masked_key: r.try_get("masked_key")?,
        })
    })
    .collect()
}

pub async fn set_key_expiry(
    c: &mut Conn,
    bot: Uuid,
    key: ApiKeyId,
    expires_at: Time,
) -> Result<(), Error> {
    sqlx::query("UPDATE bot_api_keys SET expires_at = $3 WHERE bot_id = $1 AND id = $2")
        .bind(bot.to_string())
        .bind(key.to_string())
        .bind(micros(expires_at))
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn delete_key(c: &mut Conn, bot: Uuid, key: ApiKeyId) -> Result<bool, Error> {
    let r = sqlx::query("DELETE FROM bot_api_keys WHERE bot_id = $1 AND id = $2")
        .bind(bot.to_string())
        .bind(key.to_string())
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// The bot behind a key hash: (key id, bot, expiry).
pub async fn find_key_owner_by_hash(
    c: &mut Conn,
    hash: &str,
) -> Result<Option<(ApiKeyId, ServiceAccountRow, Option<Time>)>, Error> {
    let cols = COLS
        .split(", ")
        .map(|c| format!("b.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(&format!(
        "SELECT k.id AS key_id, k.expires_at, {cols} FROM bot_api_keys k JOIN bots b ON b.id = k.bot_id \
         WHERE k.key_hash = $1"
    ))
    .bind(hash)
    .fetch_optional(&mut *c)
    .await?
    .map(|r| Ok((ApiKeyId(get_uuid(&r, "key_id")?), bot_from(&r)?, opt_time(r.try_get("expires_at")?))))
    .transpose()
}

/// The account's service account with this actor id.
pub async fn find_bot_by_actor(
    c: &mut Conn,
    account: AccountId,
    actor: Uuid,
) -> Result<Option<Uuid>, Error> {
    sqlx::query("SELECT id FROM bots WHERE account_id = $1 AND actor_id = $2")
        .bind(account.to_string())
        .bind(actor.to_string())
        .fetch_optional(&mut *c)
        .await?
        .map(|r| get_uuid(&r, "id"))
        .transpose()
}
