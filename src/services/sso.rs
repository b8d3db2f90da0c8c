//! Single sign-on per account: OpenID Connect identity providers, the email domains an account
//! has proven it owns (DNS TXT), and sign-in through the IdP with just-in-time members and IdP
//! group → team mapping.
//!
//! Trust: an IdP configured by an account vouches only for email addresses in domains that
//! account has verified. Sessions are the user's (not the account's), so an IdP allowed to
//! assert any address would let an account's Admin sign in as a member of another account.

use crate::app::App;
use crate::authz::{Credential, Principal};
use crate::domain::plan::Feature;
use crate::domain::role::{AccountPermission as P, AccountRole};
use crate::domain::{validate, AccountId, TeamId, UserId};
use crate::services::audit::{self, NewEvent};
use crate::services::credentials::{random_base62, seal, sha256_hex, unseal};
use crate::services::{Error, Result};
use crate::store;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// Sealing purpose of client secrets and PKCE verifiers at rest.
const SECRET_PURPOSE: &str = "atrium/sso/client-secret/v1";
const VERIFIER_PURPOSE: &str = "atrium/sso/pkce/v1";
/// How long a sign-in sent to an IdP may take.
const LOGIN_TTL_SECONDS: i64 = 600;
/// Clock skew allowed on an ID token's `iat` and `nbf`.
const SKEW_SECONDS: i64 = 120;
/// Where IdPs send users back (one for every provider: the `state` names the attempt).
pub const OIDC_CALLBACK_PATH: &str = "/auth/oidc/callback";

// ---- providers ----

/// `POST /api/accounts/{a}/sso/providers`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProvider {
    /// `oidc`, or `saml` (in builds with the `saml` cargo feature; others refuse it).
    pub kind: ProviderKind,
    pub name: String,
    /// OIDC issuer URL; its discovery document must answer when the provider is saved.
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    /// Stored encrypted; never returned.
    pub client_secret: Option<String>,
    /// Extra scopes beyond `openid email profile`.
    pub scopes: Option<Vec<String>>,
    pub email_claim: Option<String>,
    pub name_claim: Option<String>,
    pub groups_claim: Option<String>,
    pub enabled: Option<bool>,
    /// SAML: the IdP's metadata, uploaded …
    pub metadata_xml: Option<String>,
    /// … or fetched from this URL when the provider is saved.
    pub metadata_url: Option<String>,
    /// SAML: the attribute holding the user's groups.
    pub groups_attribute: Option<String>,
    /// SAML: accept sign-ins the IdP starts (no AuthnRequest from Atrium); off by default.
    pub idp_initiated: Option<bool>,
}

/// The protocol of an identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Oidc,
    Saml,
}

/// `PATCH /api/accounts/{a}/sso/providers/{id}`: fields to change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProvider {
    pub name: Option<String>,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub email_claim: Option<String>,
    pub name_claim: Option<String>,
    pub groups_claim: Option<String>,
    pub enabled: Option<bool>,
    /// SAML: new IdP metadata (a rotated signing certificate, say), uploaded …
    pub metadata_xml: Option<String>,
    /// … or fetched again from this URL now; checked as when the provider was added.
    pub metadata_url: Option<String>,
    /// SAML: the attribute holding the user's groups ("" for none).
    pub groups_attribute: Option<String>,
    /// SAML only.
    pub idp_initiated: Option<bool>,
}

/// An identity provider as the API shows it (never its client secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderView {
    pub id: Uuid,
    pub kind: String,
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub has_client_secret: bool,
    pub scopes: Vec<String>,
    pub email_claim: String,
    pub name_claim: String,
    pub groups_claim: String,
    pub enabled: bool,
    /// OIDC: the redirect URI to register at the IdP.
    pub redirect_uri: String,
    /// SAML: Atrium's entity id, assertion consumer service URL and metadata URL, to register at
    /// the IdP (empty for OIDC).
    pub entity_id: String,
    pub acs_url: String,
    pub metadata_url: String,
    /// SAML: whether IdP-initiated sign-in is accepted.
    pub idp_initiated: bool,
    pub created: chrono::DateTime<chrono::Utc>,
    pub updated: chrono::DateTime<chrono::Utc>,
}

fn redirect_uri(app: &App) -> String {
    format!(
        "{}{OIDC_CALLBACK_PATH}",
        app.config.public_url.trim_end_matches('/')
    )
}

fn view(app: &App, r: store::sso::ProviderRow) -> ProviderView {
    let saml = r.kind == "saml";
    let sp = |f: fn(&App, AccountId) -> String| {
        if saml {
            f(app, r.account_id)
        } else {
            String::new()
        }
    };
    ProviderView {
        entity_id: sp(sp_entity_id),
        acs_url: sp(acs_url),
        metadata_url: sp(sp_entity_id),
        idp_initiated: r.idp_initiated,
        id: r.id,
        kind: r.kind,
        name: r.name,
        issuer: r.issuer,
        client_id: r.client_id,
        has_client_secret: !r.client_secret_enc.is_empty(),
        scopes: r.scopes.split_whitespace().map(str::to_string).collect(),
        email_claim: r.email_claim,
        name_claim: r.name_claim,
        groups_claim: r.groups_claim,
        enabled: r.enabled,
        redirect_uri: redirect_uri(app),
        created: r.created,
        updated: r.updated,
    }
}

/// A claim name: 1–100 printable characters without spaces.
fn claim(field: &str, v: &str) -> Result<String> {
    let ok = !v.is_empty() && v.len() <= 100 && v.chars().all(|c| c.is_ascii_graphic());
    ok.then(|| v.to_string())
        .ok_or_else(|| Error::validation(format!("{field}: a claim name without spaces")))
}

fn scopes(v: &[String]) -> Result<String> {
    if v.len() > 20 || v.iter().any(|s| claim("scopes", s).is_err()) {
        return Err(Error::validation(
            "scopes: at most 20 scope names without spaces",
        ));
    }
    Ok(v.join(" "))
}

