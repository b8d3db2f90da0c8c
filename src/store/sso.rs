//! Single sign-on: identity providers, domains, group mappings and sign-ins in flight.

use super::Error;
use super::{get_uuid, micros, opt_time, time, Conn};
use crate::domain::{AccountId, TeamId, Time};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

/// An identity provider as stored (the client secret sealed).
#[derive(Debug, Clone)]
pub struct ProviderRow {
    pub id: Uuid,
    pub account_id: AccountId,
    pub kind: String,
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret_enc: String,
    pub scopes: String,
    pub email_claim: String,
    pub name_claim: String,
    pub groups_claim: String,
    pub enabled: bool,
    pub created: Time,
    pub updated: Time,
    /// SAML: the IdP's metadata XML, the URL it came from (if any), IdP-initiated sign-in allowed.
    pub metadata_xml: String,
    pub metadata_url: String,
    pub idp_initiated: bool,
}

const PROVIDER_COLS: &str =
    "id, account_id, kind, name, issuer, client_id, client_secret_enc, scopes, \
     email_claim, name_claim, groups_claim, enabled, created, updated, metadata_xml, metadata_url, idp_initiated";

fn provider_from(r: &AnyRow) -> Result<ProviderRow, Error> {
    Ok(ProviderRow {
        id: get_uuid(r, "id")?,
        account_id: AccountId(get_uuid(r, "account_id")?),
        kind: r.try_get("kind")?,
        name: r.try_get("name")?,
        issuer: r.try_get("issuer")?,
        client_id: r.try_get("client_id")?,
        client_secret_enc: r.try_get("client_secret_enc")?,
        scopes: r.try_get("scopes")?,
        email_claim: r.try_get("email_claim")?,
        name_claim: r.try_get("name_claim")?,
        groups_claim: r.try_get("groups_claim")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        created: time(r.try_get("created")?),
        updated: time(r.try_get("updated")?),
        metadata_xml: r.try_get("metadata_xml")?,
        metadata_url: r.try_get("metadata_url")?,
        idp_initiated: r.try_get::<i64, _>("idp_initiated")? != 0,
    })
}

/// Inserts or replaces (same id) a provider.
pub async fn save_provider(c: &mut Conn, p: &ProviderRow) -> Result<(), Error> {
    sqlx::query(&format!(
        "INSERT INTO sso_providers ({PROVIDER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         ON CONFLICT (id) DO UPDATE SET name = $4, issuer = $5, client_id = $6, client_secret_enc = $7, scopes = $8, \
         email_claim = $9, name_claim = $10, groups_claim = $11, enabled = $12, updated = $14, \
         metadata_xml = $15, metadata_url = $16, idp_initiated = $17"
    ))
    .bind(p.id.to_string())
    .bind(p.account_id.to_string())
    .bind(&p.kind)
    .bind(&p.name)
    .bind(&p.issuer)
    .bind(&p.client_id)
    .bind(&p.client_secret_enc)
    .bind(&p.scopes)
    .bind(&p.email_claim)
    .bind(&p.name_claim)
    .bind(&p.groups_claim)
    .bind(i64::from(p.enabled))
    .bind(micros(p.created))
    .bind(micros(p.updated))
    .bind(&p.metadata_xml)
    .bind(&p.metadata_url)
    .bind(i64::from(p.idp_initiated))
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn find_provider(
    c: &mut Conn,
    account: AccountId,
    id: Uuid,
) -> Result<Option<ProviderRow>, Error> {
    sqlx::query(&format!(
        "SELECT {PROVIDER_COLS} FROM sso_providers WHERE account_id = $1 AND id = $2"
    ))
    .bind(account.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut *c)
    .await?
    .map(|r| provider_from(&r))
    .transpose()
}

/// A provider by id alone (an IdP's answer names only its sign-in attempt).
pub async fn find_provider_by_id(c: &mut Conn, id: Uuid) -> Result<Option<ProviderRow>, Error> {
    sqlx::query(&format!(
        "SELECT {PROVIDER_COLS} FROM sso_providers WHERE id = $1"
    ))
    .bind(id.to_string())
    .fetch_optional(&mut *c)
    .await?
    .map(|r| provider_from(&r))
    .transpose()
}

pub async fn find_providers(c: &mut Conn, account: AccountId) -> Result<Vec<ProviderRow>, Error> {
    sqlx::query(&format!(
        "SELECT {PROVIDER_COLS} FROM sso_providers WHERE account_id = $1 ORDER BY name, id"
    ))
    .bind(account.to_string())
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(provider_from)
    .collect()
}

pub async fn delete_provider(c: &mut Conn, account: AccountId, id: Uuid) -> Result<bool, Error> {
    let r = sqlx::query("DELETE FROM sso_providers WHERE account_id = $1 AND id = $2")
        .bind(account.to_string())
        .bind(id.to_string())
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected() > 0)
}

