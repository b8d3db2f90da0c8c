//! SCIM 2.0 provisioning (RFC 7643, RFC 7644): per-account SCIM tokens, and Users (members of
//! the account) and Groups (its teams) as an identity provider creates, changes and removes them.
//! Every change goes through a unit of work that updates the permission index and the audit log
//! with the token as actor, so a deactivation or a team change is refused or granted at the very
//! next request on every server. The SCIM wire format (JSON resources, errors, discovery) is
//! built here; `http::scim` only routes.

use crate::app::App;
use crate::authz::{Credential, Principal};
use crate::domain::plan::Feature;
use crate::domain::role::AccountPermission as P;
use crate::domain::scim::{get_ci, loose_bool, matches, parse_filter, parse_patch_path, Filter};
use crate::domain::{validate, AccountId, TeamId, UserId};
use crate::services::audit::{self, NewEvent};
use crate::services::credentials::{random_base62, sha256_hex};
use crate::services::{Error, Result};
use crate::store;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const TOKEN_PREFIX: &str = "atrium_scim_";
/// Most resources one list answers.
pub const MAX_COUNT: usize = 1000;
/// Most operations in one PATCH.
const MAX_OPERATIONS: usize = 1000;

// ---- errors ----

/// A SCIM error (RFC 7644 §3.12): the HTTP status, the `scimType` when one applies, a detail.
#[derive(Debug)]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn new(status: u16, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(400, Some(scim_type), detail)
    }

    fn not_found(what: &str) -> Self {
        Self::new(404, None, format!("{what} not found"))
    }

    /// The SCIM error body.
    pub fn body(&self) -> Value {
        let mut v = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            v["scimType"] = json!(t);
        }
        v
    }
}

impl From<Error> for ScimError {
    fn from(e: Error) -> Self {
        match e {
            Error::Validation(m) => ScimError::bad("invalidValue", m),
            Error::NotFound(m) => ScimError::new(404, None, m),
            Error::Conflict(m) => ScimError::new(409, None, m),
            Error::Forbidden(m) => ScimError::new(403, None, m),
            Error::Unauthenticated(m) => ScimError::new(401, None, m),
            other => {
                tracing::error!(error = %other, "SCIM request failed");
                ScimError::new(500, None, "internal error")
            }
        }
    }
}

impl From<crate::store::Error> for ScimError {
    fn from(e: crate::store::Error) -> Self {
        Error::from(e).into()
    }
}

impl From<crate::authz::Denied> for ScimError {
    fn from(e: crate::authz::Denied) -> Self {
        Error::from(e).into()
    }
}

type SResult<T> = std::result::Result<T, ScimError>;

// ---- tokens ----

/// `POST /api/accounts/{a}/scim_tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateScimToken {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^\s*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    pub name: String,
    /// The token stops working at this instant (none: until revoked).
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A SCIM token as listed (never the token itself).
#[derive(Debug, Serialize, ToSchema)]
pub struct ScimTokenView {
    pub id: Uuid,
    pub name: String,
    /// The token's first and last characters.
    pub masked: String,
    pub created: chrono::DateTime<chrono::Utc>,
    pub created_by: String,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub last_used: Option<chrono::DateTime<chrono::Utc>>,
    /// The SCIM base URL to give the identity provider.
    pub base_url: String,
}

/// A new SCIM token: the only time `token` is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScimTokenCreated {
    pub id: Uuid,
    pub name: String,
    pub token: String,
    pub base_url: String,
    pub masked: String,
    pub created: chrono::DateTime<chrono::Utc>,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The SCIM base URL of an account, to paste into an identity provider.
pub fn base_url(app: &App, account: AccountId) -> String {
    format!(
        "{}/scim/v2/{account}",
        app.config.public_url.trim_end_matches('/')
    )
}

fn token_view(app: &App, t: store::scim::TokenRow) -> ScimTokenView {
    ScimTokenView {
        id: t.id,
        base_url: base_url(app, t.account_id),
        name: t.name,
        masked: t.masked,
        created: t.created,
        created_by: t.created_by,
        expires_at: t.expires_at,
        last_used: t.last_used,
    }
}

async fn manage(app: &App, p: &Principal, account: AccountId, perm: P) -> Result<()> {
    crate::services::authorize(app, p, account, perm).await?;
    crate::services::plans::require_feature(app, account, Feature::Scim)
}

/// Creates a SCIM token (an Owner with `administrate:sso`, plan feature `scim`); the token is
/// shown once.
pub async fn create_token(
    app: &App,
    p: &Principal,
    account: AccountId,
    c: CreateScimToken,
) -> Result<ScimTokenCreated> {
    manage(app, p, account, P::AdministrateSso).await?;
    // A token can deactivate and remove members of any role (but the last active Owner): an
    // Admin making one would act above their own role, so only Owners (and operators) may.
    let role = crate::services::gate::member(app, p, account).await?.role();
    if role != crate::domain::role::AccountRole::Owner && !p.site_admin {
        return Err(Error::Forbidden(
            "only Owners create SCIM tokens: a token can deactivate and remove members of any role"
                .into(),
        ));
    }
    let name = validate::name("name", &c.name).map_err(Error::Validation)?;
    let now = app.now();
    if c.expires_at.is_some_and(|e| e <= now) {
        return Err(Error::validation("expires_at must be in the future"));
    }
    let token = format!("{TOKEN_PREFIX}{}", random_base62(40));
    let row = store::scim::TokenRow {
        id: Uuid::new_v4(),
        account_id: account,
        name,
        token_hash: sha256_hex(&token),
        masked: format!(
            "{TOKEN_PREFIX}{}…{}",
            &token[12..16],
            &token[token.len() - 4..]
        ),
        created_by: p.name.clone(),
        created: now,
        expires_at: c.expires_at,
        last_used: None,
    };
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    store::scim::insert_token(&mut tx, &row)
        .await
        .map_err(|e| crate::services::error::unique_or(e, "a SCIM token with this name exists"))?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("scim-token", "created", row.id)
            .name(row.name.clone())
            .payload(json!({"expires_at": row.expires_at})),
    )
    .await?;
    tx.commit().await?;
    Ok(ScimTokenCreated {
        id: row.id,
        base_url: base_url(app, account),
        name: row.name,
        token,
        masked: row.masked,
        created: row.created,
        expires_at: row.expires_at,
    })
}

/// The account's SCIM tokens (`read:sso`).
pub async fn list_tokens(
    app: &App,
    p: &Principal,
    account: AccountId,
) -> Result<Vec<ScimTokenView>> {
    manage(app, p, account, P::ReadSso).await?;
    let mut c = app.store.reader().await?;
    Ok(store::scim::find_tokens(&mut c, account)
        .await?
        .into_iter()
        .map(|t| token_view(app, t))
        .collect())
}

/// Revokes a SCIM token (`administrate:sso`): its next request is refused.
pub async fn delete_token(app: &App, p: &Principal, account: AccountId, id: Uuid) -> Result<()> {
    crate::services::authorize(app, p, account, P::AdministrateSso).await?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let t = store::scim::delete_token(&mut tx, account, id)
        .await?
        .ok_or_else(|| Error::not_found("SCIM token"))?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("scim-token", "deleted", id).name(t.name),
    )
    .await?;
    tx.commit().await
}

