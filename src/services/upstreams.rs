//! Workspace upstreams: binding a workspace to the Prefect server its gateway calls reach, the
//! in-memory registry the gateway reads on every request, and the encryption of upstream auth
//! strings at rest.

use crate::app::App;
use crate::authz::Principal;
use crate::domain::plan::Entitlements;
use crate::domain::role::AccountPermission;
use crate::domain::upstream_policy::{self, Binder};
use crate::domain::{AccountId, WorkspaceId};
use crate::services::audit::{self, NewEvent};
use crate::services::{authorize, Error, Result};
use crate::store::{self, upstreams::UpstreamRow};
use arc_swap::ArcSwap;
use axum::http::{HeaderValue, Uri};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use utoipa::ToSchema;
use uuid::Uuid;

/// A bound upstream, ready for the gateway.
#[derive(Debug)]
pub struct Upstream {
    /// The API base as configured, without a trailing slash (`http://127.0.0.1:4200/api`).
    pub url: String,
    /// Scheme and authority for building request URIs.
    pub authority: String,
    /// The base path (`/api`), without a trailing slash.
    pub path: String,
    /// The `Host` header the upstream gets (`127.0.0.1:4200`).
    pub host: String,
    /// Where to connect (`127.0.0.1:4200`; port 80 when the URL names none).
    pub address: String,
    /// `Basic base64(auth string)`, what a Prefect server with `PREFECT_SERVER_API_AUTH_STRING`
    /// expects.
    pub authorization: Option<HeaderValue>,
    /// The auth string itself, for the websocket in-band handshake.
    pub auth_string: Option<String>,
    /// Who bound it: what the address it resolves to must satisfy at every connection.
    pub binder: Binder,
    /// `https://` upstreams: how the TLS handshake is made.
    pub tls: Option<Arc<crate::upstream::tls::TlsSettings>>,
    /// The key of its idle connections in the fast path's pool: the address for plain HTTP; for
    /// TLS also the workspace, so connections made with one workspace's client certificate are
    /// never used for another's.
    pub pool_key: String,
}

/// What the gateway needs to know about one account: its rate limits, run retention and
/// upstreams by workspace.
#[derive(Debug, Default)]
pub struct AccountGateway {
    pub api_per_minute: u32,
    pub logs_per_minute: u32,
    pub run_retention_days: i64,
    pub upstreams: FxHashMap<Uuid, Arc<Upstream>>,
    /// The enabled allowlist networks when the account enforces its IP allowlist (`None`: any
    /// address may call).
    pub ip_allowlist: Option<Vec<crate::domain::ipnet::IpNetwork>>,
}

/// Per-account gateway data, replaced whole when the account's access data is reloaded (so it
/// follows the same version/notification path as the permission index).
#[derive(Default)]
pub struct Registry {
    accounts: ArcSwap<FxHashMap<Uuid, Arc<AccountGateway>>>,
}

impl Registry {
    pub fn account(&self, account: &Uuid) -> Option<Arc<AccountGateway>> {
        self.accounts.load().get(account).cloned()
    }

    fn put(&self, account: AccountId, g: AccountGateway) {
        let g = Arc::new(g);
        self.accounts.rcu(|m| {
            let mut m = FxHashMap::clone(m);
            m.insert(account.0, g.clone());
            m
        });
    }

    pub fn remove(&self, account: AccountId) {
        self.accounts.rcu(|m| {
            let mut m = FxHashMap::clone(m);
            m.remove(&account.0);
            m
        });
    }

    /// Every account's entry.
    pub fn all(&self) -> Vec<(Uuid, Arc<AccountGateway>)> {
        self.accounts
            .load()
            .iter()
            .map(|(a, g)| (*a, g.clone()))
            .collect()
    }

