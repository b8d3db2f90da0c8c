//! What-if: the effect of a proposed access change, computed on a copy of the account's access
//! data and never applied. Only the (principal, workspace) pairs the change can touch are compared,
//! so the answer stays fast on large accounts.

use crate::app::App;
use crate::authz::{role_scopes, AccountSnapshot, Principal};
use crate::domain::role::AccountPermission as P;
use crate::domain::{AccountId, RoleId, WorkspaceId};
use crate::services::{index, Error, Result};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A proposed change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "change", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProposedChange {
    /// Remove a user or service account from a team.
    RemoveTeamMember { team_id: Uuid, member_id: Uuid },
    /// Give a direct grant (user or service account) or a team grant another role.
    ChangeGrantRole {
        workspace_id: WorkspaceId,
        /// A user, service-account or team id.
        subject_id: Uuid,
        workspace_role_id: RoleId,
    },
    /// Delete a custom role (its grants and workspace defaults would go with it).
    DeleteRole { role_id: RoleId },
    /// Deactivate a member.
    DeactivateMember { member_id: Uuid },
}

/// What one principal would gain or lose in one workspace.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeChange {
    pub principal_id: Uuid,
    pub workspace_id: WorkspaceId,
    pub gained: Vec<&'static str>,
    pub lost: Vec<&'static str>,
}

/// The effect of a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhatIf {
    pub changes: Vec<ScopeChange>,
}

/// Evaluates `change` without applying it (Owners and Admins: `administrate:workspace`).
pub async fn what_if(
    app: &App,
    p: &Principal,
    account: AccountId,
    change: ProposedChange,
) -> Result<WhatIf> {
    crate::services::authorize(app, p, account, P::AdministrateWorkspace).await?;
    let rows = index::load_rows(app, account)
        .await?
        .ok_or_else(|| Error::not_found("account"))?;
    let now = app.now().timestamp_micros();
    let mut proposed = rows.clone();
    let all_ws: Vec<Uuid> = rows.workspaces.iter().map(|(w, _)| w.0).collect();
    let members_of_team = |team: Uuid| -> Vec<Uuid> {
        rows.team_members
            .iter()
            .filter(|(_, t, _)| *t == team)
            .map(|(m, _, _)| *m)
            .collect()
    };
    // (principal, workspace) pairs the change can affect.
    let mut affected: FxHashSet<(Uuid, Uuid)> = FxHashSet::default();
    match change {
        ProposedChange::RemoveTeamMember { team_id, member_id } => {
            proposed
                .team_members
                .retain(|(m, t, _)| !(*m == member_id && *t == team_id));
            for (w, t, ..) in &rows.team_grants {
                if *t == team_id {
                    affected.insert((member_id, w.0));
                }
            }
        }
        ProposedChange::ChangeGrantRole {
            workspace_id,
            subject_id,
            workspace_role_id,
        } => {
            let custom = custom_scopes(app, account).await?;
            let scopes = role_scopes(workspace_role_id, &custom).ok_or_else(|| {
                Error::validation(format!("unknown workspace_role_id {workspace_role_id}"))
            })?;
            let mut found = false;
            for g in proposed
                .grants
                .iter_mut()
                .filter(|g| g.0 == workspace_id && g.1 .0 == subject_id)
            {
                (g.2, g.3) = (workspace_role_id, scopes);
                found = true;
                affected.insert((subject_id, workspace_id.0));
            }
            for g in proposed
                .team_grants
                .iter_mut()
                .filter(|g| g.0 == workspace_id && g.1 == subject_id)
            {
                (g.2, g.3) = (workspace_role_id, scopes);
                found = true;
                for m in members_of_team(subject_id) {
                    affected.insert((m, workspace_id.0));
                }
            }
            if !found {
                return Err(Error::not_found("grant"));
            }
        }
        ProposedChange::DeleteRole { role_id } => {
            proposed.grants.retain(|g| g.2 != role_id);
            proposed.team_grants.retain(|g| g.2 != role_id);
            for (_, d) in proposed.workspaces.iter_mut() {
                if d.is_some_and(|(r, _)| r == role_id) {
                    *d = None;
                }
            }
            for g in rows.grants.iter().filter(|g| g.2 == role_id) {
                affected.insert((g.1 .0, g.0 .0));
            }
            for g in rows.team_grants.iter().filter(|g| g.2 == role_id) {
                for m in members_of_team(g.1) {
                    affected.insert((m, g.0 .0));
                }
            }
            for (w, d) in &rows.workspaces {
                if d.is_some_and(|(r, _)| r == role_id) {
                    for (m, _, _) in &rows.members {
                        affected.insert((m.0, w.0));
                    }
                }
            }
        }
        ProposedChange::DeactivateMember { member_id } => {
            let mut found = false;
            for m in proposed.members.iter_mut().filter(|m| m.0 .0 == member_id) {
                m.2 = false;
                found = true;
            }
            if !found {
                return Err(Error::not_found("member"));
            }
            for w in &all_ws {
                affected.insert((member_id, *w));
            }
        }
    }
    let before = AccountSnapshot::build(rows);
    let after = AccountSnapshot::build(proposed);
    let mut changes: Vec<ScopeChange> = affected
        .into_iter()
        .filter_map(|(who, w)| {
            let b = before.workspace_scopes(&who, &w, now).unwrap_or_default();
            let a = after.workspace_scopes(&who, &w, now).unwrap_or_default();
            let gained: Vec<_> = a
                .iter()
                .filter(|s| !b.contains(*s))
                .map(|s| s.name())
                .collect();
            let lost: Vec<_> = b
                .iter()
                .filter(|s| !a.contains(*s))
                .map(|s| s.name())
                .collect();
            (!gained.is_empty() || !lost.is_empty()).then_some(ScopeChange {
                principal_id: who,
                workspace_id: WorkspaceId(w),
                gained,
                lost,
            })
        })
        .collect();
    changes.sort_by(|x, y| {
        (x.principal_id, x.workspace_id.0).cmp(&(y.principal_id, y.workspace_id.0))
    });
    Ok(WhatIf { changes })
}

async fn custom_scopes(
    app: &App,
    account: AccountId,
) -> Result<FxHashMap<Uuid, crate::domain::scope::ScopeSet>> {
    let mut c = app.store.reader().await?;
    Ok(crate::store::roles::find_roles(&mut c, account, None)
        .await?
        .into_iter()
        .map(|r| {
            let own =
                crate::domain::scope::ScopeSet::parse_names(r.scopes.iter().map(String::as_str))
                    .unwrap_or_default();
            (
                r.id.0,
                crate::authz::custom_role_scopes(own, r.inherited_role_id),
            )
        })
        .collect())
}
