//! The account IP allowlist (reference §2.13): entries of IPv4/IPv6 networks, each enabled or
//! not; when the account setting `enforce_ip_allowlist` is on (and the plan includes the
//! `ip_allowlist` feature), every request made to the account from an address outside the
//! enabled entries is refused (while no entry is enabled, nothing is restricted, as in Prefect
//! Cloud) — API, gateway and dashboard alike. The check runs in memory from
//! the account's gateway entry (rebuilt with every access reload).

use crate::app::App;
use crate::authz::{Credential, Principal};
use crate::domain::ipnet::IpNetwork;
use crate::domain::plan::Feature;
use crate::domain::role::AccountPermission as P;
use crate::domain::AccountId;
use crate::services::audit::{self, NewEvent};
use crate::services::plans::require_feature;
use crate::services::{Error, Result};
use crate::store;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

/// Most entries one account may hold.
pub const MAX_ENTRIES: usize = 100;

/// One entry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IpAllowlistEntry {
    /// An IPv4 or IPv6 network in CIDR form (a bare address is one host).
    pub ip_network: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    #[schema(max_length = 200, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub description: Option<String>,
    /// Accepted and returned for compatibility; Atrium does not record it (always null).
    #[serde(default)]
    pub last_seen: Option<String>,
}

fn yes() -> bool {
    true
}

/// `GET`/`PUT /api/accounts/{a}/ip_allowlist` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct IpAllowlist {
    pub entries: Vec<IpAllowlistEntry>,
}

/// `GET …/ip_allowlist/my_access`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MyAccess {
    pub allowed: bool,
    pub detail: String,
}

/// The enabled networks of stored entries (entries were validated when saved).
pub fn enabled_networks(stored: &str) -> Vec<IpNetwork> {
    serde_json::from_str::<Vec<IpAllowlistEntry>>(stored)
        .unwrap_or_default()
        .iter()
        .filter(|e| e.enabled)
        .filter_map(|e| IpNetwork::parse(&e.ip_network).ok())
        .collect()
}

/// As in Prefect Cloud, an allowlist restricts only once it has an enabled entry.
pub(crate) fn allowed_by(networks: &[IpNetwork], ip: Option<&str>) -> bool {
    networks.is_empty()
        || ip
            .and_then(|ip| ip.parse().ok())
            .is_some_and(|ip| networks.iter().any(|n| n.contains(ip)))
}

pub async fn read(app: &App, p: &Principal, account: AccountId) -> Result<IpAllowlist> {
    crate::services::authorize(app, p, account, P::ReadIpAllowlist).await?;
    require_feature(app, account, Feature::IpAllowlist)?;
    let mut c = app.store.reader().await?;
    let row = store::accounts::find_account(&mut c, account)
        .await?
        .ok_or_else(|| Error::not_found("account"))?;
    Ok(IpAllowlist {
        entries: serde_json::from_str(&row.ip_allowlist).unwrap_or_default(),
    })
}

/// The entries checked (count, CIDR, description, duplicates) and in canonical form.
fn canonical(list: IpAllowlist) -> Result<Vec<IpAllowlistEntry>> {
    if list.entries.len() > MAX_ENTRIES {
        return Err(Error::validation(format!(
            "an allowlist holds at most {MAX_ENTRIES} entries"
        )));
    }
    let mut entries = Vec::with_capacity(list.entries.len());
    for e in list.entries {
        let net = IpNetwork::parse(&e.ip_network).map_err(Error::Validation)?;
        let description = match e.description.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(d) => Some(
                crate::domain::validate::text("description", d, 200).map_err(Error::Validation)?,
            ),
        };
        if entries
            .iter()
            .any(|x: &IpAllowlistEntry| x.ip_network == net.to_string())
        {
            return Err(Error::validation(format!("{net} is listed twice")));
        }
        entries.push(IpAllowlistEntry {
            ip_network: net.to_string(),
            enabled: e.enabled,
            description,
            last_seen: None,
        });
    }
    Ok(entries)
}