fn issuer_url(v: &str) -> Result<IssuerUrl> {
    let ok = (v.starts_with("https://") || v.starts_with("http://")) && v.len() <= 500;
    ok.then(|| IssuerUrl::new(v.to_string()).ok())
        .flatten()
        .ok_or_else(|| Error::validation("issuer: an http(s) URL"))
}

/// A client secret as stored: sealed, or empty for none.
fn sealed_secret(app: &App, secret: &str) -> Result<String> {
    if secret.len() > 2000 {
        return Err(Error::validation("client_secret: at most 2000 characters"));
    }
    Ok(if secret.is_empty() {
        String::new()
    } else {
        seal(&app.audit_key, SECRET_PURPOSE, secret.as_bytes())
    })
}

/// The IdP's discovery document, fetched now (no redirects followed).
async fn discover(issuer: &IssuerUrl) -> Result<CoreProviderMetadata> {
    CoreProviderMetadata::discover_async(issuer.clone(), &back_channel)
        .await
        .map_err(|e| {
            Error::Validation(format!(
                "issuer: the discovery document of {} could not be used: {e}",
                issuer.as_str()
            ))
        })
}

/// Creates an identity provider (`administrate:sso`, plan feature `sso`).
pub async fn create_provider(
    app: &App,
    p: &Principal,
    account: AccountId,
    c: CreateProvider,
) -> Result<ProviderView> {
    crate::services::authorize(app, p, account, P::AdministrateSso).await?;
    crate::services::plans::require_feature(app, account, Feature::Sso)?;
    if c.kind == ProviderKind::Saml {
        return create_saml(app, p, account, c).await;
    }
    if c.metadata_xml.is_some()
        || c.metadata_url.is_some()
        || c.groups_attribute.is_some()
        || c.idp_initiated.is_some()
    {
        return Err(Error::validation(
            "metadata_xml, metadata_url and groups_attribute belong to SAML providers",
        ));
    }
    let name = validate::name("name", &c.name).map_err(Error::Validation)?;
    let issuer = issuer_url(c.issuer.as_deref().unwrap_or(""))?;
    let client_id = c
        .client_id
        .filter(|s| !s.is_empty() && s.len() <= 500)
        .ok_or_else(|| Error::validation("client_id: required"))?;
    let secret = c.client_secret.unwrap_or_default();
    discover(&issuer).await?;
    let now = app.now();
    let row = store::sso::ProviderRow {
        id: Uuid::new_v4(),
        account_id: account,
        kind: "oidc".into(),
        name,
        issuer: issuer.as_str().to_string(),
        client_id,
        client_secret_enc: sealed_secret(app, &secret)?,
        scopes: scopes(&c.scopes.unwrap_or_default())?,
        email_claim: claim("email_claim", c.email_claim.as_deref().unwrap_or("email"))?,
        name_claim: claim("name_claim", c.name_claim.as_deref().unwrap_or("name"))?,
        groups_claim: match c.groups_claim.as_deref() {
            None | Some("") => String::new(),
            Some(g) => claim("groups_claim", g)?,
        },
        enabled: c.enabled.unwrap_or(true),
        created: now,
        updated: now,
        metadata_xml: String::new(),
        metadata_url: String::new(),
        idp_initiated: false,
    };
    let payload = json!({"kind": row.kind, "issuer": row.issuer, "client_id": row.client_id});
    save(app, p, row, "created", payload).await
}

async fn provider_row(app: &App, account: AccountId, id: Uuid) -> Result<store::sso::ProviderRow> {
    let mut c = app.store.reader().await?;
    store::sso::find_provider(&mut c, account, id)
        .await?
        .ok_or_else(|| Error::not_found("identity provider"))
}

pub async fn list_providers(
    app: &App,
    p: &Principal,
    account: AccountId,
) -> Result<Vec<ProviderView>> {
    crate::services::authorize(app, p, account, P::ReadSso).await?;
    let mut c = app.store.reader().await?;
    Ok(store::sso::find_providers(&mut c, account)
        .await?
        .into_iter()
        .map(|r| view(app, r))
        .collect())
}

pub async fn read_provider(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: Uuid,
) -> Result<ProviderView> {
    crate::services::authorize(app, p, account, P::ReadSso).await?;
    Ok(view(app, provider_row(app, account, id).await?))
}

pub async fn update_provider(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: Uuid,
    u: UpdateProvider,
) -> Result<ProviderView> {
    crate::services::authorize(app, p, account, P::AdministrateSso).await?;
    crate::services::plans::require_feature(app, account, Feature::Sso)?;
    let mut row = provider_row(app, account, id).await?;
    let saml = row.kind == "saml";
    let oidc_fields = u.issuer.is_some()
        || u.client_id.is_some()
        || u.client_secret.is_some()
        || u.scopes.is_some()
        || u.groups_claim.is_some();
    let saml_fields = u.metadata_xml.is_some()
        || u.metadata_url.is_some()
        || u.groups_attribute.is_some()
        || u.idp_initiated.is_some();
    if saml && oidc_fields {
        return Err(Error::validation(
            "issuer, client_id, client_secret, scopes and groups_claim belong to OIDC providers",
        ));
    }
    if !saml && saml_fields {
        return Err(Error::validation(
            "metadata_xml, metadata_url, groups_attribute and idp_initiated belong to SAML providers",
        ));
    }
    let mut changed = Vec::new();
    if u.metadata_xml.is_some() || u.metadata_url.is_some() {
        let (xml, url, issuer) = idp_metadata(app, account, u.metadata_xml, u.metadata_url).await?;
        if issuer != row.issuer {
            changed.push("issuer");
        }
        (row.metadata_xml, row.metadata_url, row.issuer) = (xml, url, issuer);
        changed.push("metadata");
    }
    if let Some(g) = u.groups_attribute {
        row.groups_claim = if g.is_empty() {
            g
        } else {
            claim("groups_attribute", &g)?
        };
        changed.push("groups_attribute");
    }
    if let Some(n) = u.name {
        row.name = validate::name("name", &n).map_err(Error::Validation)?;
        changed.push("name");
    }
    if let Some(i) = u.issuer {
        let issuer = issuer_url(&i)?;
        discover(&issuer).await?;
        row.issuer = issuer.as_str().to_string();
        changed.push("issuer");
    }
    if let Some(c) = u.client_id {
        if c.is_empty() || c.len() > 500 {
            return Err(Error::validation("client_id: 1-500 characters"));
        }
        row.client_id = c;
        changed.push("client_id");
    }
    if let Some(s) = u.client_secret {
        row.client_secret_enc = sealed_secret(app, &s)?;
        changed.push("client_secret");
    }
    if let Some(s) = u.scopes {
        row.scopes = scopes(&s)?;
        changed.push("scopes");
    }
    if let Some(c) = u.email_claim {
        row.email_claim = claim("email_claim", &c)?;
        changed.push("email_claim");
    }
    if let Some(c) = u.name_claim {
        row.name_claim = claim("name_claim", &c)?;
        changed.push("name_claim");
    }
    if let Some(c) = u.groups_claim {
        row.groups_claim = if c.is_empty() {
            c
        } else {
            claim("groups_claim", &c)?
        };
        changed.push("groups_claim");
    }
    if let Some(e) = u.enabled {
        row.enabled = e;
        changed.push("enabled");
    }
    if let Some(i) = u.idp_initiated {
        row.idp_initiated = i;
        changed.push("idp_initiated");
    }
    row.updated = app.now();
    save(app, p, row, "updated", json!({"changed": changed})).await
}