    /// Every account with at least one upstream.
    pub fn bound_accounts(&self) -> Vec<(Uuid, Arc<AccountGateway>)> {
        self.accounts
            .load()
            .iter()
            .filter(|(_, g)| !g.upstreams.is_empty())
            .map(|(a, g)| (*a, g.clone()))
            .collect()
    }
}

/// Rebuilds an account's gateway entry (called with every index reload).
pub async fn reload(
    app: &App,
    account: AccountId,
    e: &Entitlements,
    retention: i64,
    ip_allowlist: Option<Vec<crate::domain::ipnet::IpNetwork>>,
) -> Result<()> {
    let rows = {
        let mut c = app.store.reader().await?;
        store::upstreams::find_account_upstreams(&mut c, account).await?
    };
    let mut upstreams = FxHashMap::default();
    for r in rows {
        match upstream_of(app, &r) {
            Ok(u) => {
                upstreams.insert(r.workspace_id.0, Arc::new(u));
            }
            // A row we cannot use (a changed key, a hand-edited URL) leaves the workspace
            // unbound rather than failing the whole account.
            Err(e) => tracing::error!(workspace = %r.workspace_id, "ignoring upstream: {e}"),
        }
    }
    app.upstreams.put(
        account,
        AccountGateway {
            api_per_minute: clamp_u32(e.api_rate_limit),
            logs_per_minute: clamp_u32(e.logs_rate_limit),
            run_retention_days: retention,
            upstreams,
            ip_allowlist,
        },
    );
    Ok(())
}

fn clamp_u32(v: i64) -> u32 {
    u32::try_from(v.max(1)).unwrap_or(u32::MAX)
}

fn upstream_of(app: &App, r: &UpstreamRow) -> anyhow::Result<Upstream> {
    let (authority, path) = split_url(&r.url).map_err(anyhow::Error::msg)?;
    let auth_string = match &r.auth_string_enc {
        Some(enc) => Some(decrypt(app, enc)?),
        None => None,
    };
    let authorization = match &auth_string {
        Some(s) => {
            use base64::Engine;
            let b = base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
            let mut v = HeaderValue::from_str(&format!("Basic {b}"))?;
            v.set_sensitive(true);
            Some(v)
        }
        None => None,
    };
    let https = authority.starts_with("https://");
    let host = authority
        .strip_prefix("http://")
        .or_else(|| authority.strip_prefix("https://"))
        .unwrap_or(&authority)
        .to_string();
    let port_at = (!host.ends_with(']'))
        .then(|| host.rsplit_once(':'))
        .flatten()
        .filter(|(_, p)| p.parse::<u16>().is_ok());
    let address = match port_at {
        Some(_) => host.clone(),
        None if https => format!("{host}:443"),
        None => format!("{host}:80"),
    };
    let tls = if https {
        let name = port_at.map_or(host.as_str(), |(h, _)| h);
        let key = match &r.client_key_enc {
            Some(enc) => Some(decrypt(app, enc)?),
            None => None,
        };
        let config = crate::upstream::tls::client_config(
            r.ca_pem.as_deref(),
            r.client_cert_pem.as_deref(),
            key.as_deref(),
        )
        .map_err(anyhow::Error::msg)?;
        Some(Arc::new(crate::upstream::tls::TlsSettings {
            config,
            server_name: crate::upstream::tls::server_name(name).map_err(anyhow::Error::msg)?,
        }))
    } else {
        None
    };
    Ok(Upstream {
        url: r.url.clone(),
        authority,
        path,
        host,
        authorization,
        auth_string,
        binder: if r.operator_bound {
            Binder::Operator
        } else {
            Binder::Account
        },
        pool_key: if tls.is_some() {
            format!("{address}|tls|{}", r.workspace_id)
        } else {
            address.clone()
        },
        address,
        tls,
    })
}

/// The addresses Atrium itself listens on: the server's listeners once serving, and the
/// configured bind address (which the CLI, not serving, knows only from the configuration).
pub fn own_addresses(app: &App) -> Vec<std::net::SocketAddr> {
    let mut own = app
        .listening
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Ok(a) = app.config.bind.parse() {
        own.push(a);
    }
    own
}