/// The account a SCIM URL names, by id or handle; `None` when there is none.
async fn account_ref(app: &App, r: &str) -> Result<Option<AccountId>> {
    let mut c = app.store.reader().await?;
    if let Ok(id) = r.parse::<Uuid>() {
        return Ok(store::accounts::find_account(&mut c, AccountId(id))
            .await?
            .map(|a| a.id));
    }
    Ok(store::accounts::find_account_by_handle(&mut c, r)
        .await?
        .map(|a| a.id))
}

/// Authenticates a SCIM request for the account `account` names (its id or handle): the bearer
/// token must be one of that account's, not expired. Looked up in the database at every request,
/// so a revoked token is refused at once on every server. Answers the account and the token as a
/// principal.
pub async fn authenticate(
    app: &App,
    account: &str,
    bearer: Option<&str>,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> SResult<(AccountId, Principal)> {
    let unauthorized = || {
        ScimError::new(
            401,
            None,
            "a valid SCIM bearer token of this account is required",
        )
    };
    let token = bearer
        .filter(|t| t.starts_with(TOKEN_PREFIX) && t.len() < 200)
        .ok_or_else(unauthorized)?;
    let account = account_ref(app, account).await?.ok_or_else(unauthorized)?;
    let row = {
        let mut c = app.store.reader().await?;
        store::scim::find_token_by_hash(&mut c, &sha256_hex(token)).await?
    };
    let now = app.now();
    let row = row
        .filter(|t| t.account_id == account && t.expires_at.is_none_or(|e| e > now))
        .ok_or_else(unauthorized)?;
    crate::services::plans::require_feature(app, account, Feature::Scim)?;
    if row
        .last_used
        .is_none_or(|u| u < now - chrono::Duration::minutes(1))
    {
        let mut tx = app.store.begin().await?;
        store::scim::touch_token(&mut tx, row.id, now, now - chrono::Duration::minutes(1)).await?;
        let _no_access_change = tx.commit().await?;
    }
    let p = Principal {
        user_id: UserId(row.id),
        name: format!("SCIM token {}", row.name),
        site_admin: false,
        credential: Credential::Scim {
            token_id: row.id,
            account,
        },
        ip: ip.map(str::to_string),
        user_agent: user_agent.map(str::to_string),
        bot_account: None,
    };
    crate::services::gate::scim(app, &p, account)?;
    Ok((account, p))
}

// ---- resources ----

/// The kinds of resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    /// The kind an endpoint serves (`Users`, `Groups`).
    pub fn from_endpoint(e: &str) -> SResult<Kind> {
        match e {
            "Users" => Ok(Kind::User),
            "Groups" => Ok(Kind::Group),
            _ => Err(ScimError::new(404, None, "no such SCIM endpoint")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }

    fn endpoint(self) -> &'static str {
        match self {
            Kind::User => "Users",
            Kind::Group => "Groups",
        }
    }

    fn schema(self) -> &'static str {
        match self {
            Kind::User => USER_SCHEMA,
            Kind::Group => GROUP_SCHEMA,
        }
    }

    /// The attributes Atrium keeps (lower case; `id` and `meta` are its own).
    fn writable(self) -> &'static [&'static str] {
        match self {
            Kind::User => &[
                "username",
                "externalid",
                "name",
                "displayname",
                "emails",
                "active",
            ],
            Kind::Group => &["displayname", "externalid", "members"],
        }
    }
}

fn meta(
    app: &App,
    account: AccountId,
    kind: Kind,
    id: Uuid,
    created: chrono::DateTime<chrono::Utc>,
    updated: chrono::DateTime<chrono::Utc>,
) -> Value {
    json!({
        "resourceType": kind.name(),
        "created": created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "lastModified": updated.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "location": format!("{}/{}/{id}", base_url(app, account), kind.endpoint()),
        "version": format!("W/\"{}\"", updated.timestamp_micros()),
    })
}

fn user_json(app: &App, account: AccountId, u: &store::scim::ScimUserRow) -> Value {
    let mut v = u
        .attrs
        .as_deref()
        .and_then(|a| serde_json::from_str::<Map<String, Value>>(a).ok())
        .unwrap_or_default();
    let managed = u.attrs.is_some();
    if !managed && (!u.first_name.is_empty() || !u.last_name.is_empty()) {
        let mut name = Map::new();
        if !u.first_name.is_empty() {
            name.insert("givenName".into(), json!(u.first_name));
        }
        if !u.last_name.is_empty() {
            name.insert("familyName".into(), json!(u.last_name));
        }
        v.insert("name".into(), Value::Object(name));
    }
    if !v.contains_key("emails") {
        // The address is the user's, whether or not the IdP sent it as an email.
        v.insert(
            "emails".into(),
            json!([{"value": u.email, "type": "work", "primary": true}]),
        );
    }
    v.insert("schemas".into(), json!([USER_SCHEMA]));
    v.insert("id".into(), json!(u.user_id));
    v.insert("userName".into(), json!(u.user_name));
    if let Some(e) = &u.external_id {
        v.insert("externalId".into(), json!(e));
    }
    // The membership's state (the dashboard may have changed it since the IdP did), unless the
    // IdP left `active` unassigned.
    if !managed || v.contains_key("active") {
        v.insert("active".into(), json!(u.active));
    }
    v.insert(
        "meta".into(),
        meta(app, account, Kind::User, u.user_id.0, u.created, u.updated),
    );
    Value::Object(v)
}

fn group_json(
    app: &App,
    account: AccountId,
    t: &store::teams::TeamRow,
    members: &[UserId],
) -> Value {
    let base = base_url(app, account);
    let mut v = json!({
        "schemas": [GROUP_SCHEMA],
        "id": t.id.0,
        "displayName": t.name,
        "members": members.iter().map(|id| json!({
            "value": id.0, "type": "User", "$ref": format!("{base}/Users/{}", id.0),
        })).collect::<Vec<_>>(),
        "meta": meta(app, account, Kind::Group, t.id.0, t.created, t.updated),
    });
    if let Some(e) = &t.scim_external_id {
        v["externalId"] = json!(e);
    }
    v
}

/// The query of a list: filter, paging, attribute selection.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    pub filter: Option<String>,
    pub start_index: Option<String>,
    pub count: Option<String>,
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
    #[serde(default)]
    pub sort_by: Option<String>,
    #[serde(default)]
    pub sort_order: Option<String>,
}

impl ListQuery {
    /// A `POST …/.search` body (RFC 7644 §3.4.3) as the query it stands for.
    pub fn from_search(body: &Value) -> SResult<ListQuery> {
        let text = |k: &str| -> SResult<Option<String>> {
            match get_ci(body, k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(Value::Array(a)) => Ok(Some(
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(","),
                )),
                Some(_) => Err(ScimError::bad(
                    "invalidValue",
                    format!("{k}: a string, number or list"),
                )),
            }
        };
        Ok(ListQuery {
            filter: text("filter")?,
            start_index: text("startIndex")?,
            count: text("count")?,
            attributes: text("attributes")?,
            excluded_attributes: text("excludedAttributes")?,
            sort_by: text("sortBy")?,
            sort_order: text("sortOrder")?,
        })
    }
}

/// `attributes` / `excludedAttributes` of a request (RFC 7644 §3.9).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Projection {
    pub attributes: Option<String>,
    pub excluded_attributes: Option<String>,
}

