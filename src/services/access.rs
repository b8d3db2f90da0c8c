//! User access to workspaces: grant (upsert), list, read, revoke. Nobody grants a role with
//! scopes they do not hold themselves in that workspace.

use crate::app::App;
use crate::authz::Principal;
use crate::domain::scope::Scope;
use crate::domain::{AccessId, AccountId, RoleId, UserAccess, UserId, WorkspaceId};
use crate::services::audit::{self, NewEvent};
use crate::services::input::{page, AnyOf};
use crate::services::roles::usable_role_scopes;
use crate::services::{Error, Result};
use crate::store;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

/// One grant in an upsert.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserAccessInput {
    pub user_id: UserId,
    pub workspace_role_id: RoleId,
    /// Atrium extension: the grant stops counting at this instant.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The upsert body: one grant or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum UserAccessUpsert {
    Many(Vec<UserAccessInput>),
    One(UserAccessInput),
}

crate::services::input::one_or_many_schema!(
    UserAccessUpsert,
    UserAccessInput,
    0,
    MAX_GRANTS_PER_REQUEST
);

pub const MAX_GRANTS_PER_REQUEST: usize = 200;

/// What differs between the kinds of workspace grant.
pub(crate) struct GrantKind {
    /// The scope needed to grant.
    pub scope: Scope,
    /// Plan features needed.
    pub features: &'static [crate::domain::plan::Feature],
    /// How a subject is named in messages.
    pub noun: &'static str,
    /// Fewest grants in one request.
    pub min: usize,
    /// The subjects are principals (users, service accounts), so granting to them is acting on
    /// them (`services::require_outranks`); teams are not.
    pub principals: bool,
}

pub(crate) const USER_GRANTS: GrantKind = GrantKind {
    scope: Scope::ManageWorkspaceUsers,
    features: &[crate::domain::plan::Feature::WorkspaceRbac],
    noun: "user",
    min: 0,
    principals: true,
};

/// The checks every workspace-grant upsert starts with — user, service-account and team grants
/// alike: the caller holds the kind's scope in the workspace, the plan has its features, the
/// number of grants is in bounds, no subject twice, expiries in the future. Returns the caller's
/// scopes in the workspace (for [`check_grantable`]).
pub(crate) async fn check_grants(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    kind: &GrantKind,
    subjects: &[(uuid::Uuid, Option<chrono::DateTime<chrono::Utc>>)],
) -> Result<crate::domain::scope::ScopeSet> {
    let (noun, min) = (kind.noun, kind.min);
    let held = crate::services::require_scope(app, p, account, workspace, kind.scope).await?;
    for f in kind.features {
        crate::services::plans::require_feature(app, account, *f)?;
    }
    if subjects.len() < min || subjects.len() > MAX_GRANTS_PER_REQUEST {
        return Err(Error::validation(format!(
            "give between {min} and {MAX_GRANTS_PER_REQUEST} grants"
        )));
    }
    let now = app.now();
    let mut seen = std::collections::HashSet::new();
    for (subject, expires_at) in subjects {
        if !seen.insert(*subject) {
            return Err(Error::validation(format!("{noun} {subject} appears twice")));
        }
        if matches!(expires_at, Some(t) if *t <= now) {
            return Err(Error::validation("expires_at must be in the future"));
        }
        if kind.principals {
            crate::services::require_outranks(
                app,
                p,
                account,
                *subject,
                crate::services::PrincipalOp::Grant,
            )?;
        }
    }
    Ok(held)
}

/// Refuses (and audits) granting a role whose scopes the caller does not hold in the workspace;
/// an unknown role or another account's role is a validation error.
pub(crate) async fn check_grantable(
    app: &App,
    p: &Principal,
    tx: &mut store::Conn,
    account: AccountId,
    held: crate::domain::scope::ScopeSet,
    role: RoleId,
) -> Result<()> {
    let scopes = usable_role_scopes(tx, account, role).await?;
    if !held.is_superset(scopes) {
        return Err(crate::services::deny(
            app,
            p,
            account,
            "you cannot grant a role with scopes you do not hold in this workspace".into(),
        ));
    }
    Ok(())
}

