//! Invitations and the email outbox.

use super::Error;
use super::{get_opt_uuid, get_uuid, micros, time, Arg, Conn, Sql};
use crate::domain::role::AccountRole;
use crate::domain::{AccountId, RoleId, Time, UserId, WorkspaceId};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

/// An invitation as stored (the token only as its hash).
#[derive(Debug, Clone)]
pub struct InvitationRow {
    pub id: Uuid,
    pub account_id: AccountId,
    pub email: String,
    pub account_role: AccountRole,
    pub workspace_id: Option<WorkspaceId>,
    pub workspace_role_id: Option<RoleId>,
    pub status: String,
    pub expires_at: Time,
    pub invited_by: Option<UserId>,
    pub created: Time,
    pub updated: Time,
}

const COLS: &str = "id, account_id, email, account_role, workspace_id, workspace_role_id, status, \
                    expires_at, invited_by, created, updated";

fn row_from(r: &AnyRow) -> Result<InvitationRow, Error> {
    Ok(InvitationRow {
        id: get_uuid(r, "id")?,
        account_id: AccountId(get_uuid(r, "account_id")?),
        email: r.try_get("email")?,
        account_role: super::get_account_role(r, "account_role")?,
        workspace_id: get_opt_uuid(r, "workspace_id")?.map(WorkspaceId),
        workspace_role_id: get_opt_uuid(r, "workspace_role_id")?.map(RoleId),
        status: r.try_get("status")?,
        expires_at: time(r.try_get("expires_at")?),
        invited_by: get_opt_uuid(r, "invited_by")?.map(UserId),
        created: time(r.try_get("created")?),
        updated: time(r.try_get("updated")?),
    })
}

