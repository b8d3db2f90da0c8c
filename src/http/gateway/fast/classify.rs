//! Request classification: reads a request head and decides which server takes it — the fast
//! path for a gateway call of the common shape, the general server (hyper and the router) for
//! everything else — and, for a fast-path call, the request as `Parts`.

use super::*;

/// Headers per request or response (hyper's limit too).
pub(super) const MAX_HEADERS: usize = 100;

/// The longest request head the fast path waits for; a longer one goes to the general server,
/// which allows more and answers 431 past its own limit.
pub(super) const MAX_HEAD: usize = 16 * 1024;

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
    pub(super) parts: Parts,
    /// Bytes of the head in the buffer.
    pub(super) len: usize,
    /// The body's Content-Length (0 without one).
    pub(super) body: u64,
    /// The client asked to close the connection after this exchange.
    pub(super) close: bool,
}

/// Builds what the fast path needs before the first connection (the route split).
pub fn prepare() {
    crate::http::gateway::split::prepare();
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
pub(super) fn head_of(req: &httparse::Request<'_, '_>) -> Option<(Parts, u64, bool)> {
    if req.version != Some(1) {
        return None;
    }
    let path = req.path?;
    let t = gateway::target(path.split('?').next().unwrap_or(path))?;
    // Atrium's own paths are served by the router, on the general server.
    if t.rest.is_empty() || crate::http::gateway::split::atrium_serves(t.rest) {
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
