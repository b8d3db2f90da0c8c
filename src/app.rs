//! `App`: everything a request or command needs — config, store, clock, permission gate, key
//! cache, password hasher. Cloned cheaply (all shared state is behind `Arc`).

use crate::config::Config;
use crate::domain::Time;
use crate::services::credentials::{KeyCache, PasswordHasher};
use crate::store::Store;
use std::sync::{Arc, Mutex};

/// Source of the current time; tests use [`ManualClock`] instead of sleeping.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Time;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Time {
        // Stored timestamps have microsecond precision; answer with the same.
        chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6)
    }
}

/// A clock that only moves when told to.
pub struct ManualClock(Mutex<Time>);

impl ManualClock {
    pub fn new(start: Time) -> ManualClock {
        ManualClock(Mutex::new(start))
    }
    pub fn advance(&self, by: chrono::Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Time {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The application handle: one `Arc`, so the per-request clones (every extractor takes one) cost a
/// single reference-count increment rather than one per shared part.
#[derive(Clone)]
pub struct App(Arc<AppState>);

impl std::ops::Deref for App {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        &self.0
    }
}

/// What [`App`] holds.
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    /// The permission gate (it alone holds the permission index).
    pub gate: crate::services::gate::Gate,
    pub keys: Arc<KeyCache>,
    pub hasher: PasswordHasher,
    pub throttle: Arc<crate::services::auth::LoginThrottle>,
    /// Signs audit checkpoints.
    pub audit_key: Arc<ed25519_dalek::SigningKey>,
    pub mailer: crate::services::mail::Mailer,
    /// The first-run setup link's token, while the installation has no user.
    pub setup: Arc<crate::services::setup::SetupToken>,
    /// Upstreams, rate limits and retention of every account, for the workspace gateway.
    pub upstreams: Arc<crate::services::upstreams::Registry>,
    /// Rate limits: shared through Redis when configured, else a share per server.
    pub limiter: Arc<crate::services::ratelimit::Limits>,
    /// Prometheus counters and histograms.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The HTTP client the gateway forwards with: one keep-alive pool per upstream.
    pub upstream_client: crate::upstream::UpstreamClient,
    /// Idle upstream connections of the gateway's fast path.
    pub upstream_pool: crate::upstream::pool::UpstreamPool,
    /// Refusals waiting to be written to the audit log by their writer task.
    pub refusals: crate::services::audit::Refusals,
    /// The addresses this process's server listens on (set by `http::server::serve`).
    pub listening: Mutex<Vec<std::net::SocketAddr>>,
    /// Resolved upstream names.
    pub dns: crate::services::upstreams::DnsCache,
    /// Deployments' work pools, for delegation to a pool's access control list.
    pub deployment_pools: crate::services::object_acls::PoolCache,
    /// Files of the workspaces' Prefect UIs (`services::prefect_ui`).
    pub prefect_ui: crate::services::prefect_ui::UiCache,
    /// Held (as a receiver) by every open connection and relayed websocket: a stopping server
    /// waits for them all, up to its grace period.
    pub inflight: tokio::sync::watch::Sender<()>,
    /// This server among the others: readiness, leadership, live servers.
    pub node: crate::services::node::NodeState,
}

impl App {
    /// Builds the app over a migrated store and loads the permission index.
    pub async fn new(config: Config, store: Store, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        let started = clock.now();
        let audit_key = Arc::new(load_or_create_key(&config.audit_key_file)?);
        let mailer =
            crate::services::mail::Mailer::new(config.smtp_url.as_deref(), &config.smtp_from)?;
        let app = App(Arc::new(AppState {
            setup: Arc::default(),
            upstreams: Arc::default(),
            limiter: Arc::new(match &config.redis_url {
                Some(url) => crate::services::ratelimit::Limits::shared(url)
                    .map_err(|e| anyhow::anyhow!("ATRIUM_REDIS_URL: {e}"))?,
                None => crate::services::ratelimit::Limits::local(),
            }),
            metrics: Arc::default(),
            upstream_client: crate::upstream::upstream_client(),
            upstream_pool: Default::default(),
            mailer,
            audit_key,
            config: Arc::new(config),
            store,
            clock,
            gate: crate::services::gate::Gate::new(),
            keys: Arc::new(KeyCache::default()),
            hasher: PasswordHasher::new(2),
            throttle: Arc::default(),
            refusals: Default::default(),
            listening: Mutex::default(),
            dns: Default::default(),
            deployment_pools: Default::default(),
            prefect_ui: Default::default(),
            node: crate::services::node::NodeState::new(started),
            inflight: tokio::sync::watch::channel(()).0,
        }));
        crate::services::audit::start_refusal_writer(&app);
        crate::services::index::load_all(&app).await?;
        Ok(app)
    }

    /// A handle that does not keep the app alive (for tasks that should end with it).
    pub fn downgrade(&self) -> std::sync::Weak<AppState> {
        Arc::downgrade(&self.0)
    }

    /// The app of a [`App::downgrade`] handle, while it lives.
    pub fn upgrade(weak: &std::sync::Weak<AppState>) -> Option<App> {
        weak.upgrade().map(App)
    }

    pub fn now(&self) -> Time {
        self.clock.now()
    }
}

/// Reads the hex Ed25519 seed at `path`, or creates one (mode 0600) when the file is missing.
fn load_or_create_key(path: &std::path::Path) -> anyhow::Result<ed25519_dalek::SigningKey> {
    use anyhow::Context;
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = crate::services::credentials::unhex_bytes(text.trim())
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .with_context(|| format!("{} must hold 64 hex characters", path.display()))?;
            Ok(ed25519_dalek::SigningKey::from_bytes(&bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let hex = crate::services::credentials::hex_bytes(&key.to_bytes());
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            match opts.open(path) {
                Ok(mut f) => {
                    std::io::Write::write_all(&mut f, hex.as_bytes())
                        .with_context(|| format!("writing {}", path.display()))?;
                    tracing::info!(path = %path.display(), "created the audit checkpoint signing key");
                    Ok(key)
                }
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_key(path),
                Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