/// Writes a provider and its audit record (never the secret) in one unit of work.
async fn save(
    app: &App,
    p: &Principal,
    row: store::sso::ProviderRow,
    action: &'static str,
    payload: Value,
) -> Result<ProviderView> {
    let account = row.account_id;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    store::sso::save_provider(&mut tx, &row)
        .await
        .map_err(|e| crate::services::error::unique_or(e, "a provider with this name exists"))?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("sso-provider", action, row.id)
            .name(row.name.clone())
            .payload(payload),
    )
    .await?;
    tx.commit().await?;
    Ok(view(app, row))
}

pub async fn delete_provider(app: &App, p: &Principal, account: AccountId, id: Uuid) -> Result<()> {
    crate::services::authorize(app, p, account, P::AdministrateSso).await?;
    let row = provider_row(app, account, id).await?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    if !store::sso::delete_provider(&mut tx, account, id).await? {
        return Err(Error::not_found("identity provider"));
    }
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("sso-provider", "deleted", id).name(row.name),
    )
    .await?;
    tx.commit().await
}

/// One IdP group → team mapping.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupMapping {
    pub group: String,
    pub team_id: TeamId,
}

/// Replaces a provider's group → team mappings (`administrate:sso`); applied at every sign-in.
pub async fn set_group_mappings(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: Uuid,
    mappings: Vec<GroupMapping>,
) -> Result<Vec<GroupMapping>> {
    crate::services::authorize(app, p, account, P::AdministrateSso).await?;
    provider_row(app, account, id).await?;
    if mappings.len() > 500 {
        return Err(Error::validation("at most 500 mappings"));
    }
    let mut pairs: Vec<(String, TeamId)> = Vec::with_capacity(mappings.len());
    {
        let mut c = app.store.reader().await?;
        for m in &mappings {
            let g = m.group.trim();
            if g.is_empty() || g.len() > 200 || g.chars().any(char::is_control) {
                return Err(Error::validation("group: 1-200 printable characters"));
            }
            if store::teams::find_team(&mut c, account, m.team_id)
                .await?
                .is_none()
            {
                return Err(Error::validation(format!(
                    "team_id: no team {} in this account",
                    m.team_id
                )));
            }
            if !pairs.iter().any(|(pg, pt)| pg == g && *pt == m.team_id) {
                pairs.push((g.to_string(), m.team_id));
            }
        }
    }
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    store::sso::replace_group_mappings(&mut tx, account, id, &pairs).await?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("sso-provider", "group-mappings-set", id)
            .payload(json!({"mappings": pairs.iter().map(|(g, t)| json!({"group": g, "team_id": t})).collect::<Vec<_>>()})),
    )
    .await?;
    tx.commit().await?;
    Ok(pairs
        .into_iter()
        .map(|(group, team_id)| GroupMapping { group, team_id })
        .collect())
}

pub async fn group_mappings(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: Uuid,
) -> Result<Vec<GroupMapping>> {
    crate::services::authorize(app, p, account, P::ReadSso).await?;
    provider_row(app, account, id).await?;
    let mut c = app.store.reader().await?;
    Ok(store::sso::find_group_mappings(&mut c, account, id)
        .await?
        .into_iter()
        .map(|(group, team_id)| GroupMapping { group, team_id })
        .collect())
}

// ---- domains ----

/// `POST /api/accounts/{a}/sso/domains`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddDomain {
    pub domain: String,
}

/// A domain and the DNS record that proves it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DomainView {
    pub id: Uuid,
    pub domain: String,
    /// The TXT record's name …
    pub txt_name: String,
    /// … and its value.
    pub txt_value: String,
    pub verified: bool,
    pub verified_at: Option<chrono::DateTime<chrono::Utc>>,
    pub checked_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Set while a verified domain's record is missing (the domain is un-verified after a grace
    /// period).
    pub failing_since: Option<chrono::DateTime<chrono::Utc>>,
}

fn domain_view(d: store::sso::DomainRow) -> DomainView {
    DomainView {
        id: d.id,
        txt_name: format!("_atrium-challenge.{}", d.domain),
        txt_value: format!("atrium-domain-verification={}", d.token),
        domain: d.domain,
        verified: d.verified_at.is_some(),
        verified_at: d.verified_at,
        checked_at: d.checked_at,
        failing_since: d.failing_since,
    }
}

/// A DNS name for email: lower case, 2–127 labels of letters, digits and inner dashes, a
/// non-numeric last label.
fn parse_domain(v: &str) -> Result<String> {
    let d = v.trim().trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = d.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let ok = d.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(label_ok)
        && labels
            .last()
            .is_some_and(|l| !l.bytes().all(|b| b.is_ascii_digit()));
    ok.then_some(d)
        .ok_or_else(|| Error::validation("domain: a DNS domain name such as example.com"))
}

