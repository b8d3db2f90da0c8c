//! Teams, their members and their workspace grants.

use super::Error;
use super::{get_uuid, micros, opt_time, time, AccessTx, Arg, Conn, Sql};
use crate::domain::{AccountId, RoleId, TeamId, Time, WorkspaceId};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct TeamRow {
    pub id: crate::domain::TeamId,
    pub account_id: AccountId,
    pub name: String,
    pub description: String,
    pub created: Time,
    pub updated: Time,
    /// The identity provider's id for the group this team is (SCIM `externalId`).
    pub scim_external_id: Option<String>,
    /// When SCIM last changed the team; `Some` = managed by the identity provider.
    pub scim_synced: Option<Time>,
}

fn team_from(r: &AnyRow) -> Result<TeamRow, Error> {
    Ok(TeamRow {
        id: TeamId(get_uuid(r, "id")?),
        account_id: AccountId(get_uuid(r, "account_id")?),
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        created: time(r.try_get("created")?),
        updated: time(r.try_get("updated")?),
        scim_external_id: r.try_get("scim_external_id")?,
        scim_synced: opt_time(r.try_get("scim_synced")?),
    })
}

const COLS: &str =
    "id, account_id, name, description, created, updated, scim_external_id, scim_synced";

pub async fn insert_team(c: &mut Conn, t: &TeamRow) -> Result<(), Error> {
    sqlx::query(&format!(
        "INSERT INTO teams ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    ))
    .bind(t.id.to_string())
    .bind(t.account_id.to_string())
    .bind(&t.name)
    .bind(&t.description)
    .bind(micros(t.created))
    .bind(micros(t.updated))
    .bind(t.scim_external_id.clone())
    .bind(t.scim_synced.map(micros))
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn update_team(c: &mut Conn, t: &TeamRow) -> Result<(), Error> {
    sqlx::query("UPDATE teams SET name = $3, description = $4, updated = $5, scim_external_id = $6, scim_synced = $7 WHERE account_id = $1 AND id = $2")
        .bind(t.account_id.to_string())
        .bind(t.id.to_string())
        .bind(&t.name)
        .bind(&t.description)
        .bind(micros(t.updated))
        .bind(t.scim_external_id.clone())
        .bind(t.scim_synced.map(micros))
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn find_team(
    c: &mut Conn,
    account: AccountId,
    id: TeamId,
) -> Result<Option<TeamRow>, Error> {
    sqlx::query(&format!(
        "SELECT {COLS} FROM teams WHERE account_id = $1 AND id = $2"
    ))
    .bind(account.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut *c)
    .await?
    .map(|r| team_from(&r))
    .transpose()
}

/// Filters for listing teams; each `Some` list must match (an empty list matches nothing).
#[derive(Debug, Default)]
pub struct TeamFilter {
    pub names: Option<Vec<String>>,
    pub ids: Option<Vec<String>>,
    /// Teams having any of these members (user or service-account ids).
    pub members: Option<Vec<String>>,
    /// Teams with a grant on any of these workspaces.
    pub workspaces: Option<Vec<String>>,
    /// Teams with a grant of any of these roles.
    pub roles: Option<Vec<String>>,
}

pub async fn find_teams(
    c: &mut Conn,
    account: AccountId,
    f: &TeamFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<TeamRow>, Error> {
    let mut s = Sql::new(&format!("SELECT {COLS} FROM teams WHERE account_id = "));
    s.push("?", [Arg::Text(account.to_string())]);
    if let Some(n) = &f.names {
        s.and_in("name", n);
    }
    if let Some(i) = &f.ids {
        s.and_in("id", i);
    }
    let sub = |s: &mut Sql, sql: &str, col: &str, values: &[String]| {
        if values.is_empty() {
            s.push(" AND 1 = 0", []);
        } else {
            let marks = vec!["?"; values.len()].join(", ");
            s.push(
                &format!(" AND id IN ({sql} WHERE {col} IN ({marks}))"),
                values.iter().cloned().map(Arg::Text),
            );
        }
    };
    if let Some(m) = &f.members {
        sub(&mut s, "SELECT team_id FROM team_members", "member_id", m);
    }
    if let Some(w) = &f.workspaces {
        sub(
            &mut s,
            "SELECT team_id FROM workspace_team_access",
            "workspace_id",
            w,
        );
    }
    if let Some(r) = &f.roles {
        sub(
            &mut s,
            "SELECT team_id FROM workspace_team_access",
            "workspace_role_id",
            r,
        );
    }
    s.push(
        " ORDER BY name, id LIMIT ? OFFSET ?",
        [Arg::Int(limit), Arg::Int(offset)],
    );
    s.query()
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(team_from)
        .collect()
}

pub async fn delete_team(
    c: &mut AccessTx<'_>,
    account: AccountId,
    id: TeamId,
) -> Result<bool, Error> {
    let c: &mut Conn = c;
    let r = sqlx::query("DELETE FROM teams WHERE account_id = $1 AND id = $2")
        .bind(account.to_string())
        .bind(id.to_string())
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// A team member as stored.
#[derive(Debug, Clone)]
pub struct TeamMemberRow {
    pub team_id: Uuid,
    pub member_id: Uuid,
    pub member_type: String,
    pub expires_at: Option<Time>,
}

pub async fn upsert_member(
    c: &mut AccessTx<'_>,
    account: AccountId,
    m: &TeamMemberRow,
    now: Time,
) -> Result<(), Error> {
    let c: &mut Conn = c;
    sqlx::query(
        "INSERT INTO team_members (account_id, team_id, member_id, member_type, expires_at, created) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (team_id, member_id) DO UPDATE SET expires_at = excluded.expires_at",
    )
    .bind(account.to_string())
    .bind(m.team_id.to_string())
    .bind(m.member_id.to_string())
    .bind(&m.member_type)
    .bind(m.expires_at.map(micros))
    .bind(micros(now))
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn delete_member(
    c: &mut AccessTx<'_>,
    account: AccountId,
    team: Uuid,
    member: Uuid,
) -> Result<bool, Error> {
    let c: &mut Conn = c;
    let r = sqlx::query(
        "DELETE FROM team_members WHERE account_id = $1 AND team_id = $2 AND member_id = $3",
    )
    .bind(account.to_string())
    .bind(team.to_string())
    .bind(member.to_string())
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// Removes a user or service account from every team of the account.
pub async fn delete_member_everywhere(
    c: &mut AccessTx<'_>,
    account: AccountId,
    member: Uuid,
) -> Result<(), Error> {
    let c: &mut Conn = c;
    sqlx::query("DELETE FROM team_members WHERE account_id = $1 AND member_id = $2")
        .bind(account.to_string())
        .bind(member.to_string())
        .execute(&mut *c)
        .await?;
    Ok(())
}

fn member_from(r: &AnyRow) -> Result<TeamMemberRow, Error> {
    Ok(TeamMemberRow {
        team_id: get_uuid(r, "team_id")?,
        member_id: get_uuid(r, "member_id")?,
        member_type: r.try_get("member_type")?,
        expires_at: opt_time(r.try_get("expires_at")?),
    })
}

pub async fn find_members(
    c: &mut Conn,
    account: AccountId,
    team: Uuid,
) -> Result<Vec<TeamMemberRow>, Error> {
    sqlx::query("SELECT team_id, member_id, member_type, expires_at FROM team_members WHERE account_id = $1 AND team_id = $2")
        .bind(account.to_string())
        .bind(team.to_string())
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(member_from)
        .collect()
}

/// The team memberships of one user or service account in the account.
pub async fn find_teams_of_member(
    c: &mut Conn,
    account: AccountId,
    member: Uuid,
) -> Result<Vec<TeamMemberRow>, Error> {
    sqlx::query("SELECT team_id, member_id, member_type, expires_at FROM team_members WHERE account_id = $1 AND member_id = $2")
        .bind(account.to_string())
        .bind(member.to_string())
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(member_from)
        .collect()
}

/// Every team membership of the account (for the permission index).
pub async fn find_account_members(
    c: &mut Conn,
    account: AccountId,
) -> Result<Vec<TeamMemberRow>, Error> {
    sqlx::query("SELECT team_id, member_id, member_type, expires_at FROM team_members WHERE account_id = $1")
        .bind(account.to_string())
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(member_from)
        .collect()
}

/// Workspaces of the account where a team has a grant: (workspace id, handle, role id).
pub async fn find_team_workspaces(
    c: &mut Conn,
    account: AccountId,
    team: Uuid,
) -> Result<Vec<(WorkspaceId, String, RoleId)>, Error> {
    sqlx::query(
        "SELECT g.workspace_id, w.handle, g.workspace_role_id FROM workspace_team_access g \
         JOIN workspaces w ON w.id = g.workspace_id WHERE g.account_id = $1 AND g.team_id = $2 ORDER BY w.handle",
    )
    .bind(account.to_string())
    .bind(team.to_string())
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(|r| Ok((WorkspaceId(get_uuid(r, "workspace_id")?), r.try_get("handle")?, RoleId(get_uuid(r, "workspace_role_id")?))))
    .collect()
}