/// How long a resolved upstream name is reused. Addresses are checked every time they are
/// connected to, so caching cannot let a rebinding name through; it only saves lookups.
const DNS_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// Addresses a name resolved to, and when (`None`: pinned).
type Resolved = (Option<std::time::Instant>, Vec<std::net::SocketAddr>);

/// Resolved upstream names (`host:port` → [`Resolved`]).
#[derive(Default)]
pub struct DnsCache(std::sync::Mutex<FxHashMap<String, Resolved>>);

impl DnsCache {
    /// Makes `host:port` resolve to `addrs` until pinned again — how tests stand in for DNS,
    /// the one counterpart outside the machine (rebinding).
    pub fn pin(&self, address: &str, addrs: Vec<std::net::SocketAddr>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(address.to_string(), (None, addrs));
    }
}

/// Resolves `host:port` (an IP literal without any lookup).
async fn resolve(app: &App, address: &str) -> std::io::Result<Vec<std::net::SocketAddr>> {
    if let Ok(a) = address.parse::<std::net::SocketAddr>() {
        return Ok(vec![a]);
    }
    let now = std::time::Instant::now();
    if let Some((at, addrs)) = app
        .dns
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(address)
    {
        if at.is_none_or(|at| now.duration_since(at) < DNS_TTL) {
            return Ok(addrs.clone());
        }
    }
    let addrs: Vec<_> = tokio::net::lookup_host(address).await?.collect();
    let mut cache = app.dns.0.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() > 4096 {
        cache.retain(|_, (at, _)| at.is_none());
    }
    cache.insert(address.to_string(), (Some(now), addrs.clone()));
    Ok(addrs)
}

/// The addresses of `up` the gateway may connect to now: its name resolved (or its literal
/// address), each address checked against the upstream policy for whoever bound it. Every
/// connection to an upstream — gateway calls, websockets, retention — is made to one of these,
/// never by resolving the name again. `Err` says why none may be used.
pub async fn connect_addrs(
    app: &App,
    up: &Upstream,
) -> std::result::Result<Vec<std::net::SocketAddr>, String> {
    let addrs = resolve(app, &up.address)
        .await
        .map_err(|e| format!("{} does not resolve: {e}", up.address))?;
    let own = own_addresses(app);
    let mut why = format!("{} resolves to no address", up.address);
    let allowed: Vec<_> = addrs
        .into_iter()
        .filter(|a| {
            match upstream_policy::check(*a, up.binder, &app.config.upstream_networks, &own) {
                Ok(()) => true,
                Err(e) => {
                    why = e;
                    false
                }
            }
        })
        .collect();
    if allowed.is_empty() {
        tracing::warn!(upstream = %up.url, "gateway: upstream address refused: {why}");
        return Err(why);
    }
    Ok(allowed)
}

/// Checks a URL about to be bound by `binder`: every address it resolves to must be allowed
/// (an operator may bind a name that does not resolve yet; account binders may not), and an
/// account binder may not bind a server another account's workspace is bound to.
async fn check_binding(app: &App, account: AccountId, url: &str, binder: Binder) -> Result<()> {
    let row = UpstreamRow {
        workspace_id: WorkspaceId(Uuid::nil()),
        account_id: account,
        url: url.to_string(),
        auth_string_enc: None,
        ca_pem: None,
        client_cert_pem: None,
        client_key_enc: None,
        operator_bound: binder == Binder::Operator,
        created: app.now(),
        updated: app.now(),
    };
    let up = upstream_of(app, &row).map_err(|e| Error::Validation(e.to_string()))?;
    let addrs = match resolve(app, &up.address).await {
        Ok(a) => a,
        Err(_) if binder == Binder::Operator => return Ok(()),
        Err(e) => {
            return Err(Error::Validation(format!(
                "upstream url {url:?}: {} does not resolve ({e})",
                up.address
            )))
        }
    };
    let own = own_addresses(app);
    for a in &addrs {
        upstream_policy::check(*a, binder, &app.config.upstream_networks, &own)
            .map_err(|e| Error::Forbidden(format!("upstream url {url:?} refused: {e}")))?;
    }
    if binder == Binder::Account {
        let mut taken = false;
        for (other, g) in app.upstreams.all() {
            if other == account.0 {
                continue;
            }
            for o in g.upstreams.values() {
                taken |= o.address.eq_ignore_ascii_case(&up.address)
                    || resolve(app, &o.address)
                        .await
                        .is_ok_and(|theirs| theirs.iter().any(|x| addrs.contains(x)));
            }
        }
        if taken {
            return Err(Error::Forbidden(format!(
                "upstream url {url:?} refused: a workspace of another account uses that server; a site admin can bind it"
            )));
        }
    }
    Ok(())
}

