//! The Billing page: the plan, its entitlements, seat and workspace usage against the limits
//! (drawn), per-workspace usage from the Prefect servers, and the payment method on record.

use super::session::SignedIn;
use super::shell::{Section, Shell};
use super::{error_page, table};
use crate::app::App;
use crate::domain::AccountId;
use crate::services::Result;
use axum::extract::{Path, State};
use axum::response::Response;
use maud::{html, Markup};

/// A labelled usage bar: `used` of `limit` (no limit: just the number).
fn usage_bar(label: &str, used: i64, limit: Option<i64>) -> Markup {
    match limit {
        Some(l) if l > 0 => {
            let pct = (used * 100 / l).clamp(0, 100);
            html! {
                p { (label) ": " strong { (used) " of " (l) } }
                div.bar role="meter" aria-label=(label) aria-valuemin="0" aria-valuemax=(l) aria-valuenow=(used) {
                    span.full[used >= l] style={ "width:" (pct) "%" } {}
                }
            }
        }
        _ => html! { p { (label) ": " strong { (used) } " (no limit)" } },
    }
}

/// `GET /account/{a}/billing` (`read:billing`).
pub async fn show(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
) -> Response {
    let r: Result<Response> = async {
        let shell = Shell::open(&app, &p, account).await?;
        let plan = crate::services::plans::read_plan(&app, &p, account).await?;
        let overview = crate::services::accounts::overview(&app, &p, account).await?;
        let usage = crate::services::plans::usage(&app, &p, account).await?;
        let n = |v: Option<i64>| v.map_or("—".to_string(), |v| v.to_string());
        let rows: Vec<Markup> = usage
            .iter()
            .map(|w| {
                html! { tr {
                    td { (w.name) }
                    td { (if w.has_upstream { "bound" } else { "not bound" }) }
                    td { (n(w.flows)) }
                    td { (n(w.flow_runs)) }
                    td { (n(w.deployments)) }
                    td { (n(w.work_pools)) }
                    td { (n(w.automations)) }
                } }
            })
            .collect();
        let body = html! {
            h1 { "Billing" }
            h2 { "Plan" }
            p { strong { (overview.plan) } }
            (usage_bar("Seats used (members and pending invitations)", overview.seats_used, plan.user_limit))
            (usage_bar("Workspaces", usage.len() as i64, plan.workspace_limit))
            h2 { "Entitlements" }
            ul { @for f in &plan.features { li { (f.replace('_', " ")) } } }
            p {
                "Flow-run retention: " (plan.run_retention_days) " days · audit-log retention: "
                (plan.audit_log_retention_days) " days · API requests: " (plan.api_rate_limit)
                " per minute · logs and events: " (plan.logs_rate_limit) " per minute"
            }
            h2 { "Usage by workspace" }
            (table(
                "Counts from each workspace's Prefect server (— when unbound or unreachable)",
                &["Workspace", "Prefect server", "Flows", "Flow runs", "Deployments", "Work pools", "Automations"],
                &rows,
                "No workspaces."
            ))
            h2 { "Payment method" }
            p {
                "None on record: Atrium is self-hosted and takes no payments. Plans are set by the site administrator ("
                code { "atrium accounts set-plan" } ")."
            }
            p { "Billing email: " (shell.a.billing_email.as_deref().unwrap_or("not set")) }
        };
        Ok(shell.render(Section::Billing, "Billing", body))
    }
    .await;
    r.unwrap_or_else(|e| error_page(&e))
}
