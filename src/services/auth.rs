//! Authentication: bearer keys, sessions, sign-up, login, logout.

use crate::app::App;
use crate::authz::{Credential, Principal};
use crate::config::SignupPolicy;
use crate::domain::audit::SYSTEM_CHAIN;
use crate::domain::{validate, Time, User};
use crate::services::audit::{self, NewEvent};
use crate::services::credentials::{
    hex, random_base62, sha256, sha256_hex, well_formed_key, CachedKey, KEY_CACHE_TTL_US,
};
use crate::services::{Error, Result};
use crate::store;
use serde_json::json;

const BAD_KEY: &str = "invalid or expired API key";

/// Resolves `Authorization: Bearer <key>`. Malformed keys are refused before any lookup; a warm
/// key is answered from the cache.
pub async fn authenticate_key(app: &App, key: &str) -> Result<Principal> {
    if !well_formed_key(key) {
        return Err(Error::Unauthenticated(BAD_KEY.into()));
    }
    let digest = sha256(key);
    let now_us = app.now().timestamp_micros();
    let cached = match app.keys.get(&digest) {
        Some(k) if now_us - k.cached_at_us < KEY_CACHE_TTL_US => k,
        _ => {
            let mut c = app.store.reader().await?;
            let k = if key.starts_with(crate::services::credentials::BOT_KEY_PREFIX) {
                let (key_id, bot, expires_at) =
                    store::service_accounts::find_key_owner_by_hash(&mut c, &hex(&digest))
                        .await?
                        .ok_or_else(|| Error::Unauthenticated(BAD_KEY.into()))?;
                CachedKey {
                    key_id,
                    user_id: crate::domain::UserId(bot.id.0),
                    expires_at_us: expires_at.map_or(i64::MAX, |t| t.timestamp_micros()),
                    site_admin: false,
                    name: bot.name.into(),
                    bot_account: Some(bot.account_id),
                    cached_at_us: now_us,
                }
            } else {
                let owner = store::api_keys::find_key_owner_by_hash(&mut c, &hex(&digest))
                    .await?
                    .ok_or_else(|| Error::Unauthenticated(BAD_KEY.into()))?;
                CachedKey {
                    key_id: owner.key_id,
                    user_id: owner.user_id,
                    expires_at_us: owner.expires_at.map_or(i64::MAX, |t| t.timestamp_micros()),
                    site_admin: owner.site_admin,
                    name: owner.email.into(),
                    bot_account: None,
                    cached_at_us: now_us,
                }
            };
            app.keys.insert(digest, k.clone());
            k
        }
    };
    if cached.expires_at_us <= now_us {
        return Err(Error::Unauthenticated(BAD_KEY.into()));
    }
    app.keys.mark_used(cached.key_id);
    Ok(Principal {
        user_id: cached.user_id,
        name: cached.name.to_string(),
        ip: None,
        user_agent: None,
        bot_account: cached.bot_account,
        site_admin: cached.site_admin,
        credential: Credential::ApiKey {
            key_id: cached.key_id,
        },
    })
}

/// Resolves a session cookie value.
pub async fn authenticate_session(app: &App, session_id: &str) -> Result<Principal> {
    let hash = sha256_hex(session_id);
    let mut c = app.store.reader().await?;
    let user = store::users::find_session_user(&mut c, &hash, app.now())
        .await?
        .ok_or_else(|| Error::Unauthenticated("session expired or signed out".into()))?;
    Ok(Principal {
        user_id: user.id,
        name: user.email,
        ip: None,
        user_agent: None,
        bot_account: None,
        site_admin: user.site_admin,
        credential: Credential::Session { id_hash: hash },
    })
}

