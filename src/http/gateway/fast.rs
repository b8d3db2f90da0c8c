//! The gateway's fast path: a gateway call of the common shape (HTTP/1.1, no upgrade, no
//! `Expect`, a body framed by Content-Length or none) is served inline by the task of the client's
//! connection — head parsed with `httparse`, the same checks as every gateway call
//! ([`super::begin`], [`super::admit`]), then written to a pooled upstream connection and the
//! response relayed back as it arrives, with no task, channel or pool checkout of another task in
//! between. Everything else goes to the general server (hyper and the router), which also serves
//! the gateway through `super::forward`. See docs/ARCHITECTURE.md, "The workspace gateway" (two
//! transports, one set of decisions).

use super::{
    admit, begin, gateway_location, set_json_body_headers, strip_request_headers,
    write_upstream_target, RESPONSE_HOP_BY_HOP,
};
use crate::app::App;
use crate::http::error::HttpError;
use crate::http::extract::resolve_client;
use crate::metrics::{RouteClass, UpstreamError};
use crate::services::upstreams::upstream_failed;
use crate::services::upstreams::Upstream;
use crate::services::{gateway, Error};
use crate::upstream::{pool, RESPONSE_TIMEOUT};
use axum::http::{header, request::Parts, HeaderMap, HeaderName, HeaderValue, Method, Uri};
use axum::response::IntoResponse;
use bytes::{Buf, BytesMut};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Headers per request or response (hyper's limit too).
const MAX_HEADERS: usize = 100;
/// The longest request head the fast path waits for; a longer one goes to the general server,
/// which allows more and answers 431 past its own limit.
const MAX_HEAD: usize = 16 * 1024;
/// The longest response head accepted from an upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const READ_CHUNK: usize = 16 * 1024;

/// What the bytes read so far on a connection are.
pub enum Parsed {
    /// An incomplete head: read more.
    Partial,
    /// Not a fast-path call: the general server takes the connection with these bytes.
    General,
    /// A gateway call for the fast path.
    Call(Box<Head>),
}

/// A gateway call's head, parsed.
pub struct Head {
    parts: Parts,
    /// Bytes of the head in the buffer.
    len: usize,
    /// The body's Content-Length (0 without one).
    body: u64,
    /// The client asked to close the connection after this exchange.
    close: bool,
}

/// The first path segments below a workspace that Atrium serves itself (`user_access`,
/// `upstream`, `events`…), from the OpenAPI document: calls there take the general server, so
/// the router decides between Atrium's routes and the gateway exactly as it always does.
fn atrium_segments() -> &'static [String] {
    static SEGMENTS: OnceLock<Vec<String>> = OnceLock::new();
    SEGMENTS.get_or_init(|| {
        let prefix = "/api/accounts/{account_id}/workspaces/{workspace_id}/";
        let mut v: Vec<String> = crate::http::openapi()
            .paths
            .paths
            .keys()
            .filter_map(|p| p.strip_prefix(prefix))
            .filter_map(|rest| rest.split('/').next())
            .map(str::to_string)
            .collect();
        v.sort();
        v.dedup();
        v
    })
}

/// Builds what the fast path needs before the first connection (the route split above).
pub fn prepare() {
    atrium_segments();
}

/// Reads a request head from `buf` and decides which server takes it.
pub fn parse(buf: &[u8]) -> Parsed {
    if buf.is_empty() {
        return Parsed::Partial;
    }
    // Uninitialized: filling 100 empty headers would write 3 KiB per parse.
    let mut headers =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Parsed::Partial,
        _ => return Parsed::General,
    };
    match head_of(&req) {
        Some((parts, body, close)) => Parsed::Call(Box::new(Head {
            parts,
            len,
            body,
            close,
        })),
        None => Parsed::General,
    }
}

