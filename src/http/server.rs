//! Atrium's HTTP/1.1 server. Each client connection is one task: gateway calls of the common
//! shape are served inline by the gateway's fast path ([`gateway::fast`]); the first request that
//! is anything else (Atrium's API, the dashboard, websockets, uncommon framing) hands the
//! connection, with the bytes already read, to hyper and the router for the rest of its life.
//! Shutdown stops accepting, closes idle connections and waits for exchanges in flight.

use crate::app::App;
use crate::http::gateway::fast;
use crate::http::AppService;
use axum::body::Body;
use bytes::{Buf, Bytes};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Connections the kernel holds for Atrium between handshake and accept. The standard library's
/// (and so tokio's) `bind` asks for 128: a burst of more new connections than that — 256 clients
/// opening at once, a proxy in front opening its pool — overflowed it, and the kernel dropped the
/// excess handshakes, which the clients only retried after a second. nginx asks for 511, uvicorn
/// 2048; the kernel caps the value at `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: u32 = 1024;

/// Listens on `bind` (`host:port`; every address it resolves to is tried in turn) with
/// `LISTEN_BACKLOG` (1,024), and `SO_REUSEADDR` as the standard library's `bind` sets it.
pub async fn listen(bind: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(bind).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        let bound = socket
            .set_reuseaddr(true)
            .and_then(|()| socket.bind(addr))
            .and_then(|()| socket.listen(LISTEN_BACKLOG));
        match bound {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    }))
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits for open exchanges to end.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    if let Ok(a) = listener.local_addr() {
        app.listening
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(a);
    }
    let svc = crate::http::service(app.clone());
    fast::prepare();
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection (and every relayed websocket) holds a receiver; the sender sees them all
    // gone when the last one ends.
    let done_rx = app.inflight.subscribe();
    let inflight_app = app.clone();
    let ctx = Ctx {
        app,
        svc,
        stop: stop_rx,
        done: done_rx,
        main: tokio::runtime::Handle::current(),
    };
    let threads = (0..connection_threads())
        .map(|i| ConnThread::start(i, ctx.clone()))
        .collect::<std::io::Result<Vec<_>>>()?;
    drop(ctx);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // Out of file descriptors or similar: wait rather than spin.
                tracing::error!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Small request/response exchanges must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        // Leaves this runtime's poller for the connection thread's.
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        let thread = least_busy(&threads);
        thread.open.fetch_add(1, Ordering::Relaxed);
        let _ = thread.tx.send((stream, peer));
    }
    inflight_app
        .node
        .stopping
        .store(true, std::sync::atomic::Ordering::Relaxed);
    // The connection threads end once their connections have.
    drop(threads);
    drop(listener);
    let _ = stop_tx.send(true);
    // In-flight calls and websockets finish, for up to the grace period.
    let grace = Duration::from_secs(inflight_app.config.shutdown_grace_seconds);
    if tokio::time::timeout(grace, inflight_app.inflight.closed())
        .await
        .is_err()
    {
        tracing::warn!(
            open = inflight_app.inflight.receiver_count(),
            grace_seconds = grace.as_secs(),
            "grace period over: closing the calls and websockets still open"
        );
    }
    Ok(())
}

/// What every connection needs, shared by the connection threads.
#[derive(Clone)]
struct Ctx {
    app: App,
    svc: AppService,
    /// Becomes true when shutdown begins.
    stop: watch::Receiver<bool>,
    /// Held while a connection (or a connection thread) lives.
    done: watch::Receiver<()>,
    /// The main runtime: connections handed to hyper and the router are served there.
    main: tokio::runtime::Handle,
}

/// A connection thread: its own single-threaded runtime and poller, like one nginx worker. A
/// client connection lives on one thread while it is on the fast path: its socket, its upstream
/// connection and its task are woken and run there, with no work-stealing, no cross-thread
/// wake-ups and no shared run queue. A connection handed to the router moves to the main
/// (work-stealing) runtime, where the API's database work runs.
struct ConnThread {
    tx: tokio::sync::mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>,
    /// Connections on this thread now: new connections go to the least busy thread.
    open: Arc<AtomicUsize>,
}

impl ConnThread {
    fn start(id: usize, ctx: Ctx) -> std::io::Result<ConnThread> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let open = Arc::new(AtomicUsize::new(0));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let count = open.clone();
        std::thread::Builder::new()
            .name(format!("atrium-conn-{id}"))
            .spawn(move || {
                rt.block_on(async move {
                    // Each task holds a receiver: the runtime must outlive its connections.
                    let (tasks_tx, tasks_rx) = watch::channel(());
                    while let Some((stream, peer)) = rx.recv().await {
                        let on_thread = OnThread(count.clone());
                        let (ctx, task) = (ctx.clone(), tasks_rx.clone());
                        tokio::spawn(async move {
                            // Registers the socket with this thread's poller.
                            if let Ok(stream) = TcpStream::from_std(stream) {
                                connection(ctx, id, stream, peer, on_thread).await;
                            }
                            drop(task);
                        });
                    }
                    // Accepting ended: wait for this thread's connections.
                    drop(tasks_rx);
                    tasks_tx.closed().await;
                    drop(ctx);
                });
            })?;
        Ok(ConnThread { tx, open })
    }
}

