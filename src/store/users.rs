//! Users and sessions.

use super::Error;
use super::{get_bool, get_uuid, micros, opt_time, time, Conn};
use crate::domain::{ActorId, Time, User, UserId};
use sqlx::any::AnyRow;
use sqlx::Row;

const USER_COLS: &str = "id, actor_id, email, handle, first_name, last_name, location, title, \
     image_location, settings, site_admin, last_login, created, updated";

fn user_from(row: &AnyRow) -> Result<User, Error> {
    let settings: String = row.try_get("settings")?;
    Ok(User {
        id: UserId(get_uuid(row, "id")?),
        actor_id: ActorId(get_uuid(row, "actor_id")?),
        email: row.try_get("email")?,
        handle: row.try_get("handle")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        location: row.try_get("location")?,
        title: row.try_get("title")?,
        image_location: row.try_get("image_location")?,
        idp_user_id: None,
        personal_account_id: None,
        settings: serde_json::from_str(&settings).unwrap_or_else(|_| serde_json::json!({})),
        site_admin: get_bool(row, "site_admin")?,
        last_login: opt_time(row.try_get("last_login")?),
        created: time(row.try_get("created")?),
        updated: time(row.try_get("updated")?),
    })
}

/// Fields of a new user.
pub struct NewUser<'a> {
    pub email: &'a str,
    pub handle: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub password_hash: Option<&'a str>,
    pub site_admin: bool,
}

