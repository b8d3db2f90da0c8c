//! Webhooks (Prefect Cloud's, which a self-hosted Prefect server has not): the API the `prefect
//! cloud webhook` commands use (`…/workspaces/{w}/webhooks/…`), and the receiver at
//! `{public_url}/hooks/{slug}` that renders a call through the webhook's Jinja template into a
//! Prefect event and emits it into the workspace's upstream, so automations fire.

use crate::app::App;
use crate::authz::Principal;
use crate::domain::gateway_routes::Charge;
use crate::domain::scope::Scope;
use crate::domain::{AccountId, WorkspaceId};
use crate::services::audit::{self, NewEvent};
use crate::services::credentials::{random_base62, seal, sha256_hex, unseal};
use crate::services::{Error, Result};
use crate::store;
use crate::store::webhooks::WebhookRow;
use axum::http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

const SLUG_PURPOSE: &str = "atrium/webhook-slug/v1";
/// Characters of a slug (base62: ≈ 190 bits).
const SLUG_LEN: usize = 32;
/// The largest template accepted.
const MAX_TEMPLATE: usize = 64 * 1024;
/// The largest event a template may render.
const MAX_RENDERED: usize = 256 * 1024;
/// The template engine's budget per call (instructions): a loop that would run away stops.
const FUEL: u64 = 200_000;

/// A webhook as Prefect Cloud shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub template: String,
    pub enabled: bool,
    /// The secret part of the webhook's URL.
    pub slug: String,
    /// Where the webhook receives calls: `{public_url}/hooks/{slug}`.
    pub url: String,
    /// When set, calls must carry an API key of this service account.
    pub service_account_id: Option<Uuid>,
    pub account: Uuid,
    pub workspace: Uuid,
    pub created: chrono::DateTime<chrono::Utc>,
    pub updated: chrono::DateTime<chrono::Utc>,
}

/// `POST …/webhooks/` and `PUT …/webhooks/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookInput {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    /// A Jinja template rendering the event (JSON) from `body`, `headers`, `method`, `query`.
    #[schema(min_length = 1, max_length = 65536)]
    pub template: String,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub service_account_id: Option<Uuid>,
}

/// `PATCH …/webhooks/{id}` body: any subset.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(min_length = 1, max_length = 65536)]
    pub template: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// `POST …/webhooks/filter` body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterWebhooks {
    #[serde(default)]
    #[schema(minimum = 0)]
    pub offset: Option<i64>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

fn view(app: &App, w: WebhookRow) -> WebhookView {
    let slug = unseal(&app.audit_key, SLUG_PURPOSE, &w.slug_sealed)
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    WebhookView {
        id: w.id,
        url: format!(
            "{}/hooks/{slug}",
            app.config.public_url.trim_end_matches('/')
        ),
        slug,
        name: w.name,
        description: w.description,
        template: w.template,
        enabled: w.enabled,
        service_account_id: w.service_account_id,
        account: w.account_id.0,
        workspace: w.workspace_id.0,
        created: w.created,
        updated: w.updated,
    }
}

/// A new slug: (the slug, its hash, sealed).
fn new_slug(app: &App) -> (String, String, String) {
    let slug = random_base62(SLUG_LEN);
    let hash = sha256_hex(&slug);
    let sealed = seal(&app.audit_key, SLUG_PURPOSE, slug.as_bytes());
    (slug, hash, sealed)
}

/// The template environment: sandboxed (no file system or includes), a fuel budget, strict about
/// undefined values, and a `from_json` filter.
fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(50);
    // A field the call does not have is an error the webhook's owner sees (400, audited), not
    // an event with an empty name or resource.
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_filter(
        "from_json",
        |s: String| -> std::result::Result<minijinja::Value, minijinja::Error> {
            serde_json::from_str::<Value>(&s)
                .map(|v| minijinja::Value::from(minijinja::value::Serde(v)))
                .map_err(|e| {
                    minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        format!("from_json: {e}"),
                    )
                })
        },
    );
    env
}