pub async fn insert_invitation(
    c: &mut Conn,
    i: &InvitationRow,
    token_hash: &str,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO invitations (id, account_id, email, email_lower, account_role, workspace_id, \
         workspace_role_id, status, token_hash, expires_at, invited_by, created, updated) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(i.id.to_string())
    .bind(i.account_id.to_string())
    .bind(&i.email)
    .bind(i.email.to_lowercase())
    .bind(i.account_role.code())
    .bind(i.workspace_id.map(|w| w.to_string()))
    .bind(i.workspace_role_id.map(|r| r.to_string()))
    .bind(&i.status)
    .bind(token_hash)
    .bind(micros(i.expires_at))
    .bind(i.invited_by.map(|u| u.to_string()))
    .bind(micros(i.created))
    .bind(micros(i.updated))
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn find_invitation(
    c: &mut Conn,
    account: AccountId,
    id: Uuid,
) -> Result<Option<InvitationRow>, Error> {
    sqlx::query(&format!(
        "SELECT {COLS} FROM invitations WHERE account_id = $1 AND id = $2"
    ))
    .bind(account.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut *c)
    .await?
    .map(|r| row_from(&r))
    .transpose()
}

/// The invitation with this id and token hash, whatever its account (the token is the proof).
pub async fn find_by_token(
    c: &mut Conn,
    id: Uuid,
    token_hash: &str,
) -> Result<Option<InvitationRow>, Error> {
    sqlx::query(&format!(
        "SELECT {COLS} FROM invitations WHERE id = $1 AND token_hash = $2"
    ))
    .bind(id.to_string())
    .bind(token_hash)
    .fetch_optional(&mut *c)
    .await?
    .map(|r| row_from(&r))
    .transpose()
}

/// Filters for listing.
#[derive(Debug, Default, Clone)]
pub struct InvitationFilter {
    pub statuses: Option<Vec<String>>,
    pub emails: Option<Vec<String>>,
    pub workspace: Option<WorkspaceId>,
}

fn filtered(base: &str, account: AccountId, f: &InvitationFilter, now: Time) -> Sql {
    let mut s = Sql::new(base);
    s.push(" WHERE account_id = ?", [Arg::Text(account.to_string())]);
    if let Some(w) = f.workspace {
        s.push(" AND workspace_id = ?", [Arg::Text(w.to_string())]);
    }
    if let Some(e) = &f.emails {
        let lower: Vec<String> = e.iter().map(|x| x.to_lowercase()).collect();
        s.and_in("email_lower", &lower);
    }
    if let Some(st) = &f.statuses {
        // `expired` is a pending invitation past its expiry.
        let mut parts = Vec::new();
        let mut args = Vec::new();
        for status in st {
            match status.as_str() {
                "expired" => {
                    parts.push("(status = 'pending' AND expires_at <= ?)".to_string());
                    args.push(Arg::Int(micros(now)));
                }
                "pending" => {
                    parts.push("(status = 'pending' AND expires_at > ?)".to_string());
                    args.push(Arg::Int(micros(now)));
                }
                other => {
                    parts.push("status = ?".to_string());
                    args.push(Arg::Text(other.to_string()));
                }
            }
        }
        if parts.is_empty() {
            s.push(" AND 1 = 0", []);
        } else {
            s.push(&format!(" AND ({})", parts.join(" OR ")), args);
        }
    }
    s
}

pub async fn find_invitations(
    c: &mut Conn,
    account: AccountId,
    f: &InvitationFilter,
    now: Time,
    limit: i64,
    offset: i64,
) -> Result<Vec<InvitationRow>, Error> {
    let mut s = filtered(&format!("SELECT {COLS} FROM invitations"), account, f, now);
    s.push(
        " ORDER BY created DESC, id LIMIT ? OFFSET ?",
        [Arg::Int(limit), Arg::Int(offset)],
    );
    s.query()
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(row_from)
        .collect()
}

pub async fn count_invitations(
    c: &mut Conn,
    account: AccountId,
    f: &InvitationFilter,
    now: Time,
) -> Result<i64, Error> {
    Ok(
        filtered("SELECT COUNT(*) AS n FROM invitations", account, f, now)
            .query()
            .fetch_one(&mut *c)
            .await?
            .try_get("n")?,
    )
}

/// Pending, unexpired invitations (they hold seats).
pub async fn count_pending(c: &mut Conn, account: AccountId, now: Time) -> Result<i64, Error> {
    Ok(sqlx::query("SELECT COUNT(*) AS n FROM invitations WHERE account_id = $1 AND status = 'pending' AND expires_at > $2")
        .bind(account.to_string())
        .bind(micros(now))
        .fetch_one(&mut *c)
        .await?
        .try_get("n")?)
}

/// Moves a pending, unexpired invitation to `status`; false when it was not pending any more (the
/// single-use claim: only one caller can win it).
pub async fn claim(
    c: &mut Conn,
    id: Uuid,
    token_hash: &str,
    status: &str,
    now: Time,
) -> Result<bool, Error> {
    let r = sqlx::query(
        "UPDATE invitations SET status = $3, updated = $4 \
         WHERE id = $1 AND token_hash = $2 AND status = 'pending' AND expires_at > $4",
    )
    .bind(id.to_string())
    .bind(token_hash)
    .bind(status)
    .bind(micros(now))
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Revokes a pending invitation of the account.
pub async fn revoke(c: &mut Conn, account: AccountId, id: Uuid, now: Time) -> Result<bool, Error> {
    let r = sqlx::query(
        "UPDATE invitations SET status = 'revoked', updated = $3 \
         WHERE account_id = $1 AND id = $2 AND status = 'pending'",
    )
    .bind(account.to_string())
    .bind(id.to_string())
    .bind(micros(now))
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Gives a pending invitation a new token and expiry (the old token stops working).
pub async fn renew(
    c: &mut Conn,
    account: AccountId,
    id: Uuid,
    token_hash: &str,
    expires_at: Time,
    now: Time,
) -> Result<bool, Error> {
    let r = sqlx::query(
        "UPDATE invitations SET token_hash = $3, expires_at = $4, updated = $5 \
         WHERE account_id = $1 AND id = $2 AND status = 'pending'",
    )
    .bind(account.to_string())
    .bind(id.to_string())
    .bind(token_hash)
    .bind(micros(expires_at))
    .bind(micros(now))
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() == 1)
}

// ---- outbox ----

/// A message to send.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub id: Uuid,
    pub account_id: Option<AccountId>,
    pub invitation_id: Option<Uuid>,
    pub to: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub attempts: i64,
}

pub async fn insert_message(c: &mut Conn, m: &OutboxMessage, now: Time) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO outbox (id, account_id, invitation_id, to_addr, subject, body_text, body_html, \
         status, attempts, next_attempt_at, created) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8)",
    )
    .bind(m.id.to_string())
    .bind(m.account_id.map(|a| a.to_string()))
    .bind(m.invitation_id.map(|i| i.to_string()))
    .bind(&m.to)
    .bind(&m.subject)
    .bind(&m.body_text)
    .bind(&m.body_html)
    .bind(micros(now))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Messages due for a (re)try.