// ---- domains ----

#[derive(Debug, Clone)]
pub struct DomainRow {
    pub id: Uuid,
    pub account_id: AccountId,
    pub domain: String,
    pub token: String,
    pub verified_at: Option<Time>,
    pub checked_at: Option<Time>,
    pub failing_since: Option<Time>,
    pub created: Time,
}

const DOMAIN_COLS: &str =
    "id, account_id, domain, token, verified_at, checked_at, failing_since, created";

fn domain_from(r: &AnyRow) -> Result<DomainRow, Error> {
    Ok(DomainRow {
        id: get_uuid(r, "id")?,
        account_id: AccountId(get_uuid(r, "account_id")?),
        domain: r.try_get("domain")?,
        token: r.try_get("token")?,
        verified_at: opt_time(r.try_get("verified_at")?),
        checked_at: opt_time(r.try_get("checked_at")?),
        failing_since: opt_time(r.try_get("failing_since")?),
        created: time(r.try_get("created")?),
    })
}

pub async fn insert_domain(c: &mut Conn, d: &DomainRow) -> Result<(), Error> {
    sqlx::query(&format!(
        "INSERT INTO sso_domains ({DOMAIN_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(d.id.to_string())
    .bind(d.account_id.to_string())
    .bind(&d.domain)
    .bind(&d.token)
    .bind(d.verified_at.map(micros))
    .bind(d.checked_at.map(micros))
    .bind(d.failing_since.map(micros))
    .bind(micros(d.created))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Records a check's outcome: verified since, last checked, failing since.
pub async fn update_domain_state(c: &mut Conn, d: &DomainRow) -> Result<(), Error> {
    sqlx::query(
        "UPDATE sso_domains SET verified_at = $3, checked_at = $4, failing_since = $5 \
         WHERE account_id = $1 AND id = $2",
    )
    .bind(d.account_id.to_string())
    .bind(d.id.to_string())
    .bind(d.verified_at.map(micros))
    .bind(d.checked_at.map(micros))
    .bind(d.failing_since.map(micros))
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn find_domains(c: &mut Conn, account: AccountId) -> Result<Vec<DomainRow>, Error> {
    sqlx::query(&format!(
        "SELECT {DOMAIN_COLS} FROM sso_domains WHERE account_id = $1 ORDER BY domain"
    ))
    .bind(account.to_string())
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(domain_from)
    .collect()
}

pub async fn find_domain(
    c: &mut Conn,
    account: AccountId,
    id: Uuid,
) -> Result<Option<DomainRow>, Error> {
    sqlx::query(&format!(
        "SELECT {DOMAIN_COLS} FROM sso_domains WHERE account_id = $1 AND id = $2"
    ))
    .bind(account.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut *c)
    .await?
    .map(|r| domain_from(&r))
    .transpose()
}

/// The verified domain `domain` (lower case), whichever account verified it.
pub async fn find_verified_domain(c: &mut Conn, domain: &str) -> Result<Option<DomainRow>, Error> {
    sqlx::query(&format!(
        "SELECT {DOMAIN_COLS} FROM sso_domains WHERE domain = $1 AND verified_at IS NOT NULL"
    ))
    .bind(domain)
    .fetch_optional(&mut *c)
    .await?
    .map(|r| domain_from(&r))
    .transpose()
}

/// Every verified domain (for periodic re-verification).
pub async fn find_verified_domains(c: &mut Conn) -> Result<Vec<DomainRow>, Error> {
    sqlx::query(&format!(
        "SELECT {DOMAIN_COLS} FROM sso_domains WHERE verified_at IS NOT NULL ORDER BY checked_at"
    ))
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(domain_from)
    .collect()
}

pub async fn delete_domain(c: &mut Conn, account: AccountId, id: Uuid) -> Result<bool, Error> {
    let r = sqlx::query("DELETE FROM sso_domains WHERE account_id = $1 AND id = $2")
        .bind(account.to_string())
        .bind(id.to_string())
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected() > 0)
}

// ---- group mappings ----

/// Replaces a provider's group → team mappings.
pub async fn replace_group_mappings(
    c: &mut Conn,
    account: AccountId,
    provider: Uuid,
    mappings: &[(String, TeamId)],
) -> Result<(), Error> {
    sqlx::query("DELETE FROM sso_group_mappings WHERE account_id = $1 AND provider_id = $2")
        .bind(account.to_string())
        .bind(provider.to_string())
        .execute(&mut *c)
        .await?;
    for (group, team) in mappings {
        sqlx::query(
            "INSERT INTO sso_group_mappings (account_id, provider_id, grp, team_id) VALUES ($1, $2, $3, $4)",
        )
        .bind(account.to_string())
        .bind(provider.to_string())
        .bind(group)
        .bind(team.to_string())
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

pub async fn find_group_mappings(
    c: &mut Conn,
    account: AccountId,
    provider: Uuid,
) -> Result<Vec<(String, TeamId)>, Error> {
    sqlx::query(
        "SELECT grp, team_id FROM sso_group_mappings WHERE account_id = $1 AND provider_id = $2 ORDER BY grp, team_id",
    )
    .bind(account.to_string())
    .bind(provider.to_string())
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(|r| Ok((r.try_get("grp")?, TeamId(get_uuid(r, "team_id")?))))
    .collect()
}

// ---- sign-ins in flight ----

pub struct LoginRow {
    pub state_hash: String,
    pub provider_id: Uuid,
    pub account_id: AccountId,
    pub nonce: String,
    pub pkce_verifier_enc: String,
    pub next: String,
    pub expires_at: Time,
}

pub async fn insert_login(c: &mut Conn, l: &LoginRow) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO sso_logins (state_hash, provider_id, account_id, nonce, pkce_verifier_enc, next, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&l.state_hash)
    .bind(l.provider_id.to_string())
    .bind(l.account_id.to_string())
    .bind(&l.nonce)
    .bind(&l.pkce_verifier_enc)
    .bind(&l.next)
    .bind(micros(l.expires_at))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Takes a sign-in attempt: reads and deletes it in one transaction, so an IdP's answer is used at
/// most once even when it arrives twice at once (the second finds nothing to delete).
pub async fn take_login(c: &mut Conn, state_hash: &str) -> Result<Option<LoginRow>, Error> {
    let Some(r) = sqlx::query(
        "SELECT state_hash, provider_id, account_id, nonce, pkce_verifier_enc, next, expires_at \
         FROM sso_logins WHERE state_hash = $1",
    )
    .bind(state_hash)
    .fetch_optional(&mut *c)
    .await?
    else {
        return Ok(None);
    };
    let gone = sqlx::query("DELETE FROM sso_logins WHERE state_hash = $1")
        .bind(state_hash)
        .execute(&mut *c)
        .await?;
    if gone.rows_affected() == 0 {
        return Ok(None);
    }
    Ok(Some(LoginRow {
        state_hash: r.try_get("state_hash")?,
        provider_id: get_uuid(&r, "provider_id")?,
        account_id: AccountId(get_uuid(&r, "account_id")?),
        nonce: r.try_get("nonce")?,
        pkce_verifier_enc: r.try_get("pkce_verifier_enc")?,
        next: r.try_get("next")?,
        expires_at: time(r.try_get("expires_at")?),
    }))
}

/// Removes sign-in attempts past their expiry.
pub async fn sweep_logins(c: &mut Conn, now: Time) -> Result<u64, Error> {
    let r = sqlx::query("DELETE FROM sso_logins WHERE expires_at <= $1")
        .bind(micros(now))
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected())
}

/// Ends the sessions of the account's members, Owners excepted, whose email is in `domain` (when
/// the account starts requiring single sign-on: they must come back through the IdP).
pub async fn end_member_sessions_in_domain(
    c: &mut Conn,
    account: AccountId,
    domain: &str,
) -> Result<u64, Error> {
    let r = sqlx::query(
        "DELETE FROM sessions WHERE user_id IN (\
           SELECT u.id FROM users u JOIN account_memberships m ON m.user_id = u.id \
           WHERE m.account_id = $1 AND m.role <> 'owner' AND lower(u.email) LIKE $2)",
    )
    .bind(account.to_string())
    .bind(format!("%@{domain}"))
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected())
}

/// Remembers an assertion id as used; `false` when it was used before (a replay).
pub async fn use_assertion(
    c: &mut Conn,
    provider: Uuid,
    id: &str,
    expires_at: Time,
    now: Time,
) -> Result<bool, Error> {
    sqlx::query("DELETE FROM sso_assertions WHERE expires_at <= $1")
        .bind(micros(now))
        .execute(&mut *c)
        .await?;
    let r = sqlx::query(
        "INSERT INTO sso_assertions (provider_id, assertion_id, expires_at) VALUES ($1, $2, $3) \
         ON CONFLICT (provider_id, assertion_id) DO NOTHING",
    )
    .bind(provider.to_string())
    .bind(id)
    .bind(micros(expires_at))
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() == 1)
}