/// Applies `attributes` / `excludedAttributes` to a resource: `id` and `schemas` are always
/// returned, `meta` unless excluded.
pub fn project(mut v: Value, attributes: Option<&str>, excluded: Option<&str>) -> Value {
    let names = |s: &str| -> Vec<(String, Option<String>)> {
        s.split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .filter_map(|a| crate::domain::scim::parse_attr_path(a).ok())
            .map(|p| {
                (
                    p.attr.to_ascii_lowercase(),
                    p.sub.map(|s| s.to_ascii_lowercase()),
                )
            })
            .collect()
    };
    let Value::Object(o) = &mut v else { return v };
    let always = |k: &str| matches!(k.to_ascii_lowercase().as_str(), "id" | "schemas");
    if let Some(a) = attributes.filter(|a| !a.trim().is_empty()) {
        let wanted = names(a);
        o.retain(|k, _| always(k) || wanted.iter().any(|(w, _)| w.eq_ignore_ascii_case(k)));
        for (attr, sub) in &wanted {
            let Some(sub) = sub else { continue };
            if wanted.iter().any(|(w, s)| w == attr && s.is_none()) {
                continue;
            }
            if let Some((_, val)) = o.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(attr)) {
                let keep = |x: &mut Value| {
                    if let Value::Object(m) = x {
                        m.retain(|k, _| {
                            k.eq_ignore_ascii_case(sub)
                                || wanted.iter().any(|(w, s)| {
                                    w == attr
                                        && s.as_deref().is_some_and(|s| s.eq_ignore_ascii_case(k))
                                })
                        });
                    }
                };
                match val {
                    Value::Array(items) => items.iter_mut().for_each(keep),
                    other => keep(other),
                }
            }
        }
    } else if let Some(e) = excluded {
        for (attr, sub) in names(e) {
            if always(&attr) {
                continue;
            }
            match sub {
                None => o.retain(|k, _| !k.eq_ignore_ascii_case(&attr)),
                Some(sub) => {
                    if let Some((_, val)) =
                        o.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(&attr))
                    {
                        let drop = |x: &mut Value| {
                            if let Value::Object(m) = x {
                                m.retain(|k, _| !k.eq_ignore_ascii_case(&sub));
                            }
                        };
                        match val {
                            Value::Array(items) => items.iter_mut().for_each(drop),
                            other => drop(other),
                        }
                    }
                }
            }
        }
    }
    v
}

fn parse_index(s: Option<&str>, default: usize) -> SResult<usize> {
    match s {
        None => Ok(default),
        Some(s) => s
            .trim()
            .parse::<i64>()
            .map(|n| n.max(0) as usize)
            .map_err(|_| ScimError::bad("invalidValue", format!("{s:?} is not a number"))),
    }
}

/// A list response (RFC 7644 §3.4.2): the matching resources, 1-based `startIndex`, at most
/// `count` of them.
fn list_response(all: Vec<Value>, q: &ListQuery) -> SResult<Value> {
    let filter = match q.filter.as_deref().filter(|f| !f.trim().is_empty()) {
        Some(f) => Some(
            parse_filter(f).map_err(|e| ScimError::bad("invalidFilter", format!("filter: {e}")))?,
        ),
        None => None,
    };
    let start = parse_index(q.start_index.as_deref(), 1)?.max(1);
    let count = parse_index(q.count.as_deref(), 100)?.min(MAX_COUNT);
    let matching: Vec<Value> = all
        .into_iter()
        .filter(|r| filter.as_ref().is_none_or(|f| matches(f, r)))
        .collect();
    let total = matching.len();
    let page: Vec<Value> = matching
        .into_iter()
        .skip(start - 1)
        .take(count)
        .map(|r| project(r, q.attributes.as_deref(), q.excluded_attributes.as_deref()))
        .collect();
    Ok(json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": page.len(),
        "Resources": page,
    }))
}

/// `userName eq "…"` (what IdPs send before creating a user), answered by one indexed lookup.
fn user_name_eq(f: &Filter) -> Option<&str> {
    match f {
        Filter::Compare(p, crate::domain::scim::Op::Eq, Value::String(s))
            if p.attr.eq_ignore_ascii_case("userName") && p.sub.is_none() =>
        {
            Some(s)
        }
        _ => None,
    }
}

/// `GET /Users`.
async fn list_users(app: &App, p: &Principal, account: AccountId, q: &ListQuery) -> SResult<Value> {
    crate::services::gate::scim(app, p, account)?;
    let fast = q
        .filter
        .as_deref()
        .and_then(|f| parse_filter(f).ok())
        .and_then(|f| user_name_eq(&f).map(str::to_string));
    let all = {
        let mut c = app.store.reader().await?;
        match fast {
            Some(name) => store::scim::find_user_by_name(&mut c, account, &name)
                .await?
                .map(|u| user_json(app, account, &u))
                .into_iter()
                .collect(),
            None => all_users(app, &mut c, account).await?,
        }
    };
    list_response(all, q)
}

/// `POST /.search`: Users and Groups together.
pub async fn search_all(
    app: &App,
    p: &Principal,
    account: AccountId,
    q: &ListQuery,
) -> SResult<Value> {
    crate::services::gate::scim(app, p, account)?;
    let all = {
        let mut c = app.store.reader().await?;
        let mut all = all_users(app, &mut c, account).await?;
        all.extend(all_groups(app, &mut c, account).await?);
        all
    };
    list_response(all, q)
}

/// `GET /Users/{id}`.
async fn read_user(app: &App, p: &Principal, account: AccountId, id: &str) -> SResult<Value> {
    crate::services::gate::scim(app, p, account)?;
    let id = resource_id(id, "User")?;
    let mut c = app.store.reader().await?;
    let u = store::scim::find_user(&mut c, account, UserId(id))
        .await?
        .ok_or_else(|| ScimError::not_found("User"))?;
    Ok(user_json(app, account, &u))
}

fn resource_id(id: &str, what: &str) -> SResult<Uuid> {
    id.parse::<Uuid>().map_err(|_| ScimError::not_found(what))
}

/// A User as the IdP sent it, checked: what Atrium keeps of it.
struct UserInput {
    user_name: String,
    email: String,
    first_name: String,
    last_name: String,
    /// `None`: unassigned — a new member is active, an existing one keeps their state.
    active: Option<bool>,
    external_id: Option<String>,
    /// name, displayName and emails as sent (and whether `active` was).
    attrs: Map<String, Value>,
}

fn string_attr(v: &Value, key: &str, max: usize) -> SResult<Option<String>> {
    match get_ci(v, key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.trim().to_string())),
        Some(Value::String(_)) => Err(ScimError::bad(
            "invalidValue",
            format!("{key}: at most {max} characters"),
        )),
        Some(_) => Err(ScimError::bad("invalidValue", format!("{key}: a string"))),
    }
}