/// Input of sign-up (API and CLI).
pub struct Signup {
    pub email: String,
    pub password: String,
    pub handle: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// Creates a user with a password. `site_admin` only from the CLI or the first-run setup.
pub async fn create_user(app: &App, s: Signup, site_admin: bool) -> Result<User> {
    let email = validate::email(&s.email).map_err(Error::Validation)?;
    validate::password(&s.password).map_err(Error::Validation)?;
    let handle = match &s.handle {
        Some(h) => validate::handle(h).map_err(Error::Validation)?,
        None => validate::handle_from_email(&email),
    };
    let first = s
        .first_name
        .as_deref()
        .map(|n| validate::text("first_name", n, 100))
        .transpose()
        .map_err(Error::Validation)?;
    let last = s
        .last_name
        .as_deref()
        .map(|n| validate::text("last_name", n, 100))
        .transpose()
        .map_err(Error::Validation)?;
    let hash = app
        .hasher
        .hash(s.password)
        .await
        .map_err(Error::Unexpected)?;
    let now = app.now();
    let mut tx = crate::services::unit::Unit::begin(app).await?;
    if store::users::find_user_by_email(&mut tx, &email)
        .await?
        .is_some()
    {
        return Err(Error::conflict("a user with this email already exists"));
    }
    let chosen = s.handle.is_some();
    let handle = unique_handle(&mut tx, handle, chosen).await?;
    let user = store::users::insert_user(
        &mut tx,
        store::users::NewUser {
            email: &email,
            handle: &handle,
            first_name: first.as_deref().unwrap_or(""),
            last_name: last.as_deref().unwrap_or(""),
            password_hash: Some(&hash),
            site_admin,
        },
        now,
    )
    .await
    .map_err(|e| {
        crate::services::error::unique_or(e, "a user with this email or handle already exists")
    })?;
    audit::record(
        app,
        &mut tx,
        None,
        SYSTEM_CHAIN,
        NewEvent::new("user", "created", user.id.0)
            .name(user.email.clone())
            .payload(json!({"email": user.email, "handle": user.handle, "site_admin": site_admin})),
    )
    .await?;
    tx.commit().await?;
    Ok(user)
}

/// A user without a password — they sign in through an identity provider (or set one with a
/// reset) — made inside `c` by an identity provider (`via`: `sso`, `scim`), with a free handle
/// derived from the address; answers the user and the `user.created` audit event to record
/// (`extra` fields join its payload).
pub(crate) async fn insert_passwordless_user(
    c: &mut store::Conn,
    email: &str,
    first_name: &str,
    last_name: &str,
    now: chrono::DateTime<chrono::Utc>,
    via: &str,
    extra: serde_json::Map<String, serde_json::Value>,
) -> Result<(crate::domain::User, NewEvent)> {
    let handle = unique_handle(c, crate::domain::validate::handle_from_email(email), false).await?;
    let u = store::users::insert_user(
        c,
        store::users::NewUser {
            email,
            handle: &handle,
            first_name,
            last_name,
            password_hash: None,
            site_admin: false,
        },
        now,
    )
    .await
    .map_err(|e| crate::services::error::unique_or(e, "a user with this email exists"))?;
    let mut payload = extra;
    payload.insert("email".into(), json!(u.email));
    payload.insert("via".into(), json!(via));
    let e = NewEvent::new("user", "created", u.id.0)
        .name(u.email.clone())
        .payload(serde_json::Value::Object(payload));
    Ok((u, e))
}

/// A chosen handle must be free; a derived one gets a numeric suffix until it is.
async fn unique_handle(c: &mut store::Conn, base: String, chosen: bool) -> Result<String> {
    for n in 0..100 {
        let h = if n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        if !store::users::handle_taken(c, &h).await? {
            return Ok(h);
        }
        if chosen {
            return Err(Error::conflict(format!("handle {h:?} is taken")));
        }
    }
    Ok(format!("{base}-{}", random_base62(6).to_lowercase()))
}

/// Sign-up through the API, honouring the sign-up policy. With an invitation (`id`, `code`) sign-up
/// is allowed in `invite-only` mode for the invited email only, and the invitation is accepted
/// right away.
pub async fn signup(
    app: &App,
    s: Signup,
    invitation: Option<(uuid::Uuid, String)>,
) -> Result<User> {
    let Some((id, code)) = invitation else {
        if app.config.signup_policy == SignupPolicy::InviteOnly {
            return Err(Error::Forbidden(
                "sign-up is by invitation only on this server".into(),
            ));
        }
        return create_user(app, s, false).await;
    };
    let (inv, _) = crate::services::invitations::find_open(app, id, &code).await?;
    if !inv.email.eq_ignore_ascii_case(s.email.trim()) {
        return Err(Error::Forbidden(
            "sign up with the email address the invitation was sent to".into(),
        ));
    }
    let user = create_user(app, s, false).await?;
    let p = Principal {
        user_id: user.id,
        name: user.email.clone(),
        site_admin: false,
        credential: Credential::Cli,
        ip: None,
        user_agent: None,
        bot_account: None,
    };
    crate::services::invitations::accept(app, &p, id, &code).await?;
    Ok(user)
}

/// A new session: (cookie value, expiry).
pub struct NewSession {
    pub id: String,
    pub expires_at: Time,
    pub user: User,
}

const BAD_LOGIN: &str = "invalid email or password";

/// Writes the last-used time of the keys used since the previous flush.
pub async fn flush_key_use(app: &App) -> Result<()> {
    let used = app.keys.take_used();
    if used.is_empty() {
        return Ok(());
    }
    let mut tx = crate::services::unit::Unit::begin(app).await?;
    store::api_keys::update_last_used(&mut tx, &used, app.now()).await?;
    tx.commit().await?;
    Ok(())
}

/// Failed logins allowed from one client address for one email address, and from one client
/// address in all, in [`THROTTLE_WINDOW_US`].
pub const MAX_FAILURES_PER_ADDRESS_AND_EMAIL: u32 = 10;
pub const MAX_FAILURES_PER_ADDRESS: u32 = 50;
pub const THROTTLE_WINDOW_US: i64 = 15 * 60 * 1_000_000;

/// In-memory counters of login attempts that have not succeeded, per client address and per
/// (client address, email) — never per email alone, so that a stranger's failures cannot lock the
/// user out: the right password from an address with no failures always gets in. An attempt is
/// counted (reserved) before its password is checked, so parallel guesses cannot slip past the
/// limit while the slow hash runs; a success gives its reservation back. Per process: a node
/// that restarts forgets them, which only ever relaxes the limit.
#[derive(Default)]
pub struct LoginThrottle {
    attempts: std::sync::Mutex<rustc_hash::FxHashMap<String, (u32, i64)>>,
}

impl LoginThrottle {
    /// Counts one attempt under each `(key, limit)`, all or none: refused with the longest wait
    /// when any key is at its limit in the current window.
    fn reserve(&self, keys: &[(&str, u32)], now_us: i64) -> Result<()> {
        let mut map = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (_, start)| now_us - *start < THROTTLE_WINDOW_US);
        }
        let mut retry = 0;
        for (key, max) in keys {
            if let Some((count, start)) = map.get(*key) {
                if now_us - start < THROTTLE_WINDOW_US && count >= max {
                    retry = retry.max((start + THROTTLE_WINDOW_US - now_us) / 1_000_000 + 1);
                }
            }
        }
        if retry > 0 {
            return Err(Error::RateLimited {
                retry_after_secs: retry.max(1) as u64,
            });
        }
        for (key, _) in keys {
            let e = map.entry((*key).to_string()).or_insert((0, now_us));
            if now_us - e.1 >= THROTTLE_WINDOW_US {
                *e = (0, now_us);
            }
            e.0 += 1;
        }
        Ok(())
    }

    /// Forgets every attempt under `key` (the password was right: earlier typos are forgiven).
    fn clear(&self, key: &str) {
        self.attempts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// Gives back one reserved attempt (the password was right).
    fn release(&self, key: &str) {
        let mut map = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(key) {
            e.0 = e.0.saturating_sub(1);
            if e.0 == 0 {
                map.remove(key);
            }
        }
    }
}