fn check_template(t: &str) -> Result<String> {
    if t.trim().is_empty() || t.len() > MAX_TEMPLATE {
        return Err(Error::validation(format!(
            "template: give between 1 and {MAX_TEMPLATE} bytes"
        )));
    }
    environment()
        .template_from_str(t)
        .map_err(|e| Error::validation(format!("template: {e}")))?;
    Ok(t.to_string())
}

fn check_name(n: &str) -> Result<String> {
    crate::domain::validate::name("name", n).map_err(Error::Validation)
}

fn check_description(d: &str) -> Result<String> {
    crate::domain::validate::text("description", d, 1000).map_err(Error::Validation)
}

/// A service account named for authentication must be the account's.
async fn check_service_account(
    c: &mut store::Conn,
    account: AccountId,
    sa: Option<Uuid>,
) -> Result<()> {
    if let Some(id) = sa {
        if store::service_accounts::find_bot(c, account, crate::domain::ServiceAccountId(id))
            .await?
            .is_none()
        {
            return Err(Error::validation(format!(
                "service_account_id: {id} is not a service account of this account"
            )));
        }
    }
    Ok(())
}

async fn require(
    app: &App,
    p: &Principal,
    account: AccountId,
    ws: WorkspaceId,
    s: Scope,
) -> Result<()> {
    crate::services::require_scope(app, p, account, ws, s)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            Error::NotFound(_) => Error::not_found("workspace"),
            e => e,
        })
}

fn summary(w: &WebhookRow) -> Value {
    json!({
        "name": w.name, "description": w.description, "template": w.template,
        "enabled": w.enabled, "service_account_id": w.service_account_id,
    })
}

/// `POST …/webhooks/` (`manage_webhooks`).
pub async fn create(
    app: &App,
    p: &Principal,
    account: AccountId,
    ws: WorkspaceId,
    input: WebhookInput,
) -> Result<WebhookView> {
    require(app, p, account, ws, Scope::ManageWebhooks).await?;
    let now = app.now();
    let (_, slug_hash, slug_sealed) = new_slug(app);
    let w = WebhookRow {
        id: Uuid::new_v4(),
        account_id: account,
        workspace_id: ws,
        name: check_name(&input.name)?,
        description: check_description(input.description.as_deref().unwrap_or(""))?,
        template: check_template(&input.template)?,
        enabled: input.enabled.unwrap_or(true),
        slug_hash,
        slug_sealed,
        service_account_id: input.service_account_id,
        created: now,
        updated: now,
    };
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    check_service_account(&mut tx, account, w.service_account_id).await?;
    store::webhooks::insert_webhook(&mut tx, &w).await?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("webhook", "created", w.id)
            .name(w.name.clone())
            .workspace(ws)
            .payload(summary(&w)),
    )
    .await?;
    tx.commit().await?;
    Ok(view(app, w))
}

/// `POST …/webhooks/filter` (`see_webhooks`).
pub async fn filter(
    app: &App,
    p: &Principal,
    account: AccountId,
    ws: WorkspaceId,
    f: FilterWebhooks,
) -> Result<Vec<WebhookView>> {
    require(app, p, account, ws, Scope::SeeWebhooks).await?;
    let limit = f.limit.unwrap_or(200);
    let offset = f.offset.unwrap_or(0);
    if !(1..=200).contains(&limit) || offset < 0 {
        return Err(Error::validation("limit must be 1..200 and offset ≥ 0"));
    }
    let mut c = app.store.reader().await?;
    let rows = store::webhooks::find_webhooks(&mut c, account, ws, limit, offset).await?;
    Ok(rows.into_iter().map(|w| view(app, w)).collect())
}

/// `GET …/webhooks/{id}` (`see_webhooks`).
pub async fn read(
    app: &App,
    p: &Principal,
    account: AccountId,
    ws: WorkspaceId,
    id: Uuid,
) -> Result<WebhookView> {
    require(app, p, account, ws, Scope::SeeWebhooks).await?;
    let mut c = app.store.reader().await?;
    let w = store::webhooks::find_webhook(&mut c, account, ws, id)
        .await?
        .ok_or_else(|| Error::not_found("webhook"))?;
    Ok(view(app, w))
}

