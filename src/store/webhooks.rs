//! Webhooks of a workspace.

use super::Error;
use super::{get_bool, get_uuid, micros, time, Conn};
use crate::domain::{AccountId, Time, WorkspaceId};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct WebhookRow {
    pub id: Uuid,
    pub account_id: AccountId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub description: String,
    pub template: String,
    pub enabled: bool,
    pub slug_hash: String,
    pub slug_sealed: String,
    pub service_account_id: Option<Uuid>,
    pub created: Time,
    pub updated: Time,
}

const COLS: &str =
    "id, account_id, workspace_id, name, description, template, enabled, slug_hash, \
                    slug_sealed, service_account_id, created, updated";

fn from_row(r: &AnyRow) -> Result<WebhookRow, Error> {
    let sa: Option<String> = r.try_get("service_account_id")?;
    Ok(WebhookRow {
        id: get_uuid(r, "id")?,
        account_id: AccountId(get_uuid(r, "account_id")?),
        workspace_id: WorkspaceId(get_uuid(r, "workspace_id")?),
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        template: r.try_get("template")?,
        enabled: get_bool(r, "enabled")?,
        slug_hash: r.try_get("slug_hash")?,
        slug_sealed: r.try_get("slug_sealed")?,
        service_account_id: sa.and_then(|s| Uuid::try_parse(&s).ok()),
        created: time(r.try_get("created")?),
        updated: time(r.try_get("updated")?),
    })
}

pub async fn insert_webhook(c: &mut Conn, w: &WebhookRow) -> Result<(), Error> {
    sqlx::query(&format!(
        "INSERT INTO webhooks ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    ))
    .bind(w.id.to_string())
    .bind(w.account_id.to_string())
    .bind(w.workspace_id.to_string())
    .bind(&w.name)
    .bind(&w.description)
    .bind(&w.template)
    .bind(i64::from(w.enabled))
    .bind(&w.slug_hash)
    .bind(&w.slug_sealed)
    .bind(w.service_account_id.map(|s| s.to_string()))
    .bind(micros(w.created))
    .bind(micros(w.updated))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Writes every changeable field of a webhook (name, description, template, enabled, slug,
/// service account, updated).
pub async fn update_webhook(c: &mut Conn, w: &WebhookRow) -> Result<bool, Error> {
    let r = sqlx::query(
        "UPDATE webhooks SET name = $1, description = $2, template = $3, enabled = $4, \
         slug_hash = $5, slug_sealed = $6, service_account_id = $7, updated = $8 \
         WHERE account_id = $9 AND workspace_id = $10 AND id = $11",
    )
    .bind(&w.name)
    .bind(&w.description)
    .bind(&w.template)
    .bind(i64::from(w.enabled))
    .bind(&w.slug_hash)
    .bind(&w.slug_sealed)
    .bind(w.service_account_id.map(|s| s.to_string()))
    .bind(micros(w.updated))
    .bind(w.account_id.to_string())
    .bind(w.workspace_id.to_string())
    .bind(w.id.to_string())
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn delete_webhook(
    c: &mut Conn,
    account: AccountId,
    ws: WorkspaceId,
    id: Uuid,
) -> Result<bool, Error> {
    let r =
        sqlx::query("DELETE FROM webhooks WHERE account_id = $1 AND workspace_id = $2 AND id = $3")
            .bind(account.to_string())
            .bind(ws.to_string())
            .bind(id.to_string())
            .execute(&mut *c)
            .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn find_webhook(
    c: &mut Conn,
    account: AccountId,
    ws: WorkspaceId,
    id: Uuid,
) -> Result<Option<WebhookRow>, Error> {
    sqlx::query(&format!(
        "SELECT {COLS} FROM webhooks WHERE account_id = $1 AND workspace_id = $2 AND id = $3"
    ))
    .bind(account.to_string())
    .bind(ws.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut *c)
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// The workspace's webhooks, oldest first (`limit`, `offset`).
pub async fn find_webhooks(
    c: &mut Conn,
    account: AccountId,
    ws: WorkspaceId,
    limit: i64,
    offset: i64,
) -> Result<Vec<WebhookRow>, Error> {
    sqlx::query(&format!(
        "SELECT {COLS} FROM webhooks WHERE account_id = $1 AND workspace_id = $2 \
         ORDER BY created, id LIMIT $3 OFFSET $4"
    ))
    .bind(account.to_string())
    .bind(ws.to_string())
    .bind(limit)
    .bind(offset)
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(from_row)
    .collect()
}

/// The webhook a slug belongs to (by the slug's hash), in any account.
pub async fn find_by_slug_hash(c: &mut Conn, hash: &str) -> Result<Option<WebhookRow>, Error> {
    sqlx::query(&format!("SELECT {COLS} FROM webhooks WHERE slug_hash = $1"))
        .bind(hash)
        .fetch_optional(&mut *c)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()
}