/// Verifies a password and opens a fresh session (a new id at every login). Unknown email and
/// wrong password give the same answer after the same work. Attempts are throttled per client
/// address and per (client address, email) — see [`LoginThrottle`].
pub async fn login(
    app: &App,
    email: &str,
    password: String,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> Result<NewSession> {
    let now_us = app.now().timestamp_micros();
    let address = ip.unwrap_or("unknown");
    let address_key = format!("ip:{address}");
    let pair_key = format!("ip+email:{address} {}", email.to_lowercase());
    app.throttle.reserve(
        &[
            (&address_key, MAX_FAILURES_PER_ADDRESS),
            (&pair_key, MAX_FAILURES_PER_ADDRESS_AND_EMAIL),
        ],
        now_us,
    )?;
    let found = {
        let mut c = app.store.reader().await?;
        store::users::find_credentials_by_email(&mut c, email).await?
    };
    let (user, hash) = match found {
        Some((u, h)) => (Some(u), h),
        None => (None, None),
    };
    let ok = app
        .hasher
        .verify(password, hash)
        .await
        .map_err(Error::Unexpected)?;
    let user = match (ok, user) {
        (true, Some(u)) => u,
        (_, who) => {
            let subject = who.as_ref().map_or(uuid::Uuid::nil(), |u| u.id.0);
            let mut e = NewEvent::new("user", "login-failed", subject)
                .payload(json!({"email": email.to_lowercase()}));
            e.resource_name = who.map(|u| u.email);
            let client = Principal::anonymous(ip, user_agent);
            audit::record_refusal(app, &client, SYSTEM_CHAIN, e);
            return Err(Error::Unauthenticated(BAD_LOGIN.into()));
        }
    };
    app.throttle.release(&address_key);
    app.throttle.clear(&pair_key);
    crate::services::sso::check_password_sign_in(app, &user, ip).await?;
    start_session(app, &user, ip, user_agent, "password").await
}

/// A new session for `user` (signed in by password, or by an account's identity provider):
/// lives the server's session lifetime, bounded by the `auth_expiration_seconds` of the accounts
/// they belong to; audited as `logged-in` with how.
pub async fn start_session(
    app: &App,
    user: &User,
    ip: Option<&str>,
    user_agent: Option<&str>,
    how: &str,
) -> Result<NewSession> {
    let now = app.now();
    let id = random_base62(43);
    let mut ttl = chrono::Duration::seconds(app.config.session_ttl_seconds);
    if let Some(bound) = auth_lifetime_bound(app, user.id).await? {
        ttl = ttl.min(bound);
    }
    let expires_at = now + ttl;
    let mut tx = crate::services::unit::Unit::begin(app).await?;
    store::users::insert_session(
        &mut tx,
        &sha256_hex(&id),
        user.id,
        now,
        expires_at,
        ip,
        user_agent,
    )
    .await?;
    store::users::update_last_login(&mut tx, user.id, now).await?;
    let me = Principal {
        user_id: user.id,
        name: user.email.clone(),
        site_admin: user.site_admin,
        credential: Credential::Session {
            id_hash: String::new(),
        },
        ip: ip.map(str::to_string),
        user_agent: user_agent.map(str::to_string),
        bot_account: None,
    };
    audit::record(
        app,
        &mut tx,
        Some(&me),
        SYSTEM_CHAIN,
        NewEvent::new("user", "logged-in", user.id.0)
            .name(user.email.clone())
            .payload(json!({"with": how})),
    )
    .await?;
    tx.commit().await?;
    Ok(NewSession {
        id,
        expires_at,
        user: user.clone(),
    })
}

/// The longest a credential issued to `user` by signing in may live: the shortest
/// `auth_expiration_seconds` of the accounts they are an active member of (`None`: no bound
/// beyond the server's own). Applies to dashboard and API sessions and to keys made by the
/// Prefect CLI's browser login, when they are created.
pub async fn auth_lifetime_bound(
    app: &App,
    user: crate::domain::UserId,
) -> Result<Option<chrono::Duration>> {
    let mut c = app.store.reader().await?;
    Ok(store::accounts::find_auth_bound_for_user(&mut c, user)
        .await?
        .map(chrono::Duration::seconds))
}

/// Wrong passwords allowed per user in [`THROTTLE_WINDOW_US`] when confirming a sensitive change.
pub const MAX_REAUTH_FAILURES: u32 = 10;

/// Asks the caller to prove, with their password, that they are the user and not someone holding
/// their key or an unattended session — before a change that could take the user over (their
/// email address). Throttled per user as sign-in is. Users without a password cannot pass.
pub async fn reauthenticate(app: &App, p: &Principal, password: String) -> Result<User> {
    let now_us = app.now().timestamp_micros();
    let key = format!("reauth:{}", p.user_id);
    app.throttle
        .reserve(&[(&key, MAX_REAUTH_FAILURES)], now_us)?;
    let user = {
        let mut c = app.store.reader().await?;
        store::users::find_user_by_id(&mut c, p.user_id)
            .await?
            .ok_or_else(|| Error::not_found("user"))?
    };
    let hash = {
        let mut c = app.store.reader().await?;
        store::users::find_credentials_by_email(&mut c, &user.email)
            .await?
            .and_then(|(_, h)| h)
    };
    let has_password = hash.is_some();
    let ok = app
        .hasher
        .verify(password, hash)
        .await
        .map_err(Error::Unexpected)?;
    if !ok {
        let e = NewEvent::new("user", "reauthentication-failed", p.user_id.0).name(user.email);
        audit::record_refusal(app, p, SYSTEM_CHAIN, e);
        return Err(Error::Forbidden(if has_password {
            "the password is not right".into()
        } else {
            "this user has no password to confirm the change with".into()
        }));
    }
    app.throttle.clear(&key);
    Ok(user)
}

/// Ends the caller's session (no-op for key callers).
pub async fn logout(app: &App, p: &Principal) -> Result<()> {
    if let Credential::Session { id_hash } = &p.credential {
        let mut tx = crate::services::unit::Unit::begin(app).await?;
        store::users::delete_session(&mut tx, id_hash).await?;
        audit::record(
            app,
            &mut tx,
            Some(p),
            SYSTEM_CHAIN,
            NewEvent::new("user", "logged-out", p.user_id.0).name(p.name.clone()),
        )
        .await?;
        tx.commit().await?;
    }
    Ok(())
}
