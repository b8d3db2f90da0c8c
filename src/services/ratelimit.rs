//! Per-account rate limits in the two buckets of Prefect Cloud (§4.1 of the reference): API
//! requests, and logs + events. Each bucket is a GCRA ("generic cell rate algorithm") cell: one
//! integer per (account, bucket), the theoretical arrival time, so a limit of N per minute admits
//! up to N at once and then one every 60/N seconds.
//!
//! Where the cell lives ([`Limits`]): with Redis (`ATRIUM_REDIS_URL`), one cell per account for
//! the whole cluster, from which each server leases a few units at a time (the hot path takes
//! from its lease in memory; a refusal is remembered until the cell would admit again). Without
//! Redis, each server keeps its own cell with an equal share of the budget (the budget divided
//! by the live servers of the node registry). Redis unreachable: the same per-server share,
//! with a warning and a metric, never an error. See docs/ARCHITECTURE.md, "Rate limits across
//! servers".

use crate::store::shared_limits::{Lease, SharedLimits};
use rustc_hash::FxHashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use uuid::Uuid;

const WINDOW_US: i64 = 60_000_000;

/// The two buckets, named as Prefect Cloud names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    Api,
    LogsAndEvents,
}

impl Bucket {
    pub const ALL: [Bucket; 2] = [Bucket::Api, Bucket::LogsAndEvents];

    pub fn key(self) -> &'static str {
        match self {
            Bucket::Api => "orchestration-api",
            Bucket::LogsAndEvents => "logs-and-events",
        }
    }
}

/// Refused: retry after this many seconds (rounded up, at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

/// A bucket's state as account admins see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consumption {
    /// Units used in the current rolling minute (approximately: the GCRA debt).
    pub used: u64,
    pub limit_per_minute: u32,
    /// True when the next unit would be refused.
    pub exceeded: bool,
}

impl Consumption {
    /// A cell whose arrival time is `debt_us` ahead of now, at `per_minute`.
    fn of_debt(debt_us: i64, per_minute: u32) -> Consumption {
        let t = interval_us(per_minute);
        Consumption {
            used: (debt_us / t) as u64,
            limit_per_minute: per_minute,
            exceeded: debt_us + t > WINDOW_US,
        }
    }
}

#[derive(Default)]
pub struct Limiter {
    cells: Mutex<FxHashMap<(Uuid, Bucket), i64>>,
}

fn interval_us(per_minute: u32) -> i64 {
    (WINDOW_US / i64::from(per_minute.max(1))).max(1)
}

impl Limiter {
    /// Takes `cost` units from an account's bucket, or says when to retry. A batch larger than a
    /// whole minute's budget costs the whole budget: it is admitted only into a full bucket and
    /// empties it (so a large log batch is slowed down, never refused forever).
    pub fn take(
        &self,
        account: Uuid,
        bucket: Bucket,
        cost: u32,
        per_minute: u32,
        now_us: i64,
    ) -> Result<(), RetryAfter> {
        if cost == 0 {
            return Ok(());
        }
        let cost = cost.min(per_minute.max(1));
        let t = interval_us(per_minute);
        let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        let tat = cells
            .get(&(account, bucket))
            .copied()
            .unwrap_or(now_us)
            .max(now_us);
        let new_tat = tat.saturating_add(t.saturating_mul(i64::from(cost)));
        let allow_at = new_tat - WINDOW_US;
        if allow_at > now_us {
            let wait = (allow_at - now_us).min(WINDOW_US);
            return Err(RetryAfter((wait as u64).div_ceil(1_000_000).max(1)));
        }
        cells.insert((account, bucket), new_tat);
        Ok(())
    }

    /// The state of an account's bucket without taking anything.
    pub fn consumption(
        &self,
        account: Uuid,
        bucket: Bucket,
        per_minute: u32,
        now_us: i64,
    ) -> Consumption {
        let cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        let tat = cells
            .get(&(account, bucket))
            .copied()
            .unwrap_or(now_us)
            .max(now_us);
        Consumption::of_debt(tat - now_us, per_minute)
    }

    /// Forgets cells that are back to full (bounded memory over many accounts).
    pub fn prune(&self, now_us: i64) {
        let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        cells.retain(|_, tat| *tat > now_us);
    }
}

/// Units a server leases beyond what a call needs: 1 % of the budget (at most 100). A server
/// holds at most about 1.5 of these (a background refill starts below half), so the units held
/// unused by N servers stay within 1.5·N % of the budget.
fn prefetch(per_minute: u32) -> u32 {
    (per_minute / 100).min(100)
}

