//! Workspace access grants for users.

use super::Error;
use super::{get_uuid, micros, opt_time, time, AccessTx, Arg, Conn, Sql};
use crate::domain::{AccessId, AccountId, ActorId, RoleId, Time, UserAccess, UserId, WorkspaceId};
use sqlx::any::AnyRow;
use sqlx::Row;

const SELECT: &str = "SELECT g.id, g.workspace_id, g.user_id, g.workspace_role_id, g.expires_at, \
     g.created, g.updated, u.actor_id, u.first_name, u.last_name, u.email, u.handle \
     FROM workspace_user_access g JOIN users u ON u.id = g.user_id";

fn access_from(row: &AnyRow) -> Result<UserAccess, Error> {
    Ok(UserAccess {
        id: AccessId(get_uuid(row, "id")?),
        workspace_id: WorkspaceId(get_uuid(row, "workspace_id")?),
        user_id: UserId(get_uuid(row, "user_id")?),
        workspace_role_id: RoleId(get_uuid(row, "workspace_role_id")?),
        expires_at: opt_time(row.try_get("expires_at")?),
        actor_id: ActorId(get_uuid(row, "actor_id")?),
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        email: row.try_get("email")?,
        handle: row.try_get("handle")?,
        created: time(row.try_get("created")?),
        updated: time(row.try_get("updated")?),
    })
}

/// Inserts or replaces the user's grant on the workspace; returns the grant's id.
pub async fn upsert_user_access(
    c: &mut AccessTx<'_>,
    account: AccountId,
    workspace: WorkspaceId,
    user: UserId,
    role: RoleId,
    expires_at: Option<Time>,
    now: Time,
) -> Result<AccessId, Error> {
    let c: &mut Conn = c;
    let row = sqlx::query(
        "INSERT INTO workspace_user_access \
           (id, account_id, workspace_id, user_id, workspace_role_id, expires_at, created, updated) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
         ON CONFLICT (workspace_id, user_id) DO UPDATE SET \
           workspace_role_id = excluded.workspace_role_id, expires_at = excluded.expires_at, \
           updated = excluded.updated \
         RETURNING id",
    )
    .bind(AccessId::new().to_string())
    .bind(account.to_string())
    .bind(workspace.to_string())
    .bind(user.to_string())
    .bind(role.to_string())
    .bind(expires_at.map(micros))
    .bind(micros(now))
    .fetch_one(&mut *c)
    .await?;
    Ok(AccessId(get_uuid(&row, "id")?))
}

pub async fn find_user_access(
    c: &mut Conn,
    account: AccountId,
    workspace: WorkspaceId,
    id: AccessId,
) -> Result<Option<UserAccess>, Error> {
    sqlx::query(&format!(
        "{SELECT} WHERE g.account_id = $1 AND g.workspace_id = $2 AND g.id = $3"
    ))
    .bind(account.to_string())
    .bind(workspace.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut *c)
    .await?
    .map(|r| access_from(&r))
    .transpose()
}

pub async fn find_user_accesses(
    c: &mut Conn,
    account: AccountId,
    workspace: WorkspaceId,
    user_ids: Option<&[String]>,
    limit: i64,
    offset: i64,
) -> Result<Vec<UserAccess>, Error> {
    let mut q = Sql::new(SELECT);
    q.push(
        " WHERE g.account_id = ? AND g.workspace_id = ?",
        [
            Arg::Text(account.to_string()),
            Arg::Text(workspace.to_string()),
        ],
    );
    if let Some(ids) = user_ids {
        q.and_in("g.user_id", ids);
    }
    q.push(
        " ORDER BY u.email_lower, g.id LIMIT ? OFFSET ?",
        [Arg::Int(limit), Arg::Int(offset)],
    );
    q.query()
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(access_from)
        .collect()
}

pub async fn delete_user_access(
    c: &mut AccessTx<'_>,
    account: AccountId,
    workspace: WorkspaceId,
    id: AccessId,
) -> Result<bool, Error> {
    let c: &mut Conn = c;
    let r = sqlx::query(
        "DELETE FROM workspace_user_access WHERE account_id = $1 AND workspace_id = $2 AND id = $3",
    )
    .bind(account.to_string())
    .bind(workspace.to_string())
    .bind(id.to_string())
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// One grant as the permission index needs it.
pub struct GrantRow {
    pub workspace_id: WorkspaceId,
    pub user_id: UserId,
    pub role_id: RoleId,
    pub expires_at: Option<Time>,
}

pub async fn find_account_grants(c: &mut Conn, account: AccountId) -> Result<Vec<GrantRow>, Error> {
    Ok(
        super::grant_rows(c, "workspace_user_access", "user_id", account)
            .await?
            .into_iter()
            .map(|(workspace_id, user, role_id, expires_at)| GrantRow {
                workspace_id,
                user_id: UserId(user),
                role_id,
                expires_at,
            })
            .collect(),
    )
}