/// What changes a webhook: a full replacement (`PUT`), a patch, or a new slug.
pub enum Change {
    Replace(WebhookInput),
    Patch(WebhookPatch),
    Rotate,
}

/// `PUT`, `PATCH …/webhooks/{id}` and `POST …/webhooks/{id}/rotate` (`manage_webhooks`). Audited
/// with the fields before and after (never the slug).
pub async fn change(
    app: &App,
    p: &Principal,
    account: AccountId,
    ws: WorkspaceId,
    id: Uuid,
    change: Change,
) -> Result<WebhookView> {
    require(app, p, account, ws, Scope::ManageWebhooks).await?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let mut w = store::webhooks::find_webhook(&mut tx, account, ws, id)
        .await?
        .ok_or_else(|| Error::not_found("webhook"))?;
    let before = summary(&w);
    let action = match change {
        Change::Replace(i) => {
            w.name = check_name(&i.name)?;
            w.description = check_description(i.description.as_deref().unwrap_or(""))?;
            w.template = check_template(&i.template)?;
            if let Some(e) = i.enabled {
                w.enabled = e;
            }
            check_service_account(&mut tx, account, i.service_account_id).await?;
            w.service_account_id = i.service_account_id;
            "updated"
        }
        Change::Patch(pt) => {
            if let Some(n) = pt.name {
                w.name = check_name(&n)?;
            }
            if let Some(d) = pt.description {
                w.description = check_description(&d)?;
            }
            if let Some(t) = pt.template {
                w.template = check_template(&t)?;
            }
            if let Some(e) = pt.enabled {
                w.enabled = e;
            }
            "updated"
        }
        Change::Rotate => {
            let (_, hash, sealed) = new_slug(app);
            w.slug_hash = hash;
            w.slug_sealed = sealed;
            "rotated"
        }
    };
    w.updated = app.now();
    store::webhooks::update_webhook(&mut tx, &w).await?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("webhook", action, w.id)
            .name(w.name.clone())
            .workspace(ws)
            .payload(json!({"before": before, "after": summary(&w)})),
    )
    .await?;
    tx.commit().await?;
    Ok(view(app, w))
}

/// `DELETE …/webhooks/{id}` (`manage_webhooks`).
pub async fn delete(
    app: &App,
    p: &Principal,
    account: AccountId,
    ws: WorkspaceId,
    id: Uuid,
) -> Result<()> {
    require(app, p, account, ws, Scope::ManageWebhooks).await?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let w = store::webhooks::find_webhook(&mut tx, account, ws, id)
        .await?
        .ok_or_else(|| Error::not_found("webhook"))?;
    store::webhooks::delete_webhook(&mut tx, account, ws, id).await?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("webhook", "deleted", id)
            .name(w.name.clone())
            .workspace(ws)
            .payload(summary(&w)),
    )
    .await?;
    tx.commit().await
}

/// One call to a webhook's URL, as the receiver got it.
pub struct Incoming<'a> {
    pub method: &'a str,
    pub headers: Map<String, Value>,
    pub query: Map<String, Value>,
    pub body: &'a [u8],
    /// The caller's principal, when the call carried an API key.
    pub caller: Option<Principal>,
}

