//! Users' own profiles and personal API keys.

use crate::app::App;
use crate::authz::Principal;
use crate::domain::audit::SYSTEM_CHAIN;
use crate::domain::{validate, ApiKeyCreated, ApiKeyId, ApiKeyInfo, Time, User, UserId};
use crate::services::audit::{self, NewEvent};
use crate::services::credentials::{generate_api_key, USER_KEY_PREFIX};
use crate::services::error::unique_or;
use crate::services::input::{double_option, page};
use crate::services::{Error, Result};
use crate::store;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

/// Users act on their own user record only (site admins may read any).
fn require_self(p: &Principal, user: UserId, allow_site_admin: bool) -> Result<()> {
    if !p.is_bot() && (p.user_id == user || (allow_site_admin && p.site_admin)) {
        Ok(())
    } else {
        Err(Error::not_found("user"))
    }
}

pub async fn read_user(app: &App, p: &Principal, user: UserId) -> Result<User> {
    require_self(p, user, true)?;
    let mut c = app.store.reader().await?;
    store::users::find_user_by_id(&mut c, user)
        .await?
        .ok_or_else(|| Error::not_found("user"))
}

/// `PATCH /api/users/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
    )]
    pub handle: Option<String>,
    #[schema(max_length = 100, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub first_name: Option<String>,
    #[schema(max_length = 100, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub last_name: Option<String>,
    /// Accepted only when it is the current address (a change goes through
    /// `POST …/email_change`); not part of the documented body.
    #[schema(ignore)]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(max_length = 200, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub location: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(max_length = 200, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub title: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(max_length = 200, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub image_location: Option<Option<String>>,
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
    /// Accepted for compatibility; the server records logins itself.
    pub last_login: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn update_user(app: &App, p: &Principal, user: UserId, u: UpdateUser) -> Result<()> {
    require_self(p, user, false)?;
    let v = |r: std::result::Result<String, String>| r.map_err(Error::Validation);
    let text_opt = |field: &str, o: &Option<Option<String>>| -> Result<Option<Option<String>>> {
        o.as_ref()
            .map(|inner| {
                inner
                    .as_deref()
                    .map(|s| validate::text(field, s, 200).map_err(Error::Validation))
                    .transpose()
            })
            .transpose()
    };
    if matches!(&u.settings, Some(s) if !s.is_object()) {
        return Err(Error::validation("settings must be an object"));
    }
    let mut u = u;
    if let Some(e) = u.email.take() {
        let current = read_user(app, p, user).await?.email;
        if !e.trim().eq_ignore_ascii_case(&current) {
            return Err(Error::validation(format!(
                "changing your email needs your password and a confirmation from the new address: POST /api/users/{user}/email_change"
            )));
        }
    }
    let patch = store::users::UserPatch {
        handle: u
            .handle
            .as_deref()
            .map(validate::handle)
            .map(v)
            .transpose()?,
        first_name: u
            .first_name
            .as_deref()
            .map(|s| validate::text("first_name", s, 100))
            .map(v)
            .transpose()?,
        last_name: u
            .last_name
            .as_deref()
            .map(|s| validate::text("last_name", s, 100))
            .map(v)
            .transpose()?,
        email: u.email.as_deref().map(validate::email).map(v).transpose()?,
        location: text_opt("location", &u.location)?,
        title: text_opt("title", &u.title)?,
        image_location: text_opt("image_location", &u.image_location)?,
        settings: u.settings,
    };
    let mut tx = crate::services::unit::Unit::begin(app).await?;
    let before = store::users::find_user_by_id(&mut tx, user)
        .await?
        .ok_or_else(|| Error::not_found("user"))?;
    store::users::update_user(&mut tx, user, &patch, app.now())
        .await
        .map_err(|e| unique_or(e, "that handle or email is taken"))?;
    let after = store::users::find_user_by_id(&mut tx, user)
        .await?
        .ok_or_else(|| Error::not_found("user"))?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        SYSTEM_CHAIN,
        NewEvent::new("user", "updated", user.0)
            .name(after.email.clone())
            .payload(audit::changes(&before, &after)),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A key the Prefect CLI's browser login creates for the caller: a sign-in, so its lifetime is
/// bounded as a session's is by the caller's accounts' `auth_expiration_seconds`.
pub async fn create_login_key(
    app: &App,
    p: &Principal,
    mut k: CreateApiKey,
) -> Result<ApiKeyCreated> {
    if let Some(bound) = crate::services::auth::auth_lifetime_bound(app, p.user_id).await? {
        let latest = app.now() + bound;
        k.expiration = Some(k.expiration.map_or(latest, |e| e.min(latest)));
    }
    create_api_key(app, p, p.user_id, k).await
}

/// How long an email-change confirmation link works.
pub const EMAIL_CHANGE_TTL_SECONDS: i64 = 3600;

/// `POST /api/users/{id}/email_change` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestEmailChange {
    /// The new address; it receives the confirmation link.
    #[schema(
        max_length = 254,
        pattern = r"^\s*[^\s@\x00-\x1F\x7F-\x9F]+@[^\s@.\x00-\x1F\x7F-\x9F]+(\.[^\s@.\x00-\x1F\x7F-\x9F]+)+\s*$"
    )]
    pub email: String,
    /// Your current password (a key or a session alone cannot change where your account's mail
    /// goes).
    pub password: String,
}

