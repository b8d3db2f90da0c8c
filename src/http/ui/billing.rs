//! The Billing page: the plan, its entitlements, seat and workspace usage against the limits
//! (drawn), per-workspace usage from the Prefect servers, and the payment method on record.

use super::session::SignedIn;
use super::shell::{Section, Shell};
use super::{error_page, table};
use crate::app::App;
use crate::domain::AccountId;
use crate::services::mail::html_escape;
use crate::services::Result;
use axum::extract::{Path, State};
use axum::response::Response;

/// A labelled usage bar: `used` of `limit` (no limit: just the number).
fn usage_bar(label: &str, used: i64, limit: Option<i64>) -> String {
    match limit {
        Some(l) if l > 0 => {
            let pct = (used * 100 / l).clamp(0, 100);
            format!(
                "<p>{label}: <strong>{used} of {l}</strong></p>\
                 <div class=\"bar\" role=\"meter\" aria-label=\"{label}\" aria-valuemin=\"0\" aria-valuemax=\"{l}\" aria-valuenow=\"{used}\">\
                 <span style=\"width:{pct}%\"{full}></span></div>",
                full = if used >= l { " class=\"full\"" } else { "" },
            )
        }
        _ => format!("<p>{label}: <strong>{used}</strong> (no limit)</p>"),
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
        let features: String = plan
            .features
            .iter()
            .map(|f| format!("<li>{}</li>", html_escape(&f.replace('_', " "))))
            .collect();
        let n = |v: Option<i64>| v.map_or("—".to_string(), |v| v.to_string());
        let rows: String = usage
            .iter()
            .map(|w| {
                format!(
                    "<tr><td>{name}</td><td>{up}</td><td>{f}</td><td>{fr}</td><td>{d}</td><td>{wp}</td><td>{a}</td></tr>",
                    name = html_escape(&w.name),
                    up = if w.has_upstream { "bound" } else { "not bound" },
                    f = n(w.flows),
                    fr = n(w.flow_runs),
                    d = n(w.deployments),
                    wp = n(w.work_pools),
                    a = n(w.automations),
                )
            })
            .collect();
        let body = format!(
            "<h1>Billing</h1><h2>Plan</h2><p><strong>{plan}</strong></p>\
             {seats}{workspaces}\
             <h2>Entitlements</h2><ul>{features}</ul>\
             <p>Flow-run retention: {run} days · audit-log retention: {audit} days · API requests: {api} per minute · logs and events: {logs} per minute</p>\
             <h2>Usage by workspace</h2>{table}\
             <h2>Payment method</h2><p>None on record: Atrium is self-hosted and takes no payments. Plans are set by the site administrator \
             (<code>atrium accounts set-plan</code>).</p><p>Billing email: {email}</p>",
            plan = html_escape(overview.plan),
            seats = usage_bar("Seats used (members and pending invitations)", overview.seats_used, plan.user_limit),
            workspaces = usage_bar("Workspaces", usage.len() as i64, plan.workspace_limit),
            run = plan.run_retention_days,
            audit = plan.audit_log_retention_days,
            api = plan.api_rate_limit,
            logs = plan.logs_rate_limit,
            table = table(
                "Counts from each workspace's Prefect server (— when unbound or unreachable)",
                &["Workspace", "Prefect server", "Flows", "Flow runs", "Deployments", "Work pools", "Automations"],
                &rows,
                "No workspaces."
            ),
            email = html_escape(shell.a.billing_email.as_deref().unwrap_or("not set")),
        );
        Ok(shell.render(Section::Billing, "Billing", &body))
    }
    .await;
    r.unwrap_or_else(|e| error_page(&e))
}
