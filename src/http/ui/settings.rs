//! The Settings page (name, handle and the other account fields; the account settings of the
//! reference; flow-run retention) and the SSO page (how members sign in today).

use super::error_page;
use super::form::{done, Fields};
use super::session::SignedIn;
use super::shell::{Section, Shell};
use crate::app::App;
use crate::domain::role::AccountPermission as P;
use crate::domain::AccountId;
use crate::services::accounts::{self, UpdateAccount};
use crate::services::ip_allowlist;
use crate::services::{Error, Result};
use axum::extract::{Path, State};
use axum::response::Response;
use maud::{html, Markup};
use serde_json::{Map, Value};

/// The on/off settings of the reference shown on the page, with what each means.
const TOGGLES: &[(&str, &str)] = &[
    ("ai_log_summaries", "AI log summaries"),
    ("allow_public_workspaces", "Allow public workspaces"),
    ("managed_execution", "Managed execution"),
    (
        "enforce_webhook_authentication",
        "Require authentication on webhooks",
    ),
    ("self_healing_enabled", "Self-healing"),
];

/// `GET /account/{a}/settings`
pub async fn show(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
) -> Response {
    let r: Result<Response> = async {
        let shell = Shell::open(&app, &p, account).await?;
        let a = &shell.a;
        let plan = crate::services::plans::read_plan(&app, &p, account).await?;
        let editable = shell.can(P::UpdateAccount);
        let disabled = !editable;
        // A labelled text field of the account form.
        let field = |id: &str, label: &str, value: &str, kind: &str, required: bool, maxlength: Option<u32>| {
            html! { div {
                label for={ "s-" (id) } { (label) }
                input id={ "s-" (id) } name=(id) type=(kind) value=(value) required[required] maxlength=[maxlength] disabled[disabled];
            } }
        };
        let retention = a
            .settings
            .get("run_retention_days")
            .and_then(Value::as_i64)
            .map(|d| d.to_string())
            .unwrap_or_default();
        let body = html! {
            h1 { "Settings" }
            form method="post" action=(shell.url("/settings")) {
                (shell.csrf_input())
                h2 { "Account" }
                div.row {
                    (field("name", "Name", &a.name, "text", true, Some(100)))
                    (field("handle", "Handle", &a.handle, "text", true, Some(100)))
                }
                div.row {
                    (field("location", "Location", a.location.as_deref().unwrap_or(""), "text", false, Some(200)))
                    (field("link", "Link", a.link.as_deref().unwrap_or(""), "url", false, Some(500)))
                    (field("billing_email", "Billing email", a.billing_email.as_deref().unwrap_or(""), "email", false, None))
                }
                h2 { "Features" }
                fieldset {
                    legend { "Account settings returned to Prefect clients" }
                    @for (k, label) in TOGGLES {
                        span.check {
                            input type="checkbox" id={ "t-" (k) } name=(k) checked[a.settings.get(*k).and_then(Value::as_bool).unwrap_or(false)] disabled[disabled];
                            label for={ "t-" (k) } { (label) }
                        }
                    }
                }
                p.muted.small {
                    "These are the account settings of Prefect Cloud: Atrium stores them and returns them to the "
                    code { "prefect" } " client and UI, which decide what they change."
                }
                h2 { "Flow-run retention" }
                label for="s-retention" { "Delete finished flow runs after (days; empty = the plan's " (plan.run_retention_days) ")" }
                input #s-retention name="run_retention_days" type="number" min="1" max=(plan.run_retention_days) value=(retention) disabled[disabled];
                p.muted.small {
                    "Atrium's retention job deletes them from each workspace's Prefect server. It can only shorten the plan's retention."
                }
                @if editable { button type="submit" { "Save settings" } }
            }
            (ip_allowlist_section(&app, &p, &shell).await?)
        };
        Ok(shell.render(Section::Settings, "Settings", body))
    }
    .await;
    r.unwrap_or_else(|e| error_page(&e))
}