/// The request as `Parts` when it is a fast-path gateway call.
fn head_of(req: &httparse::Request<'_, '_>) -> Option<(Parts, u64, bool)> {
    if req.version != Some(1) {
        return None;
    }
    let path = req.path?;
    let t = gateway::target(path.split('?').next().unwrap_or(path))?;
    let first = t.rest.split('/').next().unwrap_or("");
    if first.is_empty() || atrium_segments().iter().any(|s| s == first) {
        return None;
    }
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    let mut body = None;
    let mut close = false;
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        if name == header::TRANSFER_ENCODING || name == header::UPGRADE || name == header::EXPECT {
            return None;
        }
        if name == header::CONTENT_LENGTH {
            let v = h.value;
            if body.is_some() || v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
                return None;
            }
            body = std::str::from_utf8(v).ok()?.parse::<u64>().ok();
        }
        if name == header::CONNECTION {
            close |= asks_to_close(h.value);
        }
        headers.append(name, value);
    }
    // HTTP/1.1 requires Host; hyper answers its absence with 400.
    if !headers.contains_key(header::HOST) {
        return None;
    }
    let (mut parts, ()) = axum::http::Request::new(()).into_parts();
    parts.method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    parts.uri = Uri::try_from(path).ok()?;
    parts.headers = headers;
    Some((parts, body.unwrap_or(0), close))
}

/// How an exchange failed.
enum Failed {
    /// Answer the client with this error.
    Answer(HttpError),
    /// The connection is broken (client gone, or a response cut short after its head was sent):
    /// close it. The status already sent, if any.
    Broken(Option<u16>),
}

