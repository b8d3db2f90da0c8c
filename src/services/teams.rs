//! Teams (users and service accounts granted workspace roles together), team workspace access,
//! explanations of access, the list of actors with access, and the sweeper of expired grants.

use crate::app::App;
use crate::authz::Principal;
use crate::domain::plan::Feature;
use crate::domain::role::{AccountPermission as P, BuiltinWorkspaceRole};
use crate::domain::{validate, AccountId, RoleId, TeamId, WorkspaceId};
use crate::services::audit::{self, NewEvent};
use crate::services::error::unique_or;
use crate::services::input::{page, AnyOf};
use crate::services::plans::require_feature;
use crate::services::{Error, Result};
use crate::store::{self, teams::TeamMemberRow, teams::TeamRow};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

/// A member of a team as shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct TeamMemberView {
    /// The member's actor id.
    pub id: Uuid,
    /// The user's or service account's id.
    pub member_id: Uuid,
    pub handle: String,
    pub name: String,
    pub email: Option<String>,
    /// `user` or `service_account`.
    #[serde(rename = "type")]
    pub kind: String,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A team's grant as shown on the team.
#[derive(Debug, Serialize, ToSchema)]
pub struct TeamWorkspace {
    pub workspace_id: WorkspaceId,
    pub workspace_handle: String,
    pub workspace_role_id: RoleId,
    pub workspace_role_name: String,
}

/// A team.
#[derive(Debug, Serialize, ToSchema)]
pub struct TeamView {
    pub id: Uuid,
    pub created: chrono::DateTime<chrono::Utc>,
    pub updated: chrono::DateTime<chrono::Utc>,
    pub account_id: AccountId,
    pub name: String,
    pub description: String,
    /// The identity provider's id for the group (SCIM `externalId`) when SCIM manages the team.
    pub workos_directory_group_id: Option<String>,
    /// Atrium extension: SCIM manages this team (its members change only through the IdP).
    pub managed_by_idp: bool,
    /// Atrium extension: when SCIM last changed the team.
    pub idp_synced: Option<chrono::DateTime<chrono::Utc>>,
    pub memberships: Vec<TeamMemberView>,
    pub workspaces: Vec<TeamWorkspace>,
}

pub(crate) async fn role_name(
    c: &mut store::Conn,
    account: AccountId,
    id: RoleId,
) -> Result<String> {
    if let Some(b) = BuiltinWorkspaceRole::from_id(id.0) {
        return Ok(b.name().to_string());
    }
    Ok(store::roles::find_role(c, account, id)
        .await?
        .map(|r| r.name)
        .unwrap_or_default())
}

async fn view(c: &mut store::Conn, t: TeamRow) -> Result<TeamView> {
    let mut memberships = Vec::new();
    for m in store::teams::find_members(c, t.account_id, t.id.0).await? {
        let v = if m.member_type == "user" {
            store::users::find_user_by_id(c, crate::domain::UserId(m.member_id))
                .await?
                .map(|u| TeamMemberView {
                    id: u.actor_id.0,
                    member_id: u.id.0,
                    name: format!("{} {}", u.first_name, u.last_name)
                        .trim()
                        .to_string(),
                    handle: u.handle,
                    email: Some(u.email),
                    kind: "user".into(),
                    expires_at: m.expires_at,
                })
        } else {
            store::service_accounts::find_bot(
                c,
                t.account_id,
                crate::domain::ServiceAccountId(m.member_id),
            )
            .await?
            .map(|b| TeamMemberView {
                id: b.actor_id.0,
                member_id: b.id.0,
                handle: b.name.clone(),
                name: b.name,
                email: None,
                kind: "service_account".into(),
                expires_at: m.expires_at,
            })
        };
        memberships.extend(v);
    }
    let mut workspaces = Vec::new();
    for (w, handle, role) in store::teams::find_team_workspaces(c, t.account_id, t.id.0).await? {
        workspaces.push(TeamWorkspace {
            workspace_id: w,
            workspace_handle: handle,
            workspace_role_id: role,
            workspace_role_name: role_name(c, t.account_id, role).await?,
        });
    }
    Ok(TeamView {
        id: t.id.0,
        created: t.created,
        updated: t.updated,
        account_id: t.account_id,
        name: t.name,
        description: t.description,
        workos_directory_group_id: t.scim_synced.and(t.scim_external_id),
        managed_by_idp: t.scim_synced.is_some(),
        idp_synced: t.scim_synced,
        memberships,
        workspaces,
    })
}