/// Splits and checks an upstream API URL: `http[s]://host[:port][/path]`, no credentials, query
/// or fragment. Returns (`http[s]://host:port`, `/path` without trailing slash).
pub fn split_url(url: &str) -> std::result::Result<(String, String), String> {
    let bad = |why: &str| format!("upstream url {url:?} {why}");
    if url.len() > 2000 {
        return Err(bad("is too long"));
    }
    let uri: Uri = url.parse().map_err(|_| bad("is not a valid URL"))?;
    let scheme = match uri.scheme_str() {
        Some("http") => "http",
        Some("https") => "https",
        _ => return Err(bad("must start with http:// or https://")),
    };
    let authority = uri.authority().ok_or_else(|| bad("has no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("must not carry credentials; use auth_string"));
    }
    if uri.query().is_some() || url.contains('#') {
        return Err(bad("must not have a query or fragment"));
    }
    let path = uri.path().trim_end_matches('/').to_string();
    if path.split('/').any(|s| s == "." || s == "..") || path.contains("//") {
        return Err(bad("has dot segments or empty segments"));
    }
    Ok((format!("{scheme}://{authority}"), path))
}

const AUTH_STRING_PURPOSE: &str = "atrium/upstream-auth-string/v1";

fn encrypt(app: &App, plain: &str) -> Result<String> {
    Ok(crate::services::credentials::seal(
        &app.audit_key,
        AUTH_STRING_PURPOSE,
        plain.as_bytes(),
    ))
}

fn decrypt(app: &App, enc: &str) -> anyhow::Result<String> {
    let plain = crate::services::credentials::unseal(&app.audit_key, AUTH_STRING_PURPOSE, enc)
        .ok_or_else(|| {
            anyhow::anyhow!("the stored auth string does not decrypt with this installation's key")
        })?;
    Ok(String::from_utf8(plain)?)
}

/// `PUT …/workspaces/{w}/upstream` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetUpstream {
    /// The upstream's API base URL, as `PREFECT_API_URL` would hold it:
    /// `http[s]://host[:port][/path]`.
    #[schema(
        max_length = 2000,
        pattern = r"^\s*https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?(/[A-Za-z0-9\-_~!$&'()*+,;=:@%]+)*/?\s*$"
    )]
    pub url: String,
    /// `https` upstreams: PEM certificates trusted instead of the system's roots (a private CA).
    /// Omitted keeps the stored bundle, `null` removes it.
    #[serde(default, deserialize_with = "crate::services::input::double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 65536)]
    pub ca_certificates: Option<Option<String>>,
    /// `https` upstreams that require a client certificate (mutual TLS): the PEM chain. Omitted
    /// keeps, `null` removes (with the key).
    #[serde(default, deserialize_with = "crate::services::input::double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 65536)]
    pub client_certificate: Option<Option<String>>,
    /// The client certificate's PEM private key. Stored encrypted, never returned.
    #[serde(default, deserialize_with = "crate::services::input::double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 65536)]
    pub client_key: Option<Option<String>>,
    /// The upstream's `PREFECT_SERVER_API_AUTH_STRING`: omitted keeps the stored one, `null`
    /// removes it. Never returned.
    #[serde(default, deserialize_with = "crate::services::input::double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 4096, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$")]
    pub auth_string: Option<Option<String>>,
}

