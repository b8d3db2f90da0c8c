//! Service accounts ("bots"): members of one account that authenticate with `pnb_` keys. Create
//! (the key is shown once), read, rename, change role, delete (their keys die with them), rotate
//! the key with an optional overlap, and grant workspace roles.

use crate::app::App;
use crate::authz::Principal;
use crate::domain::plan::Feature;
use crate::domain::role::{AccountPermission as P, AccountRole};
use crate::domain::{
    validate, AccountId, ActorId, ApiKeyId, Membership, MembershipId, RoleId, ServiceAccountId,
    UserId,
};
use crate::services::audit::{self, NewEvent};
use crate::services::credentials::{generate_api_key, BOT_KEY_PREFIX};
use crate::services::error::unique_or;
use crate::services::input::{page, AnyOf};
use crate::services::plans::require_feature;
use crate::services::{require_outranks, Error, PrincipalOp, Result};
use crate::store::{self, service_accounts::ServiceAccountRow};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

/// Longest overlap during which a rotated-out key keeps working.
pub const MAX_OVERLAP_SECONDS: i64 = 48 * 3600;

/// A bot's key as shown: `key` only in the response that created it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceAccountKeyView {
    pub id: ApiKeyId,
    pub created: chrono::DateTime<chrono::Utc>,
    pub name: String,
    pub expiration: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masked_key: Option<String>,
}

/// A service account.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceAccountView {
    pub id: Uuid,
    pub created: chrono::DateTime<chrono::Utc>,
    pub updated: chrono::DateTime<chrono::Utc>,
    pub actor_id: ActorId,
    pub account_id: AccountId,
    pub name: String,
    pub account_role_id: RoleId,
    pub account_role_name: &'static str,
    pub api_key: Option<ServiceAccountKeyView>,
}

fn view(b: &ServiceAccountRow, key: Option<ServiceAccountKeyView>) -> ServiceAccountView {
    ServiceAccountView {
        id: b.id.0,
        created: b.created,
        updated: b.updated,
        actor_id: b.actor_id,
        account_id: b.account_id,
        name: b.name.clone(),
        account_role_id: RoleId(b.account_role.id()),
        account_role_name: b.account_role.name(),
        api_key: key,
    }
}

async fn newest_key(c: &mut store::Conn, bot: Uuid) -> Result<Option<ServiceAccountKeyView>> {
    Ok(store::service_accounts::find_keys(c, bot)
        .await?
        .into_iter()
        .next()
        .map(|k| ServiceAccountKeyView {
            id: k.id,
            created: k.created,
            name: k.name,
            expiration: k.expiration,
            key: None,
            masked_key: Some(k.masked_key),
        }))
}

async fn gate(app: &App, p: &Principal, account: AccountId, perm: P) -> Result<AccountRole> {
    let role = crate::services::authorize(app, p, account, perm).await?;
    require_feature(app, account, Feature::ServiceAccounts)?;
    Ok(role)
}

async fn issue_key(
    app: &App,
    tx: &mut store::Conn,
    bot: &ServiceAccountRow,
    expiration: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<ServiceAccountKeyView> {
    let now = app.now();
    if matches!(expiration, Some(t) if t <= now) {
        return Err(Error::validation(
            "api_key_expiration must be in the future",
        ));
    }
    let (key, hash, masked) = generate_api_key(BOT_KEY_PREFIX);
    let id = ApiKeyId::new();
    let name = format!("{}-key", bot.name);
    store::service_accounts::insert_key(
        tx,
        store::service_accounts::NewServiceAccountKey {
            id,
            bot: bot.id.0,
            name: &name,
            key_hash: &hash,
            masked: &masked,
            expires_at: expiration,
        },
        now,
    )
    .await?;
    Ok(ServiceAccountKeyView {
        id,
        created: now,
        name,
        expiration,
        key: Some(key),
        masked_key: None,
    })
}

fn role_of(id: Option<RoleId>) -> Result<AccountRole> {
    match id {
        None => Ok(AccountRole::Member),
        Some(r) => AccountRole::from_id(r.0)
            .ok_or_else(|| Error::validation(format!("unknown account_role_id {r}"))),
    }
}

/// `POST …/bots/` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServiceAccount {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^\s*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    pub name: String,
    pub api_key_expiration: Option<chrono::DateTime<chrono::Utc>>,
    /// Default Member; never above the creator's role.
    #[schema(value_type = Option<crate::domain::AccountRoleId>)]
    pub account_role_id: Option<RoleId>,
}

