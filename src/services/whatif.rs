//! What-if: the effect of a proposed access change, computed on a copy of the account's in-memory
//! snapshot and never applied. Only the (principal, workspace) pairs the change can touch are
//! compared, and no database query is made, so the answer stays fast on large accounts.

use crate::app::App;
use crate::authz::{role_scopes, AccountSnapshot, Principal};
use crate::domain::role::AccountPermission as P;
use crate::domain::{AccountId, RoleId, WorkspaceId};
use crate::services::{Error, Result};
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
    let access =
        crate::services::gate::authorize_access(app, p, account, P::AdministrateWorkspace).await?;
    let custom = if let ProposedChange::ChangeGrantRole { .. } = change {
        custom_scopes(app, account).await?
    } else {
        FxHashMap::default()
    };
    evaluate(
        access.snapshot(),
        change,
        &custom,
        app.now().timestamp_micros(),
    )
}

/// The pure part: apply `change` to a copy of `before` and compare the pairs it touches.
pub fn evaluate(
    before: &AccountSnapshot,
    change: ProposedChange,
    custom: &FxHashMap<Uuid, crate::domain::scope::ScopeSet>,
    now: i64,
) -> Result<WhatIf> {
    let mut after = before.clone();
    let team_members = |team: Uuid| -> Vec<Uuid> {
        before
            .member_teams
            .iter()
            .filter(|(_, teams)| teams.iter().any(|(t, _)| *t == team))
            .map(|(m, _)| *m)
            .collect()
    };
    let mut affected: FxHashSet<(Uuid, Uuid)> = FxHashSet::default();
    match change {
        ProposedChange::RemoveTeamMember { team_id, member_id } => {
            let teams = after
                .member_teams
                .get_mut(&member_id)
                .ok_or_else(|| Error::not_found("team member"))?;
            teams.retain(|(t, _)| *t != team_id);
            for (w, entry) in &before.workspaces {
                if entry.team_grants.contains_key(&team_id) {
                    affected.insert((member_id, *w));
                }
            }
        }
        ProposedChange::ChangeGrantRole {
            workspace_id,
            subject_id,
            workspace_role_id,
        } => {
            let scopes = role_scopes(workspace_role_id, custom).ok_or_else(|| {
                Error::NotFound(format!("workspace role {workspace_role_id} not found"))
            })?;
            let ws = after
                .workspaces
                .get_mut(&workspace_id.0)
                .ok_or_else(|| Error::not_found("workspace"))?;
            if let Some(g) = ws.grants.get_mut(&subject_id) {
                (g.role_id, g.scopes) = (workspace_role_id, scopes);
                affected.insert((subject_id, workspace_id.0));
            } else if let Some(g) = ws.team_grants.get_mut(&subject_id) {
                (g.role_id, g.scopes) = (workspace_role_id, scopes);
                for m in team_members(subject_id) {
                    affected.insert((m, workspace_id.0));
                }
            } else {
                return Err(Error::not_found("grant"));
            }
        }
        ProposedChange::DeleteRole { role_id } => {
            for (w, entry) in after.workspaces.iter_mut() {
                entry.grants.retain(|subject, g| {
                    let keep = g.role_id != role_id;
                    if !keep {
                        affected.insert((*subject, *w));
                    }
                    keep
                });
                let mut gone_teams = Vec::new();
                entry.team_grants.retain(|team, g| {
                    let keep = g.role_id != role_id;
                    if !keep {
                        gone_teams.push(*team);
                    }
                    keep
                });
                for team in gone_teams {
                    for m in team_members(team) {
                        affected.insert((m, *w));
                    }
                }
                if entry.default_role.is_some_and(|(r, _)| r == role_id) {
                    entry.default_role = None;
                    for m in before.members.keys() {
                        affected.insert((*m, *w));
                    }
                }
            }
        }
        ProposedChange::DeactivateMember { member_id } => {
            let m = after
                .members
                .get_mut(&member_id)
                .ok_or_else(|| Error::not_found("member"))?;
            m.active = false;
            for w in before.workspaces.keys() {
                affected.insert((member_id, *w));
            }
        }
    }
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