/// Checks a whole User resource (from POST, PUT, or a PATCH applied to the current one).
fn user_input(v: &Value) -> SResult<UserInput> {
    if !v.is_object() {
        return Err(ScimError::bad(
            "invalidSyntax",
            "the body must be a JSON object",
        ));
    }
    let user_name = string_attr(v, "userName", 256)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ScimError::bad("invalidValue", "userName is required"))?;
    let external_id = string_attr(v, "externalId", 256)?.filter(|s| !s.is_empty());
    let active = match get_ci(v, "active") {
        None | Some(Value::Null) => None,
        Some(a) => {
            Some(loose_bool(a).ok_or_else(|| ScimError::bad("invalidValue", "active: a boolean"))?)
        }
    };
    let mut attrs = Map::new();
    if let Some(a) = active {
        attrs.insert("active".into(), json!(a));
    }
    // name: givenName, familyName, formatted (strings).
    let (mut first, mut last) = (String::new(), String::new());
    match get_ci(v, "name") {
        None | Some(Value::Null) => {}
        Some(n @ Value::Object(_)) => {
            let mut kept = Map::new();
            for (key, out) in [
                ("givenName", Some(&mut first)),
                ("familyName", Some(&mut last)),
                ("formatted", None),
            ] {
                if let Some(s) = string_attr(n, key, 100)? {
                    if let Some(out) = out {
                        *out = s.clone();
                    }
                    kept.insert(key.to_string(), json!(s));
                }
            }
            if !kept.is_empty() {
                attrs.insert("name".into(), Value::Object(kept));
            }
        }
        Some(_) => return Err(ScimError::bad("invalidValue", "name: an object")),
    }
    if let Some(d) = string_attr(v, "displayName", 200)? {
        if first.is_empty() && last.is_empty() {
            if let Some((f, l)) = d.split_once(' ') {
                (first, last) = (f.to_string(), l.trim().to_string());
            } else {
                first = d.clone();
            }
        }
        attrs.insert("displayName".into(), json!(d));
    }
    // emails: value (required), type, primary; the user's address is the primary one.
    let mut email = None;
    match get_ci(v, "emails") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            if items.len() > 20 {
                return Err(ScimError::bad("invalidValue", "emails: at most 20"));
            }
            let mut kept = Vec::new();
            let mut primaries = 0;
            for item in items {
                let value = string_attr(item, "value", 254)?
                    .ok_or_else(|| ScimError::bad("invalidValue", "emails: each needs a value"))?;
                let mut e = Map::new();
                e.insert("value".into(), json!(value));
                if let Some(t) = string_attr(item, "type", 20)? {
                    e.insert("type".into(), json!(t));
                }
                let primary = match get_ci(item, "primary") {
                    None | Some(Value::Null) => false,
                    Some(b) => loose_bool(b).ok_or_else(|| {
                        ScimError::bad("invalidValue", "emails.primary: a boolean")
                    })?,
                };
                if primary {
                    primaries += 1;
                    email = Some(value.clone());
                }
                e.insert("primary".into(), json!(primary));
                kept.push(Value::Object(e));
            }
            if primaries > 1 {
                return Err(ScimError::bad(
                    "invalidValue",
                    "emails: at most one is primary",
                ));
            }
            if email.is_none() {
                email = kept
                    .first()
                    .and_then(|e| e["value"].as_str())
                    .map(str::to_string);
            }
            if !kept.is_empty() {
                attrs.insert("emails".into(), Value::Array(kept));
            }
        }
        Some(_) => return Err(ScimError::bad("invalidValue", "emails: a list")),
    }
    let email = match email {
        Some(e) => validate::email(&e)
            .map_err(|m| ScimError::bad("invalidValue", format!("emails: {m}")))?,
        None => validate::email(&user_name).map_err(|_| {
            ScimError::bad(
                "invalidValue",
                "an email address is required: give emails, or a userName that is an email address",
            )
        })?,
    };
    Ok(UserInput {
        user_name,
        email,
        first_name: first,
        last_name: last,
        active,
        external_id,
        attrs,
    })
}

fn user_event(action: &'static str, id: Uuid, email: &str, payload: Value) -> NewEvent {
    NewEvent::new("account-membership", action, id)
        .name(email.to_string())
        .payload(payload)
}

/// `POST /Users`: the user (unless Atrium knows the address already) and a membership with the
/// account's default role, within the seat limit. An address that already has an Atrium user
/// can be provisioned only when this account verified its domain (else any IdP could pull other
/// organisations' people into its account).
async fn create_user(app: &App, p: &Principal, account: AccountId, body: Value) -> SResult<Value> {
    crate::services::gate::scim(app, p, account)?;
    let u = user_input(&body)?;
    let now = app.now();
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    if store::scim::find_user_by_name(&mut tx, account, &u.user_name)
        .await?
        .is_some()
    {
        return Err(ScimError::new(
            409,
            Some("uniqueness"),
            format!("a User with userName {:?} exists", u.user_name),
        ));
    }
    let mut events = Vec::new();
    let user = match store::users::find_user_by_email(&mut tx, &u.email).await? {
        Some(existing) => {
            if store::memberships::find_membership_by_user(&mut tx, account, existing.id)
                .await?
                .is_some()
            {
                return Err(ScimError::new(
                    409,
                    Some("uniqueness"),
                    format!("a member with the address {} exists", u.email),
                ));
            }
            let domain = u
                .email
                .rsplit_once('@')
                .map(|(_, d)| d.to_ascii_lowercase())
                .unwrap_or_default();
            let ours = store::sso::find_verified_domain(&mut tx, &domain)
                .await?
                .is_some_and(|d| d.account_id == account);
            if !ours {
                return Err(ScimError::new(409, Some("uniqueness"), format!(
                    "{} already has an Atrium user; to provision existing users, verify the domain {domain} for this account (SSO page)",
                    u.email
                )));
            }
            existing
        }
        None => {
            let (created, e) = crate::services::auth::insert_passwordless_user(
                &mut tx,
                &u.email,
                &u.first_name,
                &u.last_name,
                now,
                "scim",
                Map::new(),
            )
            .await?;
            events.push(e);
            created
        }
    };
    let active = u.active.unwrap_or(true);
    if active {
        crate::services::plans::ensure_seat(app, &mut tx, account, true).await?;
    }
    let role = crate::services::sso::default_role(&mut tx, account).await?;
    let m =
        store::memberships::insert_membership(&mut tx.access(account), account, user.id, role, now)
            .await?;
    if !active {
        store::memberships::update_membership_active(
            &mut tx.access(account),
            account,
            m,
            false,
            now,
        )
        .await?;
    }
    let attrs = Value::Object(u.attrs.clone()).to_string();
    store::scim::mark_member(
        &mut tx.access(account),
        account,
        user.id,
        &store::scim::ScimMark {
            user_name: &u.user_name,
            external_id: u.external_id.as_deref(),
            attrs: &attrs,
        },
        now,
    )
    .await
    .map_err(|e| crate::services::error::unique_or(e, "a User with this userName exists"))?;
    events.push(user_event("created", m.0, &user.email, json!({
        "user_id": user.id, "role": role.name(), "active": active, "via": "scim", "userName": u.user_name,
    })));
    for e in events {
        audit::record(app, &mut tx, Some(p), account.0, e).await?;
    }
    let row = store::scim::find_user(&mut tx, account, user.id)
        .await?
        .ok_or_else(|| ScimError::new(500, None, "the new member vanished"))?;
    tx.only_members(account, vec![user.id.0]);
    tx.commit().await?;
    Ok(user_json(app, account, &row))
}