pub async fn find_due(c: &mut Conn, now: Time, limit: i64) -> Result<Vec<OutboxMessage>, Error> {
    sqlx::query(
        "SELECT id, account_id, invitation_id, to_addr, subject, body_text, body_html, attempts FROM outbox \
         WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2",
    )
    .bind(micros(now))
    .bind(limit)
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(|r| {
        Ok(OutboxMessage {
            id: get_uuid(r, "id")?,
            account_id: get_opt_uuid(r, "account_id")?.map(AccountId),
            invitation_id: get_opt_uuid(r, "invitation_id")?,
            to: r.try_get("to_addr")?,
            subject: r.try_get("subject")?,
            body_text: r.try_get::<Option<String>, _>("body_text")?.unwrap_or_default(),
            body_html: r.try_get::<Option<String>, _>("body_html")?.unwrap_or_default(),
            attempts: r.try_get("attempts")?,
        })
    })
    .collect()
}

/// Claims a due message for sending until `until`; false when another server claimed it (or it
/// was sent or cancelled) since it was read.
pub async fn claim_message(c: &mut Conn, id: Uuid, now: Time, until: Time) -> Result<bool, Error> {
    let n = sqlx::query(
        "UPDATE outbox SET next_attempt_at = $3 \
         WHERE id = $1 AND status = 'pending' AND next_attempt_at <= $2",
    )
    .bind(id.to_string())
    .bind(micros(now))
    .bind(micros(until))
    .execute(&mut *c)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Marks a message sent and erases its body (it carries a one-time link).
pub async fn mark_sent(c: &mut Conn, id: Uuid, now: Time) -> Result<(), Error> {
    sqlx::query(
        "UPDATE outbox SET status = 'sent', attempts = attempts + 1, sent_at = $2, body_text = NULL, \
         body_html = NULL, last_error = NULL WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(micros(now))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Records a failed attempt: retried at `next`, or given up (`failed`) when `next` is `None`.
pub async fn mark_failed(
    c: &mut Conn,
    id: Uuid,
    error: &str,
    next: Option<Time>,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE outbox SET attempts = attempts + 1, last_error = $2, \
         status = CASE WHEN $3 = 1 THEN 'pending' ELSE 'failed' END, next_attempt_at = $4 WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(error)
    .bind(i64::from(next.is_some()))
    .bind(next.map(micros).unwrap_or(0))
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Drops unsent messages of an invitation (it was resent or revoked).
pub async fn cancel_for_invitation(c: &mut Conn, invitation: Uuid) -> Result<(), Error> {
    sqlx::query("DELETE FROM outbox WHERE invitation_id = $1 AND status = 'pending'")
        .bind(invitation.to_string())
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// The latest delivery state of an invitation's email: (status, attempts, last error).
pub async fn find_delivery(
    c: &mut Conn,
    invitation: Uuid,
) -> Result<Option<(String, i64, Option<String>)>, Error> {
    sqlx::query(
        "SELECT status, attempts, last_error FROM outbox WHERE invitation_id = $1 ORDER BY created DESC LIMIT 1",
    )
    .bind(invitation.to_string())
    .fetch_optional(&mut *c)
    .await?
    .map(|r| Ok((r.try_get("status")?, r.try_get("attempts")?, r.try_get("last_error")?)))
    .transpose()
}