/// Starts an email change: the caller proves who they are with their password, and the new
/// address proves it is theirs by following a single-use link (valid one hour) mailed to it. The
/// old address is told. Nothing changes until the link is followed.
pub async fn request_email_change(
    app: &App,
    p: &Principal,
    user: UserId,
    r: RequestEmailChange,
) -> Result<()> {
    require_self(p, user, false)?;
    let email = validate::email(&r.email).map_err(Error::Validation)?;
    let me = crate::services::auth::reauthenticate(app, p, r.password).await?;
    if email.eq_ignore_ascii_case(&me.email) {
        return Err(Error::validation("that is already your email address"));
    }
    let token = crate::services::credentials::random_base62(43);
    let now = app.now();
    let expires = now + chrono::Duration::seconds(EMAIL_CHANGE_TTL_SECONDS);
    let link = format!(
        "{}/my/email/confirm?token={token}",
        app.config.public_url.trim_end_matches('/')
    );
    let mut tx = crate::services::unit::Unit::begin(app).await?;
    store::users::insert_email_change(
        &mut tx,
        &crate::services::credentials::sha256_hex(&token),
        user,
        &email,
        expires,
        now,
    )
    .await?;
    crate::services::mail::enqueue(
        app,
        &mut tx,
        crate::services::mail::NewEmail::personal(
            &email,
            "Confirm your new email address for Atrium",
            format!(
                "Someone signed in as {old} asked to use this address for their Atrium user.\n\nTo confirm, open this link within an hour:\n{link}\n\nIf that was not you, ignore this message: nothing changes.\n",
                old = me.email
            ),
            maud::html! {
                p { "Someone signed in as " (me.email) " asked to use this address for their Atrium user." }
                p { a href=(link) { "Confirm the new address" } " (the link works once, for an hour)." }
                p { "If that was not you, ignore this message: nothing changes." }
            }
            .into_string(),
        ),
    )
    .await?;
    crate::services::mail::enqueue(
        app,
        &mut tx,
        crate::services::mail::NewEmail::personal(
            &me.email,
            "Your Atrium email address is about to change",
            format!(
                "A change of your Atrium user's email address to {email} was requested and confirmed with your password. It takes effect when the new address confirms it.\n\nIf that was not you, change your password and delete your API keys now.\n"
            ),
            maud::html! {
                p {
                    "A change of your Atrium user's email address to " strong { (email) }
                    " was requested and confirmed with your password. It takes effect when the new address confirms it."
                }
                p { "If that was not you, change your password and delete your API keys now." }
            }
            .into_string(),
        ),
    )
    .await?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        SYSTEM_CHAIN,
        NewEvent::new("user", "email-change-requested", user.0)
            .name(me.email.clone())
            .payload(json!({"new_email": email})),
    )
    .await?;
    tx.commit().await?;
    crate::services::mail::wake(app);
    Ok(())
}

