//! This server among the others sharing its database: its readiness for traffic, the node
//! registry (a heartbeat row per live server, from which each server takes its share of the
//! rate-limit budget when there is no Redis), and whether it leads the jobs that run once.

use crate::app::App;
use crate::services::Result;
use crate::store;
use crate::store::Engine;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::time::Duration;

/// How often a server records that it is alive, and how long after its last record it still
/// counts as live.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
pub const LIVE_FOR: Duration = Duration::from_secs(15);

/// What this server knows of its own state.
pub struct NodeState {
    pub started: crate::domain::Time,
    /// Shutdown began: readiness answers 503 so load balancers stop sending.
    pub stopping: AtomicBool,
    /// PostgreSQL: a change listener was started (by `jobs::spawn_listener`), and it is
    /// connected (without it, changes made elsewhere wait for the sweep).
    pub listener_started: AtomicBool,
    pub listening: AtomicBool,
    /// This server runs the jobs that run once.
    pub leading: AtomicBool,
    /// Live servers in the registry, this one included (at least 1).
    pub live: AtomicU32,
}

impl NodeState {
    pub fn new(started: crate::domain::Time) -> NodeState {
        NodeState {
            started,
            stopping: AtomicBool::new(false),
            listener_started: AtomicBool::new(false),
            listening: AtomicBool::new(false),
            leading: AtomicBool::new(false),
            live: AtomicU32::new(1),
        }
    }
}

/// One readiness check's outcome.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// `GET /api/ready`: every check, and whether all passed.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub node_id: String,
    pub version: &'static str,
    pub checks: Vec<Check>,
}

/// Whether this server should get traffic: the database answers, its migrations are the ones
/// this build expects (or newer, during a rolling upgrade), the permission index is loaded and
/// kept current (PostgreSQL: the change listener is connected), and shutdown has not begun.
pub async fn readiness(app: &App) -> Readiness {
    let mut checks = Vec::with_capacity(4);
    let level = async {
        let mut c = app.store.reader().await?;
        store::nodes::migration_level(&mut c).await
    };
    match tokio::time::timeout(Duration::from_secs(2), level).await {
        Ok(Ok(level)) => {
            checks.push(Check {
                name: "database",
                ok: true,
                detail: format!("{:?} answers", app.store.engine),
            });
            let known = app.store.known_migration_level();
            checks.push(Check {
                name: "migrations",
                ok: level >= known,
                detail: if level >= known {
                    format!("at {level} (this build needs {known})")
                } else {
                    format!("at {level}, this build needs {known}: run `atrium migrate`")
                },
            });
        }
        Ok(Err(e)) => checks.push(Check {
            name: "database",
            ok: false,
            detail: format!("unreachable: {e}"),
        }),
        Err(_) => checks.push(Check {
            name: "database",
            ok: false,
            detail: "no answer within 2 s".into(),
        }),
    }
    let listening = app.store.engine == Engine::Sqlite
        || !app.node.listener_started.load(Relaxed)
        || app.node.listening.load(Relaxed);
    checks.push(Check {
        name: "permission_index",
        ok: listening,
        detail: if listening {
            // Unauthenticated callers read this: no counts of anything.
            "loaded and kept current".to_string()
        } else {
            "the change listener is reconnecting: changes made on other servers may be missed"
                .into()
        },
    });
    let stopping = app.node.stopping.load(Relaxed);
    checks.push(Check {
        name: "shutdown",
        ok: !stopping,
        detail: if stopping { "shutting down" } else { "serving" }.into(),
    });
    Readiness {
        ready: checks.iter().all(|c| c.ok),
        node_id: app.config.node_id.clone(),
        version: env!("CARGO_PKG_VERSION"),
        checks,
    }
}

/// Records this server as live and reads how many are (the budget share without Redis).
pub async fn heartbeat(app: &App) -> Result<u32> {
    let now = app.now();
    let mut tx = app.store.begin().await?;
    store::nodes::heartbeat(
        &mut tx,
        &app.config.node_id,
        env!("CARGO_PKG_VERSION"),
        app.node.started,
        now,
    )
    .await?;
    let live = store::nodes::live(
        &mut tx,
        now - chrono::Duration::from_std(LIVE_FOR).unwrap_or_default(),
    )
    .await?
    .len();
    let _ = tx.commit().await?;
    let live = u32::try_from(live).unwrap_or(u32::MAX).max(1);
    app.node.live.store(live, Relaxed);
    Ok(live)
}

/// Removes this server from the registry at a clean shutdown (and rows of servers gone for an
/// hour).
pub async fn leave(app: &App) -> Result<()> {
    let mut tx = app.store.begin().await?;
    store::nodes::forget(
        &mut tx,
        &app.config.node_id,
        app.now() - chrono::Duration::hours(1),
    )
    .await?;
    let _ = tx.commit().await?;
    Ok(())
}

/// The servers seen within [`LIVE_FOR`] (for `atrium nodes`).
pub async fn live_nodes(app: &App) -> Result<Vec<store::nodes::Node>> {
    let mut c = app.store.reader().await?;
    Ok(store::nodes::live(
        &mut c,
        app.now() - chrono::Duration::from_std(LIVE_FOR).unwrap_or_default(),
    )
    .await?)
}

/// Job leadership held on a connection of its own (PostgreSQL): the lock lives as long as the
/// connection, so a leader that dies hands leadership on with it.
pub struct Leadership(store::Conn);

impl Leadership {
    /// Takes job leadership if no other server holds it (`None`: another does). The database
    /// ends the lock's session when it hears nothing for `idle_limit_secs`.
    pub async fn claim(app: &App, idle_limit_secs: u64) -> Result<Option<Leadership>> {
        let mut conn = app.store.dedicated().await?;
        Ok(store::nodes::try_lead(&mut conn, idle_limit_secs)
            .await?
            .then_some(Leadership(conn)))
    }

    /// True while the lock's connection is alive (and so the lock held).
    pub async fn held(&mut self) -> bool {
        store::nodes::still_leading(&mut self.0).await
    }
}

/// SQLite: notices commits made by other processes (the CLI) through the database's
/// `data_version`, read on a connection of its own.
#[derive(Default)]
pub struct CommitWatch {
    conn: Option<store::Conn>,
    last: Option<i64>,
}

impl CommitWatch {
    /// True when another connection committed since the last call — and at the first call, which
    /// cannot tell what changed before it. Errors drop the connection (reopened next time).
    pub async fn moved(&mut self, app: &App) -> Result<bool> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(app.store.dedicated().await?),
        };
        match store::nodes::data_version(conn).await {
            Ok(v) => Ok(self.last.replace(v) != Some(v)),
            Err(e) => {
                self.conn = None;
                Err(e.into())
            }
        }
    }
}