/// How long the server decides alone after Redis failed, before asking it again.
const DOWN_FOR_US: i64 = 2_000_000;

/// Units leased from the shared cell and not used yet, and a remembered refusal.
#[derive(Default, Clone, Copy)]
struct Held {
    units: u32,
    /// The shared cell refuses until then (µs).
    refused_until: i64,
    /// A lease is being fetched in the background.
    refilling: bool,
}

/// The rate limits of this server: shared through Redis when configured, else a share of the
/// budget per server.
pub struct Limits {
    /// Per-server cells (no Redis, or Redis down).
    pub local: Limiter,
    shared: Option<std::sync::Arc<SharedLimits>>,
    held: std::sync::Arc<Mutex<FxHashMap<(Uuid, Bucket), Held>>>,
    /// Redis failed: decide alone until then (µs).
    down_until: AtomicI64,
    down: AtomicBool,
    /// Decisions made per server because Redis failed.
    pub fallbacks: AtomicU64,
}

impl Limits {
    /// Per-server limits only.
    pub fn local() -> Limits {
        Limits {
            local: Limiter::default(),
            shared: None,
            held: Default::default(),
            down_until: AtomicI64::new(0),
            down: AtomicBool::new(false),
            fallbacks: AtomicU64::new(0),
        }
    }

    /// Limits shared through the Redis at `url` (connected on first use).
    pub fn shared(url: &str) -> anyhow::Result<Limits> {
        Ok(Limits {
            shared: Some(std::sync::Arc::new(SharedLimits::new(url)?)),
            ..Limits::local()
        })
    }

    /// True when budgets are shared through Redis (and Redis answers).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some() && !self.down.load(Relaxed)
    }

    /// Takes `cost` units from an account's bucket, or says when to retry. `servers`: live
    /// servers sharing the database, for the per-server share.
    pub async fn take(
        &self,
        account: Uuid,
        bucket: Bucket,
        cost: u32,
        per_minute: u32,
        now_us: i64,
        servers: u32,
    ) -> Result<(), RetryAfter> {
        if cost == 0 {
            return Ok(());
        }
        let cost = cost.min(per_minute.max(1));
        if let Some(shared) = self.shared.as_ref().filter(|_| self.usable(now_us)) {
            {
                let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                let h = held.entry((account, bucket)).or_default();
                if h.refused_until > now_us {
                    return Err(retry_after(h.refused_until - now_us));
                }
                if h.units >= cost {
                    h.units -= cost;
                    // Below half a prefetch: the next lease is fetched in the background, so
                    // in steady state no call waits for Redis.
                    let prefetch = prefetch(per_minute);
                    if prefetch > 1 && h.units < prefetch / 2 && !h.refilling {
                        h.refilling = true;
                        self.refill(shared, account, bucket, per_minute, prefetch);
                    }
                    return Ok(());
                }
            }
            let cell = cell_key(account, bucket);
            let want = cost.saturating_add(prefetch(per_minute));
            match shared
                .lease(&cell, interval_us(per_minute), WINDOW_US, cost, want)
                .await
            {
                Ok(lease) => {
                    self.recovered();
                    let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                    let h = held.entry((account, bucket)).or_default();
                    return match lease {
                        Lease::Granted(n) => {
                            h.units = h.units.saturating_add(n - cost.min(n));
                            Ok(())
                        }
                        Lease::Wait(us) => {
                            h.refused_until = now_us + us;
                            Err(retry_after(us))
                        }
                    };
                }
                Err(e) => self.failed(now_us, &e),
            }
        }
        if self.shared.is_some() {
            self.fallbacks.fetch_add(1, Relaxed);
        }
        let share = per_minute.div_ceil(servers.max(1)).max(1);
        self.local.take(account, bucket, cost, share, now_us)
    }

    /// Leases up to `want` more units in the background (nothing when the cell is empty or Redis
    /// fails: the next call that finds no units asks in the foreground and sees why).
    fn refill(
        &self,
        shared: &std::sync::Arc<SharedLimits>,
        account: Uuid,
        bucket: Bucket,
        per_minute: u32,
        want: u32,
    ) {
        let (shared, held) = (shared.clone(), self.held.clone());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let got = shared
                .lease(
                    &cell_key(account, bucket),
                    interval_us(per_minute),
                    WINDOW_US,
                    1,
                    want,
                )
                .await;
            let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
            let h = held.entry((account, bucket)).or_default();
            h.refilling = false;
            if let Ok(Lease::Granted(n)) = got {
                h.units = h.units.saturating_add(n);
            }
        });
    }

    /// The state of an account's bucket (the shared cell when there is one).
    pub async fn consumption(
        &self,
        account: Uuid,
        bucket: Bucket,
        per_minute: u32,
        now_us: i64,
        servers: u32,
    ) -> Consumption {
        if let Some(shared) = self.shared.as_ref().filter(|_| self.usable(now_us)) {
            match shared.debt(&cell_key(account, bucket)).await {
                Ok(debt) => return Consumption::of_debt(debt, per_minute),
                Err(e) => self.failed(now_us, &e),
            }
        }
        let share = per_minute.div_ceil(servers.max(1)).max(1);
        let mut c = self.local.consumption(account, bucket, share, now_us);
        c.limit_per_minute = per_minute;
        c
    }

    /// Forgets per-server cells back to full and remembered refusals that lapsed.
    pub fn prune(&self, now_us: i64) {
        self.local.prune(now_us);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.retain(|_, h| h.units > 0 || h.refused_until > now_us || h.refilling);
    }

    fn usable(&self, now_us: i64) -> bool {
        self.down_until.load(Relaxed) <= now_us
    }

    fn failed(&self, now_us: i64, e: &anyhow::Error) {
        self.down_until.store(now_us + DOWN_FOR_US, Relaxed);
        if !self.down.swap(true, Relaxed) {
            tracing::warn!(error = %e, "Redis is unreachable: rate limits are per server until it answers again");
        }
    }

    fn recovered(&self) {
        if self.down.swap(false, Relaxed) {
            tracing::info!("Redis answers again: rate limits are shared across servers");
        }
    }
}

