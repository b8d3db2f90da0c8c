//! SCIM provisioning: per-account bearer tokens (SHA-256 only), the members of an account as SCIM
//! sees them (user fields with the membership's state and the IdP's externalId), and the marks
//! of what the identity provider manages.

use super::Error;
use super::{get_bool, get_uuid, micros, opt_time, time, AccessTx, Conn};
use crate::domain::{AccountId, Time, UserId};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: Uuid,
    pub account_id: AccountId,
    pub name: String,
    pub token_hash: String,
    pub masked: String,
    pub created_by: String,
    pub created: Time,
    pub expires_at: Option<Time>,
    pub last_used: Option<Time>,
}

const TOKEN_COLS: &str =
    "id, account_id, name, token_hash, masked, created_by, created, expires_at, last_used";

fn token_from(r: &AnyRow) -> Result<TokenRow, Error> {
    Ok(TokenRow {
        id: get_uuid(r, "id")?,
        account_id: AccountId(get_uuid(r, "account_id")?),
        name: r.try_get("name")?,
        token_hash: r.try_get("token_hash")?,
        masked: r.try_get("masked")?,
        created_by: r.try_get("created_by")?,
        created: time(r.try_get("created")?),
        expires_at: opt_time(r.try_get("expires_at")?),
        last_used: opt_time(r.try_get("last_used")?),
    })
}

