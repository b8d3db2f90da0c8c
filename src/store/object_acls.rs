//! Object access control lists: one row per governed object, its entries as a JSON document
//! (read whole into the permission index, never queried by content).

use super::Error;
use super::{get_uuid, micros, AccessTx, Conn};
use crate::domain::object_acl::{ObjectAcl, ObjectKind};
use crate::domain::{AccountId, Time, WorkspaceId};
use sqlx::Row;

/// One stored ACL.
#[derive(Debug, Clone)]
pub struct AclRow {
    pub workspace_id: WorkspaceId,
    pub kind: ObjectKind,
    pub key: String,
    pub acl: ObjectAcl,
}

/// Every ACL of the account (for the permission index).
pub async fn find_account_acls(c: &mut Conn, account: AccountId) -> Result<Vec<AclRow>, Error> {
    let rows = sqlx::query(
        "SELECT workspace_id, object_kind, object_key, entries FROM object_acls WHERE account_id = $1",
    )
    .bind(account.to_string())
    .fetch_all(&mut *c)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let kind: String = r.try_get("object_kind")?;
        let entries: String = r.try_get("entries")?;
        let (Some(kind), Ok(acl)) = (
            ObjectKind::parse(&kind),
            serde_json::from_str::<ObjectAcl>(&entries),
        ) else {
            return Err(sqlx::Error::Decode(
                format!("object_acls row of kind {kind:?} cannot be read").into(),
            )
            .into());
        };
        out.push(AclRow {
            workspace_id: WorkspaceId(get_uuid(r, "workspace_id")?),
            kind,
            key: r.try_get("object_key")?,
            acl,
        });
    }
    Ok(out)
}

/// Stores an object's ACL, replacing the previous one.
pub async fn upsert_acl(
    c: &mut AccessTx<'_>,
    account: AccountId,
    row: &AclRow,
    now: Time,
) -> Result<(), Error> {
    let c: &mut Conn = c;
    let entries = serde_json::to_string(&row.acl).map_err(|e| sqlx::Error::Encode(e.into()))?;
    sqlx::query(
        "INSERT INTO object_acls (account_id, workspace_id, object_kind, object_key, entries, updated) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (account_id, workspace_id, object_kind, object_key) \
         DO UPDATE SET entries = excluded.entries, updated = excluded.updated",
    )
    .bind(account.to_string())
    .bind(row.workspace_id.to_string())
    .bind(row.kind.code())
    .bind(&row.key)
    .bind(entries)
    .bind(micros(now))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Removes an object's ACL (it is then governed by workspace roles alone); true if it had one.
pub async fn delete_acl(
    c: &mut AccessTx<'_>,
    account: AccountId,
    workspace: WorkspaceId,
    kind: ObjectKind,
    key: &str,
) -> Result<bool, Error> {
    let c: &mut Conn = c;
    let r = sqlx::query(
        "DELETE FROM object_acls WHERE account_id = $1 AND workspace_id = $2 AND object_kind = $3 AND object_key = $4",
    )
    .bind(account.to_string())
    .bind(workspace.to_string())
    .bind(kind.code())
    .bind(key)
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() > 0)
}