/// `POST /api/auth/email_change/confirm` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmEmailChange {
    /// The token from the confirmation link.
    pub token: String,
}

/// Completes an email change with the token mailed to the new address (single use, expiring).
/// Needs no sign-in: the token is the proof.
pub async fn confirm_email_change(app: &App, c: ConfirmEmailChange) -> Result<User> {
    let gone =
        || Error::NotFound("this confirmation link was used, replaced or has expired".into());
    if c.token.len() != 43 || !c.token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(gone());
    }
    let now = app.now();
    let mut tx = crate::services::unit::Unit::begin(app).await?;
    let (user, email) = store::users::claim_email_change(
        &mut tx,
        &crate::services::credentials::sha256_hex(&c.token),
        now,
    )
    .await?
    .ok_or_else(gone)?;
    let before = store::users::find_user_by_id(&mut tx, user)
        .await?
        .ok_or_else(gone)?;
    let patch = store::users::UserPatch {
        email: Some(email.clone()),
        ..Default::default()
    };
    store::users::update_user(&mut tx, user, &patch, now)
        .await
        .map_err(|e| unique_or(e, "another user has that email address now"))?;
    let after = store::users::find_user_by_id(&mut tx, user)
        .await?
        .ok_or_else(gone)?;
    audit::record(
        app,
        &mut tx,
        None,
        SYSTEM_CHAIN,
        NewEvent::new("user", "email-changed", user.0)
            .name(after.email.clone())
            .payload(json!({"before": {"email": before.email}, "after": {"email": after.email}})),
    )
    .await?;
    tx.commit().await?;
    // Cached keys carry the email as the principal's name (audit records).
    app.keys.remove_user(user);
    Ok(after)
}

/// `DELETE /api/users/{id}`: a user deletes themselves (nobody else can: 404). They leave every
/// account they belong to — refused as a whole (409, nothing changed) when they are the last
/// active Owner of one — and their sessions and keys stop at once, on every server. The accounts
/// are locked in one order for the whole transaction, so two Owners leaving one account at the
/// same moment cannot both succeed.
pub async fn delete_user(app: &App, p: &Principal, user: UserId) -> Result<()> {
    require_self(p, user, false)?;
    let mut accounts: Vec<crate::domain::AccountId> = {
        let mut c = app.store.reader().await?;
        store::memberships::find_accounts_of_user(&mut c, user)
            .await?
            .into_iter()
            .map(|m| m.account_id)
            .collect()
    };
    accounts.sort();
    let mut tx = crate::services::unit::Unit::begin(app).await?;
    let engine = tx.engine();
    for a in &accounts {
        store::accounts::lock_account(&mut tx, engine, *a).await?;
    }
    let me = store::users::find_user_by_id(&mut tx, user)
        .await?
        .ok_or_else(|| Error::not_found("user"))?;
    for a in &accounts {
        if let Some(m) = store::memberships::find_membership_by_user(&mut tx, *a, user).await? {
            crate::services::memberships::remove_in(app, &mut tx, p, *a, &m, None)
                .await
                .map_err(|e| match e {
                    Error::Conflict(_) => Error::conflict(format!(
                        "you are the last active Owner of an account ({a}): make someone else Owner or delete the account first"
                    )),
                    e => e,
                })?;
        }
    }
    let keys = store::api_keys::find_api_keys_by_user(&mut tx, user, None, i64::MAX, 0).await?;
    for k in &keys {
        store::api_keys::notify_key_revoked(&mut tx, engine, k.id).await?;
    }
    store::users::delete_user(&mut tx, user).await?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        SYSTEM_CHAIN,
        NewEvent::new("user", "deleted", user.0)
            .name(me.email.clone())
            .payload(json!({"accounts_left": accounts})),
    )
    .await?;
    tx.commit().await?;
    app.keys.remove_user(user);
    Ok(())
}

