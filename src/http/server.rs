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
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Serves `app` on `listener` until `shutdown` resolves, then waits for open exchanges to end.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let svc = crate::http::service(app.clone());
    fast::prepare();
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection holds a receiver; the sender sees them all gone when the last one ends.
    let (done_tx, done_rx) = watch::channel(());
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
        let (app, svc, stop, done) = (app.clone(), svc.clone(), stop_rx.clone(), done_rx.clone());
        tokio::spawn(async move {
            connection(app, svc, stream, peer, stop).await;
            drop(done);
        });
    }
    drop(listener);
    drop(done_rx);
    let _ = stop_tx.send(true);
    done_tx.closed().await;
    Ok(())
}

fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

async fn connection(
    app: App,
    svc: AppService,
    stream: TcpStream,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
) {
    let mut c = fast::Conn::new(stream, peer);
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
                let (client, read) = c.split(&app);
                return general(svc, client, peer, read.freeze(), stop).await;
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
