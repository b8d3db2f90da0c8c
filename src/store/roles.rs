//! Custom workspace roles (built-in roles are rows too, but their scopes live in code).

use super::Error;
use super::{get_opt_uuid, get_uuid, micros, time, AccessTx, Arg, Conn, Sql};
use crate::domain::{AccountId, CustomRoleRow, RoleId};
use sqlx::any::AnyRow;
use sqlx::Row;

const COLS: &str = "id, account_id, name, description, scopes, inherited_role_id, created, updated";

fn role_from(row: &AnyRow) -> Result<CustomRoleRow, Error> {
    let scopes: String = row.try_get("scopes")?;
    Ok(CustomRoleRow {
        id: RoleId(get_uuid(row, "id")?),
        account_id: AccountId(get_uuid(row, "account_id")?),
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        scopes: scopes.split_whitespace().map(str::to_string).collect(),
        inherited_role_id: get_opt_uuid(row, "inherited_role_id")?.map(RoleId),
        created: time(row.try_get("created")?),
        updated: time(row.try_get("updated")?),
    })
}

pub async fn insert_role(c: &mut Conn, r: &CustomRoleRow) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO workspace_roles (id, account_id, name, description, scopes, \
         inherited_role_id, created, updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(r.id.to_string())
    .bind(r.account_id.to_string())
    .bind(&r.name)
    .bind(&r.description)
    .bind(r.scopes.join(" "))
    .bind(r.inherited_role_id.map(|i| i.to_string()))
    .bind(micros(r.created))
    .bind(micros(r.updated))
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn update_role(c: &mut AccessTx<'_>, r: &CustomRoleRow) -> Result<(), Error> {
    let c: &mut Conn = c;
    sqlx::query(
        "UPDATE workspace_roles SET name = $3, description = $4, scopes = $5, \
         inherited_role_id = $6, updated = $7 WHERE account_id = $1 AND id = $2",
    )
    .bind(r.account_id.to_string())
    .bind(r.id.to_string())
    .bind(&r.name)
    .bind(&r.description)
    .bind(r.scopes.join(" "))
    .bind(r.inherited_role_id.map(|i| i.to_string()))
    .bind(micros(r.updated))
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn find_role(
    c: &mut Conn,
    account: AccountId,
    id: RoleId,
) -> Result<Option<CustomRoleRow>, Error> {
    sqlx::query(&format!(
        "SELECT {COLS} FROM workspace_roles WHERE account_id = $1 AND id = $2"
    ))
    .bind(account.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut *c)
    .await?
    .map(|r| role_from(&r))
    .transpose()
}

/// Custom roles of the account, optionally by name.
pub async fn find_roles(
    c: &mut Conn,
    account: AccountId,
    names: Option<&[String]>,
) -> Result<Vec<CustomRoleRow>, Error> {
    let mut q = Sql::new(&format!(
        "SELECT {COLS} FROM workspace_roles WHERE account_id = "
    ));
    q.push("?", [Arg::Text(account.to_string())]);
    if let Some(n) = names {
        q.and_in("name", n);
    }
    q.push(" ORDER BY name", []);
    q.query()
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(role_from)
        .collect()
}

/// Deletes a custom role. A role still referenced by a grant or a workspace default fails with a
/// foreign-key violation, which the service reports as 409.
pub async fn delete_role(
    c: &mut AccessTx<'_>,
    account: AccountId,
    id: RoleId,
) -> Result<bool, Error> {
    let c: &mut Conn = c;
    let r = sqlx::query("DELETE FROM workspace_roles WHERE account_id = $1 AND id = $2")
        .bind(account.to_string())
        .bind(id.to_string())
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// How many grants and workspace defaults use the role (for a clear 409 message).
pub async fn count_role_uses(c: &mut Conn, account: AccountId, id: RoleId) -> Result<i64, Error> {
    Ok(sqlx::query(
        "SELECT (SELECT COUNT(*) FROM workspace_user_access WHERE account_id = $1 AND workspace_role_id = $2) \
              + (SELECT COUNT(*) FROM workspace_bot_access WHERE account_id = $1 AND workspace_role_id = $2) \
              + (SELECT COUNT(*) FROM workspace_team_access WHERE account_id = $1 AND workspace_role_id = $2) \
              + (SELECT COUNT(*) FROM workspaces WHERE account_id = $1 AND default_workspace_role_id = $2) AS n",
    )
    .bind(account.to_string())
    .bind(id.to_string())
    .fetch_one(&mut *c)
    .await?
    .try_get("n")?)
}