pub async fn upsert_user_access(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    body: UserAccessUpsert,
) -> Result<Vec<UserAccess>> {
    let now = app.now();
    let grants = match body {
        UserAccessUpsert::Many(v) => v,
        UserAccessUpsert::One(g) => vec![g],
    };
    let subjects: Vec<_> = grants.iter().map(|g| (g.user_id.0, g.expires_at)).collect();
    let held = check_grants(app, p, account, workspace, &USER_GRANTS, &subjects).await?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let mut ids = Vec::with_capacity(grants.len());
    for g in &grants {
        check_grantable(app, p, &mut tx, account, held, g.workspace_role_id).await?;
        if store::memberships::find_membership_by_user(&mut tx, account, g.user_id)
            .await?
            .is_none()
        {
            return Err(Error::NotFound(format!(
                "user {} is not a member of this account",
                g.user_id
            )));
        }
        let user_filter = [g.user_id.to_string()];
        let before = store::access::find_user_accesses(
            &mut tx,
            account,
            workspace,
            Some(&user_filter),
            1,
            0,
        )
        .await?
        .pop();
        let id = store::access::upsert_user_access(
            &mut tx.access(account),
            account,
            workspace,
            g.user_id,
            g.workspace_role_id,
            g.expires_at,
            now,
        )
        .await?;
        let (action, payload) = match &before {
            None => (
                "created",
                json!({"user_id": g.user_id, "workspace_role_id": g.workspace_role_id, "expires_at": g.expires_at}),
            ),
            Some(b) => (
                "updated",
                json!({
                    "user_id": g.user_id,
                    "before": {"workspace_role_id": b.workspace_role_id, "expires_at": b.expires_at},
                    "after": {"workspace_role_id": g.workspace_role_id, "expires_at": g.expires_at},
                }),
            ),
        };
        audit::record(
            app,
            &mut tx,
            Some(p),
            account.0,
            NewEvent::new("workspace-access", action, id.0)
                .workspace(workspace)
                .payload(payload),
        )
        .await?;
        ids.push(id);
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(a) = store::access::find_user_access(&mut tx, account, workspace, id).await? {
            out.push(a);
        }
    }
    tx.commit().await?;
    Ok(out)
}

/// `users` part of the filter body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessUserFields {
    pub id: Option<AnyOf<UserId>>,
}

/// `POST …/user_access/filter` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterUserAccess {
    #[schema(minimum = 0)]
    pub limit: Option<i64>,
    #[schema(minimum = 0)]
    pub offset: Option<i64>,
    pub users: Option<AccessUserFields>,
    #[schema(value_type = Option<Object>)]
    pub workspace_accesses: Option<serde_json::Map<String, serde_json::Value>>,
    pub sort: Option<String>,
}

pub async fn filter_user_access(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    f: FilterUserAccess,
) -> Result<Vec<UserAccess>> {
    crate::services::require_scope(app, p, account, workspace, Scope::SeeWorkspaceUsers).await?;
    let (limit, offset) = page(f.limit, f.offset)?;
    let ids = f
        .users
        .and_then(|u| u.id)
        .map(|i| i.any_.iter().map(|x| x.to_string()).collect::<Vec<_>>());
    let mut c = app.store.reader().await?;
    Ok(
        store::access::find_user_accesses(
            &mut c,
            account,
            workspace,
            ids.as_deref(),
            limit,
            offset,
        )
        .await?,
    )
}

pub async fn read_user_access(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    id: AccessId,
) -> Result<UserAccess> {
    crate::services::require_scope(app, p, account, workspace, Scope::SeeWorkspaceUsers).await?;
    let mut c = app.store.reader().await?;
    store::access::find_user_access(&mut c, account, workspace, id)
        .await?
        .ok_or_else(|| Error::not_found("workspace access"))
}