/// Refuses a change by hand to the members of a team the identity provider manages (SCIM would
/// undo it at its next sync, and the IdP is where access is decided).
fn managed_by_hand(t: &TeamRow) -> Result<()> {
    if t.scim_synced.is_some() {
        return Err(Error::Conflict(format!(
            "the members of team {:?} are managed by your identity provider through SCIM; change the group there",
            t.name
        )));
    }
    Ok(())
}

async fn gate(app: &App, p: &Principal, account: AccountId, perm: P) -> Result<()> {
    crate::services::authorize(app, p, account, perm).await?;
    require_feature(app, account, Feature::Teams)
}

/// `POST …/teams/` and `PUT …/teams/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamInput {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^\s*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 1000, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub description: Option<String>,
    /// Accepted for compatibility and ignored: teams are linked to IdP groups by SCIM
    /// (docs/scim.md).
    pub workos_directory_group_id: Option<String>,
}

pub async fn create_team(
    app: &App,
    p: &Principal,
    account: AccountId,
    t: TeamInput,
) -> Result<TeamView> {
    gate(app, p, account, P::CreateTeam).await?;
    let now = app.now();
    let team = TeamRow {
        id: TeamId::new(),
        account_id: account,
        name: validate::name("name", &t.name).map_err(Error::Validation)?,
        description: validate::text("description", t.description.as_deref().unwrap_or(""), 1000)
            .map_err(Error::Validation)?,
        created: now,
        updated: now,
        scim_external_id: None,
        scim_synced: None,
    };
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    store::teams::insert_team(&mut tx, &team)
        .await
        .map_err(|e| unique_or(e, format!("a team named {:?} exists", team.name)))?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("team", "created", team.id.0)
            .name(team.name.clone())
            .payload(json!({"name": team.name, "description": team.description})),
    )
    .await?;
    let v = view(&mut tx, team).await?;
    tx.commit().await?;
    Ok(v)
}

pub async fn read_team(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: TeamId,
) -> Result<TeamView> {
    gate(app, p, account, P::ReadTeam).await?;
    let mut c = app.store.reader().await?;
    let t = store::teams::find_team(&mut c, account, id)
        .await?
        .ok_or_else(|| Error::not_found("team"))?;
    view(&mut c, t).await
}

pub async fn update_team(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: Uuid,
    u: TeamInput,
) -> Result<TeamView> {
    gate(app, p, account, P::UpdateTeam).await?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let mut t = store::teams::find_team(&mut tx, account, crate::domain::TeamId(id))
        .await?
        .ok_or_else(|| Error::not_found("team"))?;
    let before = json!({"name": t.name, "description": t.description});
    t.name = validate::name("name", &u.name).map_err(Error::Validation)?;
    if let Some(d) = u.description {
        t.description = validate::text("description", &d, 1000).map_err(Error::Validation)?;
    }
    t.updated = app.now();
    store::teams::update_team(&mut tx, &t)
        .await
        .map_err(|e| unique_or(e, format!("a team named {:?} exists", t.name)))?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("team", "updated", id)
            .name(t.name.clone())
            .payload(
                json!({"before": before, "after": {"name": t.name, "description": t.description}}),
            ),
    )
    .await?;
    let v = view(&mut tx, t).await?;
    tx.commit().await?;
    Ok(v)
}

/// Deletes a team; its grants count for nobody from the next request on.
pub async fn delete_team(app: &App, p: &Principal, account: AccountId, id: TeamId) -> Result<()> {
    crate::services::authorize(app, p, account, P::DeleteTeam).await?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    if !delete_in(app, &mut tx, p, account, id, None).await? {
        return Err(Error::not_found("team"));
    }
    tx.commit().await
}