/// Applies a checked User to an existing member: userName, externalId, names, address,
/// activation. Deactivation ends the member's access to the account at their next request.
async fn apply_user(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: UserId,
    u: UserInput,
) -> SResult<Value> {
    let now = app.now();
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let before = store::scim::find_user(&mut tx, account, id)
        .await?
        .ok_or_else(|| ScimError::not_found("User"))?;
    if !before.user_name.eq_ignore_ascii_case(&u.user_name)
        && store::scim::find_user_by_name(&mut tx, account, &u.user_name)
            .await?
            .is_some()
    {
        return Err(ScimError::new(
            409,
            Some("uniqueness"),
            format!("a User with userName {:?} exists", u.user_name),
        ));
    }
    let mut changed = Vec::new();
    let mut patch = store::users::UserPatch::default();
    if !u.email.eq_ignore_ascii_case(&before.email) {
        // The address is the user's identity everywhere: only a user who belongs to this
        // account alone may have it changed by this account's IdP.
        if store::scim::count_other_memberships(&mut tx, account, id).await? > 0 {
            return Err(ScimError::new(
                400,
                Some("mutability"),
                format!(
                    "{} belongs to other accounts too; their address can only be changed by them",
                    before.email
                ),
            ));
        }
        if store::users::find_user_by_email(&mut tx, &u.email)
            .await?
            .is_some()
        {
            return Err(ScimError::new(
                409,
                Some("uniqueness"),
                format!("{} is another user's address", u.email),
            ));
        }
        patch.email = Some(u.email.clone());
        changed.push("email");
    }
    if u.first_name != before.first_name || u.last_name != before.last_name {
        patch.first_name = Some(u.first_name.clone());
        patch.last_name = Some(u.last_name.clone());
        changed.push("name");
    }
    if !changed.is_empty() {
        store::users::update_user(&mut tx, id, &patch, now)
            .await
            .map_err(|e| crate::services::error::unique_or(e, "this address is another user's"))?;
    }
    let active = u.active.unwrap_or(before.active);
    if active != before.active {
        let m = store::memberships::find_membership_by_user(&mut tx, account, id)
            .await?
            .ok_or_else(|| ScimError::not_found("User"))?;
        crate::services::memberships::set_active_in(
            app,
            &mut tx,
            p,
            account,
            &m,
            active,
            Some("scim"),
        )
        .await?;
        crate::services::memberships::ensure_an_owner_remains(&mut tx, account).await?;
    }
    let attrs = Value::Object(u.attrs.clone()).to_string();
    if u.user_name != before.user_name
        || u.external_id != before.external_id
        || before.attrs.as_deref() != Some(attrs.as_str())
    {
        changed.push("scim");
    }
    store::scim::mark_member(
        &mut tx.access(account),
        account,
        id,
        &store::scim::ScimMark {
            user_name: &u.user_name,
            external_id: u.external_id.as_deref(),
            attrs: &attrs,
        },
        now,
    )
    .await
    .map_err(|e| crate::services::error::unique_or(e, "a User with this userName exists"))?;
    if !changed.is_empty() {
        audit::record(
            app,
            &mut tx,
            Some(p),
            account.0,
            user_event(
                "updated",
                id.0,
                &u.email,
                json!({
                    "user_id": id, "changed": changed, "via": "scim",
                }),
            ),
        )
        .await?;
    }
    let row = store::scim::find_user(&mut tx, account, id)
        .await?
        .ok_or_else(|| ScimError::not_found("User"))?;
    tx.only_members(account, vec![id.0]);
    tx.commit().await?;
    Ok(user_json(app, account, &row))
}

/// `DELETE /Users/{id}`: the membership goes (with its team memberships and grants); the user
/// stays, as they may belong to other accounts.
async fn delete_user(app: &App, p: &Principal, account: AccountId, id: &str) -> SResult<()> {
    crate::services::gate::scim(app, p, account)?;
    let id = UserId(resource_id(id, "User")?);
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let m = store::memberships::find_membership_by_user(&mut tx, account, id)
        .await?
        .ok_or_else(|| ScimError::not_found("User"))?;
    crate::services::memberships::remove_in(app, &mut tx, p, account, &m, Some("scim")).await?;
    tx.only_members(account, vec![id.0]);
    tx.commit().await?;
    Ok(())
}

// ---- groups ----

async fn group_members(
    c: &mut store::Conn,
    account: AccountId,
    team: TeamId,
) -> Result<Vec<UserId>> {
    let mut out: Vec<UserId> = store::teams::find_members(c, account, team.0)
        .await?
        .into_iter()
        .filter(|m| m.member_type == "user")
        .map(|m| UserId(m.member_id))
        .collect();
    out.sort_by_key(|u| u.0);
    Ok(out)
}

/// Every member of the account as a User.
async fn all_users(app: &App, c: &mut store::Conn, account: AccountId) -> Result<Vec<Value>> {
    Ok(store::scim::find_users(c, account)
        .await?
        .iter()
        .map(|u| user_json(app, account, u))
        .collect())
}

/// Every team of the account as a Group, with its user members (two queries in all).
async fn all_groups(app: &App, c: &mut store::Conn, account: AccountId) -> Result<Vec<Value>> {
    let teams = store::teams::find_teams(c, account, &Default::default(), i64::MAX, 0).await?;
    let mut members: std::collections::HashMap<Uuid, Vec<UserId>> = Default::default();
    for m in store::teams::find_account_members(c, account).await? {
        if m.member_type == "user" {
            members
                .entry(m.team_id)
                .or_default()
                .push(UserId(m.member_id));
        }
    }
    Ok(teams
        .iter()
        .map(|t| {
            let mut ms = members.remove(&t.id.0).unwrap_or_default();
            ms.sort_by_key(|u| u.0);
            group_json(app, account, t, &ms)
        })
        .collect())
}

/// `GET /Groups`.
async fn list_groups(
    app: &App,
    p: &Principal,
    account: AccountId,
    q: &ListQuery,
) -> SResult<Value> {
    crate::services::gate::scim(app, p, account)?;
    let all = {
        let mut c = app.store.reader().await?;
        all_groups(app, &mut c, account).await?
    };
    list_response(all, q)
}

/// `GET /Groups/{id}`.
async fn read_group(app: &App, p: &Principal, account: AccountId, id: &str) -> SResult<Value> {
    crate::services::gate::scim(app, p, account)?;
    let id = TeamId(resource_id(id, "Group")?);
    let mut c = app.store.reader().await?;
    let t = store::teams::find_team(&mut c, account, id)
        .await?
        .ok_or_else(|| ScimError::not_found("Group"))?;
    let members = group_members(&mut c, account, id).await?;
    Ok(group_json(app, account, &t, &members))
}

/// A Group as the IdP sent it, checked.
struct GroupInput {
    name: String,
    external_id: Option<String>,
    /// Member values as sent (User ids of this account are kept, others ignored).
    members: Vec<String>,
}

fn group_input(v: &Value) -> SResult<GroupInput> {
    if !v.is_object() {
        return Err(ScimError::bad(
            "invalidSyntax",
            "the body must be a JSON object",
        ));
    }
    let name = string_attr(v, "displayName", 100)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ScimError::bad("invalidValue", "displayName is required"))?;
    let name =
        validate::name("displayName", &name).map_err(|m| ScimError::bad("invalidValue", m))?;
    let external_id = string_attr(v, "externalId", 256)?.filter(|s| !s.is_empty());
    let mut members = Vec::new();
    match get_ci(v, "members") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            if items.len() > 10_000 {
                return Err(ScimError::bad("invalidValue", "members: at most 10,000"));
            }
            let mut seen = std::collections::HashSet::new();
            for item in items {
                let value = string_attr(item, "value", 100)?
                    .ok_or_else(|| ScimError::bad("invalidValue", "members: each needs a value"))?;
                if seen.insert(value.clone()) {
                    members.push(value);
                }
            }
        }
        Some(_) => return Err(ScimError::bad("invalidValue", "members: a list")),
    }
    Ok(GroupInput {
        name,
        external_id,
        members,
    })
}

