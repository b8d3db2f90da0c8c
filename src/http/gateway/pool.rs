//! Idle keep-alive connections to upstream Prefect servers for the gateway's fast path
//! ([`super::fast`]): a connection is taken by one client connection's task, used inline for one
//! exchange (no task of its own, no channel), and put back when the response ended cleanly.

use rustc_hash::FxHashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How long an idle connection is kept (Prefect's uvicorn closes idle ones after 5 s; those are
/// noticed at checkout).
const IDLE: Duration = Duration::from_secs(60);
/// Idle connections kept per upstream address.
const MAX_IDLE: usize = 512;

#[derive(Default)]
pub struct UpstreamPool {
    idle: Mutex<FxHashMap<String, Vec<(TcpStream, Instant)>>>,
}

impl UpstreamPool {
    /// The most recently used idle connection to `address` that is still open, if any.
    pub fn checkout(&self, address: &str) -> Option<TcpStream> {
        let now = Instant::now();
        loop {
            let (s, since) = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                idle.get_mut(address)?.pop()?
            };
            if now.duration_since(since) < IDLE && still_open(&s) {
                return Some(s);
            }
        }
    }

    /// Puts a connection whose last response ended cleanly back; the oldest idle ones beyond
    /// [`MAX_IDLE`] or [`IDLE`] are closed.
    pub fn checkin(&self, address: &str, s: TcpStream) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = match idle.get_mut(address) {
            Some(l) => l,
            None => idle.entry(address.to_string()).or_default(),
        };
        let stale = list
            .iter()
            .take_while(|(_, since)| now.duration_since(*since) >= IDLE)
            .count()
            .max((list.len() + 1).saturating_sub(MAX_IDLE));
        list.drain(..stale);
        list.push((s, now));
    }

    /// Closes connections idle for longer than [`IDLE`] or closed by the upstream (run by a job).
    pub fn prune(&self) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        for list in idle.values_mut() {
            list.retain(|(s, since)| now.duration_since(*since) < IDLE && still_open(s));
        }
        idle.retain(|_, l| !l.is_empty());
    }

    /// Idle connections held (for tests and metrics).
    pub fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.values().map(Vec::len).sum()
    }
}

/// False when the upstream closed an idle connection or sent something unasked. Uses the
/// readiness the runtime already saw: no system call when nothing arrived.
pub fn still_open(s: &TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.try_read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}