/// One client connection's state between its requests: the bytes read and not yet used (a
/// body's start, pipelined requests), reusable buffers, the timer of every wait, and the upstream
/// connection its last call used (kept for the next call to the same upstream, so a busy client
/// connection never touches the shared pool).
pub struct Conn {
    client: TcpStream,
    peer: SocketAddr,
    /// The peer's address as text, made once per connection.
    peer_ip: String,
    pub buf: BytesMut,
    watchdog: Watchdog,
    ubuf: BytesMut,
    out: Vec<u8>,
    sticky: Option<(String, TcpStream)>,
    /// The connection thread serving this connection (upstream connections are pooled by it).
    thread: usize,
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
    fn upstream(&mut self, app: &App, address: &str) -> Option<TcpStream> {
        if let Some((a, s)) = self.sticky.take() {
            if a != address {
                app.upstream_pool.checkin(&a, self.thread, s);
            } else if pool::still_open(&s) {
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
struct Watchdog {
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

/// The limit of every wait on a connection: the upstream's answer has as long as on the router
/// path (and the 504's message says so).
const LIMIT: Duration = RESPONSE_TIMEOUT;

impl Watchdog {
    fn new() -> Watchdog {
        Watchdog {
            sleep: Box::pin(tokio::time::sleep(LIMIT)),
        }
    }

    /// Runs `fut` to its end, or `None` once [`LIMIT`] passed since `since` (which must not be
    /// earlier than the `since` of the previous wait on this connection).
    async fn limit<F: std::future::Future>(
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
    let (parts, body) = e.into_response().into_parts();
    // Error bodies are in memory: this resolves at once.
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

fn status_line(out: &mut Vec<u8>, status: u16, reason: Option<&str>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn write_headers(out: &mut Vec<u8>, h: &HeaderMap) {
    for (n, v) in h {
        out.extend_from_slice(n.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
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

        // The request head, and what of the body is at hand, for one write.
        strip_request_headers(&mut parts.headers);
        let mut out = std::mem::take(&mut self.c.out);
        out.clear();
        out.extend_from_slice(parts.method.as_str().as_bytes());
        out.push(b' ');
        write_upstream_target(&mut out, &up, &t, rewrite.query(uri.query()));
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
            if let Some((a, s)) = self.c.sticky.replace((up.address.clone(), conn)) {
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
    ) -> Result<(TcpStream, ResponseHead), Failed> {
        let app = self.app;
        let started = Instant::now();
        let mut retried = false;
        loop {
            let (mut conn, reused) = match self.c.upstream(app, &up.address) {
                Some(c) => (c, true),
                None => (connect(app, up).await?, false),
            };
            let retry = reused && bodiless && !retried;
            if let Err(e) = conn.write_all(out).await {
                if retry {
                    retried = true;
                    continue;
                }
                return Err(upstream_error(app, up, UpstreamError::Other, &e));
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
        conn: &mut TcpStream,
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
    async fn relay_body(&mut self, conn: &mut TcpStream, up: &Upstream) -> Result<(), Failed> {
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

async fn connect(app: &App, up: &Upstream) -> Result<TcpStream, Failed> {
    crate::services::upstreams::connect_upstream(app, up)
        .await
        .map_err(|e| Failed::Answer(e.into()))
}

/// Makes room to read into `b`. A buffer emptied by the last exchange starts again at the front
/// of its allocation, so a busy connection keeps reading into the same few cache lines instead of
/// walking through its whole buffer (at 256 connections that walk was megabytes of cache).
fn room(b: &mut BytesMut) {
    if !b.try_reclaim(READ_CHUNK) {
        b.reserve(READ_CHUNK);
    }
}

/// A status code's reason phrase for the status line.
fn reason(status: u16) -> Option<&'static str> {
    axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
}

/// An upstream response head, parsed.
struct ResponseHead {
    status: u16,
    /// The upstream's `Location`, not yet relayed.
    location: Option<String>,
    framing: Framing,
    /// The connection can carry another request once this body has been read.
    reusable: bool,
}

#[derive(Debug)]
enum HeadError {
    /// Closed before a complete head.
    Closed,
    Io(std::io::Error),
    Malformed(&'static str),
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::Closed => f.write_str("connection closed before a response"),
            HeadError::Io(e) => write!(f, "{e}"),
            HeadError::Malformed(why) => write!(f, "malformed response: {why}"),
        }
    }
}

/// Reads the upstream's response head (skipping interim 1xx responses) into `ubuf`; what follows
/// the head stays in `ubuf`.
async fn response_head(
    conn: &mut TcpStream,
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

/// The final response head at the start of `ubuf`, taken off it; `None` until it is complete.
/// (Not async, so its header array never becomes part of the connection's future.)
fn parse_response(
    ubuf: &mut BytesMut,
    head_only: bool,
    out: &mut Vec<u8>,
) -> Result<Option<ResponseHead>, HeadError> {
    loop {
        if ubuf.is_empty() {
            return Ok(None);
        }
        let mut h =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, ubuf, &mut h)
        {
            Ok(httparse::Status::Complete(len)) => {
                let status = resp.code.unwrap_or(0);
                if status == 101 {
                    return Err(HeadError::Malformed("an upgrade nobody asked for"));
                }
                if (100..200).contains(&status) {
                    ubuf.advance(len);
                    continue;
                }
                let head = response_of(&resp, head_only, out)?;
                ubuf.advance(len);
                return Ok(Some(head));
            }
            Ok(httparse::Status::Partial) if ubuf.len() < MAX_RESPONSE_HEAD => return Ok(None),
            Ok(httparse::Status::Partial) => return Err(HeadError::Malformed("head too long")),
            Err(_) => return Err(HeadError::Malformed("unparsable head")),
        }
    }
}

/// The head's status and body framing (RFC 9112 §6.3); writes the status line and the headers
/// to relay into `out` — all but the hop-by-hop ones, `Location` (returned, to be rewritten) and a
/// `Content-Length` beside chunked coding — byte for byte as `httparse` accepted them.
fn response_of(
    resp: &httparse::Response<'_, '_>,
    head_only: bool,
    out: &mut Vec<u8>,
) -> Result<ResponseHead, HeadError> {
    let status = resp.code.unwrap_or(0);
    if !(200..600).contains(&status) {
        return Err(HeadError::Malformed("status out of range"));
    }
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut close = resp.version != Some(1);
    let mut location = None;
    for h in resp.headers.iter() {
        let is = |n: &str| h.name.eq_ignore_ascii_case(n);
        if is("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(HeadError::Malformed("content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Malformed("conflicting content-length"));
            }
            length = Some(n);
        } else if is("transfer-encoding") {
            // The last coding decides: chunked, or the body runs to the connection's end.
            let last = h.value.rsplit(|b| *b == b',').next().unwrap_or(b"");
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if is("connection") {
            close |= asks_to_close(h.value);
        } else if is("location") {
            let v = std::str::from_utf8(h.value).map_err(|_| HeadError::Malformed("location"))?;
            location = Some(v.to_string());
        }
    }
    out.clear();
    status_line(out, status, reason(status));
    for h in resp.headers.iter() {
        let hop = RESPONSE_HOP_BY_HOP
            .iter()
            .any(|n| h.name.eq_ignore_ascii_case(n));
        let skip = hop
            || h.name.eq_ignore_ascii_case("location")
            || (chunked == Some(true) && h.name.eq_ignore_ascii_case("content-length"));
        if !skip {
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
        }
    }
    let framing = if head_only || status == 204 || status == 304 {
        Framing::Length(0)
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked(Chunked::default()),
            (Some(false), _) => Framing::Close,
            (None, Some(n)) => Framing::Length(n),
            (None, None) => Framing::Close,
        }
    };
    let reusable = !close && !matches!(framing, Framing::Close);
    Ok(ResponseHead {
        status,
        location,
        framing,
        reusable,
    })
}

/// How a response body ends.
#[derive(Debug)]
enum Framing {
    /// This many bytes remain.
    Length(u64),
    /// Chunked transfer coding, relayed as it is.
    Chunked(Chunked),
    /// Until the upstream closes the connection.
    Close,
}

impl Framing {
    /// How many of `bytes` belong to the body, and whether the body ends there.
    fn take(&mut self, bytes: &[u8]) -> (usize, bool) {
        match self {
            Framing::Length(left) => {
                let n = usize::try_from(*left).map_or(bytes.len(), |l| l.min(bytes.len()));
                *left -= n as u64;
                (n, *left == 0)
            }
            Framing::Chunked(c) => c.take(bytes),
            Framing::Close => (bytes.len(), false),
        }
    }

    /// The upstream broke the chunked coding: the relay stops and the client's connection closes.
    fn failed(&self) -> bool {
        matches!(self, Framing::Chunked(c) if c.bad())
    }
}

/// Where a chunked body's scanner is (RFC 9112 §7.1): it finds the body's end without changing
/// a byte.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    /// Reading a chunk size's hex digits (`size` so far).
    #[default]
    Start,
    Size(u64),
    /// After the size: extensions up to CR.
    Ext(u64),
    /// Expecting LF after the size line.
    SizeLf(u64),
    /// Inside chunk data.
    Data(u64),
    /// Expecting CR, then LF, after chunk data.
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines, at the start of one.
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// LF ending a trailer line (or the empty line that ends the body).
    TrailerLf {
        empty: bool,
    },
    /// A malformed body: relayed up to here, then the connection is cut.
    Bad,
    Done,
}

impl Chunked {
    fn take(&mut self, bytes: &[u8]) -> (usize, bool) {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            *self = match *self {
                Chunked::Start => match hex(b) {
                    Some(d) => Chunked::Size(u64::from(d)),
                    None => Chunked::Bad,
                },
                Chunked::Size(n) => match hex(b) {
                    Some(d) if n < (1 << 56) => Chunked::Size(n * 16 + u64::from(d)),
                    Some(_) => Chunked::Bad,
                    None if b == b'\r' => Chunked::SizeLf(n),
                    None if b == b';' || b == b' ' || b == b'\t' => Chunked::Ext(n),
                    None => Chunked::Bad,
                },
                Chunked::Ext(n) if b == b'\r' => Chunked::SizeLf(n),
                Chunked::Ext(n) => Chunked::Ext(n),
                Chunked::SizeLf(0) if b == b'\n' => Chunked::TrailerStart,
                Chunked::SizeLf(n) if b == b'\n' => Chunked::Data(n),
                Chunked::Data(n) => {
                    let take =
                        usize::try_from(n).map_or(bytes.len() - i, |n| n.min(bytes.len() - i));
                    i += take;
                    let left = n - take as u64;
                    *self = if left == 0 {
                        Chunked::DataCr
                    } else {
                        Chunked::Data(left)
                    };
                    continue;
                }
                Chunked::DataCr if b == b'\r' => Chunked::DataLf,
                Chunked::DataLf if b == b'\n' => Chunked::Start,
                Chunked::TrailerStart if b == b'\r' => Chunked::TrailerLf { empty: true },
                Chunked::TrailerStart | Chunked::Trailer if b != b'\r' => Chunked::Trailer,
                Chunked::Trailer => Chunked::TrailerLf { empty: false },
                Chunked::TrailerLf { empty: true } if b == b'\n' => Chunked::Done,
                Chunked::TrailerLf { empty: false } if b == b'\n' => Chunked::TrailerStart,
                Chunked::Done | Chunked::Bad => return (i, true),
                _ => Chunked::Bad,
            };
            i += 1;
            if *self == Chunked::Done {
                return (i, true);
            }
            if *self == Chunked::Bad {
                return (i - 1, true);
            }
        }
        (i, false)
    }

    fn bad(&self) -> bool {
        *self == Chunked::Bad
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Does a `Connection` header value ask to close the connection (requests and responses alike)?
fn asks_to_close(value: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
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
