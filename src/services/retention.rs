//! Flow-run retention and usage counts, both through a workspace's upstream Prefect API: runs
//! that reached a terminal state more than the account's `run_retention_days` ago are deleted
//! (Prefect deletes their task runs, states and logs with them), and each deletion pass is
//! audited.

use crate::app::App;
use crate::authz::Principal;
use crate::domain::{AccountId, WorkspaceId};
use crate::services::audit::{self, NewEvent};
use crate::services::upstreams::{call, Upstream};
use crate::services::{Error, Result};
use axum::http::Method;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// Runs deleted per filter page.
const PAGE: usize = 200;
const TERMINAL: [&str; 4] = ["COMPLETED", "FAILED", "CANCELLED", "CRASHED"];

/// What one retention pass did (or, dry, would do) in one workspace.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceRetention {
    pub workspace_id: Uuid,
    pub retention_days: i64,
    /// Runs that ended before this instant are expired.
    pub cutoff: chrono::DateTime<chrono::Utc>,
    /// Expired runs found.
    pub expired: u64,
    /// Runs deleted (0 on a dry run).
    pub deleted: u64,
    /// Why the pass stopped early, if it did.
    pub error: Option<String>,
}

fn expired_filter(cutoff: chrono::DateTime<chrono::Utc>) -> Value {
    json!({
        "flow_runs": {
            "state": {"type": {"any_": TERMINAL}},
            "end_time": {"before_": cutoff.to_rfc3339()},
        }
    })
}

async fn apply_in_workspace(
    app: &App,
    u: &Upstream,
    cutoff: chrono::DateTime<chrono::Utc>,
    dry_run: bool,
) -> (u64, u64, Option<String>) {
    let filter = expired_filter(cutoff);
    let expired = match call(app, u, Method::POST, "flow_runs/count", Some(&filter)).await {
        Ok(v) => v.as_u64().unwrap_or(0),
        Err(e) => return (0, 0, Some(e.to_string())),
    };
    if dry_run || expired == 0 {
        return (expired, 0, None);
    }
    let mut deleted = 0;
    let mut page = filter;
    page["limit"] = json!(PAGE);
    page["sort"] = json!("END_TIME_DESC");
    loop {
        let runs = match call(app, u, Method::POST, "flow_runs/filter", Some(&page)).await {
            Ok(Value::Array(a)) => a,
            Ok(_) => {
                return (
                    expired,
                    deleted,
                    Some("unexpected flow_runs/filter answer".into()),
                )
            }
            Err(e) => return (expired, deleted, Some(e.to_string())),
        };
        let n = runs.len();
        for id in runs
            .iter()
            .filter_map(|r| r.get("id").and_then(Value::as_str))
        {
            let Ok(id) = Uuid::try_parse(id) else {
                continue;
            };
            match call(app, u, Method::DELETE, &format!("flow_runs/{id}"), None).await {
                Ok(_) => deleted += 1,
                // Deleted meanwhile (another process's pass, or a user).
                Err(Error::NotFound(_)) => {}
                Err(e) => return (expired, deleted, Some(e.to_string())),
            }
        }
        if n < PAGE {
            return (expired, deleted, None);
        }
    }
}

/// Applies run retention in every bound workspace of an account. `p` is the operator (CLI or API);
/// the background job passes `None` and is recorded as the system. Each workspace where runs were
/// deleted gets one audit event.
pub async fn apply(
    app: &App,
    p: Option<&Principal>,
    account: AccountId,
    dry_run: bool,
) -> Result<Vec<WorkspaceRetention>> {
    if let Some(p) = p {
        crate::services::authorize(
            app,
            p,
            account,
            crate::domain::role::AccountPermission::AdministrateWorkspace,
        )
        .await?;
    }
    let Some(g) = app.upstreams.account(&account.0) else {
        return Err(Error::not_found("account"));
    };
    let days = g.run_retention_days.max(1);
    let cutoff = app.now() - chrono::Duration::days(days);
    let mut out = Vec::new();
    let mut ws: Vec<_> = g.upstreams.iter().collect();
    ws.sort_by_key(|(w, _)| **w);
    for (w, u) in ws {
        let (expired, deleted, error) = apply_in_workspace(app, u, cutoff, dry_run).await;
        if let Some(e) = &error {
            tracing::warn!(account = %account, workspace = %w, error = %e, "run retention stopped early");
        }
        if expired > 0 || error.is_some() {
            tracing::info!(account = %account, workspace = %w, expired, deleted, dry_run, "run retention");
        }
        if deleted > 0 {
            let mut tx = crate::services::unit::Unit::account(app, account).await?;
            audit::record(
                app,
                &mut tx,
                p,
                account.0,
                NewEvent::new("flow-run-retention", "applied", *w)
                    .workspace(WorkspaceId(*w))
                    .payload(json!({
                        "retention_days": days,
                        "cutoff": cutoff,
                        "deleted": deleted,
                        "stopped_early": error,
                    })),
            )
            .await?;
            tx.commit().await?;
        }
        out.push(WorkspaceRetention {
            workspace_id: *w,
            retention_days: days,
            cutoff,
            expired,
            deleted: if dry_run { 0 } else { deleted },
            error,
        });
    }
    Ok(out)
}

/// Object counts of a workspace from its upstream (`None` for each when it cannot be asked).
#[derive(Debug, Default, Clone, Copy)]
pub struct UpstreamCounts {
    pub flows: Option<i64>,
    pub flow_runs: Option<i64>,
    pub deployments: Option<i64>,
    pub work_pools: Option<i64>,
    pub automations: Option<i64>,
}

pub async fn counts(app: &App, u: &Upstream) -> UpstreamCounts {
    let empty = json!({});
    let count = |path: &'static str| {
        let empty = &empty;
        async move {
            call(app, u, Method::POST, path, Some(empty))
                .await
                .ok()
                .and_then(|v| v.as_i64())
        }
    };
    let (flows, flow_runs, deployments, work_pools, automations) = tokio::join!(
        count("flows/count"),
        count("flow_runs/count"),
        count("deployments/count"),
        count("work_pools/count"),
        count("automations/count"),
    );
    UpstreamCounts {
        flows,
        flow_runs,
        deployments,
        work_pools,
        automations,
    }
}