/// The Redis key of an account's bucket.
fn cell_key(account: Uuid, bucket: Bucket) -> String {
    format!("atrium:rl:{account}:{}", bucket.key())
}

fn retry_after(us: i64) -> RetryAfter {
    RetryAfter((us.clamp(1, WINDOW_US) as u64).div_ceil(1_000_000).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_a_minute_of_burst_then_one_per_interval() {
        let l = Limiter::default();
        let a = Uuid::new_v4();
        for i in 0..60 {
            assert!(
                l.take(a, Bucket::Api, 1, 60, 0).is_ok(),
                "unit {i} of the burst"
            );
        }
        assert_eq!(l.take(a, Bucket::Api, 1, 60, 0), Err(RetryAfter(1)));
        assert!(l.consumption(a, Bucket::Api, 60, 0).exceeded);
        // One second later (the interval at 60/min) one more unit is admitted, not two.
        assert!(l.take(a, Bucket::Api, 1, 60, 1_000_000).is_ok());
        assert!(l.take(a, Bucket::Api, 1, 60, 1_000_000).is_err());
        // The other bucket and other accounts are untouched.
        assert!(l.take(a, Bucket::LogsAndEvents, 1, 60, 0).is_ok());
        assert!(l.take(Uuid::new_v4(), Bucket::Api, 1, 60, 0).is_ok());
    }

    #[test]
    fn batches_cost_their_size_and_oversize_batches_are_refused() {
        let l = Limiter::default();
        let a = Uuid::new_v4();
        assert!(l.take(a, Bucket::LogsAndEvents, 50, 100, 0).is_ok());
        assert_eq!(l.consumption(a, Bucket::LogsAndEvents, 100, 0).used, 50);
        assert!(l.take(a, Bucket::LogsAndEvents, 51, 100, 0).is_err());
        assert!(l.take(a, Bucket::LogsAndEvents, 50, 100, 0).is_ok());
        // 101 units at 100/min: admitted only once the bucket is full again, and it empties it.
        assert!(l
            .take(a, Bucket::LogsAndEvents, 101, 100, 30_000_000)
            .is_err());
        assert!(l
            .take(a, Bucket::LogsAndEvents, 101, 100, 60_000_000)
            .is_ok());
        assert!(
            l.consumption(a, Bucket::LogsAndEvents, 100, 60_000_000)
                .exceeded
        );
        l.prune(240_000_000);
        assert!(
            l.cells.lock().expect("lock").is_empty(),
            "full cells are forgotten"
        );
        assert_eq!(
            l.consumption(a, Bucket::LogsAndEvents, 100, 240_000_000)
                .used,
            0
        );
    }
}
