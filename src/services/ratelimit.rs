//! Per-account rate limits in the two buckets of Prefect Cloud (§4.1 of the reference): API
//! requests, and logs + events. Each bucket is a GCRA ("generic cell rate algorithm") cell: one
//! integer per (account, bucket), the theoretical arrival time, so a limit of N per minute admits
//! up to N at once and then one every 60/N seconds. One integer updated with a compare-and-set is
//! what makes the state easy to move to a shared store (a Redis script or a PostgreSQL row) when
//! several nodes must share a budget; this node keeps it in memory.

use rustc_hash::FxHashMap;
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
        let t = interval_us(per_minute);
        let cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        let tat = cells
            .get(&(account, bucket))
            .copied()
            .unwrap_or(now_us)
            .max(now_us);
        let debt = tat - now_us;
        Consumption {
            used: (debt / t) as u64,
            limit_per_minute: per_minute,
            exceeded: debt + t > WINDOW_US,
        }
    }

    /// Forgets cells that are back to full (bounded memory over many accounts).
    pub fn prune(&self, now_us: i64) {
        let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        cells.retain(|_, tat| *tat > now_us);
    }
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