pub async fn add_domain(
    app: &App,
    p: &Principal,
    account: AccountId,
    a: AddDomain,
) -> Result<DomainView> {
    crate::services::authorize(app, p, account, P::AdministrateSso).await?;
    crate::services::plans::require_feature(app, account, Feature::Sso)?;
    let domain = parse_domain(&a.domain)?;
    let row = store::sso::DomainRow {
        id: Uuid::new_v4(),
        account_id: account,
        domain,
        token: random_base62(32),
        verified_at: None,
        checked_at: None,
        failing_since: None,
        created: app.now(),
    };
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    store::sso::insert_domain(&mut tx, &row)
        .await
        .map_err(|e| crate::services::error::unique_or(e, "this domain was already added"))?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("sso-domain", "added", row.id).name(row.domain.clone()),
    )
    .await?;
    tx.commit().await?;
    Ok(domain_view(row))
}

pub async fn list_domains(app: &App, p: &Principal, account: AccountId) -> Result<Vec<DomainView>> {
    crate::services::authorize(app, p, account, P::ReadSso).await?;
    let mut c = app.store.reader().await?;
    Ok(store::sso::find_domains(&mut c, account)
        .await?
        .into_iter()
        .map(domain_view)
        .collect())
}

pub async fn delete_domain(app: &App, p: &Principal, account: AccountId, id: Uuid) -> Result<()> {
    crate::services::authorize(app, p, account, P::AdministrateSso).await?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let d = store::sso::find_domain(&mut tx, account, id)
        .await?
        .ok_or_else(|| Error::not_found("domain"))?;
    store::sso::delete_domain(&mut tx, account, id).await?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("sso-domain", "deleted", id).name(d.domain),
    )
    .await?;
    tx.commit().await
}

/// The TXT strings published at `name`, through the configured resolver (the system's, or
/// `ATRIUM_DNS_RESOLVER` in tests). An empty list when the name does not exist.
async fn txt_records(app: &App, name: &str) -> Result<Vec<String>> {
    use hickory_resolver::config::{NameServerConfig, ResolverConfig};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    use hickory_resolver::Resolver;
    let builder = match app.config.dns_resolver {
        Some(addr) => {
            let ns = NameServerConfig::udp_and_tcp(addr.ip());
            let mut ns = ns;
            for c in &mut ns.connections {
                c.port = addr.port();
            }
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => Resolver::builder_tokio()
            .map_err(|e| Error::UpstreamFailed(format!("the system DNS configuration: {e}")))?,
    };
    let mut builder = builder;
    builder.options_mut().cache_size = 0;
    let resolver = builder
        .build()
        .map_err(|e| Error::UpstreamFailed(format!("DNS resolver: {e}")))?;
    match resolver.txt_lookup(format!("{name}.")).await {
        Ok(found) => Ok(found
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                hickory_resolver::proto::rr::RData::TXT(t) => Some(
                    t.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect()),
        Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
        Err(e) => Err(Error::UpstreamFailed(format!("DNS lookup of {name}: {e}"))),
    }
}

/// Looks the domain's TXT record up now; verified when it holds this domain's token. A domain
/// already verified by another account stays theirs (409).
pub async fn verify_domain(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: Uuid,
) -> Result<DomainView> {
    crate::services::authorize(app, p, account, P::AdministrateSso).await?;
    let mut d = {
        let mut c = app.store.reader().await?;
        store::sso::find_domain(&mut c, account, id)
            .await?
            .ok_or_else(|| Error::not_found("domain"))?
    };
    let name = format!("_atrium-challenge.{}", d.domain);
    let want = format!("atrium-domain-verification={}", d.token);
    let seen = txt_records(app, &name).await?;
    let now = app.now();
    d.checked_at = Some(now);
    if !seen.iter().any(|s| s.trim() == want) {
        let mut tx = crate::services::unit::Unit::account(app, account).await?;
        store::sso::update_domain_state(&mut tx, &d).await?;
        tx.commit().await?;
        return Err(Error::conflict(if seen.is_empty() {
            format!("no TXT record at {name}; publish \"{want}\" there and try again")
        } else {
            format!(
                "the TXT record at {name} holds {seen:?}, not \"{want}\"; publish the value shown and try again"
            )
        }));
    }
    let newly = d.verified_at.is_none();
    d.verified_at.get_or_insert(now);
    d.failing_since = None;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    store::sso::update_domain_state(&mut tx, &d)
        .await
        .map_err(|e| {
            crate::services::error::unique_or(e, "this domain is verified by another account")
        })?;
    if newly {
        audit::record(
            app,
            &mut tx,
            Some(p),
            account.0,
            NewEvent::new("sso-domain", "verified", d.id).name(d.domain.clone()),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(domain_view(d))
}

/// How long a verified domain's record may be missing before the domain is un-verified.
pub const DOMAIN_GRACE_SECONDS: i64 = 72 * 3600;

/// Re-checks every verified domain: a record that is back clears the failure; one missing for
/// longer than [`DOMAIN_GRACE_SECONDS`] un-verifies the domain (audited). Run by a job.
pub async fn reverify_domains(app: &App) -> Result<usize> {
    let domains = {
        let mut c = app.store.reader().await?;
        store::sso::find_verified_domains(&mut c).await?
    };
    let mut lost = 0;
    for mut d in domains {
        let name = format!("_atrium-challenge.{}", d.domain);
        let want = format!("atrium-domain-verification={}", d.token);
        // A resolver failure is not evidence either way: try again next round.
        let Ok(seen) = txt_records(app, &name).await else {
            continue;
        };
        let now = app.now();
        d.checked_at = Some(now);
        let present = seen.iter().any(|s| s.trim() == want);
        let mut event = None;
        if present {
            d.failing_since = None;
        } else {
            let since = *d.failing_since.get_or_insert(now);
            if (now - since).num_seconds() >= DOMAIN_GRACE_SECONDS {
                d.verified_at = None;
                d.failing_since = None;
                lost += 1;
                event = Some(
                    NewEvent::new("sso-domain", "unverified", d.id)
                        .name(d.domain.clone())
                        .payload(json!({"reason": "the TXT record has been missing for longer than the grace period"})),
                );
            }
        }
        let mut tx = crate::services::unit::Unit::account(app, d.account_id).await?;
        store::sso::update_domain_state(&mut tx, &d).await?;
        if let Some(e) = event {
            audit::record(app, &mut tx, None, d.account_id.0, e).await?;
        }
        tx.commit().await?;
    }
    Ok(lost)
}

// ---- sign-in ----

/// Where a sign-in starts: an email (its verified domain names the account) or an account handle.
pub enum Realm<'a> {
    Email(&'a str),
    Account(&'a str),
}

/// The account whose IdP signs in `realm`, and that IdP (the first enabled one).
async fn realm_provider(app: &App, realm: Realm<'_>) -> Result<store::sso::ProviderRow> {
    let mut c = app.store.reader().await?;
    let account = match realm {
        Realm::Email(e) => {
            let domain = e
                .trim()
                .rsplit_once('@')
                .map(|(_, d)| d.to_ascii_lowercase())
                .ok_or_else(|| Error::validation("enter your email address"))?;
            store::sso::find_verified_domain(&mut c, &domain)
                .await?
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "no account signs in {domain} addresses with single sign-on; sign in with your password"
                    ))
                })?
                .account_id
        }
        Realm::Account(handle) => {
            store::accounts::find_account_by_handle(&mut c, handle)
                .await?
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "no account {handle:?} signs in with single sign-on"
                    ))
                })?
                .id
        }
    };
    crate::services::plans::require_feature(app, account, Feature::Sso)?;
    store::sso::find_providers(&mut c, account)
        .await?
        .into_iter()
        .find(|p| p.enabled)
        .ok_or_else(|| {
            Error::NotFound(
                "this account has no identity provider enabled for single sign-on".into(),
            )
        })
}

