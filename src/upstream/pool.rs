//! Idle keep-alive connections to upstream Prefect servers for the gateway's fast path
//! (`http::gateway::fast`): a connection is taken by one client connection's task, used inline for one
//! exchange (no task of its own, no channel), and put back when the response ended cleanly.

use super::tls::UpstreamStream;
use rustc_hash::FxHashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How long an idle connection is kept (Prefect's uvicorn closes idle ones after 5 s; those are
/// noticed at checkout), and how many per upstream address: the same settings as the client's.
const IDLE: Duration = super::IDLE_TIMEOUT;
const MAX_IDLE: usize = super::MAX_IDLE_PER_UPSTREAM;

/// Idle connections, oldest first, by upstream address.
#[derive(Default)]
pub struct UpstreamPool {
    idle: Mutex<FxHashMap<String, Vec<Idle>>>,
}

struct Idle {
    s: UpstreamStream,
    since: Instant,
    /// The connection thread whose poller the socket is registered with: it is only handed out
    /// there again, as a socket used from another thread would have every wake-up cross threads.
    thread: usize,
}

impl UpstreamPool {
    /// The most recently used idle connection to `address` opened on connection thread
    /// `thread` that is still open, if any.
    pub fn checkout(&self, address: &str, thread: usize) -> Option<UpstreamStream> {
        let now = Instant::now();
        loop {
            let Idle { s, since, .. } = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                let list = idle.get_mut(address)?;
                let i = list.iter().rposition(|c| c.thread == thread)?;
                list.remove(i)
            };
            if now.duration_since(since) < IDLE && s.still_open() {
                return Some(s);
            }
        }
    }

    /// Puts a connection whose last response ended cleanly back; the oldest idle ones beyond
    /// [`MAX_IDLE`] or [`IDLE`] are closed.
    pub fn checkin(&self, address: &str, thread: usize, s: UpstreamStream) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = match idle.get_mut(address) {
            Some(l) => l,
            None => idle.entry(address.to_string()).or_default(),
        };
        let stale = list
            .iter()
            .take_while(|c| now.duration_since(c.since) >= IDLE)
            .count()
            .max((list.len() + 1).saturating_sub(MAX_IDLE));
        list.drain(..stale);
        list.push(Idle {
            s,
            since: now,
            thread,
        });
    }

    /// Closes connections idle for longer than [`IDLE`] or closed by the upstream (run by a job).
    pub fn prune(&self) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        for list in idle.values_mut() {
            list.retain(|c| now.duration_since(c.since) < IDLE && c.s.still_open());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected socket pair on loopback; the far end is kept so the near end stays open.
    async fn pair() -> (UpstreamStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let near = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (far, _) = l.accept().await.unwrap();
        (UpstreamStream::Plain(near), far)
    }

    fn local_port(s: &UpstreamStream) -> std::net::SocketAddr {
        match s {
            UpstreamStream::Plain(s) => s.local_addr().unwrap(),
            UpstreamStream::Tls(s) => s.get_ref().0.local_addr().unwrap(),
        }
    }

    /// A pooled connection is registered with the poller of the thread that opened it, so it is
    /// handed out only to that connection thread; the most recent one first.
    #[tokio::test]
    async fn connections_go_back_to_their_own_thread() {
        let pool = UpstreamPool::default();
        let (a, _fa) = pair().await;
        let (b, _fb) = pair().await;
        let (a_port, b_port) = (local_port(&a), local_port(&b));
        pool.checkin("up:1", 0, a);
        pool.checkin("up:1", 1, b);
        assert!(
            pool.checkout("up:1", 2).is_none(),
            "no connection of thread 2"
        );
        assert!(
            pool.checkout("up:2", 0).is_none(),
            "no connection to another address"
        );
        let got = pool.checkout("up:1", 0).expect("thread 0's connection");
        assert_eq!(local_port(&got), a_port);
        assert_eq!(pool.idle_count(), 1);
        let got = pool.checkout("up:1", 1).expect("thread 1's connection");
        assert_eq!(local_port(&got), b_port);
        assert_eq!(pool.idle_count(), 0);
    }

    /// A connection the upstream closed while idle is dropped by the prune job and never handed
    /// out.
    #[tokio::test]
    async fn closed_connections_are_not_handed_out() {
        let pool = UpstreamPool::default();
        let (a, fa) = pair().await;
        pool.checkin("up:1", 0, a);
        drop(fa);
        // The close reaches the near end's readiness once the runtime polls it.
        let mut tries = 0;
        while pool.idle_count() == 1 && tries < 100 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            pool.prune();
            tries += 1;
        }
        assert!(pool.checkout("up:1", 0).is_none());
        assert_eq!(pool.idle_count(), 0);
    }
}
