//! Background jobs that run inside `atrium serve`: keeping the permission index and the key cache
//! in step with changes made by other processes, and recording when keys were last used.

use crate::app::App;
use crate::services::index;
use crate::store::dialect::{Engine, ACCESS_CHANNEL, KEYS_CHANNEL};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often every process compares its snapshots' access versions with the database. Bounds how
/// long a change made by another process can go unseen when no notification arrives (SQLite, or a
/// dropped PostgreSQL connection).
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// Starts the jobs; they end when the runtime shuts down.
pub fn spawn(app: &App) -> Vec<JoinHandle<()>> {
    let mut jobs = vec![
        tokio::spawn(sweep(app.clone())),
        tokio::spawn(flush_key_use(app.clone())),
        tokio::spawn(audit_checkpoints(app.clone())),
        tokio::spawn(audit_retention(app.clone())),
        tokio::spawn(outbox(app.clone())),
        tokio::spawn(sweep_expired(app.clone())),
        tokio::spawn(reverify_domains(app.clone())),
        tokio::spawn(run_retention(app.clone())),
        tokio::spawn(prune_upstream_pool(app.clone())),
    ];
    if let Some(listener) = spawn_listener(app) {
        jobs.push(listener);
    }
    jobs
}

/// Starts the change listener alone (PostgreSQL only).
pub fn spawn_listener(app: &App) -> Option<JoinHandle<()>> {
    (app.store.engine == Engine::Postgres).then(|| tokio::spawn(listen(app.clone())))
}

async fn sweep(app: App) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match index::refresh_stale(&app).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(accounts = n, "permission index: rebuilt stale snapshots"),
            Err(e) => tracing::warn!(error = %e, "permission index sweep failed"),
        }
    }
}

/// Deletes expired flow runs through every bound upstream, and forgets full rate-limit cells.
async fn run_retention(app: App) {
    if app.config.run_retention_seconds == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(app.config.run_retention_seconds));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        app.limiter.prune(app.now().timestamp_micros());
        for (account, _) in app.upstreams.bound_accounts() {
            let account = crate::domain::AccountId(account);
            if let Err(e) = crate::services::retention::apply(&app, None, account, false).await {
                tracing::warn!(%account, error = %e, "run retention failed");
            }
        }
    }
}

/// Signs every audit chain's head that moved since its last checkpoint.
async fn audit_checkpoints(app: App) {
    let mut tick = tokio::time::interval(Duration::from_secs(app.config.audit_checkpoint_seconds));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match crate::services::audit::checkpoint_all(&app).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(chains = n, "audit checkpoints signed"),
            Err(e) => tracing::warn!(error = %e, "signing audit checkpoints failed"),
        }
    }
}

/// Hourly: deletes audit events older than each account's retention (a signed checkpoint at the
/// cut keeps the rest verifiable).
async fn audit_retention(app: App) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match crate::services::audit::prune_all(&app).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "audit retention: deleted old events"),
            Err(e) => tracing::warn!(error = %e, "audit retention failed"),
        }
    }
}

/// Every minute: deletes grants and team memberships whose expiry passed (they stopped counting
/// at their instant already; this only tidies up).
async fn sweep_expired(app: App) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match crate::services::grants::sweep_expired(&app).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "removed expired grants and team memberships"),
            Err(e) => tracing::warn!(error = %e, "sweeping expired grants failed"),
        }
    }
}

/// Hourly: checks every verified SSO domain's DNS record again; one missing for longer than the
/// grace period un-verifies its domain.
async fn reverify_domains(app: App) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match crate::services::sso::reverify_domains(&app).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                domains = n,
                "SSO domains un-verified: their DNS record is gone"
            ),
            Err(e) => tracing::warn!(error = %e, "re-verifying SSO domains failed"),
        }
    }
}

/// Sends queued email as soon as it is queued (or every 5 s, for retries and other processes).
async fn outbox(app: App) {
    loop {
        match crate::services::mail::deliver_due(&app).await {
            Ok((0, 0)) => {}
            Ok((sent, failed)) => tracing::info!(sent, failed, "outbox"),
            Err(e) => tracing::warn!(error = %e, "outbox delivery failed"),
        }
        tokio::select! {
            _ = app.mailer.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Writes the batched last-used times of API keys every 30 s (never on the request path).
async fn flush_key_use(app: App) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = crate::services::auth::flush_key_use(&app).await {
            tracing::warn!(error = %e, "recording API key use failed");
        }
    }
}

/// PostgreSQL: reload an account's snapshot as soon as another process announces a change, and
/// forget revoked keys. Reconnects after errors and then sweeps, to cover what was missed.
async fn listen(app: App) {
    loop {
        match listen_once(&app).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "change listener disconnected; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = index::refresh_stale(&app).await;
            }
        }
    }
}

async fn listen_once(app: &App) -> anyhow::Result<()> {
    let mut listener = sqlx::postgres::PgListener::connect(&app.config.database_url).await?;
    listener.listen_all([ACCESS_CHANNEL, KEYS_CHANNEL]).await?;
    loop {
        let n = listener.recv().await?;
        let Ok(id) = uuid::Uuid::try_parse(n.payload()) else {
            continue;
        };
        if n.channel() == ACCESS_CHANNEL {
            if let Err(e) = index::reload_account(app, crate::domain::AccountId(id)).await {
                tracing::warn!(error = %e, account = %id, "reloading announced account failed");
            }
        } else {
            app.keys.remove_key(crate::domain::ApiKeyId(id));
        }
    }
}

/// Closes the gateway's idle upstream connections that timed out or were closed by the upstream.
async fn prune_upstream_pool(app: App) {
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        app.upstream_pool.prune();
    }
}
