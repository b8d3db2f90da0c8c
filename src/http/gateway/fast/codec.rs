//! The HTTP/1.1 response codec of the fast path, pure (no I/O): the upstream's response head
//! parsed and re-written for the client (hop-by-hop headers dropped, `Location` handed back to be
//! rewritten), the body's framing, and a chunked-body scanner that finds the body's end without
//! changing a byte.

use super::*;

/// The longest response head accepted from an upstream.
pub(super) const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// A status code's reason phrase for the status line.
pub(super) fn reason(status: u16) -> Option<&'static str> {
    axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
}

/// An upstream response head, parsed.
pub(super) struct ResponseHead {
    pub(super) status: u16,
    /// The upstream's `Location`, not yet relayed.
    pub(super) location: Option<String>,
    pub(super) framing: Framing,
    /// The connection can carry another request once this body has been read.
    pub(super) reusable: bool,
}

#[derive(Debug)]
pub(super) enum HeadError {
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

/// The final response head at the start of `ubuf`, taken off it; `None` until it is complete.
/// (Not async, so its header array never becomes part of the connection's future.)
pub(super) fn parse_response(
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
pub(super) fn response_of(
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
pub(super) enum Framing {
    /// This many bytes remain.
    Length(u64),
    /// Chunked transfer coding, relayed as it is.
    Chunked(Chunked),
    /// Until the upstream closes the connection.
    Close,
}

impl Framing {
    /// How many of `bytes` belong to the body, and whether the body ends there.
    pub(super) fn take(&mut self, bytes: &[u8]) -> (usize, bool) {
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
    pub(super) fn failed(&self) -> bool {
        matches!(self, Framing::Chunked(c) if c.bad())
    }
}

/// Where a chunked body's scanner is (RFC 9112 §7.1): it finds the body's end without changing
/// a byte.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunked {
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
    pub(super) fn take(&mut self, bytes: &[u8]) -> (usize, bool) {
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

    pub(super) fn bad(&self) -> bool {
        *self == Chunked::Bad
    }
}

pub(super) fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Does a `Connection` header value ask to close the connection (requests and responses alike)?
pub(super) fn asks_to_close(value: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
}

pub(super) fn status_line(out: &mut Vec<u8>, status: u16, reason: Option<&str>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub(super) fn write_headers(out: &mut Vec<u8>, h: &HeaderMap) {
    for (n, v) in h {
        out.extend_from_slice(n.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}
