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

/// Forgets a deleted account: its snapshot and its gateway entry.
fn forget(app: &App, account: AccountId) {
    app.gate.index.remove(account);
    app.upstreams.remove(account);
}

/// The reloads of one account's snapshot after commits: how many commits were announced, and
/// up to which the snapshot is known to include.
#[derive(Default)]
pub struct Reloads {
    announced: std::sync::atomic::AtomicU64,
    included: std::sync::atomic::AtomicU64,
    running: tokio::sync::Mutex<()>,
    /// Committed versions of this process not yet known to be in the snapshot, with the users
    /// each changed alone (`None`: something else changed).
    pending: std::sync::Mutex<std::collections::BTreeMap<i64, Option<Vec<uuid::Uuid>>>>,
}

/// After a commit that changed `account`'s access: returns once the snapshot includes it. One
/// rebuild serves every commit announced before it started, so a burst of writes to one account
/// (an identity provider provisioning thousands of members) costs a rebuild per batch, not per
/// write, and no commit returns before a rebuild that read the database after it.
///
/// When every commit between the snapshot and this one is this process's and declared that it
/// changed only some users' rows (`store::Write::only_members`), just those rows are re-read and
/// patched in (`AccountSnapshot::with_members`): O(users) instead of O(account), which is what
/// lets an identity provider provision thousands of members without the index rebuild
/// dominating. Anything else — another process's change, a role edit — rebuilds.
pub async fn reload_after_commit(app: &App, c: store::ChangedAccount) -> Result<()> {
    use std::sync::atomic::Ordering::SeqCst;
    let account = c.account;
    let r = {
        let mut map = app.gate.reloads.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(account).or_default().clone()
    };
    r.pending
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(c.version, c.only_members.clone());
    let ticket = r.announced.fetch_add(1, SeqCst) + 1;
    let _one_at_a_time = r.running.lock().await;
    if r.included.load(SeqCst) >= ticket {
        return Ok(());
    }
    // A rebuild or patch that read the database after this commit is installed already.
    let held = app.gate.index.snapshot(&account.0).map(|s| s.db_version);
    if held.is_some_and(|h| h >= c.version) {
        return Ok(());
    }
    // The commits between the snapshot and this one, if all are this process's and each changed
    // only some users' rows: those users' rows re-read once and patched in.
    if let Some(held) = held {
        let (users, top) = {
            let mut pending = r.pending.lock().unwrap_or_else(|p| p.into_inner());
            *pending = pending.split_off(&(held + 1));
            let mut users = Vec::new();
            let mut top = held;
            for (v, only) in pending.iter() {
                match only {
                    Some(u) if *v == top + 1 => {
                        users.extend(u.iter().copied());
                        top = *v;
                    }
                    _ => break,
                }
            }
            (users, top)
        };
        if top >= c.version && patch_members(app, account, held, top, &users).await? {
            return Ok(());
        }
    }
    // Every commit announced so far finished before announcing: the rows read next include it.
    let start = r.announced.load(SeqCst);
    reload_account(app, account).await?;
    r.included.fetch_max(start, SeqCst);
    Ok(())
}

/// Re-reads `users`' rows and patches them into the snapshot at version `from`, making it
/// `to` (the commits between changed only those users' rows). False when the snapshot is no
/// longer at `from`: the caller rebuilds.
async fn patch_members(
    app: &App,
    account: AccountId,
    from: i64,
    to: i64,
    users: &[uuid::Uuid],
) -> Result<bool> {
    let mut users = users.to_vec();
    users.sort();
    users.dedup();
    let mut c = app.store.reader().await?;
    let mut custom = None;
    let mut rows = Vec::with_capacity(users.len());
    for u in &users {
        let user = crate::domain::UserId(*u);
        let grants = store::grants::find_grants_of_user(&mut c, account, user).await?;
        if !grants.is_empty() && custom.is_none() {
            custom = Some(custom_scopes(&mut c, account).await?);
        }
        let empty = FxHashMap::default();
        let roles = custom.as_ref().unwrap_or(&empty);
        rows.push(crate::authz::MemberRows {
            user: *u,
            member: store::memberships::find_member_role(&mut c, account, user).await?,
            teams: store::teams::find_teams_of_member(&mut c, account, *u)
                .await?
                .into_iter()
                .map(|m| (m.team_id, m.expires_at.map(|t| t.timestamp_micros())))
                .collect(),
            grants: grants
                .iter()
                .filter_map(|g| {
                    role_scopes(g.role_id, roles).map(|s| {
                        (
                            g.workspace_id,
                            g.role_id,
                            s,
                            g.expires_at.map(|t| t.timestamp_micros()),
                        )
                    })
                })
                .collect(),
        });
    }
    Ok(app
        .gate
        .index
        .put_if(account, from, |current| current.with_members(to, &rows)))
}