/// A workspace's upstream as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UpstreamView {
    pub workspace_id: Uuid,
    pub url: String,
    pub has_auth_string: bool,
    /// The CA bundle trusted for an https upstream (`null`: the system's roots).
    pub ca_certificates: Option<String>,
    /// The client certificate offered to an https upstream (its key is never shown).
    pub client_certificate: Option<String>,
    pub created: chrono::DateTime<chrono::Utc>,
    pub updated: chrono::DateTime<chrono::Utc>,
}

fn view(r: &UpstreamRow) -> UpstreamView {
    UpstreamView {
        workspace_id: r.workspace_id.0,
        url: r.url.clone(),
        has_auth_string: r.auth_string_enc.is_some(),
        ca_certificates: r.ca_pem.clone(),
        client_certificate: r.client_cert_pem.clone(),
        created: r.created,
        updated: r.updated,
    }
}

/// Binds (or rebinds) a workspace to an upstream Prefect server. Account permission
/// `administrate:workspace` (Owners and Admins).
pub async fn set_upstream(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    s: SetUpstream,
) -> Result<UpstreamView> {
    authorize(app, p, account, AccountPermission::AdministrateWorkspace).await?;
    let url = s.url.trim().trim_end_matches('/').to_string();
    split_url(&url).map_err(Error::Validation)?;
    if let Some(Some(a)) = &s.auth_string {
        if a.is_empty() || a.len() > 4096 || a.chars().any(char::is_control) {
            return Err(Error::Validation(
                "auth_string must be 1 to 4096 printable characters".into(),
            ));
        }
    }
    let binder = if p.site_admin {
        Binder::Operator
    } else {
        Binder::Account
    };
    {
        let mut c = app.store.reader().await?;
        store::workspaces::find_workspace(&mut c, account, workspace)
            .await?
            .ok_or_else(|| Error::not_found("workspace"))?;
    }
    if let Err(e) = check_binding(app, account, &url, binder).await {
        if let Error::Forbidden(m) = &e {
            return Err(crate::services::deny(app, p, account, m.clone()));
        }
        return Err(e);
    }
    let now = app.now();
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    store::workspaces::find_workspace(&mut tx, account, workspace)
        .await?
        .ok_or_else(|| Error::not_found("workspace"))?;
    let before = store::upstreams::find_upstream(&mut tx, account, workspace).await?;
    let auth_string_enc = match &s.auth_string {
        None => before.as_ref().and_then(|b| b.auth_string_enc.clone()),
        Some(None) => None,
        Some(Some(a)) => Some(encrypt(app, a)?),
    };
    let keep = |new: &Option<Option<String>>, old: Option<&String>| match new {
        None => old.cloned(),
        Some(v) => v.clone(),
    };
    let ca_pem = keep(
        &s.ca_certificates,
        before.as_ref().and_then(|b| b.ca_pem.as_ref()),
    );
    let client_cert_pem = keep(
        &s.client_certificate,
        before.as_ref().and_then(|b| b.client_cert_pem.as_ref()),
    );
    let client_key = match &s.client_key {
        None => match before.as_ref().and_then(|b| b.client_key_enc.as_ref()) {
            // Removing the certificate removes its key.
            Some(_) if client_cert_pem.is_none() => None,
            Some(enc) => Some(decrypt(app, enc).map_err(Error::Unexpected)?),
            None => None,
        },
        Some(v) => v.clone(),
    };
    // The settings must make a working client configuration before they are kept.
    if [&ca_pem, &client_cert_pem, &client_key]
        .iter()
        .any(|v| v.as_ref().is_some_and(|v| v.len() > 65_536))
    {
        return Err(Error::Validation(
            "ca_certificates, client_certificate and client_key are at most 64 KiB each".into(),
        ));
    }
    if url.starts_with("https://") {
        crate::upstream::tls::client_config(
            ca_pem.as_deref(),
            client_cert_pem.as_deref(),
            client_key.as_deref(),
        )
        .map_err(Error::Validation)?;
    } else if ca_pem.is_some() || client_cert_pem.is_some() || client_key.is_some() {
        return Err(Error::Validation(
            "ca_certificates, client_certificate and client_key apply to https:// upstreams only"
                .into(),
        ));
    }
    let client_key_enc = match &client_key {
        Some(k) => Some(encrypt(app, k)?),
        None => None,
    };
    let tls_change = json!({
        "ca_certificates": ca_pem.is_some(),
        "client_certificate": client_cert_pem.is_some(),
    });
    let row = UpstreamRow {
        workspace_id: workspace,
        account_id: account,
        url,
        auth_string_enc,
        ca_pem,
        client_cert_pem,
        client_key_enc,
        operator_bound: binder == Binder::Operator,
        created: before.as_ref().map_or(now, |b| b.created),
        updated: now,
    };
    store::upstreams::upsert_upstream(&mut tx.access(account), &row).await?;
    let auth_change = match &s.auth_string {
        None => "unchanged",
        Some(None) => "removed",
        Some(Some(_)) => "set",
    };
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new(
            "workspace-upstream",
            if before.is_some() {
                "updated"
            } else {
                "created"
            },
            workspace.0,
        )
        .workspace(workspace)
        .payload(json!({
            "url": {"before": before.as_ref().map(|b| &b.url), "after": &row.url},
            "auth_string": auth_change,
            "tls": tls_change,
            "bound_by": if row.operator_bound { "operator" } else { "account" },
        })),
    )
    .await?;
    tx.commit().await?;
    app.prefect_ui.forget(workspace);
    Ok(view(&row))
}