/// Deletes a team inside `tx` (the caller authorized it), with its workspace grants; false when
/// the account has no such team. Audited as `deleted`, with `via` when another channel than the
/// API made it (SCIM).
pub(crate) async fn delete_in(
    app: &App,
    tx: &mut crate::services::unit::Unit<'_>,
    p: &Principal,
    account: AccountId,
    id: TeamId,
    via: Option<&str>,
) -> Result<bool> {
    let Some(t) = store::teams::find_team(tx, account, id).await? else {
        return Ok(false);
    };
    store::teams::delete_team(&mut tx.access(account), account, id).await?;
    let mut event = NewEvent::new("team", "deleted", id.0).name(t.name);
    if let Some(via) = via {
        event = event.payload(json!({ "via": via }));
    }
    audit::record(app, tx, Some(p), account.0, event).await?;
    Ok(true)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamFields {
    pub id: Option<crate::services::input::AnyOfUuid>,
    pub name: Option<AnyOf<String>>,
    /// Teams with any of these members (user or service-account ids).
    pub member_id: Option<crate::services::input::AnyOfUuid>,
    /// Teams granted access to any of these workspaces.
    pub workspace_id: Option<crate::services::input::AnyOfUuid>,
    /// Teams granted any of these workspace roles.
    pub workspace_role_id: Option<crate::services::input::AnyOfUuid>,
    /// Directory sync is not implemented: no team has a directory.
    pub directory_id: Option<AnyOf<String>>,
}

/// `users` part of the teams filter: teams with any matching user.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamUserFields {
    pub id: Option<crate::services::input::AnyOfUuid>,
    pub email: Option<AnyOf<String>>,
    pub handle: Option<AnyOf<String>>,
}

/// `bots` part of the teams filter: teams with any matching service account.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamServiceAccountFields {
    pub id: Option<crate::services::input::AnyOfUuid>,
    pub name: Option<AnyOf<String>>,
}

/// `POST …/teams/filter` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterTeams {
    #[schema(minimum = 0)]
    pub limit: Option<i64>,
    #[schema(minimum = 0)]
    pub offset: Option<i64>,
    pub teams: Option<TeamFields>,
    pub users: Option<TeamUserFields>,
    pub bots: Option<TeamServiceAccountFields>,
    pub sort: Option<String>,
}

fn strs(v: Option<crate::services::input::AnyOfUuid>) -> Option<Vec<String>> {
    v.map(|a| a.any_.iter().map(|x| x.to_string()).collect())
}

pub async fn filter_teams(
    app: &App,
    p: &Principal,
    account: AccountId,
    f: FilterTeams,
) -> Result<Vec<TeamView>> {
    gate(app, p, account, P::ReadTeam).await?;
    let (limit, offset) = page(f.limit, f.offset)?;
    let teams = f.teams.unwrap_or_default();
    let mut c = app.store.reader().await?;
    let mut filter = store::teams::TeamFilter {
        names: teams.name.map(|n| n.any_),
        ids: strs(teams.id),
        members: strs(teams.member_id),
        workspaces: strs(teams.workspace_id),
        roles: strs(teams.workspace_role_id),
    };
    if teams.directory_id.is_some() {
        return Ok(vec![]);
    }
    // Members chosen by user or service-account attributes narrow the member filter.
    let mut chosen: Option<Vec<String>> = None;
    if let Some(u) = f.users {
        let mut ids: Vec<String> = strs(u.id).unwrap_or_default();
        for email in u.email.map(|e| e.any_).unwrap_or_default() {
            ids.extend(
                store::users::find_user_by_email(&mut c, &email)
                    .await?
                    .map(|x| x.id.to_string()),
            );
        }
        for handle in u.handle.map(|h| h.any_).unwrap_or_default() {
            ids.extend(
                store::users::find_user_id_by_handle(&mut c, &handle)
                    .await?
                    .map(|x| x.to_string()),
            );
        }
        chosen.get_or_insert_with(Vec::new).extend(ids);
    }
    if let Some(b) = f.bots {
        let mut ids: Vec<String> = strs(b.id).unwrap_or_default();
        if let Some(names) = b.name {
            ids.extend(
                store::service_accounts::find_bots(&mut c, account, Some(&names.any_), 200, 0)
                    .await?
                    .into_iter()
                    .map(|x| x.id.to_string()),
            );
        }
        chosen.get_or_insert_with(Vec::new).extend(ids);
    }
    if let Some(ids) = chosen {
        filter.members = Some(match filter.members {
            Some(m) => m.into_iter().filter(|x| ids.contains(x)).collect(),
            None => ids,
        });
    }
    let rows = store::teams::find_teams(&mut c, account, &filter, limit, offset).await?;
    let mut out = Vec::with_capacity(rows.len());
    for t in rows {
        out.push(view(&mut c, t).await?);
    }
    Ok(out)
}