pub async fn create_bot(
    app: &App,
    p: &Principal,
    account: AccountId,
    b: CreateServiceAccount,
) -> Result<ServiceAccountView> {
    let caller = gate(app, p, account, P::CreateBot).await?;
    let role = role_of(b.account_role_id)?;
    if role > caller {
        return Err(crate::services::deny(
            app,
            p,
            account,
            format!(
                "a {} cannot create an {} service account",
                caller.name(),
                role.name()
            ),
        ));
    }
    let now = app.now();
    let bot = ServiceAccountRow {
        id: ServiceAccountId::new(),
        account_id: account,
        actor_id: ActorId::new(),
        name: validate::name("name", &b.name).map_err(Error::Validation)?,
        account_role: role,
        created: now,
        updated: now,
    };
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    store::service_accounts::insert_bot(&mut tx.access(account), &bot)
        .await
        .map_err(|e| unique_or(e, format!("a service account named {:?} exists", bot.name)))?;
    let key = issue_key(app, &mut tx, &bot, b.api_key_expiration).await?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("service-account", "created", bot.id.0)
            .name(bot.name.clone())
            .payload(json!({"name": bot.name, "account_role_name": role.name(), "api_key_expiration": key.expiration})),
    )
    .await?;
    tx.commit().await?;
    Ok(view(&bot, Some(key)))
}

pub async fn read_bot(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: ServiceAccountId,
) -> Result<ServiceAccountView> {
    gate(app, p, account, P::ReadBot).await?;
    let mut c = app.store.reader().await?;
    let bot = store::service_accounts::find_bot(&mut c, account, id)
        .await?
        .ok_or_else(|| Error::not_found("service account"))?;
    let key = newest_key(&mut c, id.0).await?;
    Ok(view(&bot, key))
}

/// `service_accounts` part of the filter body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountFields {
    pub name: Option<AnyOf<String>>,
}

/// `POST …/bots/filter` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterServiceAccounts {
    #[schema(minimum = 0)]
    pub limit: Option<i64>,
    #[schema(minimum = 0)]
    pub offset: Option<i64>,
    #[serde(alias = "bots")]
    pub service_accounts: Option<ServiceAccountFields>,
}

pub async fn filter_bots(
    app: &App,
    p: &Principal,
    account: AccountId,
    f: FilterServiceAccounts,
) -> Result<Vec<ServiceAccountView>> {
    gate(app, p, account, P::ReadBot).await?;
    let (limit, offset) = page(f.limit, f.offset)?;
    let names = f.service_accounts.and_then(|s| s.name).map(|n| n.any_);
    let mut c = app.store.reader().await?;
    let bots = store::service_accounts::find_bots(&mut c, account, names.as_deref(), limit, offset)
        .await?;
    let mut out = Vec::with_capacity(bots.len());
    for b in bots {
        let key = newest_key(&mut c, b.id.0).await?;
        out.push(view(&b, key));
    }
    Ok(out)
}

/// `PATCH …/bots/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateServiceAccount {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^\s*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    pub name: Option<String>,
    #[schema(value_type = Option<crate::domain::AccountRoleId>)]
    pub account_role_id: Option<RoleId>,
}

pub async fn update_bot(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: Uuid,
    u: UpdateServiceAccount,
) -> Result<()> {
    let caller = gate(app, p, account, P::UpdateBot).await?;
    require_outranks(app, p, account, id, PrincipalOp::Update)?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let mut bot = store::service_accounts::find_bot(&mut tx, account, ServiceAccountId(id))
        .await?
        .ok_or_else(|| Error::not_found("service account"))?;
    let before = json!({"name": bot.name, "account_role_name": bot.account_role.name()});
    if let Some(n) = u.name {
        bot.name = validate::name("name", &n).map_err(Error::Validation)?;
    }
    if let Some(r) = u.account_role_id {
        let role = role_of(Some(r))?;
        if role > caller {
            return Err(crate::services::deny(
                app,
                p,
                account,
                format!("a {} cannot grant the {} role", caller.name(), role.name()),
            ));
        }
        bot.account_role = role;
    }
    bot.updated = app.now();
    store::service_accounts::update_bot(&mut tx.access(account), &bot)
        .await
        .map_err(|e| unique_or(e, format!("a service account named {:?} exists", bot.name)))?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("service-account", "updated", id)
            .name(bot.name.clone())
            .payload(json!({"before": before, "after": {"name": bot.name, "account_role_name": bot.account_role.name()}})),
    )
    .await?;
    tx.commit().await
}

/// Deletes a bot; its keys and grants go with it and stop working at the next request.
pub async fn delete_bot(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: ServiceAccountId,
) -> Result<()> {
    crate::services::authorize(app, p, account, P::DeleteBot).await?;
    require_outranks(app, p, account, id.0, PrincipalOp::Remove)?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let bot = store::service_accounts::find_bot(&mut tx, account, id)
        .await?
        .ok_or_else(|| Error::not_found("service account"))?;
    let keys = store::service_accounts::find_keys(&mut tx, id.0).await?;
    store::service_accounts::delete_bot(&mut tx.access(account), account, id).await?;
    store::teams::delete_member_everywhere(&mut tx.access(account), account, id.0).await?;
    for k in &keys {
        store::api_keys::notify_key_revoked(&mut tx, app.store.engine, k.id).await?;
    }
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("service-account", "deleted", id.0).name(bot.name.clone()),
    )
    .await?;
    tx.commit().await?;
    app.keys.remove_user(UserId(id.0));
    Ok(())
}

/// `POST …/bots/{id}/rotate_api_key` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    pub api_key_expiration: Option<chrono::DateTime<chrono::Utc>>,
    /// How long the current key keeps working (at most 48 hours); null or 0: it stops at once.
    #[schema(minimum = 0, maximum = 172_800)]
    pub old_key_expires_in_seconds: Option<i64>,
}

