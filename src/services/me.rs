//! The caller's own view: accounts, workspaces, scopes, permissions.

use crate::app::App;
use crate::authz::Principal;
use crate::domain::role::AccountPermission;
use crate::domain::scope::Scope;
use crate::domain::{AccountId, MeAccount, MeWorkspace, User, WorkspaceId};
use crate::services::{gate, Error, Result};
use crate::store;

pub async fn read_me(app: &App, p: &Principal) -> Result<User> {
    if p.is_bot() {
        return Err(Error::not_found(
            "user (this key belongs to a service account)",
        ));
    }
    let mut c = app.store.reader().await?;
    store::users::find_user_by_id(&mut c, p.user_id)
        .await?
        .ok_or_else(|| Error::Unauthenticated("user no longer exists".into()))
}

/// Every workspace the caller holds at least one scope in, across their active memberships.
pub async fn my_workspaces(app: &App, p: &Principal) -> Result<Vec<MeWorkspace>> {
    let mut c = app.store.reader().await?;
    let accounts = accounts_of(&mut c, p).await?;
    let mut out = Vec::new();
    // Accounts whose IP allowlist refuses the caller's address are left out, as they are from
    // `my_accounts`.
    for a in accounts.into_iter().filter(|a| a.active) {
        let Some(access) = gate::listed(app, p, a.account_id) else {
            continue;
        };
        for w in store::workspaces::find_all_workspaces(&mut c, a.account_id).await? {
            if access.sees(w.id) {
                out.push(MeWorkspace {
                    account_id: a.account_id,
                    account_name: a.account_name.clone(),
                    account_handle: a.account_handle.clone(),
                    workspace_id: w.id,
                    workspace_name: w.name,
                    workspace_description: w.description,
                    workspace_handle: w.handle,
                });
            }
        }
    }
    Ok(out)
}

/// A user's account memberships, or a service account's one account.
async fn accounts_of(
    c: &mut store::Conn,
    p: &Principal,
) -> Result<Vec<store::memberships::UserAccountRow>> {
    let Some(account) = p.bot_account else {
        return Ok(store::memberships::find_accounts_of_user(c, p.user_id).await?);
    };
    let bot =
        store::service_accounts::find_bot(c, account, crate::domain::ServiceAccountId(p.user_id.0))
            .await?;
    let row = store::accounts::find_account(c, account).await?;
    Ok(match (bot, row) {
        (Some(b), Some(a)) => vec![store::memberships::UserAccountRow {
            membership_id: crate::domain::MembershipId(b.id.0),
            account_id: account,
            account_name: a.name,
            account_handle: a.handle,
            role: b.account_role,
            active: true,
        }],
        _ => vec![],
    })
}

/// The caller's active memberships.
pub async fn my_accounts(app: &App, p: &Principal) -> Result<Vec<MeAccount>> {
    let mut c = app.store.reader().await?;
    Ok(accounts_of(&mut c, p)
        .await?
        .into_iter()
        .filter(|a| a.active && gate::listed(app, p, a.account_id).is_some())
        .map(|a| MeAccount {
            account_membership_id: a.membership_id,
            account_id: a.account_id,
            account_name: a.account_name,
            account_handle: a.account_handle,
            account_role_name: a.role.name(),
            account_plan_type: gate::plan(app, a.account_id)
                .map_or("enterprise", |(plan, _)| plan.code()),
            account_plan_tier: None,
            account_plan_features: gate::plan(app, a.account_id)
                .map(|(_, f)| f.names())
                .unwrap_or_default(),
            self_serve: false,
            annual_billing: false,
            annual_self_serve_enabled: false,
        })
        .collect())
}

/// Scope names the caller holds in a workspace (404 when none).
pub async fn my_scopes(app: &App, p: &Principal, ws: WorkspaceId) -> Result<Vec<&'static str>> {
    Ok(gate::account_of_workspace(app, p, ws).await?.1.names())
}

/// Whether the caller holds `scope` in a workspace they can reach (an unknown scope → 422).
pub async fn has_scope(app: &App, p: &Principal, ws: WorkspaceId, scope: &str) -> Result<bool> {
    let (_, held) = gate::account_of_workspace(app, p, ws).await?;
    let scope =
        Scope::parse(scope).ok_or_else(|| Error::validation(format!("unknown scope {scope:?}")))?;
    Ok(held.contains(scope))
}

pub async fn my_permissions(
    app: &App,
    p: &Principal,
    account: AccountId,
) -> Result<Vec<&'static str>> {
    Ok(gate::member(app, p, account)
        .await?
        .role()
        .permissions()
        .names())
}

pub async fn has_permission(
    app: &App,
    p: &Principal,
    account: AccountId,
    perm: &str,
) -> Result<bool> {
    let perm = AccountPermission::parse(perm)
        .ok_or_else(|| Error::validation(format!("unknown permission {perm:?}")))?;
    Ok(gate::member(app, p, account).await?.can(perm))
}