/// Writes a group's name, externalId and members (every member must be a member of the
/// account), marking the team as managed by the IdP. Team changes reach the permission index
/// before the answer.
async fn apply_group(
    app: &App,
    p: &Principal,
    tx: &mut crate::services::unit::Unit<'_>,
    account: AccountId,
    mut t: store::teams::TeamRow,
    g: GroupInput,
    created: bool,
) -> SResult<Value> {
    let now = app.now();
    // Ids that are not members of this account are left out (an IdP may push a group before
    // the user; RFC 7644 does not require refusing it), and listed in the audit record.
    let mut ignored = Vec::new();
    let mut wanted: Vec<UserId> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for m in &g.members {
        let member = match m.parse::<Uuid>() {
            Ok(id) => store::memberships::find_membership_by_user(tx, account, UserId(id))
                .await?
                .map(|_| UserId(id)),
            Err(_) => None,
        };
        match member {
            Some(id) if seen.insert(id.0) => wanted.push(id),
            Some(_) => {}
            None => ignored.push(m.clone()),
        }
    }
    let renamed = t.name != g.name;
    let before_name = std::mem::replace(&mut t.name, g.name.clone());
    t.scim_external_id = g.external_id.clone();
    t.scim_synced = Some(now);
    t.updated = now;
    if created {
        store::teams::insert_team(tx, &t)
            .await
            .map_err(|e| {
                crate::services::error::unique_or(e, "a Group with this displayName exists")
            })
            .map_err(uniqueness)?;
    } else {
        store::teams::update_team(tx, &t)
            .await
            .map_err(|e| {
                crate::services::error::unique_or(e, "a Group with this displayName exists")
            })
            .map_err(uniqueness)?;
    }
    let current = group_members(tx, account, t.id).await?;
    let current_set: std::collections::HashSet<Uuid> = current.iter().map(|u| u.0).collect();
    let (mut joined, mut left) = (Vec::new(), Vec::new());
    for m in &wanted {
        if !current_set.contains(&m.0) {
            store::teams::upsert_member(
                &mut tx.access(account),
                account,
                &store::teams::TeamMemberRow {
                    team_id: t.id.0,
                    member_id: m.0,
                    member_type: "user".into(),
                    expires_at: None,
                },
                now,
            )
            .await?;
            joined.push(m.0);
        }
    }
    for m in &current {
        if !seen.contains(&m.0) {
            store::teams::delete_member(&mut tx.access(account), account, t.id.0, m.0).await?;
            left.push(m.0);
        }
    }
    // Only these users' team memberships changed (a new or renamed team has no grant yet).
    tx.only_members(account, joined.iter().chain(left.iter()).copied().collect());
    let action = if created { "created" } else { "updated" };
    let mut payload = json!({"via": "scim", "externalId": t.scim_external_id});
    if !ignored.is_empty() {
        payload["ignored_members"] = json!(ignored);
    }
    if renamed && !created {
        payload["before"] = json!({"name": before_name});
    }
    audit::record(
        app,
        tx,
        Some(p),
        account.0,
        NewEvent::new("team", action, t.id.0)
            .name(t.name.clone())
            .payload(payload),
    )
    .await?;
    for m in &joined {
        audit::record(
            app,
            tx,
            Some(p),
            account.0,
            NewEvent::new("team-membership", "created", *m)
                .name(t.name.clone())
                .payload(
                    json!({"team_id": t.id, "member_id": m, "member_type": "user", "via": "scim"}),
                ),
        )
        .await?;
    }
    for m in &left {
        audit::record(
            app,
            tx,
            Some(p),
            account.0,
            NewEvent::new("team-membership", "deleted", *m)
                .name(t.name.clone())
                .payload(json!({"team_id": t.id, "member_id": m, "via": "scim"})),
        )
        .await?;
    }
    let members = group_members(tx, account, t.id).await?;
    Ok(group_json(app, account, &t, &members))
}

fn uniqueness(e: Error) -> ScimError {
    match e {
        Error::Conflict(m) => ScimError::new(409, Some("uniqueness"), m),
        other => other.into(),
    }
}

/// `POST /Groups`: a new team, managed by the IdP (plan feature `teams` too).
async fn create_group(app: &App, p: &Principal, account: AccountId, body: Value) -> SResult<Value> {
    crate::services::gate::scim(app, p, account)?;
    crate::services::plans::require_feature(app, account, Feature::Teams)?;
    let g = group_input(&body)?;
    let now = app.now();
    let t = store::teams::TeamRow {
        id: TeamId::new(),
        account_id: account,
        name: g.name.clone(),
        description: String::new(),
        created: now,
        updated: now,
        scim_external_id: None,
        scim_synced: None,
    };
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let v = apply_group(app, p, &mut tx, account, t, g, true).await?;
    tx.commit().await?;
    Ok(v)
}

/// `DELETE /Groups/{id}`: the team goes, with its workspace grants.
async fn delete_group(app: &App, p: &Principal, account: AccountId, id: &str) -> SResult<()> {
    crate::services::gate::scim(app, p, account)?;
    let id = TeamId(resource_id(id, "Group")?);
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    if !crate::services::teams::delete_in(app, &mut tx, p, account, id, Some("scim")).await? {
        return Err(ScimError::not_found("Group"));
    }
    tx.commit().await?;
    Ok(())
}

// ---- one entry per operation, whatever the kind ----

/// `GET /Users`, `GET /Groups` (and their `POST …/.search`).
pub async fn list(
    app: &App,
    p: &Principal,
    account: AccountId,
    kind: Kind,
    q: &ListQuery,
) -> SResult<Value> {
    match kind {
        Kind::User => list_users(app, p, account, q).await,
        Kind::Group => list_groups(app, p, account, q).await,
    }
}

/// `GET /Users/{id}`, `GET /Groups/{id}`.
pub async fn read(
    app: &App,
    p: &Principal,
    account: AccountId,
    kind: Kind,
    id: &str,
) -> SResult<Value> {
    match kind {
        Kind::User => read_user(app, p, account, id).await,
        Kind::Group => read_group(app, p, account, id).await,
    }
}

/// `POST /Users`, `POST /Groups`.
pub async fn create(
    app: &App,
    p: &Principal,
    account: AccountId,
    kind: Kind,
    body: Value,
) -> SResult<Value> {
    match kind {
        Kind::User => create_user(app, p, account, body).await,
        Kind::Group => create_group(app, p, account, body).await,
    }
}

/// `DELETE /Users/{id}`, `DELETE /Groups/{id}`.
pub async fn delete(
    app: &App,
    p: &Principal,
    account: AccountId,
    kind: Kind,
    id: &str,
) -> SResult<()> {
    match kind {
        Kind::User => delete_user(app, p, account, id).await,
        Kind::Group => delete_group(app, p, account, id).await,
    }
}

/// How a request changes an existing resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `PUT`: the body is the whole resource.
    Replace,
    /// `PATCH`: the body is a PatchOp applied to the resource as it is.
    Patch,
}