/// Replaces the entries. Networks are checked and stored in canonical form; when enforcement is
/// on, a list that would shut out the caller's own address is refused (use `my_access` first).
pub async fn replace(
    app: &App,
    p: &Principal,
    account: AccountId,
    list: IpAllowlist,
) -> Result<()> {
    crate::services::authorize(app, p, account, P::UpdateIpAllowlist).await?;
    require_feature(app, account, Feature::IpAllowlist)?;
    let entries = canonical(list)?;
    let stored = serde_json::to_string(&entries).map_err(|e| Error::Unexpected(e.into()))?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let row = store::accounts::find_account(&mut tx, account)
        .await?
        .ok_or_else(|| Error::not_found("account"))?;
    let enforced = row
        .settings
        .get("enforce_ip_allowlist")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    if enforced && !exempt(p) && !allowed_by(&enabled_networks(&stored), p.ip.as_deref()) {
        return Err(Error::validation(format!(
            "the allowlist is enforced and this list does not include your address ({}); \
             add it, or turn enforcement off first",
            p.ip.as_deref().unwrap_or("unknown")
        )));
    }
    store::accounts::set_ip_allowlist(&mut tx.access(account), account, &stored, app.now()).await?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("ip-allowlist", "updated", account.0).payload(json!({
            "before": serde_json::from_str::<serde_json::Value>(&row.ip_allowlist).unwrap_or_default(),
            "after": entries,
        })),
    )
    .await?;
    tx.commit().await
}

/// Turning `enforce_ip_allowlist` on needs the plan's feature and an allowlist that admits the
/// caller (no one locks themselves out by accident).
pub fn check_enforcement(
    app: &App,
    p: &Principal,
    before: &serde_json::Map<String, serde_json::Value>,
    after: &store::accounts::AccountRow,
) -> Result<()> {
    let on = |m: &serde_json::Map<String, serde_json::Value>| {
        m.get("enforce_ip_allowlist")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    };
    if !on(&after.settings) || on(before) {
        return Ok(());
    }
    require_feature(app, after.id, Feature::IpAllowlist)?;
    if !exempt(p) && !allowed_by(&enabled_networks(&after.ip_allowlist), p.ip.as_deref()) {
        return Err(lockout(p));
    }
    Ok(())
}

/// Would the caller get in if enforcement were on?
pub async fn my_access(app: &App, p: &Principal, account: AccountId) -> Result<MyAccess> {
    let list = read(app, p, account).await?;
    let stored = serde_json::to_string(&list.entries).unwrap_or_default();
    let ip = p.ip.as_deref().unwrap_or("unknown");
    Ok(
        if exempt(p) || allowed_by(&enabled_networks(&stored), p.ip.as_deref()) {
            MyAccess {
                allowed: true,
                detail: if enabled_networks(&stored).is_empty() {
                    "the allowlist has no enabled entry, so every address is allowed".into()
                } else {
                    format!("your address {ip} is allowed")
                },
            }
        } else {
            MyAccess {
                allowed: false,
                detail: format!("your address {ip} is not in an enabled allowlist entry"),
            }
        },
    )
}

/// Operator commands on the server's machine are not network requests.
pub(crate) fn exempt(p: &Principal) -> bool {
    matches!(p.credential, Credential::Cli)
}

/// Saves the entries and turns enforcement on or off in one step, in the order that cannot
/// lock the caller out halfway: off before a shorter list, on after the new list.
pub async fn save_with_enforcement(
    app: &App,
    p: &Principal,
    account: AccountId,
    list: IpAllowlist,
    enforce: bool,
) -> Result<()> {
    let setting = |on: bool| {
        let mut m = serde_json::Map::new();
        m.insert("enforce_ip_allowlist".into(), serde_json::Value::Bool(on));
        m
    };
    let now_on = crate::services::accounts::read_settings(app, p, account)
        .await?
        .get("enforce_ip_allowlist")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    // Every check before the first write, so a refused save changes nothing.
    let entries = canonical(list)?;
    if enforce && !now_on {
        let networks: Vec<IpNetwork> = entries
            .iter()
            .filter(|e| e.enabled)
            .filter_map(|e| IpNetwork::parse(&e.ip_network).ok())
            .collect();
        if !exempt(p) && !allowed_by(&networks, p.ip.as_deref()) {
            return Err(lockout(p));
        }
    }
    if now_on && !enforce {
        crate::services::accounts::update_settings(app, p, account, setting(false)).await?;
    }
    replace(app, p, account, IpAllowlist { entries }).await?;
    if enforce && !now_on {
        crate::services::accounts::update_settings(app, p, account, setting(true)).await?;
    }
    Ok(())
}

fn lockout(p: &Principal) -> Error {
    Error::validation(format!(
        "enforcing the IP allowlist would shut out your own address ({}); add it to the allowlist first",
        p.ip.as_deref().unwrap_or("unknown")
    ))
}
