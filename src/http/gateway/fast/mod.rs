//! The gateway's fast path: a gateway call of the common shape (HTTP/1.1, no upgrade, no
//! `Expect`, a body framed by Content-Length or none) is served inline by the task of the client's
//! connection — head parsed with `httparse`, the same checks as every gateway call
//! ([`super::begin`], [`super::admit`]), then written to a pooled upstream connection and the
//! response relayed back as it arrives, with no task, channel or pool checkout of another task in
//! between. Everything else goes to the general server (hyper and the router), which also serves
//! the gateway through `super::forward`. See docs/ARCHITECTURE.md, "The workspace gateway" (two
//! transports, one set of decisions).
//!
//! Layers: [`classify`] (which server takes a request), [`conn`] (a client connection's state and
//! timer), this module (the exchange: checks, upstream write, relay), [`codec`] (the pure
//! response codec).

use super::{
    admit, begin, filtered, gateway_location, set_json_body_headers, strip_request_headers,
    upstream_head, write_upstream_target, RESPONSE_HOP_BY_HOP,
};
use crate::app::App;
use crate::http::error::HttpError;
use crate::http::extract::resolve_client;
use crate::metrics::{RouteClass, UpstreamError};
use crate::services::upstreams::Upstream;
use crate::services::upstreams::{upstream_failed, upstream_failed_with};
use crate::services::{gateway, Error};
use crate::upstream::tls::UpstreamStream;
use crate::upstream::RESPONSE_TIMEOUT;
use axum::http::{header, request::Parts, HeaderMap, HeaderName, HeaderValue, Method, Uri};
use axum::response::IntoResponse;
use bytes::{Buf, BytesMut};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod classify;
mod codec;
mod conn;

use classify::*;
pub use classify::{parse, prepare, Head, Parsed};
use codec::*;
pub use conn::Conn;
use conn::*;

/// How an exchange failed.
enum Failed {
    /// Answer the client with this error.
    Answer(HttpError),
    /// The connection is broken (client gone, or a response cut short after its head was sent):
    /// close it. The status already sent, if any.
    Broken(Option<u16>),
}

/// One exchange on a client connection.
struct Exchange<'a> {
    app: &'a App,
    c: &'a mut Conn,
    /// Body bytes not yet taken from the client.
    body_left: u64,
    close: bool,
}

/// Serves one fast-path call read by the connection loop; answers whether the client
/// connection stays open for the next request.
pub async fn exchange(app: &App, c: &mut Conn, head: Head) -> bool {
    let started = tokio::time::Instant::now();
    let Head {
        parts,
        len,
        body,
        close,
    } = head;
    c.buf.advance(len);
    // The caller's address, as `extract::client_ip` would give it on the router path.
    let ip = resolve_client(app, c.peer.ip(), &parts.headers)
        .map_or_else(|| c.peer_ip.clone(), |ip| ip.to_string());
    let mut ex = Exchange {
        app,
        c,
        body_left: body,
        close,
    };
    let (status, keep) = match ex.run(parts, ip, started).await {
        Ok(done) => done,
        Err(Failed::Answer(e)) => {
            let keep = !ex.close && ex.skip_body();
            match answer(&mut ex.c.client, e, !keep).await {
                Ok(status) => (status, keep),
                Err(_) => return false,
            }
        }
        Err(Failed::Broken(status)) => {
            if let Some(s) = status {
                app.metrics
                    .request(RouteClass::Gateway, s, started.elapsed());
            }
            return false;
        }
    };
    app.metrics
        .request(RouteClass::Gateway, status, started.elapsed());
    keep
}

/// Writes an error as a complete response.
async fn answer(client: &mut TcpStream, e: HttpError, close: bool) -> std::io::Result<u16> {
    write_response(client, e.into_response(), close).await
}

/// Writes a response whose body is in memory (an error, a filtered answer) as a complete one.
async fn write_response(
    client: &mut TcpStream,
    resp: axum::response::Response,
    close: bool,
) -> std::io::Result<u16> {
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    // The bodies written here are in memory: this resolves at once.
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let mut out = Vec::with_capacity(256 + body.len());
    status_line(
        &mut out,
        parts.status.as_u16(),
        parts.status.canonical_reason(),
    );
    write_headers(&mut out, &parts.headers);
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    client.write_all(&out).await?;
    Ok(parts.status.as_u16())
}

/// An upstream call that failed before its response head, as the client's answer.
fn upstream_error(
    app: &App,
    up: &Upstream,
    kind: UpstreamError,
    e: &dyn std::fmt::Display,
) -> Failed {
    Failed::Answer(upstream_failed(app, up, kind, e).into())
}