/// `PUT` or `PATCH` of a User or a Group: the resulting resource is checked as a whole, then
/// written in one unit of work.
pub async fn change(
    app: &App,
    p: &Principal,
    account: AccountId,
    kind: Kind,
    id: &str,
    how: Change,
    body: Value,
) -> SResult<Value> {
    crate::services::gate::scim(app, p, account)?;
    let id = resource_id(id, kind.name())?;
    match kind {
        Kind::User => {
            let id = UserId(id);
            let input = match how {
                Change::Replace => user_input(&body)?,
                Change::Patch => {
                    let current = {
                        let mut c = app.store.reader().await?;
                        store::scim::find_user(&mut c, account, id)
                            .await?
                            .ok_or_else(|| ScimError::not_found("User"))?
                    };
                    let mut doc = user_json(app, account, &current);
                    apply_patch(&mut doc, &body, kind)?;
                    user_input(&doc)?
                }
            };
            apply_user(app, p, account, id, input).await
        }
        Kind::Group => {
            let id = TeamId(id);
            let mut tx = crate::services::unit::Unit::account(app, account).await?;
            let t = store::teams::find_team(&mut tx, account, id)
                .await?
                .ok_or_else(|| ScimError::not_found("Group"))?;
            let input = match how {
                Change::Replace => group_input(&body)?,
                Change::Patch => {
                    let members = group_members(&mut tx, account, id).await?;
                    let mut doc = group_json(app, account, &t, &members);
                    apply_patch(&mut doc, &body, kind)?;
                    group_input(&doc)?
                }
            };
            let v = apply_group(app, p, &mut tx, account, t, input, false).await?;
            tx.commit().await?;
            Ok(v)
        }
    }
}

// ---- PATCH ----

/// Applies a PatchOp (RFC 7644 §3.5.2) to a resource's JSON, as Okta and Entra ID send them:
/// operation names in any case, paths with value filters (`members[value eq "…"]`), path-less
/// values, attribute names in any case and with the core schema's URN. The result is checked
/// as a whole afterwards.
fn apply_patch(doc: &mut Value, body: &Value, kind: Kind) -> SResult<()> {
    let schemas_ok = get_ci(body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|x| x.as_str() == Some(PATCH_SCHEMA)));
    if !schemas_ok {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("schemas must contain {PATCH_SCHEMA}"),
        ));
    }
    let ops = get_ci(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::bad("invalidSyntax", "Operations: a list is required"))?;
    if ops.is_empty() || ops.len() > MAX_OPERATIONS {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("Operations: between 1 and {MAX_OPERATIONS}"),
        ));
    }
    for op in ops {
        let name = get_ci(op, "op")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| ScimError::bad("invalidSyntax", "each operation needs an op"))?;
        let value = get_ci(op, "value").cloned();
        let path = match get_ci(op, "path") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            Some(_) => return Err(ScimError::bad("invalidPath", "path: a non-empty string")),
        };
        match (name.as_str(), path) {
            ("add" | "replace", None) => {
                let Some(Value::Object(fields)) = value else {
                    return Err(ScimError::bad(
                        "invalidValue",
                        "a path-less add or replace needs an object value",
                    ));
                };
                for (k, v) in fields {
                    // Okta repeats the resource's id (and some IdPs its schemas) in the value.
                    if matches!(k.to_ascii_lowercase().as_str(), "id" | "schemas" | "meta") {
                        continue;
                    }
                    set_path(doc, &k, v, name == "add", kind)?;
                }
            }
            ("add" | "replace", Some(path)) => {
                let v = value.ok_or_else(|| {
                    ScimError::bad("invalidValue", "add and replace need a value")
                })?;
                set_path(doc, &path, v, name == "add", kind)?;
            }
            ("remove", None) => return Err(ScimError::bad("noTarget", "remove needs a path")),
            ("remove", Some(path)) => remove_path(doc, &path, value.as_ref(), kind)?,
            (other, _) => {
                return Err(ScimError::bad(
                    "invalidSyntax",
                    format!("unknown op {other:?}"),
                ))
            }
        }
    }
    Ok(())
}

/// A path's attribute name without the core schema's URN, checked against what `kind` keeps;
/// attributes Atrium does not keep are ignored (`None`).
fn target(path: &str, kind: Kind) -> SResult<Option<crate::domain::scim::PatchPath>> {
    let p = parse_patch_path(path)
        .map_err(|e| ScimError::bad("invalidPath", format!("path {path:?}: {e}")))?;
    if let Some(uri) = &p.attr.uri {
        if !uri.eq_ignore_ascii_case(kind.schema()) {
            return Ok(None);
        }
    }
    let attr = p.attr.attr.to_ascii_lowercase();
    if matches!(attr.as_str(), "id" | "meta" | "schemas") {
        return Err(ScimError::new(
            400,
            Some("mutability"),
            format!("{} cannot be changed", p.attr.attr),
        ));
    }
    Ok(kind.writable().contains(&attr.as_str()).then_some(p))
}

/// The key of `o` that names `attr` (any case), or `attr` as given.
fn key_of(o: &Map<String, Value>, attr: &str) -> String {
    o.keys()
        .find(|k| k.eq_ignore_ascii_case(attr))
        .cloned()
        .unwrap_or_else(|| attr.to_string())
}

fn set_path(doc: &mut Value, path: &str, value: Value, add: bool, kind: Kind) -> SResult<()> {
    let Some(p) = target(path, kind)? else {
        return Ok(());
    };
    let Value::Object(o) = doc else {
        return Err(ScimError::bad("invalidSyntax", "not an object"));
    };
    let key = key_of(o, &p.attr.attr);
    match (&p.filter, p.attr.sub.as_ref().or(p.sub.as_ref())) {
        (None, None) => {
            let multi = matches!(key.to_ascii_lowercase().as_str(), "emails" | "members");
            let merge = !multi && value.is_object() && o.get(&key).is_some_and(Value::is_object);
            if multi && add {
                // add to a multi-valued attribute appends what is not there yet
                let new = match value {
                    Value::Array(a) => a,
                    one => vec![one],
                };
                match o.get_mut(&key) {
                    Some(Value::Array(items)) => {
                        for n in new {
                            let same = |x: &Value| {
                                get_ci(x, "value").is_some()
                                    && get_ci(x, "value") == get_ci(&n, "value")
                            };
                            if !items.iter().any(same) {
                                items.push(n);
                            }
                        }
                    }
                    _ => {
                        o.insert(key, Value::Array(new));
                    }
                }
            } else if merge {
                // a complex attribute: add and replace set the sub-attributes given
                if let (Some(Value::Object(existing)), Value::Object(fields)) =
                    (o.get_mut(&key), value)
                {
                    for (k, v) in fields {
                        let k2 = key_of(existing, &k);
                        existing.insert(k2, v);
                    }
                }
            } else {
                let v = if multi && !value.is_array() {
                    Value::Array(vec![value])
                } else {
                    value
                };
                o.insert(key, v);
            }
        }
        (None, Some(sub)) => {
            let entry = o.entry(key).or_insert_with(|| json!({}));
            match entry {
                Value::Object(inner) => {
                    let k = key_of(inner, sub);
                    inner.insert(k, value);
                }
                _ => {
                    return Err(ScimError::bad(
                        "invalidPath",
                        format!("{path}: not a complex attribute"),
                    ))
                }
            }
        }
        (Some(f), sub) => {
            let Some(Value::Array(items)) = o.get_mut(&key) else {
                return Err(ScimError::bad(
                    "noTarget",
                    format!("{path}: no values to match"),
                ));
            };
            let mut hit = false;
            for item in items.iter_mut().filter(|i| matches(f, i)) {
                hit = true;
                match (sub, item) {
                    (Some(sub), Value::Object(inner)) => {
                        let k = key_of(inner, sub);
                        inner.insert(k, value.clone());
                    }
                    (None, item) => *item = value.clone(),
                    _ => {}
                }
            }
            if !hit {
                return Err(ScimError::bad(
                    "noTarget",
                    format!("{path}: no value matches"),
                ));
            }
        }
    }
    Ok(())
}