/// Whether the installed snapshot holds what a rebuild from the database would give now — the
/// check that patched snapshots never drift from rebuilt ones (tests, diagnostics).
pub async fn matches_database(app: &App, account: AccountId) -> Result<bool> {
    let Some((rows, _)) = load_rows(app, account).await? else {
        return Ok(false);
    };
    let fresh = AccountSnapshot::build(rows);
    let Some(held) = app.gate.index.snapshot(&account.0) else {
        return Ok(false);
    };
    Ok(canonical(&fresh) == canonical(&held))
}

/// A snapshot's access data in a fixed order (its maps iterate in any order).
fn canonical(s: &AccountSnapshot) -> String {
    use std::collections::BTreeMap;
    let members: BTreeMap<_, _> = s
        .members
        .iter()
        .map(|(k, v)| (*k, format!("{v:?}")))
        .collect();
    let teams: BTreeMap<_, _> = s
        .member_teams
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| {
            let mut v = v.clone();
            v.sort();
            (*k, v)
        })
        .collect();
    let workspaces: BTreeMap<_, _> = s
        .workspaces
        .iter()
        .map(|(k, w)| {
            let grants: BTreeMap<_, _> = w
                .grants
                .iter()
                .map(|(u, g)| (*u, format!("{g:?}")))
                .collect();
            let team_grants: BTreeMap<_, _> = w
                .team_grants
                .iter()
                .map(|(t, g)| (*t, format!("{g:?}")))
                .collect();
            let acls: BTreeMap<_, _> = w
                .acls
                .0
                .iter()
                .enumerate()
                .flat_map(|(kind, m)| {
                    m.iter()
                        .map(move |(k, a)| ((kind, k.clone()), format!("{a:?}")))
                })
                .collect();
            (
                *k,
                format!("{:?} {grants:?} {team_grants:?} {acls:?}", w.default_role),
            )
        })
        .collect();
    format!(
        "{} {:?} {members:?} {teams:?} {workspaces:?}",
        s.db_version, s.plan
    )
}

/// The closed scopes of the account's custom roles.
async fn custom_scopes(
    c: &mut store::Conn,
    account: AccountId,
) -> Result<FxHashMap<uuid::Uuid, ScopeSet>> {
    Ok(store::roles::find_roles(c, account, None)
        .await?
        .iter()
        .map(|r| {
            let own =
                ScopeSet::parse_names(r.scopes.iter().map(String::as_str)).unwrap_or_default();
            (r.id.0, custom_role_scopes(own, r.inherited_role_id))
        })
        .collect())
}

/// Rebuilds one account's snapshot from the database (or drops it if the account is gone).
pub async fn reload_account(app: &App, account: AccountId) -> Result<()> {
    let Some((rows, row)) = load_rows(app, account).await? else {
        forget(app, account);
        return Ok(());
    };
    app.gate.index.put(account, AccountSnapshot::build(rows));
    app.metrics
        .index_rebuilds
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let e = crate::services::plans::entitlements(app, &row);
    let retention = crate::services::accounts::run_retention_days(&row.settings, &e);
    let enforced = e
        .features
        .contains(crate::domain::plan::Feature::IpAllowlist)
        && row
            .settings
            .get("enforce_ip_allowlist")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
    let allowlist =
        enforced.then(|| crate::services::ip_allowlist::enabled_networks(&row.ip_allowlist));
    crate::services::upstreams::reload(app, account, &e, retention, allowlist).await
}