impl Exchange<'_> {
    async fn run(
        &mut self,
        mut parts: Parts,
        ip: String,
        since: tokio::time::Instant,
    ) -> Result<(u16, bool), Failed> {
        let app = self.app;
        let uri = parts.uri.clone();
        let Some(t) = gateway::target(uri.path()) else {
            return Err(Failed::Answer(Error::NotFound("not found".into()).into()));
        };
        let mut call = begin(app, &t, &parts).await.map_err(Failed::Answer)?;
        call.principal.ip = Some(ip);
        let whole = if call.needs_body {
            Some(self.read_body().await?)
        } else {
            None
        };
        let (up, mut rewrite) = admit(app, &t, &call, &parts.method, uri.query(), whole.as_deref())
            .await
            .map_err(|e| Failed::Answer(e.into()))?;
        let whole = match rewrite.body.take() {
            Some(b) => {
                set_json_body_headers(&mut parts.headers, b.len());
                Some(b)
            }
            None => whole,
        };
        if let Some(after) = rewrite.after.take() {
            let body = match whole {
                Some(b) => b,
                None => self.read_body().await?,
            };
            let query = rewrite.query(uri.query()).map(str::to_owned);
            let resp = async {
                upstream_head(&mut parts, &up, &t, call.rule, query.as_deref())?;
                filtered(app, &t, &up, parts, body.into(), &after).await
            }
            .await
            .unwrap_or_else(IntoResponse::into_response);
            let status = write_response(&mut self.c.client, resp, self.close)
                .await
                .map_err(|_| Failed::Broken(None))?;
            return Ok((status, !self.close));
        }

        // The request head, and what of the body is at hand, for one write.
        strip_request_headers(&mut parts.headers);
        let mut out = std::mem::take(&mut self.c.out);
        out.clear();
        out.extend_from_slice(parts.method.as_str().as_bytes());
        out.push(b' ');
        write_upstream_target(&mut out, &up, &t, call.rule, rewrite.query(uri.query()));
        out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        out.extend_from_slice(up.host.as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(a) = &up.authorization {
            out.extend_from_slice(b"authorization: ");
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        write_headers(&mut out, &parts.headers);
        out.extend_from_slice(b"\r\n");
        let bodiless = whole.is_none() && self.body_left == 0;
        match &whole {
            Some(b) => out.extend_from_slice(b),
            None => {
                let n = self.in_buf();
                out.extend_from_slice(&self.c.buf[..n]);
                self.c.buf.advance(n);
                self.body_left -= n as u64;
            }
        }

        let head_only = parts.method == Method::HEAD;
        let mut ubuf = std::mem::take(&mut self.c.ubuf);
        let (mut conn, resp) = self
            .send(&up, &mut out, &mut ubuf, bodiless, head_only, since)
            .await?;

        // `out` now holds the status line and the relayed headers (see `response_of`).
        let ResponseHead {
            status,
            location,
            mut framing,
            reusable,
        } = resp;
        if let Some(loc) = location {
            let loc = gateway_location(app, &t, &up.authority, &up.path, &loc).unwrap_or(loc);
            out.extend_from_slice(b"location: ");
            out.extend_from_slice(loc.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let close = self.close || matches!(framing, Framing::Close);
        if matches!(framing, Framing::Chunked(_)) {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        self.relay_response(&mut conn, &mut ubuf, &mut out, &mut framing)
            .await
            .map_err(|()| Failed::Broken(Some(status)))?;

        if reusable && ubuf.is_empty() {
            if let Some((a, s)) = self.c.sticky.replace((up.pool_key.clone(), conn)) {
                app.upstream_pool.checkin(&a, self.c.thread, s);
            }
        }
        // Buffers are kept for the next call unless a large body grew them.
        if out.capacity() <= 4 * READ_CHUNK {
            self.c.out = out;
        }
        self.c.ubuf = ubuf;
        Ok((status, !close))
    }

    /// Sends the request (`out`: its head and the body at hand; the rest of the body is relayed
    /// from the client) and reads the response head into `out` (the part of the body that came
    /// with it stays in `ubuf`). A kept connection the upstream closed meanwhile fails before any
    /// answer: a bodiless call is then sent once more on a new connection, as hyper's client does.
    async fn send(
        &mut self,
        up: &Upstream,
        out: &mut Vec<u8>,
        ubuf: &mut BytesMut,
        bodiless: bool,
        head_only: bool,
        since: tokio::time::Instant,
    ) -> Result<(UpstreamStream, ResponseHead), Failed> {
        let app = self.app;
        let started = Instant::now();
        let mut retried = false;
        loop {
            let (mut conn, reused) = match self.c.upstream(app, &up.pool_key) {
                Some(c) => (c, true),
                None => (connect(app, up).await?, false),
            };
            let retry = reused && bodiless && !retried;
            if let Err(e) = conn.write_all(out).await {
                if retry {
                    retried = true;
                    continue;
                }
                return Err(Failed::Answer(
                    upstream_failed_with(app, up, UpstreamError::Other, &e).into(),
                ));
            }
            self.relay_body(&mut conn, up).await?;
            ubuf.clear();
            let head = self
                .c
                .watchdog
                .limit(since, response_head(&mut conn, ubuf, head_only, out))
                .await;
            match head {
                Some(Ok(resp)) => {
                    app.metrics.upstream_latency.observe(started.elapsed());
                    return Ok((conn, resp));
                }
                Some(Err(HeadError::Closed)) if retry && ubuf.is_empty() => retried = true,
                Some(Err(HeadError::Io(e))) => {
                    return Err(Failed::Answer(
                        upstream_failed_with(app, up, UpstreamError::Other, &e).into(),
                    ))
                }
                Some(Err(e)) => return Err(upstream_error(app, up, UpstreamError::Other, &e)),
                None => {
                    let e = "no response head in time";
                    return Err(upstream_error(app, up, UpstreamError::Timeout, &e));
                }
            }
        }
    }

    /// Relays the response head in `out` and the body as it arrives — the head and what came
    /// with it in one write. `Err` when the client or the upstream broke off (the connection is
    /// then closed: the client sees the body cut short).
    async fn relay_response(
        &mut self,
        conn: &mut UpstreamStream,
        ubuf: &mut BytesMut,
        out: &mut Vec<u8>,
        framing: &mut Framing,
    ) -> Result<(), ()> {
        let mut first = true;
        loop {
            let (n, done) = framing.take(ubuf);
            let sent = if first {
                out.extend_from_slice(&ubuf[..n]);
                first = false;
                self.c.client.write_all(out).await
            } else {
                self.c.client.write_all(&ubuf[..n]).await
            };
            ubuf.advance(n);
            sent.map_err(|_| ())?;
            if done && !framing.failed() {
                return Ok(());
            }
            if !done {
                room(ubuf);
                let now = tokio::time::Instant::now();
                match self.c.watchdog.limit(now, conn.read_buf(ubuf)).await {
                    Some(Ok(0)) if matches!(framing, Framing::Close) => return Ok(()),
                    Some(Ok(n)) if n > 0 => continue,
                    _ => {}
                }
            }
            self.app.metrics.upstream_error(UpstreamError::Other);
            return Err(());
        }
    }

    /// Body bytes of this request already in the buffer.
    fn in_buf(&self) -> usize {
        let have = self.c.buf.len();
        usize::try_from(self.body_left).map_or(have, |b| b.min(have))
    }

    /// Reads more of the body from the client into the buffer.
    async fn fill(&mut self) -> Result<(), Failed> {
        match self.c.read(tokio::time::Instant::now()).await {
            Some(Ok(n)) if n > 0 => Ok(()),
            _ => Err(Failed::Broken(None)),
        }
    }

    /// The whole body (bounded by the 5 MiB limit checked in `begin`).
    async fn read_body(&mut self) -> Result<Vec<u8>, Failed> {
        let mut body = Vec::with_capacity(usize::try_from(self.body_left).unwrap_or(0));
        while self.body_left > 0 {
            if self.c.buf.is_empty() {
                self.fill().await?;
            }
            let n = self.in_buf();
            body.extend_from_slice(&self.c.buf[..n]);
            self.c.buf.advance(n);
            self.body_left -= n as u64;
        }
        Ok(body)
    }

    /// Streams the rest of the body from the client to the upstream.
    async fn relay_body(&mut self, conn: &mut UpstreamStream, up: &Upstream) -> Result<(), Failed> {
        while self.body_left > 0 {
            if self.c.buf.is_empty() {
                self.fill().await?;
            }
            let n = self.in_buf();
            if let Err(e) = conn.write_all(&self.c.buf[..n]).await {
                return Err(upstream_error(self.app, up, UpstreamError::Other, &e));
            }
            self.c.buf.advance(n);
            self.body_left -= n as u64;
        }
        Ok(())
    }

    /// Drops an unread body when it is all in the buffer already, so the connection can carry
    /// the next request; false when it is not (the connection must close).
    fn skip_body(&mut self) -> bool {
        let n = self.in_buf();
        self.c.buf.advance(n);
        self.body_left -= n as u64;
        self.body_left == 0
    }
}

async fn connect(app: &App, up: &Upstream) -> Result<UpstreamStream, Failed> {
    crate::services::upstreams::connect_upstream(app, up)
        .await
        .map_err(|e| Failed::Answer(e.into()))
}

/// Reads the upstream's response head (skipping interim 1xx responses) into `ubuf`; what follows
/// the head stays in `ubuf`.
async fn response_head(
    conn: &mut UpstreamStream,
    ubuf: &mut BytesMut,
    head_only: bool,
    out: &mut Vec<u8>,
) -> Result<ResponseHead, HeadError> {
    loop {
        if let Some(head) = parse_response(ubuf, head_only, out)? {
            return Ok(head);
        }
        room(ubuf);
        match conn.read_buf(ubuf).await {
            Ok(0) => return Err(HeadError::Closed),
            Ok(_) => {}
            Err(e) => return Err(HeadError::Io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(parts: &[&[u8]]) -> (Vec<usize>, Chunked) {
        let mut c = Chunked::default();
        let mut taken = vec![];
        for p in parts {
            let (n, done) = c.take(p);
            taken.push(n);
            if done {
                break;
            }
        }
        (taken, c)
    }

    #[test]
    fn chunked_bodies_end_exactly_after_the_last_chunk_and_trailers() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nNEXT";
        let (taken, c) = scan(&[body]);
        assert_eq!(c, Chunked::Done);
        assert_eq!(
            taken,
            vec![body.len() - 4],
            "the bytes after the body are not taken"
        );
        // Split at every position: same end.
        for cut in 1..body.len() - 4 {
            let (taken, c) = scan(&[&body[..cut], &body[cut..]]);
            assert_eq!(c, Chunked::Done, "cut at {cut}");
            assert_eq!(taken.iter().sum::<usize>(), body.len() - 4, "cut at {cut}");
        }
        let trailers = b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n";
        let (taken, c) = scan(&[trailers]);
        assert_eq!((taken[0], c), (trailers.len(), Chunked::Done));
        let (_, c) = scan(&[b"5\r\nhello\r\n"]);
        assert!(matches!(c, Chunked::Start), "needs more: {c:?}");
    }

    #[test]
    fn malformed_chunked_bodies_stop_the_relay() {
        for bad in [&b"zz\r\n"[..], b"5\r\nhelloXX", b"5\nhello\r\n"] {
            let (_, c) = scan(&[bad]);
            assert!(c.bad(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn only_plain_gateway_calls_take_the_fast_path() {
        let a = "11111111-1111-4111-8111-111111111111";
        let w = "22222222-2222-4222-8222-222222222222";
        let req = |line: &str, extra: &str| format!("{line}\r\nhost: x\r\n{extra}\r\n");
        let fast = |s: String| matches!(parse(s.as_bytes()), Parsed::Call(_));
        let gw = format!("/api/accounts/{a}/workspaces/{w}");
        assert!(fast(req(&format!("GET {gw}/flows/x HTTP/1.1"), "")));
        assert!(fast(req(
            &format!("POST {gw}/flows/filter?x=1 HTTP/1.1"),
            "content-length: 2\r\n"
        )));
        for (line, extra) in [
            (format!("GET {gw}/flows/x HTTP/1.0"), ""),
            (format!("GET http://a{gw}/flows/x HTTP/1.1"), ""),
            (format!("GET {gw}/user_access/ HTTP/1.1"), ""),
            (format!("GET {gw}/upstream HTTP/1.1"), ""),
            (format!("POST {gw}/events/filter HTTP/1.1"), ""),
            (format!("GET {gw}/ HTTP/1.1"), ""),
            (format!("GET {gw} HTTP/1.1"), ""),
            (
                format!("GET {gw}/events/in HTTP/1.1"),
                "upgrade: websocket\r\n",
            ),
            (
                format!("POST {gw}/logs/ HTTP/1.1"),
                "transfer-encoding: chunked\r\n",
            ),
            (
                format!("POST {gw}/logs/ HTTP/1.1"),
                "expect: 100-continue\r\n",
            ),
            (
                format!("POST {gw}/logs/ HTTP/1.1"),
                "content-length: +5\r\n",
            ),
            (
                format!("POST {gw}/logs/ HTTP/1.1"),
                "content-length: 1\r\ncontent-length: 1\r\n",
            ),
            ("GET /api/me HTTP/1.1".to_string(), ""),
            ("GET /account/x HTTP/1.1".to_string(), ""),
        ] {
            assert!(!fast(req(&line, extra)), "{line} {extra}");
        }
        assert!(matches!(
            parse(format!("GET {gw}/flows/x HTTP/1.1\r\nhost: x\r\n").as_bytes()),
            Parsed::Partial
        ));
        let no_host = format!("GET {gw}/flows/x HTTP/1.1\r\n\r\n");
        assert!(matches!(parse(no_host.as_bytes()), Parsed::General));
        let long = format!(
            "GET {gw}/flows/x HTTP/1.1\r\nx: {}\r\n",
            "a".repeat(MAX_HEAD)
        );
        assert!(matches!(parse(long.as_bytes()), Parsed::General));
    }
}