/// Revokes a grant; the next request by that user sees the change.
pub async fn delete_user_access(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    id: AccessId,
) -> Result<()> {
    crate::services::require_scope(app, p, account, workspace, Scope::ManageWorkspaceUsers).await?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let grant = store::access::find_user_access(&mut tx, account, workspace, id)
        .await?
        .ok_or_else(|| Error::not_found("workspace access"))?;
    crate::services::require_outranks(
        app,
        p,
        account,
        grant.user_id.0,
        crate::services::PrincipalOp::RevokeGrant,
    )?;
    store::access::delete_user_access(&mut tx.access(account), account, workspace, id).await?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("workspace-access", "deleted", id.0)
            .name(grant.email.clone())
            .workspace(workspace)
            .payload(
                json!({"user_id": grant.user_id, "workspace_role_id": grant.workspace_role_id}),
            ),
    )
    .await?;
    tx.commit().await
}

/// One line of a workspace's access page.
#[derive(Debug, Clone, Serialize)]
pub struct AccessLine {
    /// `user`, `service_account` or `team`.
    pub kind: &'static str,
    /// The user's, service account's or team's id.
    pub id: uuid::Uuid,
    pub name: String,
    /// The grant's own id (what revoking it names for users and service accounts).
    pub grant_id: AccessId,
    pub role_id: RoleId,
    pub role: String,
    /// When the grant stops counting (`None` = never).
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// True when the expiry has passed (the grant no longer counts and awaits the sweeper).
    pub expired: bool,
}

/// Everyone granted a role in a workspace — users, service accounts and teams — with role names
/// and expiries, for the dashboard. Needs `see_workspace_users` (and `see_workspace_service_accounts`
/// for the service-account lines, which are left out without it).
pub async fn workspace_access_lines(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
) -> Result<Vec<AccessLine>> {
    let held = crate::services::require_scope(app, p, account, workspace, Scope::SeeWorkspaceUsers)
        .await?;
    let custom: Vec<(RoleId, String)> = {
        let mut c = app.store.reader().await?;
        store::roles::find_roles(&mut c, account, None)
            .await?
            .into_iter()
            .map(|r| (r.id, r.name))
            .collect()
    };
    let role_name = |id: RoleId| {
        crate::domain::role::BuiltinWorkspaceRole::from_id(id.0)
            .map(|r| r.name().to_string())
            .or_else(|| {
                custom
                    .iter()
                    .find(|(c, _)| *c == id)
                    .map(|(_, n)| n.clone())
            })
            .unwrap_or_else(|| "unknown role".into())
    };
    let now = app.now();
    let line = |kind,
                grant_id: AccessId,
                id: uuid::Uuid,
                name: String,
                role: RoleId,
                expires_at: Option<chrono::DateTime<chrono::Utc>>| AccessLine {
        kind,
        id,
        name,
        grant_id,
        role_id: role,
        role: role_name(role),
        expired: expires_at.is_some_and(|t| t <= now),
        expires_at,
    };
    let mut lines: Vec<AccessLine> = filter_user_access(
        app,
        p,
        account,
        workspace,
        FilterUserAccess {
            limit: Some(200),
            ..Default::default()
        },
    )
    .await?
    .into_iter()
    .map(|g| {
        line(
            "user",
            g.id,
            g.user_id.0,
            g.email,
            g.workspace_role_id,
            g.expires_at,
        )
    })
    .collect();
    if held.contains(Scope::SeeWorkspaceServiceAccounts) {
        lines.extend(
            crate::services::bots::filter_access(
                app,
                p,
                account,
                workspace,
                crate::services::bots::FilterBotAccess {
                    limit: Some(200),
                    ..Default::default()
                },
            )
            .await?
            .into_iter()
            .map(|g| {
                line(
                    "service_account",
                    g.id,
                    g.bot_id,
                    g.bot_name,
                    g.workspace_role_id,
                    g.expires_at,
                )
            }),
        );
    }
    lines.extend(
        crate::services::teams::filter_access(
            app,
            p,
            account,
            workspace,
            crate::services::teams::FilterTeamAccess {
                limit: Some(200),
                offset: None,
            },
        )
        .await?
        .into_iter()
        .map(|g| {
            line(
                "team",
                g.id,
                g.team_id,
                g.team_name,
                g.workspace_role_id,
                g.expires_at,
            )
        }),
    );
    Ok(lines)
}