/// One member to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamMemberInput {
    /// A user id or a service-account id.
    pub member_id: Uuid,
    /// `user` or `service_account`.
    #[schema(pattern = "^(user|service_account)$")]
    pub member_type: String,
    /// Atrium extension: the membership stops counting at this instant.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// `PUT …/teams/{id}/members` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMembers {
    pub members: Vec<TeamMemberInput>,
}

/// Adds (or updates the expiry of) members; they must belong to the account.
pub async fn add_members(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: Uuid,
    a: AddMembers,
) -> Result<TeamView> {
    gate(app, p, account, P::UpdateTeam).await?;
    if a.members.is_empty() || a.members.len() > 500 {
        return Err(Error::validation("give between 1 and 500 members"));
    }
    let now = app.now();
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let t = store::teams::find_team(&mut tx, account, crate::domain::TeamId(id))
        .await?
        .ok_or_else(|| Error::not_found("team"))?;
    managed_by_hand(&t)?;
    for m in &a.members {
        if matches!(m.expires_at, Some(e) if e <= now) {
            return Err(Error::validation("expires_at must be in the future"));
        }
        let known = match m.member_type.as_str() {
            "user" => store::memberships::find_membership_by_user(
                &mut tx,
                account,
                crate::domain::UserId(m.member_id),
            )
            .await?
            .is_some(),
            "service_account" => store::service_accounts::find_bot(
                &mut tx,
                account,
                crate::domain::ServiceAccountId(m.member_id),
            )
            .await?
            .is_some(),
            other => {
                return Err(Error::validation(format!(
                    "unknown member_type {other:?}: use user or service_account"
                )))
            }
        };
        if !known {
            return Err(Error::NotFound(format!(
                "{} is not a member of this account",
                m.member_id
            )));
        }
        store::teams::upsert_member(
            &mut tx.access(account),
            account,
            &TeamMemberRow {
                team_id: id,
                member_id: m.member_id,
                member_type: m.member_type.clone(),
                expires_at: m.expires_at,
            },
            now,
        )
        .await?;
        audit::record(app, &mut tx, Some(p), account.0, NewEvent::new("team-membership", "created", m.member_id).name(t.name.clone()).payload(json!({"team_id": id, "member_id": m.member_id, "member_type": m.member_type, "expires_at": m.expires_at}))).await?;
    }
    let v = view(&mut tx, t).await?;
    tx.commit().await?;
    Ok(v)
}

/// Removes a member (by actor id or by user/service-account id); effective at the next request.
pub async fn remove_member(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: Uuid,
    who: Uuid,
) -> Result<()> {
    gate(app, p, account, P::UpdateTeam).await?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let t = store::teams::find_team(&mut tx, account, crate::domain::TeamId(id))
        .await?
        .ok_or_else(|| Error::not_found("team"))?;
    managed_by_hand(&t)?;
    let mut member = who;
    if !store::teams::find_members(&mut tx, account, id)
        .await?
        .iter()
        .any(|m| m.member_id == who)
    {
        if let Some(u) = store::users::find_user_by_actor(&mut tx, who).await? {
            member = u.0;
        } else if let Some(b) =
            store::service_accounts::find_bot_by_actor(&mut tx, account, who).await?
        {
            member = b;
        }
    }
    if !store::teams::delete_member(&mut tx.access(account), account, id, member).await? {
        return Err(Error::not_found("team member"));
    }
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("team-membership", "deleted", member)
            .name(t.name.clone())
            .payload(json!({"team_id": id, "member_id": member})),
    )
    .await?;
    tx.commit().await
}
