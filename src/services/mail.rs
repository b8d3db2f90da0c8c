//! Email: messages are written to the outbox table inside the transaction of the change that
//! causes them, and a background worker delivers them over SMTP with retries and backoff. Without
//! SMTP configured, messages are written to the log so a local user can still follow the link.

use crate::app::App;
use crate::domain::AccountId;
use crate::services::{Error, Result};
use crate::store::{self, invitations::OutboxMessage};
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::sync::Arc;
use uuid::Uuid;

/// Gives up on a message after this many attempts (about 4 hours of backoff in all).
pub const MAX_ATTEMPTS: i64 = 8;

/// The SMTP connection (if configured) and a wake-up signal for the worker.
#[derive(Clone)]
pub struct Mailer {
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    pub wake: Arc<tokio::sync::Notify>,
}

impl Mailer {
    pub fn new(smtp_url: Option<&str>, from: &str) -> anyhow::Result<Mailer> {
        let transport = smtp_url
            .map(|u| {
                AsyncSmtpTransport::<Tokio1Executor>::from_url(u)
                    .map(|b| b.timeout(Some(std::time::Duration::from_secs(20))).build())
                    .map_err(|e| anyhow::anyhow!("invalid SMTP URL: {e}"))
            })
            .transpose()?;
        Ok(Mailer {
            transport,
            from: from
                .parse()
                .map_err(|e| anyhow::anyhow!("invalid sender address: {e}"))?,
            wake: Arc::new(tokio::sync::Notify::new()),
        })
    }
}

/// An email to queue.
pub struct NewEmail<'a> {
    pub account: Option<AccountId>,
    pub invitation: Option<Uuid>,
    pub to: &'a str,
    pub subject: String,
    pub text: String,
    pub html: String,
}

const BODY_PURPOSE: &str = "atrium/outbox-body/v1";
/// Marks a sealed body (rows written before bodies were sealed hold plain text).
const SEALED: &str = "sealed:";

/// A message body as the outbox stores it: sealed (`credentials::seal`), since bodies carry
/// invitation and confirmation links — secrets that must never sit in the database files in
/// clear, not even in the write-ahead log or a free page after the row is erased.
fn seal_body(app: &App, body: &str) -> String {
    format!(
        "{SEALED}{}",
        crate::services::credentials::seal(&app.audit_key, BODY_PURPOSE, body.as_bytes())
    )
}

/// The body of an outbox row (plain text for rows from before sealing).
pub fn open_body(app: &App, stored: &str) -> Result<String> {
    match stored.strip_prefix(SEALED) {
        None => Ok(stored.to_string()),
        Some(sealed) => crate::services::credentials::unseal(&app.audit_key, BODY_PURPOSE, sealed)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                Error::Unexpected(anyhow::anyhow!(
                    "an outbox body does not decrypt with this installation's key"
                ))
            }),
    }
}

impl<'a> NewEmail<'a> {
    /// A message to a user about their own user (no account, no invitation).
    pub fn personal(to: &'a str, subject: &str, text: String, html: String) -> NewEmail<'a> {
        NewEmail {
            account: None,
            invitation: None,
            to,
            subject: subject.to_string(),
            text,
            html,
        }
    }
}

/// Queues a message inside `tx` (sent after commit).
pub async fn enqueue(app: &App, tx: &mut store::Conn, e: NewEmail<'_>) -> Result<()> {
    let m = OutboxMessage {
        id: Uuid::new_v4(),
        account_id: e.account,
        invitation_id: e.invitation,
        to: e.to.to_string(),
        subject: e.subject,
        body_text: seal_body(app, &e.text),
        body_html: seal_body(app, &e.html),
        attempts: 0,
    };
    store::invitations::insert_message(tx, &m, app.now()).await?;
    Ok(())
}

fn build(from: &Mailbox, m: &OutboxMessage) -> std::result::Result<Message, String> {
    let to: Mailbox = m.to.parse().map_err(|e| format!("bad recipient: {e}"))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(&m.subject)
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(m.body_text.clone()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(m.body_html.clone()),
                ),
        )
        .map_err(|e| format!("building the message: {e}"))
}

/// Sends every message that is due. Returns (sent, failed attempts).
/// Wakes the outbox after a commit that queued email: at once on this server, and on
/// PostgreSQL on the server that leads the jobs (best effort: the leader also polls every 5 s).
pub fn wake(app: &App) {
    app.mailer.wake.notify_one();
    if app.store.engine == crate::store::Engine::Postgres {
        let app = app.clone();
        tokio::spawn(async move {
            if let Ok(mut c) = app.store.reader().await {
                let _ = store::nodes::announce(&mut c, crate::store::dialect::OUTBOX_CHANNEL).await;
            }
        });
    }
}

pub async fn deliver_due(app: &App) -> Result<(usize, usize)> {
    let due = {
        let mut c = app.store.reader().await?;
        store::invitations::find_due(&mut c, app.now(), 50).await?
    };
    let (mut sent, mut failed) = (0, 0);
    for mut m in due {
        // Claimed before it is sent: a message is sent by one server even when two ever run the
        // outbox at once (a leader that lost its lock and has not noticed yet). A server that
        // dies mid-send leaves it to be retried once the claim lapses.
        let claimed = {
            let mut tx = crate::services::unit::Unit::begin(app).await?;
            let ok =
                store::invitations::claim_message(&mut tx, m.id, app.now(), app.now() + CLAIM_FOR)
                    .await?;
            tx.commit().await?;
            ok
        };
        if !claimed {
            continue;
        }
        let opened = open_body(app, &m.body_text)
            .and_then(|t| Ok((t, open_body(app, &m.body_html)?)))
            .map(|(t, h)| {
                m.body_text = t;
                m.body_html = h;
            });
        let outcome = match &app.mailer.transport {
            _ if opened.is_err() => {
                Err("the body does not decrypt with this installation's key".into())
            }
            None => {
                tracing::warn!(
                    to = %m.to,
                    subject = %m.subject,
                    "no SMTP server configured (ATRIUM_SMTP_URL); the email follows:\n{}",
                    m.body_text
                );
                Ok(())
            }
            Some(t) => match build(&app.mailer.from, &m) {
                Ok(msg) => t.send(msg).await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e),
            },
        };
        let mut tx = crate::services::unit::Unit::begin(app).await?;
        match outcome {
            Ok(()) => {
                store::invitations::mark_sent(&mut tx, m.id, app.now()).await?;
                sent += 1;
            }
            Err(e) => {
                let attempts = m.attempts + 1;
                let next = (attempts < MAX_ATTEMPTS).then(|| app.now() + backoff(attempts));
                tracing::warn!(to = %m.to, attempts, error = %e, "sending email failed");
                store::invitations::mark_failed(&mut tx, m.id, &e, next).await?;
                failed += 1;
            }
        }
        tx.commit().await?;
    }
    Ok((sent, failed))
}

/// How long a claimed message is left to the server sending it before another retries it.
const CLAIM_FOR: chrono::Duration = chrono::Duration::minutes(5);

/// 30 s, 1 min, 2 min, … capped at 1 hour.
pub fn backoff(attempts: i64) -> chrono::Duration {
    chrono::Duration::seconds((30i64 << (attempts - 1).clamp(0, 7)).min(3600))
}

impl From<lettre::error::Error> for Error {
    fn from(e: lettre::error::Error) -> Self {
        Error::Unexpected(anyhow::anyhow!("email: {e}"))
    }
}