/// Receives a call to `{public_url}/hooks/{slug}`: finds the webhook (404 for an unknown slug or a
/// disabled webhook — nothing tells them apart), checks authentication when the webhook or the
/// account requires it, charges the account's logs + events budget, renders the template and
/// emits the event into the workspace's upstream. A template that fails answers 400 with the
/// reason, which is also audited (`prefect-cloud.webhook.failed`).
pub async fn receive(app: &App, slug: &str, call: Incoming<'_>) -> Result<Value> {
    let unknown = || Error::not_found("webhook");
    if slug.len() != SLUG_LEN || !slug.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(unknown());
    }
    let (w, enforce) = {
        let mut c = app.store.reader().await?;
        let w = store::webhooks::find_by_slug_hash(&mut c, &sha256_hex(slug))
            .await?
            .filter(|w| w.enabled)
            .ok_or_else(unknown)?;
        let enforce = store::accounts::find_account(&mut c, w.account_id)
            .await?
            .and_then(|a| {
                a.settings
                    .get("enforce_webhook_authentication")
                    .and_then(Value::as_bool)
            })
            .unwrap_or(false);
        (w, enforce)
    };
    if enforce || w.service_account_id.is_some() {
        let p = call.caller.as_ref().ok_or_else(|| {
            Error::Unauthenticated(
                "this webhook requires an API key of a service account: send Authorization: Bearer <key>".into(),
            )
        })?;
        let as_required = w
            .service_account_id
            .is_none_or(|sa| p.is_bot() && p.user_id.0 == sa);
        if !as_required {
            audit::record_denial(
                app,
                p,
                w.account_id,
                "webhook: not its service account",
                Some(w.workspace_id),
            );
            return Err(Error::Forbidden(
                "this webhook accepts calls only from its service account".into(),
            ));
        }
        crate::services::require_scope(app, p, w.account_id, w.workspace_id, Scope::ManageEvents)
            .await?;
    }
    let (g, up) = crate::services::gateway::upstream_of(app, w.account_id, w.workspace_id)?;
    crate::services::gateway::charge(app, w.account_id, &g, Charge::Items, 1).await?;
    let event = match render(app, &w, &call) {
        Ok(e) => e,
        Err(why) => {
            let mut tx = crate::services::unit::Unit::account(app, w.account_id).await?;
            audit::record(
                app,
                &mut tx,
                None,
                w.account_id.0,
                NewEvent::new("webhook", "failed", w.id)
                    .name(w.name.clone())
                    .workspace(w.workspace_id)
                    .payload(json!({"reason": why})),
            )
            .await?;
            tx.commit().await?;
            return Err(Error::Malformed(format!(
                "the webhook's template failed: {why}"
            )));
        }
    };
    crate::services::upstreams::call(app, &up, Method::POST, "events", Some(&json!([event])))
        .await?;
    Ok(event)
}

/// The event a call renders to, or why it does not.
fn render(app: &App, w: &WebhookRow, call: &Incoming<'_>) -> std::result::Result<Value, String> {
    let body = String::from_utf8_lossy(call.body).into_owned();
    let parsed: Value = serde_json::from_slice(call.body).unwrap_or(Value::Null);
    let ctx = json!({
        "body": body,
        "json": parsed,
        "headers": call.headers,
        "query": call.query,
        "method": call.method,
        "webhook": {"id": w.id, "name": w.name},
    });
    let out = environment()
        .render_str(
            &w.template,
            minijinja::Value::from(minijinja::value::Serde(ctx)),
        )
        .map_err(|e| e.to_string())?;
    if out.len() > MAX_RENDERED {
        return Err(format!("the rendered event is over {MAX_RENDERED} bytes"));
    }
    let mut e: Map<String, Value> = match serde_json::from_str(&out) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return Err("the template must render a JSON object".into()),
        Err(e) => return Err(format!("the template did not render JSON: {e}")),
    };
    if !e.get("event").is_some_and(Value::is_string) {
        return Err("the event has no \"event\" name".into());
    }
    if !e
        .get("resource")
        .and_then(|r| r.get("prefect.resource.id"))
        .is_some_and(Value::is_string)
    {
        return Err("the event has no resource with a \"prefect.resource.id\"".into());
    }
    e.entry("id").or_insert_with(|| json!(Uuid::new_v4()));
    e.entry("occurred").or_insert_with(|| {
        json!(app
            .now()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    });
    let related = e.entry("related").or_insert_with(|| json!([]));
    if let Some(r) = related.as_array_mut() {
        r.push(json!({
            "prefect.resource.id": format!("prefect-cloud.webhook.{}", w.id),
            "prefect.resource.name": w.name,
            "prefect.resource.role": "webhook",
        }));
    } else {
        return Err("\"related\" must be a list".into());
    }
    Ok(Value::Object(e))
}