/// Reads a workspace's upstream (never the auth string). Account permission
/// `administrate:workspace`.
pub async fn read_upstream(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
) -> Result<UpstreamView> {
    authorize(app, p, account, AccountPermission::AdministrateWorkspace).await?;
    let mut c = app.store.reader().await?;
    store::upstreams::find_upstream(&mut c, account, workspace)
        .await?
        .map(|r| view(&r))
        .ok_or_else(|| Error::not_found("upstream"))
}

/// Unbinds a workspace: its gateway calls answer 503 until it is bound again.
pub async fn delete_upstream(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
) -> Result<()> {
    authorize(app, p, account, AccountPermission::AdministrateWorkspace).await?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let before = store::upstreams::find_upstream(&mut tx, account, workspace)
        .await?
        .ok_or_else(|| Error::not_found("upstream"))?;
    store::upstreams::delete_upstream(&mut tx.access(account), account, workspace).await?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("workspace-upstream", "deleted", workspace.0)
            .workspace(workspace)
            .payload(json!({"url": {"before": before.url, "after": null}})),
    )
    .await?;
    tx.commit().await?;
    app.prefect_ui.forget(workspace);
    Ok(())
}

/// Connects to one of the upstream's allowed addresses (`services::upstreams::connect_addrs`):
/// every connection Atrium makes to an upstream — gateway calls on both transports, websockets,
/// retention — is made here or to an address from there, never by resolving its name again.
pub async fn connect_upstream(
    app: &App,
    up: &Upstream,
) -> Result<crate::upstream::tls::UpstreamStream, Error> {
    let addrs = connect_addrs(app, up)
        .await
        .map_err(|_| refused_upstream(app))?;
    let mut last = String::from("no address");
    for a in addrs {
        match tokio::time::timeout(
            crate::upstream::CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect(a),
        )
        .await
        {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                let Some(tls) = &up.tls else {
                    return Ok(crate::upstream::tls::UpstreamStream::Plain(s));
                };
                return crate::upstream::tls::handshake(tls, s)
                    .await
                    .map_err(|why| tls_failed(app, up, &why));
            }
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "connect timed out".into(),
        }
    }
    Err(upstream_failed(
        app,
        up,
        crate::metrics::UpstreamError::Connect,
        &last,
    ))
}