/// Body of key creation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^\s*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    pub name: String,
    /// When the key stops working (RFC 3339); null = never.
    pub expiration: Option<chrono::DateTime<chrono::Utc>>,
}

pub async fn create_api_key(
    app: &App,
    p: &Principal,
    user: UserId,
    k: CreateApiKey,
) -> Result<ApiKeyCreated> {
    require_self(p, user, false)?;
    crate::services::sso::check_personal_key(app, p).await?;
    issue_api_key(app, Some(p), user, &k.name, k.expiration).await
}

/// Issues a key for `user` without an authorization check: for `create_api_key` above and the
/// operator CLI, which runs on the server's own machine.
pub async fn issue_api_key(
    app: &App,
    p: Option<&Principal>,
    user: UserId,
    name: &str,
    expiration: Option<Time>,
) -> Result<ApiKeyCreated> {
    let name = validate::name("name", name).map_err(Error::Validation)?;
    let now = app.now();
    if matches!(expiration, Some(t) if t <= now) {
        return Err(Error::validation("expiration must be in the future"));
    }
    let (key, hash, masked) = generate_api_key(USER_KEY_PREFIX);
    let id = ApiKeyId::new();
    let mut tx = crate::services::unit::Unit::begin(app).await?;
    store::users::find_user_by_id(&mut tx, user)
        .await?
        .ok_or_else(|| Error::not_found("user"))?;
    store::api_keys::insert_api_key(
        &mut tx,
        store::api_keys::NewApiKey {
            id,
            user_id: user,
            name: &name,
            key_hash: &hash,
            masked_key: &masked,
            expires_at: expiration,
        },
        now,
    )
    .await?;
    audit::record(
        app,
        &mut tx,
        p,
        SYSTEM_CHAIN,
        NewEvent::new("api-key", "created", id.0)
            .name(name.clone())
            .payload(json!({"user_id": user, "name": name, "expiration": expiration})),
    )
    .await?;
    tx.commit().await?;
    Ok(ApiKeyCreated {
        id,
        created: now,
        name,
        expiration,
        key,
    })
}

pub async fn list_api_keys(
    app: &App,
    p: &Principal,
    user: UserId,
    name: Option<&str>,
    limit: Option<i64>,
    offset: Option<i64>,
) -> Result<Vec<ApiKeyInfo>> {
    require_self(p, user, false)?;
    let (limit, offset) = page(limit, offset)?;
    let mut c = app.store.reader().await?;
    Ok(store::api_keys::find_api_keys_by_user(&mut c, user, name, limit, offset).await?)
}

pub async fn read_api_key(
    app: &App,
    p: &Principal,
    user: UserId,
    id: ApiKeyId,
) -> Result<ApiKeyInfo> {
    require_self(p, user, false)?;
    let mut c = app.store.reader().await?;
    store::api_keys::find_api_key(&mut c, user, id)
        .await?
        .ok_or_else(|| Error::not_found("API key"))
}

/// Deletes a key; the next request with it is refused (the cache entry goes too).
pub async fn delete_api_key(app: &App, p: &Principal, user: UserId, id: ApiKeyId) -> Result<()> {
    require_self(p, user, false)?;
    let mut tx = crate::services::unit::Unit::begin(app).await?;
    if !store::api_keys::delete_api_key(&mut tx, app.store.engine, user, id).await? {
        return Err(Error::not_found("API key"));
    }
    audit::record(
        app,
        &mut tx,
        Some(p),
        SYSTEM_CHAIN,
        NewEvent::new("api-key", "deleted", id.0).payload(json!({"user_id": user})),
    )
    .await?;
    tx.commit().await?;
    app.keys.remove_key(id);
    Ok(())
}