/// The rows an account's snapshot is built from, with the account row (`None` when the account is
/// gone). Custom role scopes are resolved and closed.
pub async fn load_rows(
    app: &App,
    account: AccountId,
) -> Result<Option<(SnapshotRows, store::accounts::AccountRow)>> {
    let mut c = app.store.reader().await?;
    // Read the version first: a concurrent change then makes the snapshot look stale (and be
    // rebuilt again), never fresher than its rows.
    let Some(db_version) = store::accounts::find_access_version(&mut c, account).await? else {
        return Ok(None);
    };
    let Some(row) = store::accounts::find_account(&mut c, account).await? else {
        return Ok(None);
    };
    let entitlements = crate::services::plans::entitlements(app, &row);
    let mut members = store::memberships::find_member_roles(&mut c, account).await?;
    members.extend(
        store::service_accounts::find_bot_roles(&mut c, account)
            .await?
            .into_iter()
            .map(|(id, role)| (crate::domain::UserId(id), role, true)),
    );
    let custom = custom_scopes(&mut c, account).await?;
    let workspaces = store::workspaces::find_all_workspaces(&mut c, account).await?;
    let mut grants = store::grants::find_user_grants(&mut c, account).await?;
    grants.extend(
        store::grants::find_bot_grants(&mut c, account)
            .await?
            .into_iter()
            .map(
                |(workspace_id, bot, role_id, expires_at)| store::grants::GrantRow {
                    workspace_id,
                    user_id: crate::domain::UserId(bot),
                    role_id,
                    expires_at,
                },
            ),
    );
    let team_members = store::teams::find_account_members(&mut c, account)
        .await?
        .into_iter()
        .map(|m| {
            (
                m.member_id,
                m.team_id,
                m.expires_at.map(|t| t.timestamp_micros()),
            )
        })
        .collect();
    let team_grants = store::grants::find_team_grants(&mut c, account)
        .await?
        .into_iter()
        .filter_map(|(w, team, role, exp)| {
            role_scopes(role, &custom)
                .map(|s| (w, team, role, s, exp.map(|t| t.timestamp_micros())))
        })
        .collect();
    let acls = store::object_acls::find_account_acls(&mut c, account)
        .await?
        .into_iter()
        .map(|r| (r.workspace_id, r.kind, r.key, r.acl))
        .collect();
    let rows = SnapshotRows {
        acls,
        team_members,
        team_grants,
        db_version,
        plan: entitlements.plan,
        features: entitlements.features,
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
    Ok(Some((rows, row)))
}

/// Marks a change of the account's access data inside the transaction that makes it: bumps the
/// access version and, on PostgreSQL, notifies every process at commit.
pub async fn changed(app: &App, tx: &mut store::Conn, account: AccountId) -> Result<()> {
    store::accounts::bump_access_version(tx, app.store.engine, account).await?;
    Ok(())
}

/// Rebuilds every snapshot whose database access version moved (changes made by another process,
/// or a missed notification), loads accounts this process has not seen and drops deleted ones.
/// Returns how many snapshots changed.
pub async fn refresh_stale(app: &App) -> Result<usize> {
    let db: FxHashMap<_, _> = {
        let mut c = app.store.reader().await?;
        store::accounts::find_access_versions(&mut c)
            .await?
            .into_iter()
            .map(|(a, v)| (a.0, v))
            .collect()
    };
    let held: FxHashMap<_, _> = app.gate.index.versions().into_iter().collect();
    let mut changed = 0;
    for (account, version) in &db {
        if held.get(account) != Some(version) {
            reload_account(app, AccountId(*account)).await?;
            changed += 1;
        }
    }
    for account in held.keys().filter(|a| !db.contains_key(*a)) {
        forget(app, AccountId(*account));
        changed += 1;
    }
    Ok(changed)
}
