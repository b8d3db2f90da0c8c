//! Background jobs that run inside `atrium serve`. Some run on every server: keeping the
//! permission index and the key cache in step with changes made by other processes, recording
//! when keys were last used, the node heartbeat. The others must run on one server at a time
//! (email outbox, audit checkpoints and retention, run retention, expiry sweeps, DNS
//! re-verification): on PostgreSQL the server holding the jobs lock (a session advisory lock)
//! runs them, and another takes over within seconds when it dies.

use crate::app::App;
use crate::metrics::Job;
use crate::services::{index, node};
use crate::store::dialect::{Engine, ACCESS_CHANNEL, KEYS_CHANNEL, OUTBOX_CHANNEL};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often every process compares its snapshots' access versions with the database. Bounds how
/// long a change made by another process can go unseen when no notification arrives (a dropped
/// PostgreSQL connection).
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// SQLite: how often the server asks whether another process (the CLI) committed, which is
/// what bounds how long a CLI change takes to reach it.
pub const SQLITE_WATCH_EVERY: Duration = Duration::from_millis(200);

/// How often a server that does not lead asks for the jobs lock, and how often the leader checks
/// that its lock's connection is alive. A dead leader's lock ends with its connection; the
/// takeover then waits at most [`CLAIM_EVERY`].
pub const CLAIM_EVERY: Duration = Duration::from_secs(2);
pub const LEADER_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The database ends a leader's session it has not heard from for this long (a leader that
/// vanished without closing its connection), so another server leads within 10 s.
pub const LEADER_IDLE_LIMIT_SECS: u64 = 6;

/// Starts the jobs; they end when the runtime shuts down.
pub fn spawn(app: &App) -> Vec<JoinHandle<()>> {
    let mut jobs = vec![
        tokio::spawn(sweep(app.clone())),
        tokio::spawn(flush_key_use(app.clone())),
        tokio::spawn(prune_upstream_pool(app.clone())),
        tokio::spawn(heartbeat(app.clone())),
        spawn_leadership(app),
    ];
    if app.store.engine == Engine::Sqlite {
        jobs.push(spawn_sqlite_watch(app));
    }
    if let Some(listener) = spawn_listener(app) {
        jobs.push(listener);
    }
    jobs
}

/// Starts the change listener alone (PostgreSQL only).
pub fn spawn_listener(app: &App) -> Option<JoinHandle<()>> {
    (app.store.engine == Engine::Postgres).then(|| {
        app.node.listener_started.store(true, Relaxed);
        tokio::spawn(listen(app.clone()))
    })
}

/// Tasks that end when this value is dropped (so a leadership loop that is itself stopped
/// stops the jobs it started).
struct Running(Vec<JoinHandle<()>>);

impl Drop for Running {
    fn drop(&mut self) {
        for j in &self.0 {
            j.abort();
        }
    }
}

/// The jobs that must run on one server at a time.
fn spawn_singletons(app: &App) -> Running {
    Running(vec![
        tokio::spawn(audit_checkpoints(app.clone())),
        tokio::spawn(audit_retention(app.clone())),
        tokio::spawn(outbox(app.clone())),
        tokio::spawn(sweep_expired(app.clone())),
        tokio::spawn(reverify_domains(app.clone())),
        tokio::spawn(run_retention(app.clone())),
    ])
}

/// Starts the leadership loop alone (tests run it on several apps of one database).
pub fn spawn_leadership(app: &App) -> JoinHandle<()> {
    tokio::spawn(lead(app.clone()))
}

/// Runs the singleton jobs while this server leads. SQLite has one server: it always leads.
/// On PostgreSQL, leadership is a session advisory lock held on a connection of its own.
async fn lead(app: App) {
    if app.store.engine == Engine::Sqlite {
        app.node.leading.store(true, Relaxed);
        // Held until the runtime ends.
        let _jobs = spawn_singletons(&app);
        return std::future::pending().await;
    }
    loop {
        match node::Leadership::claim(&app, LEADER_IDLE_LIMIT_SECS).await {
            Ok(Some(mut lock)) => {
                tracing::info!(node = %app.config.node_id, "leading the jobs that run once");
                app.node.leading.store(true, Relaxed);
                let jobs = spawn_singletons(&app);
                while lock.held().await {
                    tokio::time::sleep(LEADER_CHECK_EVERY).await;
                }
                drop(jobs);
                app.node.leading.store(false, Relaxed);
                tracing::warn!(
                    node = %app.config.node_id,
                    "lost the jobs lock's connection; stopped the jobs that run once"
                );
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "asking for the jobs lock failed"),
        }
        tokio::time::sleep(CLAIM_EVERY).await;
    }
}

/// Records this server in the node registry every few seconds (and forgets full rate-limit
/// cells).
async fn heartbeat(app: App) {
    let mut tick = tokio::time::interval(node::HEARTBEAT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = node::heartbeat(&app).await {
            tracing::warn!(error = %e, "node heartbeat failed");
        }
        app.limiter.prune(app.now().timestamp_micros());
    }
}

/// Starts the SQLite change watch alone (tests).
pub fn spawn_sqlite_watch(app: &App) -> JoinHandle<()> {
    tokio::spawn(watch_sqlite(app.clone()))
}

/// SQLite: another process (the CLI) committed when the database's `data_version` moved; the
/// stale snapshots are then rebuilt at once instead of at the next sweep.
async fn watch_sqlite(app: App) {
    let mut watch = node::CommitWatch::default();
    loop {
        if let Ok(true) = watch.moved(&app).await {
            if let Err(e) = index::refresh_stale(&app).await {
                tracing::warn!(error = %e, "permission index refresh failed");
            }
        }
        tokio::time::sleep(SQLITE_WATCH_EVERY).await;
    }
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

/// Deletes expired flow runs through every bound upstream.
async fn run_retention(app: App) {
    if app.config.run_retention_seconds == 0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(app.config.run_retention_seconds));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        app.metrics.job_ran(Job::RunRetention);
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
        app.metrics.job_ran(Job::AuditCheckpoints);
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
        app.metrics.job_ran(Job::AuditRetention);
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
        app.metrics.job_ran(Job::ExpirySweep);
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
        app.metrics.job_ran(Job::DomainReverification);
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
        app.metrics.job_ran(Job::Outbox);
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
                app.node.listening.store(false, Relaxed);
                tracing::warn!(error = %e, "change listener disconnected; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
                // Announcements made meanwhile were lost: keys revoked elsewhere are verified
                // again, and stale snapshots rebuilt.
                app.keys.clear();
                let _ = index::refresh_stale(&app).await;
            }
        }
    }
}

async fn listen_once(app: &App) -> anyhow::Result<()> {
    let mut listener = sqlx::postgres::PgListener::connect(&app.config.database_url).await?;
    listener
        .listen_all([ACCESS_CHANNEL, KEYS_CHANNEL, OUTBOX_CHANNEL])
        .await?;
    app.node.listening.store(true, Relaxed);
    loop {
        let n = listener.recv().await?;
        if n.channel() == OUTBOX_CHANNEL {
            app.mailer.wake.notify_one();
            continue;
        }
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
