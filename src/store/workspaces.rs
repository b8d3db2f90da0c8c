//! Workspaces of an account.

use super::Error;
use super::{get_bool, get_opt_uuid, get_uuid, micros, time, AccessTx, Arg, Conn, Sql};
use crate::domain::{AccountId, RoleId, Workspace, WorkspaceId};
use sqlx::any::AnyRow;
use sqlx::Row;

const COLS: &str = "id, account_id, name, handle, description, default_workspace_role_id, \
                    is_public, created, updated";

fn workspace_from(row: &AnyRow) -> Result<Workspace, Error> {
    Ok(Workspace {
        id: WorkspaceId(get_uuid(row, "id")?),
        account_id: AccountId(get_uuid(row, "account_id")?),
        name: row.try_get("name")?,
        handle: row.try_get("handle")?,
        description: row.try_get("description")?,
        default_workspace_role_id: get_opt_uuid(row, "default_workspace_role_id")?.map(RoleId),
        is_public: get_bool(row, "is_public")?,
        created: time(row.try_get("created")?),
        updated: time(row.try_get("updated")?),
    })
}

pub async fn insert_workspace(c: &mut AccessTx<'_>, w: &Workspace) -> Result<(), Error> {
    let c: &mut Conn = c;
    sqlx::query(
        "INSERT INTO workspaces (id, account_id, name, handle, description, \
         default_workspace_role_id, is_public, created, updated) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(w.id.to_string())
    .bind(w.account_id.to_string())
    .bind(&w.name)
    .bind(&w.handle)
    .bind(&w.description)
    .bind(w.default_workspace_role_id.map(|r| r.to_string()))
    .bind(i64::from(w.is_public))
    .bind(micros(w.created))
    .bind(micros(w.updated))
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn find_workspace(
    c: &mut Conn,
    account: AccountId,
    id: WorkspaceId,
) -> Result<Option<Workspace>, Error> {
    sqlx::query(&format!(
        "SELECT {COLS} FROM workspaces WHERE account_id = $1 AND id = $2"
    ))
    .bind(account.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut *c)
    .await?
    .map(|r| workspace_from(&r))
    .transpose()
}

/// Looks a workspace up by id alone (`GET /api/workspaces/{id}`); the caller must still check the
/// principal's access to the returned account.
pub async fn find_workspace_any_account(
    c: &mut Conn,
    id: WorkspaceId,
) -> Result<Option<Workspace>, Error> {
    sqlx::query(&format!("SELECT {COLS} FROM workspaces WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(&mut *c)
        .await?
        .map(|r| workspace_from(&r))
        .transpose()
}

pub async fn find_workspaces(
    c: &mut Conn,
    account: AccountId,
    handles: Option<&[String]>,
    ids: Option<&[String]>,
    limit: i64,
    offset: i64,
) -> Result<Vec<Workspace>, Error> {
    let mut q = Sql::new(&format!(
        "SELECT {COLS} FROM workspaces WHERE account_id = "
    ));
    q.push("?", [Arg::Text(account.to_string())]);
    if let Some(h) = handles {
        q.and_in("handle", h);
    }
    if let Some(ids) = ids {
        q.and_in("id", ids);
    }
    q.push(
        " ORDER BY handle LIMIT ? OFFSET ?",
        [Arg::Int(limit), Arg::Int(offset)],
    );
    q.query()
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(workspace_from)
        .collect()
}

/// Every workspace of the account (for the permission index and `/me/workspaces`).
pub async fn find_all_workspaces(
    c: &mut Conn,
    account: AccountId,
) -> Result<Vec<Workspace>, Error> {
    sqlx::query(&format!(
        "SELECT {COLS} FROM workspaces WHERE account_id = $1 ORDER BY handle"
    ))
    .bind(account.to_string())
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(workspace_from)
    .collect()
}

pub async fn update_workspace(c: &mut AccessTx<'_>, w: &Workspace) -> Result<(), Error> {
    let c: &mut Conn = c;
    sqlx::query(
        "UPDATE workspaces SET name = $3, handle = $4, description = $5, \
         default_workspace_role_id = $6, is_public = $7, updated = $8 \
         WHERE account_id = $1 AND id = $2",
    )
    .bind(w.account_id.to_string())
    .bind(w.id.to_string())
    .bind(&w.name)
    .bind(&w.handle)
    .bind(&w.description)
    .bind(w.default_workspace_role_id.map(|r| r.to_string()))
    .bind(i64::from(w.is_public))
    .bind(micros(w.updated))
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn delete_workspace(
    c: &mut AccessTx<'_>,
    account: AccountId,
    id: WorkspaceId,
) -> Result<bool, Error> {
    let c: &mut Conn = c;
    let r = sqlx::query("DELETE FROM workspaces WHERE account_id = $1 AND id = $2")
        .bind(account.to_string())
        .bind(id.to_string())
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected() > 0)
}
