//! The Redis side of cluster-wide rate limits: one GCRA cell per (account, bucket) — the
//! theoretical arrival time in microseconds of Redis's own clock, so the servers' clocks never
//! disagree — and one script that leases units from it. `services::ratelimit` decides when to
//! ask; this module only talks to Redis.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// Leases units from a GCRA cell. KEYS[1]: the cell. ARGV: interval per unit (µs), window (µs),
/// units needed at least, units wanted. Answers `{granted, wait_us}`: `granted` ≥ the minimum, or
/// 0 and how long until the minimum would be granted. A cell is forgotten once back to full.
const LEASE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local need = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local available = math.floor((now + window - tat) / interval)
if available < need then
  return {0, tat + need * interval - window - now}
end
local n = math.min(want, available)
local new = tat + n * interval
redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.ceil((new - now) / 1000) + 1000)
return {n, 0}
";

/// Reads a cell: `{debt_us}` (how far its arrival time is ahead of now; 0 when full).
const READ: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then return 0 end
return tat - now
";

/// How long one Redis call may take before the server decides alone.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(100);

/// A connection to the shared store (reconnects by itself) and the scripts.
pub struct SharedLimits {
    conn: ConnectionManager,
    lease: redis::Script,
    read: redis::Script,
}

/// What a lease request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    Granted(u32),
    /// Nothing now; the minimum is there after this many microseconds.
    Wait(i64),
}

impl SharedLimits {
    /// A handle that connects on first use (a Redis that is down at start is not fatal).
    pub fn new(url: &str) -> anyhow::Result<SharedLimits> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        Ok(SharedLimits {
            conn: ConnectionManager::new_lazy_with_config(client, config)?,
            lease: redis::Script::new(LEASE),
            read: redis::Script::new(READ),
        })
    }

    /// Leases between `need` and `want` units of `cell`.
    pub async fn lease(
        &self,
        cell: &str,
        interval_us: i64,
        window_us: i64,
        need: u32,
        want: u32,
    ) -> anyhow::Result<Lease> {
        let mut c = self.conn.clone();
        let mut call = self.lease.key(cell);
        call.arg(interval_us).arg(window_us).arg(need).arg(want);
        let (n, wait): (i64, i64) = tokio::time::timeout(CALL_TIMEOUT, call.invoke_async(&mut c))
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {CALL_TIMEOUT:?}"))??;
        Ok(if n > 0 {
            Lease::Granted(u32::try_from(n).unwrap_or(u32::MAX))
        } else {
            Lease::Wait(wait.max(1))
        })
    }

    /// How far `cell`'s arrival time is ahead of Redis's now, in microseconds.
    pub async fn debt(&self, cell: &str) -> anyhow::Result<i64> {
        let mut c = self.conn.clone();
        let call = self.read.key(cell);
        let debt: i64 = tokio::time::timeout(CALL_TIMEOUT, call.invoke_async(&mut c))
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {CALL_TIMEOUT:?}"))??;
        Ok(debt)
    }
}