/// Issues a new key; the bot's other keys stop now or after the overlap.
pub async fn rotate_key(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: Uuid,
    r: RotateKey,
) -> Result<ServiceAccountView> {
    gate(app, p, account, P::UpdateBot).await?;
    require_outranks(app, p, account, id, PrincipalOp::RotateKey)?;
    let overlap = r.old_key_expires_in_seconds.unwrap_or(0);
    if !(0..=MAX_OVERLAP_SECONDS).contains(&overlap) {
        return Err(Error::validation(format!(
            "old_key_expires_in_seconds must be between 0 and {MAX_OVERLAP_SECONDS}"
        )));
    }
    let now = app.now();
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let bot = store::service_accounts::find_bot(&mut tx, account, ServiceAccountId(id))
        .await?
        .ok_or_else(|| Error::not_found("service account"))?;
    let old = store::service_accounts::find_keys(&mut tx, id).await?;
    for k in &old {
        if overlap == 0 {
            store::service_accounts::delete_key(&mut tx, id, k.id).await?;
        } else {
            let until = now + chrono::Duration::seconds(overlap);
            if k.expiration.is_none_or(|e| e > until) {
                store::service_accounts::set_key_expiry(&mut tx, id, k.id, until).await?;
            }
        }
        store::api_keys::notify_key_revoked(&mut tx, app.store.engine, k.id).await?;
    }
    let key = issue_key(app, &mut tx, &bot, r.api_key_expiration).await?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("service-account", "rotated", id)
            .name(bot.name.clone())
            .payload(json!({"new_key_id": key.id, "old_key_ids": old.iter().map(|k| k.id).collect::<Vec<_>>(), "old_key_expires_in_seconds": overlap})),
    )
    .await?;
    tx.commit().await?;
    for k in &old {
        app.keys.remove_key(k.id);
    }
    Ok(view(&bot, Some(key)))
}

/// `GET …/bots/{id}/read_bot_api_keys`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceAccountKeys {
    pub active_key: Option<ServiceAccountKeyView>,
    /// Older keys still inside their rotation overlap.
    pub rotating_keys: Vec<ServiceAccountKeyView>,
}

pub async fn read_keys(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: ServiceAccountId,
) -> Result<ServiceAccountKeys> {
    gate(app, p, account, P::ReadBot).await?;
    let now = app.now();
    let mut c = app.store.reader().await?;
    store::service_accounts::find_bot(&mut c, account, id)
        .await?
        .ok_or_else(|| Error::not_found("service account"))?;
    let mut keys = store::service_accounts::find_keys(&mut c, id.0)
        .await?
        .into_iter()
        .filter(|k| k.expiration.is_none_or(|e| e > now))
        .map(|k| ServiceAccountKeyView {
            id: k.id,
            created: k.created,
            name: k.name,
            expiration: k.expiration,
            key: None,
            masked_key: Some(k.masked_key),
        });
    Ok(ServiceAccountKeys {
        active_key: keys.next(),
        rotating_keys: keys.collect(),
    })
}

/// Revokes one of a bot's keys at once.
pub async fn delete_key(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: Uuid,
    key: ApiKeyId,
) -> Result<()> {
    gate(app, p, account, P::UpdateBot).await?;
    require_outranks(app, p, account, id, PrincipalOp::RevokeKey)?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let bot = store::service_accounts::find_bot(&mut tx, account, ServiceAccountId(id))
        .await?
        .ok_or_else(|| Error::not_found("service account"))?;
    if !store::service_accounts::delete_key(&mut tx, id, key).await? {
        return Err(Error::not_found("API key"));
    }
    store::api_keys::notify_key_revoked(&mut tx, app.store.engine, key).await?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("api-key", "deleted", key.0)
            .name(bot.name.clone())
            .payload(json!({"service_account_id": id})),
    )
    .await?;
    tx.commit().await?;
    app.keys.remove_key(key);
    Ok(())
}

/// A bot as an account membership (`by-bot`, `only_bots`).
pub fn as_membership(b: &ServiceAccountRow) -> Membership {
    Membership {
        id: MembershipId(b.id.0),
        created: b.created,
        updated: b.updated,
        account_id: b.account_id,
        actor_id: b.actor_id,
        user_id: UserId(b.id.0),
        handle: b.name.clone(),
        first_name: String::new(),
        last_name: String::new(),
        email: String::new(),
        account_role_id: RoleId(b.account_role.id()),
        account_role_name: b.account_role.name(),
        last_login: None,
        active: true,
        directory_id: None,
        timezone: None,
        teams: vec![],
        idp_synced: None,
    }
}

pub async fn membership_by_bot(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: Uuid,
) -> Result<Membership> {
    crate::services::authorize(app, p, account, P::ReadAccountMembership).await?;
    let mut c = app.store.reader().await?;
    store::service_accounts::find_bot(&mut c, account, ServiceAccountId(id))
        .await?
        .map(|b| as_membership(&b))
        .ok_or_else(|| Error::not_found("membership"))
}
