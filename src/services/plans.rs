//! Plans: an account's entitlements (catalogue + configuration + per-account overrides), setting a
//! plan (site admins), usage and limits, and the feature gate used by every gated service.

use crate::app::App;
use crate::authz::Principal;
use crate::domain::plan::{builtin, Entitlements, EntitlementsPatch, Feature, PlanType};
use crate::domain::role::AccountPermission as P;
use crate::domain::AccountId;
use crate::services::audit::{self, NewEvent};
use crate::services::{Error, Result};
use crate::store::{self, accounts::AccountRow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The account's entitlements: the plan's built-in values, changed by the configuration's
/// `[plans.<plan>]` table, then by the account's own overrides.
pub fn entitlements(app: &App, row: &AccountRow) -> Entitlements {
    let plan = PlanType::parse(&row.plan).unwrap_or(PlanType::Enterprise);
    let mut e = builtin(plan);
    if let Some(patch) = app.config.plans.get(&plan) {
        patch.apply(&mut e);
    }
    if let Ok(overrides) = serde_json::from_str::<EntitlementsPatch>(&row.plan_overrides) {
        overrides.apply(&mut e);
    }
    e
}

/// Refuses with 403 naming the feature when the account's plan lacks it (answered from the
/// permission index, no database call).
pub fn require_feature(app: &App, account: AccountId, f: Feature) -> Result<()> {
    match crate::services::gate::plan(app, account) {
        Some((plan, features)) if !features.contains(f) => Err(Error::Forbidden(format!(
            "the {} plan of this account does not include the {} feature",
            plan.display(),
            f.name()
        ))),
        _ => Ok(()),
    }
}

/// `PUT /api/admin/accounts/{a}/plan` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPlan {
    pub plan_type: PlanType,
    /// Per-account changes to the plan's entitlements (Enterprise "custom" terms); replaces any
    /// previous overrides.
    #[serde(default)]
    pub overrides: EntitlementsPatch,
}

/// The account's plan and entitlements.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    pub plan_type: PlanType,
    pub user_limit: Option<i64>,
    pub workspace_limit: Option<i64>,
    pub features: Vec<&'static str>,
    pub run_retention_days: i64,
    pub audit_log_retention_days: i64,
    pub api_rate_limit: i64,
    pub logs_rate_limit: i64,
    pub overrides: EntitlementsPatch,
}

fn plan_view(e: &Entitlements, overrides: EntitlementsPatch) -> PlanView {
    PlanView {
        plan_type: e.plan,
        user_limit: e.user_limit,
        workspace_limit: e.workspace_limit,
        features: e.features.names(),
        run_retention_days: e.run_retention_days,
        audit_log_retention_days: e.audit_log_retention_days,
        api_rate_limit: e.api_rate_limit,
        logs_rate_limit: e.logs_rate_limit,
        overrides,
    }
}

/// Sets an account's plan (site admins only). Existing members and workspaces above a lower
/// plan's limits stay; new ones are refused until usage is back under the limits.
pub async fn set_plan(
    app: &App,
    p: &Principal,
    account: AccountId,
    s: SetPlan,
) -> Result<PlanView> {
    if !p.site_admin {
        return Err(Error::not_found("account"));
    }
    s.overrides.validate().map_err(Error::Validation)?;
    let overrides = serde_json::to_string(&s.overrides).map_err(|e| Error::Unexpected(e.into()))?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let before = store::accounts::find_account(&mut tx, account)
        .await?
        .ok_or_else(|| Error::not_found("account"))?;
    let before_view = plan_view(
        &entitlements(app, &before),
        serde_json::from_str(&before.plan_overrides).unwrap_or_default(),
    );
    store::accounts::update_plan(
        &mut tx.access(account),
        account,
        s.plan_type.code(),
        &overrides,
        app.now(),
    )
    .await?;
    let mut after = before.clone();
    after.plan = s.plan_type.code().into();
    after.plan_overrides = overrides;
    let view = plan_view(&entitlements(app, &after), s.overrides);
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("subscription", "updated", account.0)
            .name(after.handle.clone())
            .payload(audit::changes(&before_view, &view)),
    )
    .await?;
    tx.commit().await?;
    Ok(view)
}

/// The plan as members see it (`read:account`).
pub async fn read_plan(app: &App, p: &Principal, account: AccountId) -> Result<PlanView> {
    crate::services::authorize(app, p, account, P::ReadAccount).await?;
    let mut c = app.store.reader().await?;
    let row = store::accounts::find_account(&mut c, account)
        .await?
        .ok_or_else(|| Error::not_found("account"))?;
    Ok(plan_view(
        &entitlements(app, &row),
        serde_json::from_str(&row.plan_overrides).unwrap_or_default(),
    ))
}

/// `GET /api/accounts/{a}/usage_limits` (field names of the reference; `null` = unlimited or not
/// applicable to a self-hosted installation).
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageLimits {
    pub audit_log_retention_days: Option<i64>,
    pub automations_limit: Option<i64>,
    pub log_rate_limit: Option<i64>,
    pub max_deployments_per_workspace: Option<i64>,
    pub mex_compute_limit: Option<i64>,
    pub mex_concurrency_limit: Option<i64>,
    pub mex_work_pool_limit: Option<i64>,
    pub non_mex_work_pool_limit: Option<i64>,
    pub orchestration_rate_limit: Option<i64>,
    pub run_retention_days: Option<i64>,
    pub user_limit: Option<i64>,
    pub free_user_slots: Option<i64>,
    pub work_pool_limit: Option<i64>,
    pub workspace_limit: Option<i64>,
}