/// Sends one request (its URI in origin form: path and query) to the upstream and answers the
/// response head: plain HTTP through the shared keep-alive client, addressed to a checked
/// address; TLS over a checked, handshaken connection of its own. Failures are answered as the
/// 502s of [`upstream_failed`] (the caller bounds the wait).
pub async fn send(
    app: &App,
    up: &Upstream,
    mut req: axum::http::Request<axum::body::Body>,
) -> Result<axum::http::Response<hyper::body::Incoming>> {
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    if up.tls.is_none() {
        let addr = upstream_addr(app, up).await?;
        *req.uri_mut() = format!("http://{addr}{target}")
            .parse()
            .map_err(|_| Error::Malformed("not a valid upstream URI".into()))?;
        return app.upstream_client.request(req).await.map_err(|e| {
            let kind = if e.is_connect() {
                crate::metrics::UpstreamError::Connect
            } else {
                crate::metrics::UpstreamError::Other
            };
            upstream_failed(app, up, kind, &e)
        });
    }
    let stream = connect_upstream(app, up).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| {
                upstream_failed_with(app, up, crate::metrics::UpstreamError::Connect, &e)
            })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| upstream_failed_with(app, up, crate::metrics::UpstreamError::Other, &e))
}

/// [`upstream_failed`], except that a TLS failure found in `e`'s chain (an upstream that
/// refused the client certificate answers with an alert only after the handshake, when the
/// request is read) is named as one.
pub fn upstream_failed_with(
    app: &App,
    up: &Upstream,
    kind: crate::metrics::UpstreamError,
    e: &(dyn std::error::Error + 'static),
) -> Error {
    match up.tls.as_ref().and(crate::upstream::tls::tls_reason(e)) {
        Some(why) => tls_failed(app, up, &why),
        None => upstream_failed(app, up, kind, &e),
    }
}

/// A TLS handshake with the upstream failed: a 502 that says why (the reason names certificates
/// and alerts, never secrets).
fn tls_failed(app: &App, up: &Upstream, why: &str) -> Error {
    app.metrics
        .upstream_error(crate::metrics::UpstreamError::Connect);
    tracing::warn!(upstream = %up.url, error = %why, "gateway: TLS to the upstream failed");
    Error::UpstreamFailed(format!(
        "the workspace's upstream Prefect server could not be reached over TLS: {why}"
    ))
}

/// An address of the upstream the gateway may connect to (for clients that connect by
/// themselves: the request is addressed to it, with the upstream's own `Host`).
pub async fn upstream_addr(app: &App, up: &Upstream) -> Result<std::net::SocketAddr, Error> {
    connect_addrs(app, up)
        .await
        .ok()
        .and_then(|a| a.into_iter().next())
        .ok_or_else(|| refused_upstream(app))
}

fn refused_upstream(app: &App) -> Error {
    app.metrics
        .upstream_error(crate::metrics::UpstreamError::Connect);
    Error::UpstreamFailed(
        "the workspace's upstream address is refused by this installation's upstream policy (the server log says why); an account Owner or a site admin must rebind it"
            .into(),
    )
}

/// The error an upstream call that failed before its response head ends in (counted).
pub fn upstream_failed(
    app: &App,
    up: &Upstream,
    kind: crate::metrics::UpstreamError,
    error: &dyn std::fmt::Display,
) -> Error {
    app.metrics.upstream_error(kind);
    match kind {
        crate::metrics::UpstreamError::Timeout => Error::UpstreamTimeout(format!(
            "the workspace's upstream Prefect server did not answer within {} s",
            crate::upstream::RESPONSE_TIMEOUT.as_secs()
        )),
        crate::metrics::UpstreamError::Connect => {
            tracing::warn!(upstream = %up.url, error = %error, "gateway: upstream call failed");
            Error::UpstreamFailed(
                "the workspace's upstream Prefect server is unreachable (could not connect)".into(),
            )
        }
        crate::metrics::UpstreamError::Other => {
            tracing::warn!(upstream = %up.url, error = %error, "gateway: upstream call failed");
            Error::UpstreamFailed(
                "the workspace's upstream Prefect server closed the connection without an answer"
                    .into(),
            )
        }
    }
}

/// How long one of Atrium's own calls to an upstream may take.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// One JSON call to an upstream's API (`path` below its base, no leading slash). Calls made here
/// are idempotent (counts, filters, deletes), so an upstream that is briefly busy (429, 502, 503 —
/// a Prefect server on SQLite answers 503 while its database is locked) is retried with backoff.
/// A 404 is `Error::NotFound`.
pub async fn call(
    app: &App,
    u: &Upstream,
    method: axum::http::Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<serde_json::Value> {
    let mut delay = std::time::Duration::from_millis(250);
    let mut attempt = 0;
    loop {
        match call_once(app, u, method.clone(), path, body).await {
            Err(Busy(e)) if attempt < 4 => {
                tracing::debug!(error = %e, attempt, "upstream busy, retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(Busy(e) | Failed(e)) => return Err(e),
            Ok(v) => return Ok(v),
        }
    }
}

/// Why a single call failed: worth retrying or not.
enum CallError {
    Busy(Error),
    Failed(Error),
}
use CallError::{Busy, Failed};

impl From<Error> for CallError {
    fn from(e: Error) -> Self {
        Failed(e)
    }
}

async fn call_once(
    app: &App,
    u: &Upstream,
    method: axum::http::Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> std::result::Result<serde_json::Value, CallError> {
    let uri = format!("{}/{}", u.path, path);
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(&uri)
        .header(axum::http::header::HOST, &u.host);
    if let Some(a) = &u.authorization {
        req = req.header(axum::http::header::AUTHORIZATION, a.clone());
    }
    let body = match body {
        Some(b) => {
            req = req.header(axum::http::header::CONTENT_TYPE, "application/json");
            axum::body::Body::from(b.to_string())
        }
        None => axum::body::Body::empty(),
    };
    let req = req
        .body(body)
        .map_err(|e| Error::UpstreamFailed(format!("bad upstream request: {e}")))?;
    let resp = tokio::time::timeout(CALL_TIMEOUT, crate::services::upstreams::send(app, u, req))
        .await
        .map_err(|_| Error::UpstreamTimeout(format!("{} did not answer in time", u.url)))??;
    let status = resp.status();
    let bytes = tokio::time::timeout(
        CALL_TIMEOUT,
        http_body_util::BodyExt::collect(resp.into_body()),
    )
    .await
    .map_err(|_| Error::UpstreamTimeout(format!("{} did not answer in time", u.url)))?
    .map_err(|e| Error::UpstreamFailed(format!("{}: {e}", u.url)))?
    .to_bytes();
    if status == axum::http::StatusCode::NOT_FOUND {
        return Err(Failed(Error::NotFound(format!(
            "{path} not found upstream"
        ))));
    }
    if matches!(status.as_u16(), 429 | 502 | 503) {
        return Err(Busy(Error::UpstreamFailed(format!(
            "{} is busy: it answered {status} to {path}",
            u.url
        ))));
    }
    if !status.is_success() {
        return Err(Failed(Error::UpstreamFailed(format!(
            "{} answered {status} to {path}",
            u.url
        ))));
    }
    if bytes.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Failed(Error::UpstreamFailed(format!("{}: {e}", u.url))))
}