/// Counts a connection on its thread until dropped (the connection ended or moved to the main
/// runtime).
struct OnThread(Arc<AtomicUsize>);

impl Drop for OnThread {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn least_busy(threads: &[ConnThread]) -> &ConnThread {
    // Ties go to the first; an empty list cannot happen (at least one thread is started).
    threads
        .iter()
        .min_by_key(|s| s.open.load(Ordering::Relaxed))
        .unwrap_or(&threads[0])
}

/// How many connection threads run: `ATRIUM_WORKER_THREADS` when set (the CLI validated it),
/// else one per core.
fn connection_threads() -> usize {
    crate::config::worker_threads()
        .ok()
        .flatten()
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
}

fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

async fn connection(
    ctx: Ctx,
    thread: usize,
    stream: TcpStream,
    peer: SocketAddr,
    on_thread: OnThread,
) {
    let Ctx {
        app,
        svc,
        stop,
        done,
        main,
    } = ctx;
    let mut c = fast::Conn::new(stream, peer, thread);
    // Made once: waiting for it costs nothing per request.
    let stopping = stopped(stop.clone());
    tokio::pin!(stopping);
    loop {
        let since = tokio::time::Instant::now();
        let head = loop {
            match fast::parse(&c.buf) {
                fast::Parsed::Call(h) => break Some(h),
                fast::Parsed::General => break None,
                fast::Parsed::Partial => {}
            }
            // Idle or mid-head, every wait ends after the connection's limit; shutdown closes a
            // connection waiting here.
            let read = tokio::select! {
                biased;
                () = &mut stopping => None,
                r = c.read(since) => r,
            };
            match read {
                Some(Ok(n)) if n > 0 => {}
                _ => return c.finish(&app),
            }
        };
        match head {
            Some(h) => {
                if !fast::exchange(&app, &mut c, *h).await {
                    return c.finish(&app);
                }
            }
            None => {
                // The rest of the connection moves to the main runtime, socket and all.
                let (client, read) = c.split(&app);
                drop(on_thread);
                let Ok(client) = client.into_std() else {
                    return;
                };
                main.spawn(async move {
                    if let Ok(client) = TcpStream::from_std(client) {
                        general(svc, client, peer, read.freeze(), stop).await;
                    }
                    drop(done);
                });
                return;
            }
        }
    }
}

/// Serves the rest of the connection with hyper and the router.
async fn general(
    svc: AppService,
    stream: TcpStream,
    peer: SocketAddr,
    read: Bytes,
    stop: watch::Receiver<bool>,
) {
    let io = TokioIo::new(Rewind { read, stream });
    let svc = tower::ServiceExt::map_request(
        svc,
        move |r: axum::http::Request<hyper::body::Incoming>| {
            let mut r = r.map(Body::new);
            r.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            r
        },
    );
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(io, hyper_util::service::TowerToHyperService::new(svc))
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stopped(stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Resolves once shutdown began (at once when it already has).
async fn stopped(mut stop: watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here: it must not live across an await.
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// A connection whose first bytes were already read: they are read again first.
struct Rewind {
    read: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read[..n]);
            self.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(open: usize) -> ConnThread {
        ConnThread {
            tx: tokio::sync::mpsc::unbounded_channel().0,
            open: Arc::new(AtomicUsize::new(open)),
        }
    }

    /// New connections go to the connection thread with the fewest open connections (ties to
    /// the first), and a connection that ends or moves away is no longer counted.
    #[test]
    fn new_connections_go_to_the_least_busy_thread() {
        let threads = [thread(3), thread(1), thread(1), thread(2)];
        let pick = |s: &[ConnThread]| {
            let l = least_busy(s);
            s.iter().position(|x| std::ptr::eq(x, l)).unwrap()
        };
        assert_eq!(pick(&threads), 1);
        threads[1].open.fetch_add(1, Ordering::Relaxed);
        assert_eq!(pick(&threads), 2);
        let counted = OnThread(threads[0].open.clone());
        threads[0].open.store(1, Ordering::Relaxed);
        drop(counted);
        assert_eq!(threads[0].open.load(Ordering::Relaxed), 0);
        assert_eq!(pick(&threads), 0);
    }

    /// A burst of new connections larger than the standard library's backlog (128) completes
    /// its handshakes while nothing accepts, and every one of them is then accepted: none was
    /// dropped (a dropped handshake would make its `connect` time out here).
    #[tokio::test]
    async fn the_listen_queue_holds_a_burst_of_connections() {
        let listener = listen("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let burst = 300;
        let clients = tokio::task::spawn_blocking(move || {
            (0..burst)
                .map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .unwrap()
        .expect("every handshake completes while nothing accepts (net.core.somaxconn ≥ 300?)");
        for _ in 0..burst {
            listener.accept().await.unwrap();
        }
        assert_eq!(clients.len(), burst);
        assert!(listen("not an address").await.is_err());
    }
}