fn remove_path(doc: &mut Value, path: &str, value: Option<&Value>, kind: Kind) -> SResult<()> {
    let Some(p) = target(path, kind)? else {
        return Ok(());
    };
    let Value::Object(o) = doc else {
        return Err(ScimError::bad("invalidSyntax", "not an object"));
    };
    let key = key_of(o, &p.attr.attr);
    match (&p.filter, p.attr.sub.as_ref().or(p.sub.as_ref())) {
        (None, None) => match (o.get_mut(&key), value) {
            // Entra ID: {"op": "Remove", "path": "members", "value": [{"value": "id"}]}
            (Some(Value::Array(items)), Some(Value::Array(gone))) => {
                items.retain(|i| {
                    !gone.iter().any(|g| {
                        get_ci(g, "value").is_some() && get_ci(g, "value") == get_ci(i, "value")
                    })
                });
            }
            _ => {
                o.remove(&key);
            }
        },
        (None, Some(sub)) => {
            if let Some(Value::Object(inner)) = o.get_mut(&key) {
                let k = key_of(inner, sub);
                inner.remove(&k);
            }
        }
        (Some(f), None) => {
            if let Some(Value::Array(items)) = o.get_mut(&key) {
                items.retain(|i| !matches(f, i));
            }
        }
        (Some(f), Some(sub)) => {
            if let Some(Value::Array(items)) = o.get_mut(&key) {
                for item in items.iter_mut().filter(|i| matches(f, i)) {
                    if let Value::Object(inner) = item {
                        let k = key_of(inner, sub);
                        inner.remove(&k);
                    }
                }
            }
        }
    }
    Ok(())
}

// ---- discovery ----

/// `GET /ServiceProviderConfig`.
pub fn service_provider_config(app: &App) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": format!("{}/docs/scim", app.config.public_url.trim_end_matches('/')),
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_COUNT},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": false},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "SCIM token",
            "description": "A per-account SCIM token (Account → SSO → SCIM tokens), sent as Authorization: Bearer.",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig"},
    })
}

fn attr(
    name: &str,
    ty: &str,
    multi: bool,
    required: bool,
    mutability: &str,
    uniqueness: &str,
    case_exact: bool,
) -> Value {
    json!({
        "name": name, "type": ty, "multiValued": multi, "required": required, "caseExact": case_exact,
        "mutability": mutability, "returned": "default", "uniqueness": uniqueness,
        "description": "",
    })
}

fn sub_attrs(mut a: Value, subs: Vec<Value>) -> Value {
    a["subAttributes"] = Value::Array(subs);
    a
}

/// The schemas Atrium publishes: only the attributes it keeps.
pub fn schemas(app: &App, account: AccountId) -> Vec<Value> {
    let base = base_url(app, account);
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER_SCHEMA, "name": "User", "description": "A member of the account",
        "attributes": [
            attr("userName", "string", false, true, "readWrite", "server", false),
            sub_attrs(attr("name", "complex", false, false, "readWrite", "none", false), vec![
                attr("formatted", "string", false, false, "readWrite", "none", false),
                attr("familyName", "string", false, false, "readWrite", "none", false),
                attr("givenName", "string", false, false, "readWrite", "none", false),
            ]),
            attr("displayName", "string", false, false, "readWrite", "none", false),
            attr("active", "boolean", false, false, "readWrite", "none", false),
            sub_attrs(attr("emails", "complex", true, true, "readWrite", "none", false), vec![
                attr("value", "string", false, true, "readWrite", "none", false),
                {
                    let mut t = attr("type", "string", false, false, "readWrite", "none", false);
                    t["canonicalValues"] = json!(["work", "home", "other"]);
                    t
                },
                attr("primary", "boolean", false, false, "readWrite", "none", false),
            ]),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{USER_SCHEMA}")},
    });
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": GROUP_SCHEMA, "name": "Group", "description": "A team of the account",
        "attributes": [
            attr("displayName", "string", false, true, "readWrite", "server", false),
            sub_attrs(attr("members", "complex", true, false, "readWrite", "none", false), vec![
                attr("value", "string", false, false, "immutable", "none", true),
                {
                    let mut r = attr("$ref", "reference", false, false, "immutable", "none", true);
                    r["referenceTypes"] = json!(["User"]);
                    r
                },
                {
                    let mut t = attr("type", "string", false, false, "immutable", "none", false);
                    t["canonicalValues"] = json!(["User"]);
                    t
                },
            ]),
        ],
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{GROUP_SCHEMA}")},
    });
    vec![user, group]
}

/// `GET /ResourceTypes`.
pub fn resource_types(app: &App, account: AccountId) -> Vec<Value> {
    let base = base_url(app, account);
    [Kind::User, Kind::Group]
        .iter()
        .map(|k| {
            json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
                "id": k.name(), "name": k.name(), "endpoint": format!("/{}", k.endpoint()),
                "description": match k { Kind::User => "Members of the account", Kind::Group => "Teams of the account" },
                "schema": k.schema(),
                "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{}", k.name())},
            })
        })
        .collect()
}

/// A discovery list (ResourceTypes, Schemas) as a ListResponse.
pub fn discovery_list(items: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": items.len(),
        "startIndex": 1,
        "itemsPerPage": items.len(),
        "Resources": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(doc: &mut Value, ops: Value) -> SResult<()> {
        apply_patch(
            doc,
            &json!({"schemas": [PATCH_SCHEMA], "Operations": ops}),
            Kind::User,
        )
    }

    #[test]
    fn a_filtered_path_with_a_sub_attribute_changes_only_the_matching_values() {
        let mut doc = json!({"userName": "g", "emails": [
            {"value": "grace@acme.test", "type": "work", "primary": true},
            {"value": "g@home.test", "type": "home", "primary": false}]});
        patch(&mut doc, json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "hopper@acme.test"}]))
            .expect("patch");
        assert_eq!(doc["emails"][0]["value"], "hopper@acme.test", "{doc}");
        assert_eq!(doc["emails"][1]["value"], "g@home.test", "{doc}");
        let u = user_input(&doc).expect("valid");
        assert_eq!(u.email, "hopper@acme.test");
    }

    #[test]
    fn path_less_values_with_dotted_names_and_repeated_ids_are_applied() {
        let mut doc =
            json!({"id": "x", "userName": "g", "name": {"givenName": "G", "familyName": "H"}});
        patch(&mut doc, json!([{"op": "Replace", "value": {"id": "x", "displayName": "D", "name.givenName": "Grace"}}]))
            .expect("patch");
        assert_eq!(
            (
                doc["name"]["givenName"].as_str(),
                doc["name"]["familyName"].as_str(),
                doc["displayName"].as_str()
            ),
            (Some("Grace"), Some("H"), Some("D")),
            "{doc}"
        );
    }
}
