//! Workspace upstreams: where the gateway forwards a workspace's Prefect API calls.

use super::Error;
use super::{get_uuid, micros, time, AccessTx, Conn};
use crate::domain::{AccountId, Time, WorkspaceId};
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct UpstreamRow {
    pub workspace_id: WorkspaceId,
    pub account_id: AccountId,
    pub url: String,
    /// Nonce and ciphertext of the auth string, hex (never decrypted outside services::upstreams).
    pub auth_string_enc: Option<String>,
    /// PEM CA bundle that replaces the system's roots for an https upstream.
    pub ca_pem: Option<String>,
    /// PEM client certificate chain for mutual TLS, and its key (encrypted, hex).
    pub client_cert_pem: Option<String>,
    pub client_key_enc: Option<String>,
    /// Bound by a site admin or the CLI (may point outside the operator's upstream networks).
    pub operator_bound: bool,
    pub created: Time,
    pub updated: Time,
}

const COLS: &str =
    "workspace_id, account_id, url, auth_string_enc, operator_bound, created, updated, \
                    ca_pem, client_cert_pem, client_key_enc";

fn row_from(r: &sqlx::any::AnyRow) -> Result<UpstreamRow, Error> {
    Ok(UpstreamRow {
        workspace_id: WorkspaceId(get_uuid(r, "workspace_id")?),
        account_id: AccountId(get_uuid(r, "account_id")?),
        url: r.try_get("url")?,
        auth_string_enc: r.try_get("auth_string_enc")?,
        ca_pem: r.try_get("ca_pem")?,
        client_cert_pem: r.try_get("client_cert_pem")?,
        client_key_enc: r.try_get("client_key_enc")?,
        operator_bound: super::get_bool(r, "operator_bound")?,
        created: time(r.try_get("created")?),
        updated: time(r.try_get("updated")?),
    })
}

/// Inserts or replaces a workspace's upstream.
pub async fn upsert_upstream(c: &mut AccessTx<'_>, u: &UpstreamRow) -> Result<(), Error> {
    let c: &mut Conn = c;
    sqlx::query(
        "INSERT INTO workspace_upstreams (workspace_id, account_id, url, auth_string_enc, created, updated, operator_bound, \
         ca_pem, client_cert_pem, client_key_enc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (workspace_id) DO UPDATE SET url = $3, auth_string_enc = $4, updated = $6, operator_bound = $7, \
         ca_pem = $8, client_cert_pem = $9, client_key_enc = $10",
    )
    .bind(u.workspace_id.to_string())
    .bind(u.account_id.to_string())
    .bind(&u.url)
    .bind(u.auth_string_enc.clone())
    .bind(micros(u.created))
    .bind(micros(u.updated))
    .bind(i64::from(u.operator_bound))
    .bind(u.ca_pem.clone())
    .bind(u.client_cert_pem.clone())
    .bind(u.client_key_enc.clone())
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn find_upstream(
    c: &mut Conn,
    account: AccountId,
    workspace: WorkspaceId,
) -> Result<Option<UpstreamRow>, Error> {
    sqlx::query(&format!(
        "SELECT {COLS} FROM workspace_upstreams WHERE account_id = $1 AND workspace_id = $2"
    ))
    .bind(account.to_string())
    .bind(workspace.to_string())
    .fetch_optional(&mut *c)
    .await?
    .map(|r| row_from(&r))
    .transpose()
}

/// Every upstream of an account.
pub async fn find_account_upstreams(
    c: &mut Conn,
    account: AccountId,
) -> Result<Vec<UpstreamRow>, Error> {
    sqlx::query(&format!(
        "SELECT {COLS} FROM workspace_upstreams WHERE account_id = $1"
    ))
    .bind(account.to_string())
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(row_from)
    .collect()
}

/// Removes a workspace's upstream; true when there was one.
pub async fn delete_upstream(
    c: &mut AccessTx<'_>,
    account: AccountId,
    workspace: WorkspaceId,
) -> Result<bool, Error> {
    let c: &mut Conn = c;
    Ok(
        sqlx::query("DELETE FROM workspace_upstreams WHERE account_id = $1 AND workspace_id = $2")
            .bind(account.to_string())
            .bind(workspace.to_string())
            .execute(&mut *c)
            .await?
            .rows_affected()
            > 0,
    )
}