/// Who a dashboard grant names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grantee {
    User,
    ServiceAccount,
    Team,
}

impl Grantee {
    /// The kind as [`AccessLine::kind`] names it.
    pub fn kind(self) -> &'static str {
        match self {
            Grantee::User => "user",
            Grantee::ServiceAccount => "service_account",
            Grantee::Team => "team",
        }
    }

    /// `user`, `service_account` or `team` (as [`AccessLine::kind`]).
    pub fn parse(kind: &str) -> Result<Grantee> {
        match kind {
            "user" => Ok(Grantee::User),
            "service_account" => Ok(Grantee::ServiceAccount),
            "team" => Ok(Grantee::Team),
            _ => Err(Error::validation(
                "kind must be user, service_account or team",
            )),
        }
    }
}

/// Grants (or changes) one workspace role for a user, service account or team — the same
/// checks and events as the three API upserts, which this calls.
#[allow(clippy::too_many_arguments)]
pub async fn grant(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    who: Grantee,
    subject: uuid::Uuid,
    role: RoleId,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<()> {
    match who {
        Grantee::User => upsert_user_access(
            app,
            p,
            account,
            workspace,
            UserAccessUpsert::One(UserAccessInput {
                user_id: UserId(subject),
                workspace_role_id: role,
                expires_at,
            }),
        )
        .await
        .map(drop),
        Grantee::ServiceAccount => crate::services::bots::upsert_access(
            app,
            p,
            account,
            workspace,
            crate::services::bots::BotAccessUpsert::One(crate::services::bots::BotAccessInput {
                bot_id: subject,
                workspace_role_id: role,
                expires_at,
            }),
        )
        .await
        .map(drop),
        Grantee::Team => crate::services::teams::upsert_access(
            app,
            p,
            account,
            workspace,
            crate::services::teams::TeamAccessUpsert::One(
                crate::services::teams::TeamAccessInput {
                    team_id: subject,
                    workspace_role_id: role,
                    expires_at,
                },
            ),
        )
        .await
        .map(drop),
    }
}

/// Changes the role of an existing grant and keeps its expiry (404 when there is no grant).
pub async fn change_role(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    who: Grantee,
    subject: uuid::Uuid,
    role: RoleId,
) -> Result<()> {
    let kind = who.kind();
    let current = workspace_access_lines(app, p, account, workspace)
        .await?
        .into_iter()
        .find(|l| l.id == subject && l.kind == kind)
        .ok_or_else(|| Error::not_found("workspace access"))?;
    grant(
        app,
        p,
        account,
        workspace,
        who,
        subject,
        role,
        current.expires_at,
    )
    .await
}

/// Revokes a grant named as on the access page: the grant id for users and service accounts,
/// the team id for teams.
pub async fn revoke(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    who: Grantee,
    id: uuid::Uuid,
) -> Result<()> {
    match who {
        Grantee::User => delete_user_access(app, p, account, workspace, AccessId(id)).await,
        Grantee::ServiceAccount => {
            crate::services::bots::delete_access(app, p, account, workspace, AccessId(id)).await
        }
        Grantee::Team => {
            crate::services::teams::delete_access(app, p, account, workspace, id).await
        }
    }
}