pub async fn insert_user(c: &mut Conn, u: NewUser<'_>, now: Time) -> Result<User, Error> {
    let id = UserId::new();
    sqlx::query(
        "INSERT INTO users (id, actor_id, email, email_lower, handle, first_name, last_name, \
         settings, password_hash, site_admin, created, updated) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
    )
    .bind(id.to_string())
    .bind(ActorId::new().to_string())
    .bind(u.email)
    .bind(u.email.to_lowercase())
    .bind(u.handle)
    .bind(u.first_name)
    .bind(u.last_name)
    .bind(r#"{"tutorial_completed":false,"feature_previews":[]}"#)
    .bind(u.password_hash)
    .bind(i64::from(u.site_admin))
    .bind(micros(now))
    .execute(&mut *c)
    .await?;
    Ok(find_user_by_id(c, id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?)
}

pub async fn find_user_by_id(c: &mut Conn, id: UserId) -> Result<Option<User>, Error> {
    sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(&mut *c)
        .await?
        .map(|r| user_from(&r))
        .transpose()
}

pub async fn find_user_by_email(c: &mut Conn, email: &str) -> Result<Option<User>, Error> {
    sqlx::query(&format!(
        "SELECT {USER_COLS} FROM users WHERE email_lower = $1"
    ))
    .bind(email.to_lowercase())
    .fetch_optional(&mut *c)
    .await?
    .map(|r| user_from(&r))
    .transpose()
}

/// The user and their password hash, for login.
pub async fn find_credentials_by_email(
    c: &mut Conn,
    email: &str,
) -> Result<Option<(User, Option<String>)>, Error> {
    let row = sqlx::query(&format!(
        "SELECT {USER_COLS}, password_hash FROM users WHERE email_lower = $1"
    ))
    .bind(email.to_lowercase())
    .fetch_optional(&mut *c)
    .await?;
    row.map(|r| Ok((user_from(&r)?, r.try_get("password_hash")?)))
        .transpose()
}

pub async fn count_users(c: &mut Conn) -> Result<i64, Error> {
    Ok(sqlx::query("SELECT COUNT(*) AS n FROM users")
        .fetch_one(&mut *c)
        .await?
        .try_get("n")?)
}

/// Profile changes; `None` leaves a field as it is.
#[derive(Default)]
pub struct UserPatch {
    pub handle: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub location: Option<Option<String>>,
    pub title: Option<Option<String>>,
    pub image_location: Option<Option<String>>,
    pub settings: Option<serde_json::Value>,
}

pub async fn update_user(c: &mut Conn, id: UserId, p: &UserPatch, now: Time) -> Result<(), Error> {
    let (loc_set, loc) = split(&p.location);
    let (title_set, title) = split(&p.title);
    let (img_set, img) = split(&p.image_location);
    sqlx::query(
        "UPDATE users SET \
           handle = COALESCE($2, handle), \
           first_name = COALESCE($3, first_name), \
           last_name = COALESCE($4, last_name), \
           email = COALESCE($5, email), \
           email_lower = COALESCE($6, email_lower), \
           location = CASE WHEN $7 = 1 THEN $8 ELSE location END, \
           title = CASE WHEN $9 = 1 THEN $10 ELSE title END, \
           image_location = CASE WHEN $11 = 1 THEN $12 ELSE image_location END, \
           settings = COALESCE($13, settings), \
           updated = $14 \
         WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(p.handle.clone())
    .bind(p.first_name.clone())
    .bind(p.last_name.clone())
    .bind(p.email.clone())
    .bind(p.email.as_ref().map(|e| e.to_lowercase()))
    .bind(loc_set)
    .bind(loc)
    .bind(title_set)
    .bind(title)
    .bind(img_set)
    .bind(img)
    .bind(p.settings.as_ref().map(|s| s.to_string()))
    .bind(micros(now))
    .execute(&mut *c)
    .await?;
    Ok(())
}

fn split(v: &Option<Option<String>>) -> (i64, Option<String>) {
    match v {
        Some(inner) => (1, inner.clone()),
        None => (0, None),
    }
}

pub async fn update_last_login(c: &mut Conn, id: UserId, now: Time) -> Result<(), Error> {
    sqlx::query("UPDATE users SET last_login = $2 WHERE id = $1")
        .bind(id.to_string())
        .bind(micros(now))
        .execute(&mut *c)
        .await?;
    Ok(())
}

// ---- sessions ----

pub async fn insert_session(
    c: &mut Conn,
    id_hash: &str,
    user: UserId,
    now: Time,
    expires_at: Time,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO sessions (id_hash, user_id, created, expires_at, ip_address, user_agent) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id_hash)
    .bind(user.to_string())
    .bind(micros(now))
    .bind(micros(expires_at))
    .bind(ip)
    .bind(user_agent)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// The user of a live session.
pub async fn find_session_user(
    c: &mut Conn,
    id_hash: &str,
    now: Time,
) -> Result<Option<User>, Error> {
    let cols = USER_COLS
        .split(", ")
        .map(|c| format!("u.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(&format!(
        "SELECT {cols} FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.id_hash = $1 AND s.expires_at > $2"
    ))
    .bind(id_hash)
    .bind(micros(now))
    .fetch_optional(&mut *c)
    .await?
    .map(|r| user_from(&r))
    .transpose()
}

pub async fn delete_session(c: &mut Conn, id_hash: &str) -> Result<(), Error> {
    sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
        .bind(id_hash)
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn handle_taken(c: &mut Conn, handle: &str) -> Result<bool, Error> {
    Ok(sqlx::query("SELECT id FROM users WHERE handle = $1")
        .bind(handle)
        .fetch_optional(&mut *c)
        .await?
        .is_some())
}

/// The user with this actor id.
pub async fn find_user_by_actor(c: &mut Conn, actor: uuid::Uuid) -> Result<Option<UserId>, Error> {
    sqlx::query("SELECT id FROM users WHERE actor_id = $1")
        .bind(actor.to_string())
        .fetch_optional(&mut *c)
        .await?
        .map(|r| get_uuid(&r, "id").map(UserId))
        .transpose()
}

/// The user with this handle.
pub async fn find_user_id_by_handle(c: &mut Conn, handle: &str) -> Result<Option<UserId>, Error> {
    sqlx::query("SELECT id FROM users WHERE handle = $1")
        .bind(handle)
        .fetch_optional(&mut *c)
        .await?
        .map(|r| get_uuid(&r, "id").map(UserId))
        .transpose()
}

/// Records a pending email change (replacing the user's earlier one).
pub async fn insert_email_change(
    c: &mut Conn,
    token_hash: &str,
    user: UserId,
    new_email: &str,
    expires_at: Time,
    now: Time,
) -> Result<(), Error> {
    sqlx::query("DELETE FROM email_changes WHERE user_id = $1")
        .bind(user.to_string())
        .execute(&mut *c)
        .await?;
    sqlx::query(
        "INSERT INTO email_changes (token_hash, user_id, new_email, expires_at, created) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(user.to_string())
    .bind(new_email)
    .bind(micros(expires_at))
    .bind(micros(now))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Claims a pending email change by its token hash: deleted and returned in one statement, so a
/// token works once even under concurrent use; `None` when unknown or expired.
pub async fn claim_email_change(
    c: &mut Conn,
    token_hash: &str,
    now: Time,
) -> Result<Option<(UserId, String)>, Error> {
    sqlx::query(
        "DELETE FROM email_changes WHERE token_hash = $1 AND expires_at > $2 \
         RETURNING user_id, new_email",
    )
    .bind(token_hash)
    .bind(micros(now))
    .fetch_optional(&mut *c)
    .await?
    .map(|r| Ok((UserId(get_uuid(&r, "user_id")?), r.try_get("new_email")?)))
    .transpose()
}

/// Deletes a user; their credentials, sessions, personal keys and pending email change go with
/// them (foreign keys). Their memberships must have been removed first (audited per account).
pub async fn delete_user(c: &mut Conn, id: UserId) -> Result<bool, Error> {
    let r = sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id.to_string())
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected() > 0)
}
