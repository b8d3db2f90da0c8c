//! Keeping the permission index in step with the database: built for every account at start-up,
//! rebuilt for one account after each write that changes access (before the response returns).

use crate::app::App;
use crate::authz::{custom_role_scopes, role_scopes, AccountSnapshot, SnapshotRows};
use crate::domain::scope::ScopeSet;
use crate::domain::AccountId;
use crate::services::Result;
use crate::store;
use rustc_hash::FxHashMap;

/// Loads every account's snapshot.
pub async fn load_all(app: &App) -> anyhow::Result<()> {
    let ids = {
        let mut c = app.store.reader().await?;
        store::accounts::find_account_ids(&mut c).await?
    };
    for id in ids {
        reload_account(app, id)
            .await
            .map_err(|e| anyhow::anyhow!("loading access data of account {id}: {e}"))?;
    }
    Ok(())
}

/// Rebuilds one account's snapshot from the database (or drops it if the account is gone).
pub async fn reload_account(app: &App, account: AccountId) -> Result<()> {
    let mut c = app.store.reader().await?;
    if store::accounts::find_account(&mut c, account)
        .await?
        .is_none()
    {
        app.index.remove(account);
        return Ok(());
    }
    let members = store::memberships::find_member_roles(&mut c, account).await?;
    let roles = store::roles::find_roles(&mut c, account, None).await?;
    let custom: FxHashMap<_, _> = roles
        .iter()
        .map(|r| {
            let own =
                ScopeSet::parse_names(r.scopes.iter().map(String::as_str)).unwrap_or_default();
            (r.id.0, custom_role_scopes(own, r.inherited_role_id))
        })
        .collect();
    let workspaces = store::workspaces::find_all_workspaces(&mut c, account).await?;
    let grants = store::access::find_account_grants(&mut c, account).await?;
    let rows = SnapshotRows {
        members,
        workspaces: workspaces
            .iter()
            .map(|w| {
                let default = w
                    .default_workspace_role_id
                    .and_then(|r| role_scopes(r, &custom).map(|s| (r, s)));
                (w.id, default)
            })
            .collect(),
        grants: grants
            .iter()
            .filter_map(|g| {
                role_scopes(g.role_id, &custom).map(|s| {
                    (
                        g.workspace_id,
                        g.user_id,
                        g.role_id,
                        s,
                        g.expires_at.map(|t| t.timestamp_micros()),
                    )
                })
            })
            .collect(),
    };
    app.index.put(account, AccountSnapshot::build(rows));
    Ok(())
}