pub async fn insert_token(c: &mut Conn, t: &TokenRow) -> Result<(), Error> {
    sqlx::query(&format!(
        "INSERT INTO scim_tokens ({TOKEN_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(t.id.to_string())
    .bind(t.account_id.to_string())
    .bind(&t.name)
    .bind(&t.token_hash)
    .bind(&t.masked)
    .bind(&t.created_by)
    .bind(micros(t.created))
    .bind(t.expires_at.map(micros))
    .bind(t.last_used.map(micros))
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn find_tokens(c: &mut Conn, account: AccountId) -> Result<Vec<TokenRow>, Error> {
    sqlx::query(&format!(
        "SELECT {TOKEN_COLS} FROM scim_tokens WHERE account_id = $1 ORDER BY created, id"
    ))
    .bind(account.to_string())
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(token_from)
    .collect()
}

/// The token with this hash, whatever its account (the caller compares the account).
pub async fn find_token_by_hash(c: &mut Conn, hash: &str) -> Result<Option<TokenRow>, Error> {
    sqlx::query(&format!(
        "SELECT {TOKEN_COLS} FROM scim_tokens WHERE token_hash = $1"
    ))
    .bind(hash)
    .fetch_optional(&mut *c)
    .await?
    .map(|r| token_from(&r))
    .transpose()
}

pub async fn delete_token(
    c: &mut Conn,
    account: AccountId,
    id: Uuid,
) -> Result<Option<TokenRow>, Error> {
    let found = sqlx::query(&format!(
        "SELECT {TOKEN_COLS} FROM scim_tokens WHERE account_id = $1 AND id = $2"
    ))
    .bind(account.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut *c)
    .await?
    .map(|r| token_from(&r))
    .transpose()?;
    if found.is_some() {
        sqlx::query("DELETE FROM scim_tokens WHERE account_id = $1 AND id = $2")
            .bind(account.to_string())
            .bind(id.to_string())
            .execute(&mut *c)
            .await?;
    }
    Ok(found)
}

/// Records a use (at most one write a minute per token: `before` is the last use to replace).
pub async fn touch_token(c: &mut Conn, id: Uuid, now: Time, before: Time) -> Result<(), Error> {
    sqlx::query(
        "UPDATE scim_tokens SET last_used = $2 WHERE id = $1 AND (last_used IS NULL OR last_used < $3)",
    )
    .bind(id.to_string())
    .bind(micros(now))
    .bind(micros(before))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// A member of the account as SCIM shows a User.
#[derive(Debug, Clone)]
pub struct ScimUserRow {
    pub user_id: UserId,
    /// The IdP's userName, or the email for members added by hand.
    pub user_name: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub active: bool,
    pub external_id: Option<String>,
    /// The attributes the IdP last sent that Atrium keeps as given (JSON object).
    pub attrs: Option<String>,
    pub synced: Option<Time>,
    /// The membership's creation, and the last change of the membership or the user.
    pub created: Time,
    pub updated: Time,
}

const USER_SELECT: &str = "SELECT m.user_id, COALESCE(m.scim_user_name, u.email) AS user_name, \
     u.email, u.first_name, u.last_name, m.active, m.scim_external_id, m.scim_attrs, \
     m.scim_synced, m.created, \
     CASE WHEN u.updated > m.updated THEN u.updated ELSE m.updated END AS updated \
     FROM account_memberships m JOIN users u ON u.id = m.user_id";

fn user_from(r: &AnyRow) -> Result<ScimUserRow, Error> {
    Ok(ScimUserRow {
        user_id: UserId(get_uuid(r, "user_id")?),
        user_name: r.try_get("user_name")?,
        email: r.try_get("email")?,
        first_name: r.try_get("first_name")?,
        last_name: r.try_get("last_name")?,
        active: get_bool(r, "active")?,
        external_id: r.try_get("scim_external_id")?,
        attrs: r.try_get("scim_attrs")?,
        synced: opt_time(r.try_get("scim_synced")?),
        created: time(r.try_get("created")?),
        updated: time(r.try_get("updated")?),
    })
}

/// Every member of the account, oldest first.
pub async fn find_users(c: &mut Conn, account: AccountId) -> Result<Vec<ScimUserRow>, Error> {
    sqlx::query(&format!(
        "{USER_SELECT} WHERE m.account_id = $1 ORDER BY m.created, m.user_id"
    ))
    .bind(account.to_string())
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(user_from)
    .collect()
}

/// The member whose userName is `name` (ignoring case; for members added by hand, their email).
pub async fn find_user_by_name(
    c: &mut Conn,
    account: AccountId,
    name: &str,
) -> Result<Option<ScimUserRow>, Error> {
    sqlx::query(&format!(
        "{USER_SELECT} WHERE m.account_id = $1 AND (m.scim_user_name_lower = $2 \
         OR (m.scim_user_name_lower IS NULL AND u.email_lower = $2)) ORDER BY m.created LIMIT 1"
    ))
    .bind(account.to_string())
    .bind(name.to_lowercase())
    .fetch_optional(&mut *c)
    .await?
    .map(|r| user_from(&r))
    .transpose()
}

pub async fn find_user(
    c: &mut Conn,
    account: AccountId,
    user: UserId,
) -> Result<Option<ScimUserRow>, Error> {
    sqlx::query(&format!(
        "{USER_SELECT} WHERE m.account_id = $1 AND m.user_id = $2"
    ))
    .bind(account.to_string())
    .bind(user.to_string())
    .fetch_optional(&mut *c)
    .await?
    .map(|r| user_from(&r))
    .transpose()
}

/// What SCIM keeps on a membership it manages.
pub struct ScimMark<'a> {
    pub user_name: &'a str,
    pub external_id: Option<&'a str>,
    pub attrs: &'a str,
}

/// Marks a membership as managed by the IdP (its userName, externalId and attributes, synced
/// now). A userName another member has already is refused by the database.
pub async fn mark_member(
    c: &mut AccessTx<'_>,
    account: AccountId,
    user: UserId,
    m: &ScimMark<'_>,
    now: Time,
) -> Result<(), Error> {
    let c: &mut Conn = c;
    sqlx::query(
        "UPDATE account_memberships SET scim_user_name = $3, scim_user_name_lower = $4, \
         scim_external_id = $5, scim_attrs = $6, scim_synced = $7, updated = $7 \
         WHERE account_id = $1 AND user_id = $2",
    )
    .bind(account.to_string())
    .bind(user.to_string())
    .bind(m.user_name)
    .bind(m.user_name.to_lowercase())
    .bind(m.external_id)
    .bind(m.attrs)
    .bind(micros(now))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Users of other accounts: how many accounts `user` belongs to besides `account`.
pub async fn count_other_memberships(
    c: &mut Conn,
    account: AccountId,
    user: UserId,
) -> Result<i64, Error> {
    let r = sqlx::query(
        "SELECT COUNT(*) AS n FROM account_memberships WHERE user_id = $1 AND account_id <> $2",
    )
    .bind(user.to_string())
    .bind(account.to_string())
    .fetch_one(&mut *c)
    .await?;
    Ok(r.try_get("n")?)
}
