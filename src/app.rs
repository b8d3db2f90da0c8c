//! `App`: everything a request or command needs — config, store, clock, permission index, key
//! cache, password hasher. Cloned cheaply (all shared state is behind `Arc`).

use crate::authz::Index;
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

#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub index: Arc<Index>,
    pub keys: Arc<KeyCache>,
    pub hasher: PasswordHasher,
    pub throttle: Arc<crate::services::auth::LoginThrottle>,
}

impl App {
    /// Builds the app over a migrated store and loads the permission index.
    pub async fn new(config: Config, store: Store, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        let app = App {
            config: Arc::new(config),
            store,
            clock,
            index: Arc::new(Index::new()),
            keys: Arc::new(KeyCache::default()),
            hasher: PasswordHasher::new(2),
            throttle: Arc::default(),
        };
        crate::services::index::load_all(&app).await?;
        Ok(app)
    }

    pub fn now(&self) -> Time {
        self.clock.now()
    }
}