pub async fn usage_limits(app: &App, p: &Principal, account: AccountId) -> Result<UsageLimits> {
    let plan = read_plan(app, p, account).await?;
    let used = {
        let mut c = app.store.reader().await?;
        store::memberships::count_active_members(&mut c, account).await?
    };
    Ok(UsageLimits {
        audit_log_retention_days: Some(plan.audit_log_retention_days),
        automations_limit: None,
        log_rate_limit: Some(plan.logs_rate_limit),
        max_deployments_per_workspace: None,
        mex_compute_limit: None,
        mex_concurrency_limit: None,
        mex_work_pool_limit: None,
        non_mex_work_pool_limit: None,
        orchestration_rate_limit: Some(plan.api_rate_limit),
        run_retention_days: Some(plan.run_retention_days),
        user_limit: plan.user_limit,
        free_user_slots: plan.user_limit.map(|l| (l - used).max(0)),
        work_pool_limit: None,
        workspace_limit: plan.workspace_limit,
    })
}

/// One workspace in `GET /api/accounts/{a}/usage`. Counts that live in the workspace's Prefect
/// server come from its upstream through the gateway; they are `null` when the workspace has no
/// upstream or it did not answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceUsage {
    pub id: crate::domain::WorkspaceId,
    pub name: String,
    /// Whether the workspace is bound to an upstream Prefect server.
    pub has_upstream: bool,
    pub flows: Option<i64>,
    pub flow_runs: Option<i64>,
    pub automations: Option<i64>,
    pub deployments: Option<i64>,
    pub mex_compute: Option<i64>,
    pub work_pools: Option<i64>,
    pub non_managed_work_pools: Option<i64>,
    pub managed_work_pools: Option<i64>,
}

pub async fn usage(app: &App, p: &Principal, account: AccountId) -> Result<Vec<WorkspaceUsage>> {
    crate::services::authorize(app, p, account, P::ReadBilling).await?;
    let workspaces = {
        let mut c = app.store.reader().await?;
        store::workspaces::find_all_workspaces(&mut c, account).await?
    };
    let g = app.upstreams.account(&account.0).unwrap_or_default();
    // Every workspace's upstream is asked at once: one slow server does not add up.
    let counts = futures_util::future::join_all(workspaces.iter().map(|w| {
        let upstream = g.upstreams.get(&w.id.0).cloned();
        async move {
            match upstream {
                Some(u) => crate::services::retention::counts(app, &u).await,
                None => Default::default(),
            }
        }
    }))
    .await;
    let mut out = Vec::with_capacity(workspaces.len());
    for (w, c) in workspaces.into_iter().zip(counts) {
        let upstream = g.upstreams.get(&w.id.0);
        out.push(WorkspaceUsage {
            id: w.id,
            name: w.name,
            has_upstream: upstream.is_some(),
            flows: c.flows,
            flow_runs: c.flow_runs,
            automations: c.automations,
            deployments: c.deployments,
            mex_compute: None,
            work_pools: c.work_pools,
            non_managed_work_pools: c.work_pools,
            managed_work_pools: Some(0),
        });
    }
    Ok(out)
}

/// Refuses a new seat when the plan's user limit is reached: active members, plus pending
/// invitations when `count_pending`. Call with the account lock held.
pub async fn ensure_seat(
    app: &App,
    tx: &mut store::Conn,
    account: AccountId,
    count_pending: bool,
) -> Result<()> {
    ensure_seats(app, tx, account, count_pending, 1).await
}

/// Refuses `adding` new seats beyond the plan's user limit (see [`ensure_seat`]).
pub async fn ensure_seats(
    app: &App,
    tx: &mut store::Conn,
    account: AccountId,
    count_pending: bool,
    adding: i64,
) -> Result<()> {
    let row = store::accounts::find_account(tx, account)
        .await?
        .ok_or_else(|| Error::not_found("account"))?;
    let e = entitlements(app, &row);
    if let Some(limit) = e.user_limit {
        let mut used = store::memberships::count_active_members(tx, account).await?;
        if count_pending {
            used += store::invitations::count_pending(tx, account, app.now()).await?;
        }
        if used + adding > limit {
            return Err(Error::conflict(format!(
                "the {} plan of this account has {limit} seat(s) and {used} are taken by members or pending invitations, so {adding} more do not fit; remove or deactivate a member, revoke an invitation, or raise the limit",
                e.plan.display()
            )));
        }
    }
    Ok(())
}

/// Refuses a new workspace when the plan's workspace limit is reached. Call with the account lock
/// held.
pub async fn ensure_workspace_slot(
    app: &App,
    tx: &mut store::Conn,
    account: AccountId,
) -> Result<()> {
    let row = store::accounts::find_account(tx, account)
        .await?
        .ok_or_else(|| Error::not_found("account"))?;
    let e = entitlements(app, &row);
    if let Some(limit) = e.workspace_limit {
        let used = store::accounts::count_workspaces(tx, account).await?;
        if used >= limit {
            return Err(Error::conflict(format!(
                "the {} plan of this account allows {limit} workspace(s); delete one or raise the limit",
                e.plan.display()
            )));
        }
    }
    Ok(())
}
