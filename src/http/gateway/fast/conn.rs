//! Connection state: what one client connection keeps between its requests (unused bytes,
//! reusable buffers, the upstream connection its last call used) and the one timer of all its
//! waits.

use super::*;

pub(super) const READ_CHUNK: usize = 16 * 1024;

/// One client connection's state between its requests: the bytes read and not yet used (a
/// body's start, pipelined requests), reusable buffers, the timer of every wait, and the upstream
/// connection its last call used (kept for the next call to the same upstream, so a busy client
/// connection never touches the shared pool).
pub struct Conn {
    pub(super) client: TcpStream,
    pub(super) peer: SocketAddr,
    /// The peer's address as text, made once per connection.
    pub(super) peer_ip: String,
    pub buf: BytesMut,
    pub(super) watchdog: Watchdog,
    pub(super) ubuf: BytesMut,
    pub(super) out: Vec<u8>,
    pub(super) sticky: Option<(String, UpstreamStream)>,
    /// The connection thread serving this connection (upstream connections are pooled by it).
    pub(super) thread: usize,
}

impl Conn {
    pub fn new(client: TcpStream, peer: SocketAddr, thread: usize) -> Conn {
        Conn {
            client,
            peer,
            peer_ip: peer.ip().to_string(),
            buf: BytesMut::with_capacity(READ_CHUNK),
            watchdog: Watchdog::new(),
            ubuf: BytesMut::new(),
            out: Vec::new(),
            sticky: None,
            thread,
        }
    }

    /// Ends the connection: the upstream connection it kept goes back to the pool.
    pub fn finish(self, app: &App) {
        self.split(app);
    }

    /// Hands the client's socket on (to the general server); the kept upstream connection goes
    /// back to the pool.
    pub fn split(self, app: &App) -> (TcpStream, BytesMut) {
        if let Some((address, s)) = self.sticky {
            app.upstream_pool.checkin(&address, self.thread, s);
        }
        (self.client, self.buf)
    }

    /// Reads more from the client into `buf`, for at most [`LIMIT`] from `since`: `None` when
    /// that passed.
    pub async fn read(&mut self, since: tokio::time::Instant) -> Option<std::io::Result<usize>> {
        room(&mut self.buf);
        self.watchdog
            .limit(since, self.client.read_buf(&mut self.buf))
            .await
    }

    /// An upstream connection to `address`: the one kept from the last call, else a pooled one.
    pub(super) fn upstream(&mut self, app: &App, address: &str) -> Option<UpstreamStream> {
        if let Some((a, s)) = self.sticky.take() {
            if a != address {
                app.upstream_pool.checkin(&a, self.thread, s);
            } else if s.still_open() {
                return Some(s);
            }
        }
        app.upstream_pool.checkout(address, self.thread)
    }
}

/// Every wait on a connection (idle keep-alive, a request head or body, an upstream's answer or
/// body) is limited to [`LIMIT`] from when it began. One timer per connection serves them all:
/// it is armed once and moved only when it fires before the wait's limit, so a request costs
/// no timer registration.
pub(super) struct Watchdog {
    pub(super) sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

/// The limit of every wait on a connection: the upstream's answer has as long as on the router
/// path (and the 504's message says so).
pub(super) const LIMIT: Duration = RESPONSE_TIMEOUT;

impl Watchdog {
    pub(super) fn new() -> Watchdog {
        Watchdog {
            sleep: Box::pin(tokio::time::sleep(LIMIT)),
        }
    }

    /// Runs `fut` to its end, or `None` once [`LIMIT`] passed since `since` (which must not be
    /// earlier than the `since` of the previous wait on this connection).
    pub(super) async fn limit<F: std::future::Future>(
        &mut self,
        since: tokio::time::Instant,
        fut: F,
    ) -> Option<F::Output> {
        let deadline = since + LIMIT;
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                out = &mut fut => return Some(out),
                () = self.sleep.as_mut() => {
                    if tokio::time::Instant::now() >= deadline {
                        return None;
                    }
                    self.sleep.as_mut().reset(deadline);
                }
            }
        }
    }
}

/// Makes room to read into `b`. A buffer emptied by the last exchange starts again at the front
/// of its allocation, so a busy connection keeps reading into the same few cache lines instead of
/// walking through its whole buffer (at 256 connections that walk was megabytes of cache).
pub(super) fn room(b: &mut BytesMut) {
    if !b.try_reclaim(READ_CHUNK) {
        b.reserve(READ_CHUNK);
    }
}