/// The IP allowlist part of the page: every entry editable in one form, an empty row to add
/// one, and the enforcement switch (only when the plan has the feature).
async fn ip_allowlist_section(
    app: &App,
    p: &crate::authz::Principal,
    shell: &Shell,
) -> Result<Markup> {
    let a = &shell.a;
    if !a.settings.contains_key("enforce_ip_allowlist") || !shell.can(P::ReadIpAllowlist) {
        return Ok(html! {
            h2 { "IP allowlist" }
            p.muted { "Not included in this account's plan." }
        });
    }
    let list = ip_allowlist::read(app, p, shell.account).await?;
    let mine = ip_allowlist::my_access(app, p, shell.account).await?;
    let editable = shell.can(P::UpdateIpAllowlist) && shell.can(P::UpdateAccount);
    let disabled = !editable;
    let row = |i: usize, net: &str, on: bool, desc: &str| {
        let n = i + 1;
        html! { tr {
            td {
                label.sr-only for={ "ip-net-" (i) } { "Network " (n) }
                input id={ "ip-net-" (i) } name={ "net_" (i) } value=(net) placeholder="203.0.113.0/24" disabled[disabled];
            }
            td {
                label.sr-only for={ "ip-desc-" (i) } { "Description " (n) }
                input id={ "ip-desc-" (i) } name={ "desc_" (i) } value=(desc) maxlength="200" disabled[disabled];
            }
            td { input type="checkbox" id={ "ip-on-" (i) } name={ "on_" (i) } checked[on] disabled[disabled] aria-label={ "Entry " (n) " enabled" }; }
        } }
    };
    let enforced = a
        .settings
        .get("enforce_ip_allowlist")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(html! {
        h2 { "IP allowlist" }
        p.muted[mine.allowed].error[!mine.allowed] role="status" { (mine.detail) "." }
        form method="post" action=(shell.url("/settings/ip-allowlist")) {
            (shell.csrf_input())
            input type="hidden" name="count" value=(list.entries.len() + usize::from(editable));
            table {
                caption { "Networks allowed to reach this account (empty a network to remove its entry)" }
                thead { tr { th scope="col" { "Network (CIDR)" } th scope="col" { "Description" } th scope="col" { "Enabled" } } }
                tbody {
                    @for (i, e) in list.entries.iter().enumerate() {
                        (row(i, &e.ip_network, e.enabled, e.description.as_deref().unwrap_or("")))
                    }
                    @if editable { (row(list.entries.len(), "", true, "")) }
                }
            }
            span.check {
                input type="checkbox" #ip-enforce name="enforce" checked[enforced] disabled[disabled];
                label for="ip-enforce" {
                    "Enforce: refuse every request to this account (API, Prefect gateway, dashboard) from an address outside the enabled entries"
                }
            }
            @if editable { button type="submit" { "Save allowlist" } }
        }
    })
}

/// `POST /account/{a}/settings/ip-allowlist`: the whole list and the enforcement switch.
pub async fn save_ip_allowlist(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
    f: Fields,
) -> Response {
    let r = async {
        let count: usize = f
            .get("count")
            .parse()
            .unwrap_or(0)
            .min(ip_allowlist::MAX_ENTRIES + 1);
        let entries = (0..count)
            .filter_map(|i| {
                let net = f.opt(&format!("net_{i}"))?;
                Some(ip_allowlist::IpAllowlistEntry {
                    ip_network: net.to_string(),
                    enabled: f.checked(&format!("on_{i}")),
                    description: f.opt(&format!("desc_{i}")).map(str::to_string),
                    last_seen: None,
                })
            })
            .collect();
        ip_allowlist::save_with_enforcement(
            &app,
            &p,
            account,
            ip_allowlist::IpAllowlist { entries },
            f.checked("enforce"),
        )
        .await
    }
    .await;
    done(&format!("/account/{account}/settings"), r)
}

/// `POST /account/{a}/settings`: the account fields and settings in one change.
pub async fn update(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
    f: Fields,
) -> Response {
    let r = async {
        let mut settings = Map::new();
        for (k, _) in TOGGLES {
            settings.insert(k.to_string(), Value::Bool(f.checked(k)));
        }
        let retention = match f.opt("run_retention_days") {
            None => Value::Null,
            Some(v) => Value::from(v.parse::<i64>().map_err(|_| {
                Error::validation("run_retention_days must be a whole number of days")
            })?),
        };
        settings.insert("run_retention_days".into(), retention);
        let text = |k: &str| Some(f.opt(k).map(str::to_string));
        accounts::update_account(
            &app,
            &p,
            account,
            UpdateAccount {
                name: Some(f.get("name").to_string()),
                handle: Some(f.get("handle").to_string()),
                location: text("location"),
                link: text("link"),
                billing_email: text("billing_email"),
                auth_expiration_seconds: None,
                settings: Some(settings),
            },
        )
        .await
    }
    .await;
    done(&format!("/account/{account}/settings"), r)
}