fn client_of(
    app: &App,
    p: &store::sso::ProviderRow,
    meta: CoreProviderMetadata,
) -> Result<
    CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
> {
    let secret = if p.client_secret_enc.is_empty() {
        None
    } else {
        let plain = unseal(&app.audit_key, SECRET_PURPOSE, &p.client_secret_enc)
            .ok_or_else(|| Error::Unexpected(anyhow::anyhow!("a client secret does not unseal")))?;
        Some(ClientSecret::new(
            String::from_utf8_lossy(&plain).into_owned(),
        ))
    };
    let redirect = RedirectUrl::new(redirect_uri(app))
        .map_err(|e| Error::Unexpected(anyhow::anyhow!("redirect URI: {e}")))?;
    Ok(
        CoreClient::from_provider_metadata(meta, ClientId::new(p.client_id.clone()), secret)
            .set_redirect_uri(redirect),
    )
}

/// Starts a sign-in: remembers the attempt (state, nonce, PKCE verifier) and answers the IdP URL
/// to send the browser to.
pub async fn begin_login(app: &App, realm: Realm<'_>, next: &str) -> Result<String> {
    let provider = realm_provider(app, realm).await?;
    if provider.kind == "saml" {
        return begin_saml(app, &provider, next).await;
    }
    let issuer = issuer_url(&provider.issuer)?;
    let meta = discover(&issuer).await.map_err(unavailable)?;
    let client = client_of(app, &provider, meta)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge);
    for s in provider.scopes.split_whitespace() {
        req = req.add_scope(Scope::new(s.to_string()));
    }
    let (url, state, nonce) = req.url();
    let mut tx = crate::services::unit::Unit::begin(app).await?;
    store::sso::sweep_logins(&mut tx, app.now()).await?;
    store::sso::insert_login(
        &mut tx,
        &store::sso::LoginRow {
            state_hash: sha256_hex(state.secret()),
            provider_id: provider.id,
            account_id: provider.account_id,
            nonce: nonce.secret().clone(),
            pkce_verifier_enc: seal(
                &app.audit_key,
                VERIFIER_PURPOSE,
                verifier.secret().as_bytes(),
            ),
            next: next.to_string(),
            expires_at: app.now() + chrono::Duration::seconds(LOGIN_TTL_SECONDS),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(url.to_string())
}

/// An IdP that cannot be reached is the IdP's problem, not the user's input.
fn unavailable(e: Error) -> Error {
    match e {
        Error::Validation(m) => Error::UpstreamFailed(m),
        other => other,
    }
}

/// What the IdP sent back to the redirect URI.
#[derive(Debug, Deserialize)]
pub struct Callback {
    pub state: Option<String>,
    pub code: Option<String>,
    /// RFC 9207: the issuer of the authorization response.
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// A refused sign-in: the user sees the message; the audit log gets the reason class.
fn refused(app: &App, account: Option<AccountId>, reason: &'static str, msg: String) -> Error {
    let who = Principal::anonymous(None, None);
    audit::record_refusal(
        app,
        &who,
        account.map_or(crate::domain::audit::SYSTEM_CHAIN, |a| a.0),
        NewEvent::new("sso", "login-refused", account.map_or(Uuid::nil(), |a| a.0))
            .payload(json!({"reason": reason, "detail": msg})),
    );
    Error::Forbidden(format!("single sign-on refused: {msg}"))
}

/// The claims Atrium reads from a verified ID token.
struct Identity {
    email: String,
    name: Option<String>,
    groups: Vec<String>,
}

/// Finishes a sign-in: the attempt is taken (once), the code exchanged with PKCE, the ID token
/// verified (signature, issuer, audience, nonce, expiry, `iat`/`nbf` within the skew), the email
/// checked against the account's verified domains; then the user and membership are found or
/// created, groups mapped to teams, and a session started. Answers the session and where to go.
pub async fn finish_login(
    app: &App,
    cb: Callback,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> Result<(crate::services::auth::NewSession, String)> {
    let state = cb
        .state
        .as_deref()
        .ok_or_else(|| refused(app, None, "state", "the answer carries no state".into()))?;
    let attempt = {
        let mut tx = crate::services::unit::Unit::begin(app).await?;
        let a = store::sso::take_login(&mut tx, &sha256_hex(state)).await?;
        tx.commit().await?;
        a.ok_or_else(|| {
            refused(
                app,
                None,
                "state",
                "this sign-in is unknown, was already used or expired; start again".into(),
            )
        })?
    };
    let account = attempt.account_id;
    let deny = |reason: &'static str, msg: String| refused(app, Some(account), reason, msg);
    if attempt.expires_at <= app.now() {
        return Err(deny(
            "expired",
            "the sign-in took too long; start again".into(),
        ));
    }
    if let Some(e) = cb.error {
        return Err(deny(
            "idp-error",
            format!(
                "the identity provider answered {e}{}",
                cb.error_description
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ),
        ));
    }
    let provider = {
        let mut c = app.store.reader().await?;
        store::sso::find_provider_by_id(&mut c, attempt.provider_id)
            .await?
            .filter(|p| p.enabled && p.account_id == account)
            .ok_or_else(|| {
                deny(
                    "provider",
                    "the identity provider is no longer enabled".into(),
                )
            })?
    };
    if let Some(iss) = &cb.iss {
        if iss.trim_end_matches('/') != provider.issuer.trim_end_matches('/') {
            return Err(deny(
                "issuer",
                "the answer comes from another issuer than this account's provider".into(),
            ));
        }
    }
    let code = cb
        .code
        .ok_or_else(|| deny("code", "the answer carries no authorization code".into()))?;
    let verifier = unseal(&app.audit_key, VERIFIER_PURPOSE, &attempt.pkce_verifier_enc)
        .ok_or_else(|| deny("state", "the sign-in attempt does not open".into()))?;
    let issuer = issuer_url(&provider.issuer)?;
    // Discovery at each answer: the JWKS is always the IdP's current one (keys rotate).
    let meta = discover(&issuer).await.map_err(unavailable)?;
    let client = client_of(app, &provider, meta)?;
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| deny("token", format!("the provider has no token endpoint: {e}")))?
        .set_pkce_verifier(PkceCodeVerifier::new(
            String::from_utf8_lossy(&verifier).into_owned(),
        ))
        .request_async(&back_channel)
        .await
        .map_err(|e| deny("token", format!("the code was not accepted: {e}")))?;
    let id_token = token
        .extra_fields()
        .id_token()
        .ok_or_else(|| deny("id-token", "the provider sent no ID token".into()))?;
    let now = app.now();
    let clock = app.clone();
    let id_verifier = client
        .id_token_verifier()
        .set_time_fn(move || clock.now())
        .set_issue_time_verifier_fn(move |iat| {
            if iat > now + chrono::Duration::seconds(SKEW_SECONDS) {
                Err(format!("issued in the future ({iat})"))
            } else {
                Ok(())
            }
        });
    id_token
        .claims(&id_verifier, &Nonce::new(attempt.nonce.clone()))
        .map_err(|e| deny("id-token", format!("the ID token does not verify: {e}")))?;
    let identity =
        read_identity(&provider, &id_token.to_string(), now).map_err(|m| deny("claims", m))?;
    let session = complete(app, &provider, &identity, ip, user_agent).await?;
    Ok((session, attempt.next))
}

/// The end of every sign-in through an IdP, whatever the protocol: the address must be in a
/// domain the provider's account verified; then the member is admitted and a session started.
async fn complete(
    app: &App,
    provider: &store::sso::ProviderRow,
    identity: &Identity,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> Result<crate::services::auth::NewSession> {
    let account = provider.account_id;
    let deny = |reason: &'static str, msg: String| refused(app, Some(account), reason, msg);
    let domain = identity
        .email
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default();
    let verified = {
        let mut c = app.store.reader().await?;
        store::sso::find_verified_domain(&mut c, &domain)
            .await?
            .is_some_and(|d| d.account_id == account)
    };
    if !verified {
        return Err(deny(
            "domain",
            format!(
                "{} is not in a domain this account has verified, so its identity provider cannot sign it in",
                identity.email
            ),
        ));
    }
    let user = admit(app, provider, identity).await?;
    crate::services::auth::start_session(app, &user, ip, user_agent, "sso").await
}

/// The email, name and groups of a verified ID token, by the provider's claim names. The token's
/// signature was verified before; this reads the same payload for the configurable claims.
fn read_identity(
    provider: &store::sso::ProviderRow,
    jwt: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> std::result::Result<Identity, String> {
    use base64::Engine;
    let payload = jwt
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .ok_or("the ID token's claims do not parse")?;
    if let Some(nbf) = payload.get("nbf").and_then(Value::as_i64) {
        if nbf > now.timestamp() + SKEW_SECONDS {
            return Err("the ID token is not valid yet (nbf)".into());
        }
    }
    let email = payload
        .get(&provider.email_claim)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the ID token has no {} claim", provider.email_claim))?;
    let email = validate::email(email).map_err(|e| format!("the email claim: {e}"))?;
    if payload.get("email_verified").and_then(Value::as_bool) == Some(false) {
        return Err(format!("the identity provider has not verified {email}"));
    }
    let name = payload
        .get(&provider.name_claim)
        .and_then(Value::as_str)
        .map(str::to_string);
    let groups = if provider.groups_claim.is_empty() {
        Vec::new()
    } else {
        match payload.get(&provider.groups_claim) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    };
    Ok(Identity {
        email,
        name,
        groups,
    })
}

/// The signed-in identity's user, after making sure they are an active member (created just in
/// time within the seat limit) and their mapped teams follow their IdP groups. One unit of work.
async fn admit(
    app: &App,
    provider: &store::sso::ProviderRow,
    id: &Identity,
) -> Result<crate::domain::User> {
    let account = provider.account_id;
    let now = app.now();
    let (first, last) = match id.name.as_deref().map(str::trim) {
        Some(n) if !n.is_empty() => match n.split_once(' ') {
            Some((f, l)) => (f.to_string(), l.trim().to_string()),
            None => (n.to_string(), String::new()),
        },
        _ => (String::new(), String::new()),
    };
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let mut events = Vec::new();
    let user = match store::users::find_user_by_email(&mut tx, &id.email).await? {
        Some(u) => u,
        None => {
            crate::services::plans::ensure_seat(app, &mut tx, account, true)
                .await
                .map_err(|e| match e {
                    Error::Conflict(m) => refused(app, Some(account), "seats", m),
                    other => other,
                })?;
            let mut extra = serde_json::Map::new();
            extra.insert("provider".into(), json!(provider.id));
            let (u, e) = crate::services::auth::insert_passwordless_user(
                &mut tx, &id.email, &first, &last, now, "sso", extra,
            )
            .await?;
            events.push(e);
            u
        }
    };
    match store::memberships::find_membership_by_user(&mut tx, account, user.id).await? {
        Some(m) if !m.active => {
            return Err(refused(
                app,
                Some(account),
                "deactivated",
                "your membership of this account is deactivated".into(),
            ))
        }
        Some(_) => {}
        None => {
            crate::services::plans::ensure_seat(app, &mut tx, account, true)
                .await
                .map_err(|e| match e {
                    Error::Conflict(m) => refused(app, Some(account), "seats", m),
                    other => other,
                })?;
            let role = default_role(&mut tx, account).await?;
            let mut access = tx.access(account);
            let m = store::memberships::insert_membership(&mut access, account, user.id, role, now)
                .await?;
            events.push(
                NewEvent::new("account-membership", "created", m.0)
                    .name(user.email.clone())
                    .payload(json!({"user_id": user.id, "role": role.name(), "via": "sso", "provider": provider.id})),
            );
        }
    }
    // The profile follows the IdP's name.
    if !first.is_empty() && (first != user.first_name || last != user.last_name) {
        let patch = store::users::UserPatch {
            first_name: Some(first.clone()),
            last_name: Some(last.clone()),
            ..Default::default()
        };
        store::users::update_user(&mut tx, user.id, &patch, now).await?;
    }
    // Mapped teams follow the IdP's groups: joined when a group maps to them, left otherwise.
    let mappings = store::sso::find_group_mappings(&mut tx, account, provider.id).await?;
    let mapped: std::collections::BTreeSet<TeamId> = mappings.iter().map(|(_, t)| *t).collect();
    let (mut joined, mut left) = (Vec::new(), Vec::new());
    for team in mapped {
        let wanted = mappings
            .iter()
            .any(|(g, t)| *t == team && id.groups.iter().any(|ug| ug == g));
        let mut access = tx.access(account);
        if wanted {
            store::teams::upsert_member(
                &mut access,
                account,
                &store::teams::TeamMemberRow {
                    team_id: team.0,
                    member_id: user.id.0,
                    member_type: "user".into(),
                    expires_at: None,
                },
                now,
            )
            .await?;
            joined.push(team);
        } else if store::teams::delete_member(&mut access, account, team.0, user.id.0).await? {
            left.push(team);
        }
    }
    if !mappings.is_empty() {
        events.push(
            NewEvent::new("sso", "groups-synced", user.id.0)
                .name(user.email.clone())
                .payload(json!({"groups": id.groups, "teams": joined, "left": left})),
        );
    }
    events.push(
        NewEvent::new("sso", "login-succeeded", user.id.0)
            .name(user.email.clone())
            .payload(json!({"provider": provider.id})),
    );
    let me = Principal {
        user_id: user.id,
        name: user.email.clone(),
        site_admin: user.site_admin,
        credential: Credential::Cli,
        ip: None,
        user_agent: None,
        bot_account: None,
    };
    for e in events {
        audit::record(app, &mut tx, Some(&me), account.0, e).await?;
    }
    tx.commit().await?;
    Ok(user)
}

/// The account role of members created by sign-in: the account setting
/// `sso_default_account_role_id` when set to Member or Admin, else Member.
pub(crate) async fn default_role(c: &mut store::Conn, account: AccountId) -> Result<AccountRole> {
    let row = store::accounts::find_account(c, account)
        .await?
        .ok_or_else(|| Error::not_found("account"))?;
    let chosen = row
        .settings
        .get("sso_default_account_role_id")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<Uuid>().ok())
        .and_then(AccountRole::from_id);
    Ok(match chosen {
        Some(r @ (AccountRole::Member | AccountRole::Admin)) => r,
        _ => AccountRole::Member,
    })
}

// ---- SAML 2.0 ----

/// Atrium's SAML entity id for an account, which is also the URL of its SP metadata.
pub fn sp_entity_id(app: &App, account: AccountId) -> String {
    format!(
        "{}/auth/saml/{account}/metadata",
        app.config.public_url.trim_end_matches('/')
    )
}

/// Atrium's assertion consumer service for an account (HTTP-POST binding).
pub fn acs_url(app: &App, account: AccountId) -> String {
    format!(
        "{}/auth/saml/{account}/acs",
        app.config.public_url.trim_end_matches('/')
    )
}

/// What the IdP posted to the assertion consumer service.
#[derive(Debug, Deserialize)]
pub struct AcsPost {
    #[serde(rename = "SAMLResponse")]
    pub saml_response: String,
    #[serde(rename = "RelayState")]
    pub relay_state: Option<String>,
}

// The SAML code needs libxmlsec1 at build time (samael): it is the `saml` cargo feature, so that a
// machine with only the Rust toolchain still builds and tests the rest.
#[cfg(feature = "saml")]
mod saml;
#[cfg(feature = "saml")]
use saml::{begin_saml, create_saml, idp_metadata};
#[cfg(feature = "saml")]
pub use saml::{finish_saml, sp_metadata};

#[cfg(not(feature = "saml"))]
fn no_saml() -> Error {
    Error::validation(
        "kind: this build of Atrium has no SAML 2.0 support (build it with `--features saml`, which needs libxmlsec1); use the IdP's OpenID Connect application instead",
    )
}

#[cfg(not(feature = "saml"))]
async fn create_saml(
    _app: &App,
    _p: &Principal,
    _account: AccountId,
    _c: CreateProvider,
) -> Result<ProviderView> {
    Err(no_saml())
}

#[cfg(not(feature = "saml"))]
async fn idp_metadata(
    _app: &App,
    _account: AccountId,
    _xml: Option<String>,
    _url: Option<String>,
) -> Result<(String, String, String)> {
    Err(no_saml())
}

#[cfg(not(feature = "saml"))]
async fn begin_saml(
    _app: &App,
    _provider: &store::sso::ProviderRow,
    _next: &str,
) -> Result<String> {
    Err(no_saml())
}

/// Without SAML support, the ACS refuses every post.
#[cfg(not(feature = "saml"))]
pub async fn finish_saml(
    _app: &App,
    _account: AccountId,
    _post: AcsPost,
    _ip: Option<&str>,
    _user_agent: Option<&str>,
) -> Result<(crate::services::auth::NewSession, String)> {
    Err(no_saml())
}

/// Without SAML support, there is no SP metadata.
#[cfg(not(feature = "saml"))]
pub fn sp_metadata(_app: &App, _account: AccountId) -> Result<String> {
    Err(Error::NotFound(
        "this build of Atrium has no SAML 2.0 support".into(),
    ))
}

// ---- enforcement ----

/// The account that requires single sign-on for `email`: its domain is verified by an account
/// with `require_sso` on (and the `sso` feature). `None` when password sign-in is allowed.
pub async fn sso_required_for(app: &App, email: &str) -> Result<Option<AccountId>> {
    let Some((_, domain)) = email.rsplit_once('@') else {
        return Ok(None);
    };
    let mut c = app.store.reader().await?;
    let Some(d) = store::sso::find_verified_domain(&mut c, &domain.to_ascii_lowercase()).await?
    else {
        return Ok(None);
    };
    if crate::services::plans::require_feature(app, d.account_id, Feature::Sso).is_err() {
        return Ok(None);
    }
    let required = store::accounts::find_account(&mut c, d.account_id)
        .await?
        .is_some_and(|a| a.settings.get("require_sso").and_then(Value::as_bool) == Some(true));
    Ok(required.then_some(d.account_id))
}

/// Whether `user` is an active Owner of `account` (Owners keep a password: the break-glass path).
async fn is_owner(app: &App, account: AccountId, user: UserId) -> Result<bool> {
    let mut c = app.store.reader().await?;
    Ok(
        store::memberships::find_membership_by_user(&mut c, account, user)
            .await?
            .is_some_and(|m| m.active && m.account_role_id.0 == AccountRole::Owner.id()),
    )
}

/// A password sign-in of `user` (password already verified): refused when an account requires
/// single sign-on for their address, unless they are its Owner — then allowed and audited as
/// break-glass.
pub async fn check_password_sign_in(
    app: &App,
    user: &crate::domain::User,
    ip: Option<&str>,
) -> Result<()> {
    let Some(account) = sso_required_for(app, &user.email).await? else {
        return Ok(());
    };
    let who = Principal {
        user_id: user.id,
        name: user.email.clone(),
        site_admin: user.site_admin,
        credential: Credential::Cli,
        ip: ip.map(str::to_string),
        user_agent: None,
        bot_account: None,
    };
    if is_owner(app, account, user.id).await? {
        let mut tx = crate::services::unit::Unit::account(app, account).await?;
        audit::record(
            app,
            &mut tx,
            Some(&who),
            account.0,
            NewEvent::new("sso", "break-glass", user.id.0)
                .name(user.email.clone())
                .payload(json!({"detail": "an Owner signed in with a password while the account requires single sign-on"})),
        )
        .await?;
        tx.commit().await?;
        return Ok(());
    }
    audit::record_refusal(
        app,
        &who,
        account.0,
        NewEvent::new("sso", "password-refused", user.id.0)
            .name(user.email.clone())
            .payload(json!({"reason": "require_sso"})),
    );
    Err(Error::Forbidden(
        "your account requires single sign-on: use \"Sign in with single sign-on\" (/auth/sso)"
            .into(),
    ))
}

/// A personal API key for `p`: when an account requires single sign-on for their address, keys
/// come only from a session (which only the IdP can give them), never from another key — Owners
/// excepted.
pub async fn check_personal_key(app: &App, p: &Principal) -> Result<()> {
    if !matches!(p.credential, Credential::ApiKey { .. }) {
        return Ok(());
    }
    let Some(account) = sso_required_for(app, &p.name).await? else {
        return Ok(());
    };
    if is_owner(app, account, p.user_id).await? {
        return Ok(());
    }
    Err(Error::Forbidden(
        "your account requires single sign-on: create API keys in the dashboard or with `prefect cloud login` in the browser, after signing in through your identity provider".into(),
    ))
}

/// When an account turns `require_sso` on: the sessions of its members (Owners excepted) whose
/// address is in one of its verified domains end, so they come back through the IdP. Call inside
/// the unit of work that changes the setting.
pub async fn on_require_sso(c: &mut store::Conn, account: AccountId) -> Result<u64> {
    let domains = store::sso::find_domains(c, account).await?;
    let mut ended = 0;
    for d in domains.iter().filter(|d| d.verified_at.is_some()) {
        ended += store::sso::end_member_sessions_in_domain(c, account, &d.domain).await?;
    }
    Ok(ended)
}

// ---- the back channel ----

/// Why a back-channel call to an IdP failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BackChannelError(String);

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<bytes::Bytes>,
>;

fn https_client() -> &'static HttpsClient {
    static CLIENT: std::sync::OnceLock<HttpsClient> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https)
    })
}

/// Largest answer read from an IdP (discovery, keys, tokens).
const MAX_BACK_CHANNEL_BYTES: usize = 1024 * 1024;

/// One back-channel HTTP call to an IdP: 10 s at most, redirects not followed (an answer is
/// what the configured URL said), the body bounded.
pub async fn back_channel(
    req: openidconnect::HttpRequest,
) -> std::result::Result<openidconnect::HttpResponse, BackChannelError> {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let req = axum::http::Request::from_parts(parts, http_body_util::Full::new(body.into()));
    let call = async {
        let resp = https_client()
            .request(req)
            .await
            .map_err(|e| BackChannelError(format!("request failed: {e}")))?;
        let (parts, body) = resp.into_parts();
        let bytes = http_body_util::Limited::new(body, MAX_BACK_CHANNEL_BYTES)
            .collect()
            .await
            .map_err(|e| BackChannelError(format!("reading the answer: {e}")))?
            .to_bytes();
        Ok(axum::http::Response::from_parts(parts, bytes.to_vec()))
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), call)
        .await
        .map_err(|_| BackChannelError("no answer within 10 s".into()))?
}
