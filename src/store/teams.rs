//! Teams, their members and their workspace grants.

use super::Error;
use super::{get_uuid, micros, opt_time, time, AccessTx, Arg, Conn, Sql};
use crate::domain::{AccessId, AccountId, RoleId, Time, WorkspaceId};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct TeamRow {
    pub id: Uuid,
    pub account_id: AccountId,
    pub name: String,
    pub description: String,
    pub created: Time,
    pub updated: Time,
}

fn team_from(r: &AnyRow) -> Result<TeamRow, Error> {
    Ok(TeamRow {
        id: get_uuid(r, "id")?,
        account_id: AccountId(get_uuid(r, "account_id")?),
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        created: time(r.try_get("created")?),
        updated: time(r.try_get("updated")?),
    })
}

const COLS: &str = "id, account_id, name, description, created, updated";

pub async fn insert_team(c: &mut Conn, t: &TeamRow) -> Result<(), Error> {
    sqlx::query("INSERT INTO teams (id, account_id, name, description, created, updated) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(t.id.to_string())
        .bind(t.account_id.to_string())
        .bind(&t.name)
        .bind(&t.description)
        .bind(micros(t.created))
        .bind(micros(t.updated))
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn update_team(c: &mut Conn, t: &TeamRow) -> Result<(), Error> {
    sqlx::query("UPDATE teams SET name = $3, description = $4, updated = $5 WHERE account_id = $1 AND id = $2")
        .bind(t.account_id.to_string())
        .bind(t.id.to_string())
        .bind(&t.name)
        .bind(&t.description)
        .bind(micros(t.updated))
        .execute(&mut *c)
        .await?;
    Ok(())
}

pub async fn find_team(
    c: &mut Conn,
    account: AccountId,
    id: Uuid,
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
    id: Uuid,
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

/// Deletes memberships and grants whose expiry has passed (the engine stopped counting them at
/// their instant already); returns how many rows went.
pub async fn sweep_expired(
    w: &mut super::Write,
    accounts: &[AccountId],
    now: Time,
) -> Result<u64, Error> {
    // Every account with an expired row is recorded as changed; `accounts` comes from
    // `find_accounts_with_expired` in the same transaction.
    for a in accounts {
        w.access(*a);
    }
    let c: &mut Conn = w;
    let mut n = 0;
    for table in [
        "team_members",
        "workspace_team_access",
        "workspace_user_access",
        "workspace_bot_access",
    ] {
        n += sqlx::query(&format!(
            "DELETE FROM {table} WHERE expires_at IS NOT NULL AND expires_at <= $1"
        ))
        .bind(micros(now))
        .execute(&mut *c)
        .await?
        .rows_affected();
    }
    Ok(n)
}

/// Accounts that have expired rows (to rebuild their snapshots after a sweep).
pub async fn find_accounts_with_expired(c: &mut Conn, now: Time) -> Result<Vec<AccountId>, Error> {
    let mut out = std::collections::BTreeSet::new();
    for table in [
        "team_members",
        "workspace_team_access",
        "workspace_user_access",
        "workspace_bot_access",
    ] {
        for r in sqlx::query(&format!("SELECT DISTINCT account_id FROM {table} WHERE expires_at IS NOT NULL AND expires_at <= $1"))
            .bind(micros(now))
            .fetch_all(&mut *c)
            .await?
        {
            out.insert(get_uuid(&r, "account_id")?);
        }
    }
    Ok(out.into_iter().map(AccountId).collect())
}

// ---- team access ----

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TeamAccess {
    pub id: AccessId,
    pub created: chrono::DateTime<chrono::Utc>,
    pub updated: chrono::DateTime<chrono::Utc>,
    pub workspace_id: WorkspaceId,
    pub workspace_role_id: RoleId,
    pub team_id: Uuid,
    pub team_name: String,
    /// Atrium extension: when the grant stops counting (null = never).
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

const ACCESS_SELECT: &str = "SELECT g.id, g.workspace_id, g.team_id, g.workspace_role_id, g.expires_at, g.created, g.updated, \
     t.name FROM workspace_team_access g JOIN teams t ON t.id = g.team_id";

fn access_from(r: &AnyRow) -> Result<TeamAccess, Error> {
    Ok(TeamAccess {
        id: AccessId(get_uuid(r, "id")?),
        workspace_id: WorkspaceId(get_uuid(r, "workspace_id")?),
        team_id: get_uuid(r, "team_id")?,
        workspace_role_id: RoleId(get_uuid(r, "workspace_role_id")?),
        expires_at: opt_time(r.try_get("expires_at")?),
        team_name: r.try_get("name")?,
        created: time(r.try_get("created")?),
        updated: time(r.try_get("updated")?),
    })
}

pub async fn upsert_access(
    c: &mut AccessTx<'_>,
    account: AccountId,
    workspace: WorkspaceId,
    team: Uuid,
    role: RoleId,
    expires_at: Option<Time>,
    now: Time,
) -> Result<AccessId, Error> {
    let c: &mut Conn = c;
    let row = sqlx::query(
        "INSERT INTO workspace_team_access (id, account_id, workspace_id, team_id, workspace_role_id, expires_at, created, updated) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (workspace_id, team_id) DO UPDATE SET \
         workspace_role_id = excluded.workspace_role_id, expires_at = excluded.expires_at, updated = excluded.updated RETURNING id",
    )
    .bind(AccessId::new().to_string())
    .bind(account.to_string())
    .bind(workspace.to_string())
    .bind(team.to_string())
    .bind(role.to_string())
    .bind(expires_at.map(micros))
    .bind(micros(now))
    .fetch_one(&mut *c)
    .await?;
    Ok(AccessId(get_uuid(&row, "id")?))
}

pub async fn find_accesses(
    c: &mut Conn,
    account: AccountId,
    workspace: WorkspaceId,
    limit: i64,
    offset: i64,
) -> Result<Vec<TeamAccess>, Error> {
    sqlx::query(&format!("{ACCESS_SELECT} WHERE g.account_id = $1 AND g.workspace_id = $2 ORDER BY t.name, g.id LIMIT $3 OFFSET $4"))
        .bind(account.to_string())
        .bind(workspace.to_string())
        .bind(limit)
        .bind(offset)
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(access_from)
        .collect()
}

/// Deletes a team's grant on a workspace (keyed by team, as the reference does).
pub async fn delete_access(
    c: &mut AccessTx<'_>,
    account: AccountId,
    workspace: WorkspaceId,
    team: Uuid,
) -> Result<bool, Error> {
    let c: &mut Conn = c;
    let r = sqlx::query("DELETE FROM workspace_team_access WHERE account_id = $1 AND workspace_id = $2 AND team_id = $3")
        .bind(account.to_string())
        .bind(workspace.to_string())
        .bind(team.to_string())
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Every team grant of the account: (workspace, team, role, expiry).
pub async fn find_account_grants(
    c: &mut Conn,
    account: AccountId,
) -> Result<Vec<super::GrantTuple>, Error> {
    super::grant_rows(c, "workspace_team_access", "team_id", account).await
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
