//! The gateway's two transports agree. Atrium's own accept loop serves a gateway call of the
//! common shape inline (`http::gateway::fast`) and hands everything else to hyper and the router;
//! a connection whose first request was anything else stays with hyper. This test generates
//! thousands of requests — methods, paths with odd but legal characters and percent-escapes,
//! queries, header sets with odd case and spacing, bodies, and odd framing (leading-zero and
//! repeated `Content-Length`, chunked bodies, HTTP/1.0, lower-case methods, absolute targets,
//! obsolete line folding, bare LF line ends) — and sends each one twice, byte for byte: on a
//! fresh connection (the fast path, when eligible) and on a connection already handed to hyper.
//! The upstream must receive the same bytes both times (the head exactly, the body's content), or
//! neither transport may forward it; and the client must get the same status class.

use crate::gateway::setup;
use crate::support::*;
use rand::{Rng, SeedableRng};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A request as the upstream received it: the head exactly as sent, and the body (decoded when
/// it came chunked).
#[derive(Clone, PartialEq, Eq)]
struct Received {
    head: Vec<u8>,
    body: Vec<u8>,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} + {} body bytes",
            String::from_utf8_lossy(&self.head),
            self.body.len()
        )
    }
}

/// An upstream that records every request it receives and answers each with a small 200.
async fn recording_upstream() -> (u16, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some(r) = read_request(&mut s, &mut buf).await {
                    log.lock().expect("log").push(r);
                    if s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, seen)
}

/// Reads one request (head, then its body by `Content-Length` or chunked encoding).
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Received> {
    let mut chunk = [0u8; 8192];
    let (head_len, headers) = loop {
        let mut h = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut h);
        if let Ok(httparse::Status::Complete(n)) = req.parse(buf) {
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            break (n, headers);
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head: Vec<u8> = buf.drain(..head_len).collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            };
            let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            buf.drain(..line_end + 2);
            while buf.len() < size + 2 {
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
            if size == 0 {
                break;
            }
        }
    } else {
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < len {
            let n = s.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        body = buf.drain(..len).collect();
    }
    Some(Received { head, body })
}

/// Reads one response from Atrium; answers its status (0 when the connection closed first).
async fn read_status(s: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let mut h = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut h);
        if let Ok(httparse::Status::Complete(n)) = resp.parse(&buf) {
            let code = resp.code.unwrap_or(0);
            let len: usize = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                .unwrap_or(0);
            while buf.len() < n + len {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                }
            }
            return code;
        }
        match tokio::time::timeout(std::time::Duration::from_secs(3), s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return 0,
            Ok(Ok(k)) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}

/// One generated request, as raw bytes.
fn generate(rng: &mut rand::rngs::StdRng, prefix: &str, key: &str) -> Vec<u8> {
    let pick = |rng: &mut rand::rngs::StdRng, xs: &[&'static str]| xs[rng.gen_range(0..xs.len())];
    let method = pick(
        rng,
        &["GET", "POST", "PUT", "PATCH", "DELETE", "GET", "POST"],
    );
    let method = if rng.gen_ratio(1, 40) {
        method.to_ascii_lowercase()
    } else {
        method.to_string()
    };
    let uuid = uuid::Uuid::from_u128(rng.gen());
    let rest = match rng.gen_range(0..10) {
        0 => "flows/filter".to_string(),
        1 => format!("flow_runs/{uuid}"),
        2 => "deployments/filter".to_string(),
        3 => format!(
            "variables/name/{}",
            pick(rng, &["a", "with%20space", "caf%C3%A9", "x.y_z-~"])
        ),
        4 => "block_documents/filter".to_string(),
        5 => format!("block_documents/{uuid}"),
        6 => "logs/".to_string(),
        7 => format!(
            "work_pools/{}/queues/",
            pick(rng, &["default", "p%2Dq", "pool"])
        ),
        8 => "health".to_string(),
        _ => format!("task_runs/{uuid}/set_state"),
    };
    let query = match rng.gen_range(0..6) {
        0 => "?limit=5".to_string(),
        1 => "?include_secrets=false".to_string(),
        2 => format!("?a={}&b=&c", pick(rng, &["1", "%41", "x%2By"])),
        _ => String::new(),
    };
    let target = if rng.gen_ratio(1, 30) {
        format!("http://127.0.0.1{prefix}{rest}{query}")
    } else {
        format!("{prefix}{rest}{query}")
    };
    let version = if rng.gen_ratio(1, 25) {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    };
    let eol = if rng.gen_ratio(1, 40) { "\n" } else { "\r\n" };
    let mut head = format!("{method} {target} {version}{eol}Host: atrium.test{eol}");
    head.push_str(&format!(
        "{}: Bearer {key}{eol}",
        pick(rng, &["Authorization", "authorization", "AUTHORIZATION"])
    ));
    for (name, value) in [
        ("Accept", "application/json"),
        ("User-Agent", "prefect/3.4 (API 0.8.4)"),
        ("X-Prefect-Ui", "false"),
        ("X-MiXeD-Case", "Value With  Spaces"),
        ("Accept-Encoding", "gzip, deflate"),
        ("X-Empty", ""),
        ("Cache-Control", "no-cache"),
    ] {
        if rng.gen_ratio(1, 2) {
            let spacing = pick(rng, &[": ", ":", ":  ", ":\t"]);
            head.push_str(&format!("{name}{spacing}{value}{eol}"));
        }
    }
    if rng.gen_ratio(1, 50) {
        head.push_str(&format!("X-Folded: first{eol} second{eol}"));
    }
    // Hop-by-hop headers, some naming others (both transports must drop the named ones).
    match rng.gen_range(0..12) {
        0 => head.push_str(&format!("Connection: keep-alive, X-Prefect-Ui{eol}")),
        1 => head.push_str(&format!("Connection: close{eol}")),
        2 => head.push_str(&format!("Keep-Alive: timeout=5{eol}TE: trailers{eol}")),
        3 => head.push_str(&format!(
            "Proxy-Authorization: Basic eDp5{eol}Cookie: a=b{eol}"
        )),
        4 => head.push_str(&format!("X-Atrium-Internal: 1{eol}")),
        _ => {}
    }
    let has_body = matches!(method.as_str(), "POST" | "PUT" | "PATCH") || rng.gen_ratio(1, 20);
    let body: Vec<u8> = if has_body {
        match rng.gen_range(0..5) {
            0 => Vec::new(),
            1 => br#"{"limit": 5}"#.to_vec(),
            2 => br#"[{"name": "x", "level": 20, "message": "m", "timestamp": "2026-01-01T00:00:00Z", "flow_run_id": null}]"#.to_vec(),
            3 => format!(r#"{{"name": "{}", "value": {}}}"#, "v".repeat(rng.gen_range(0..300)), rng.gen::<u16>()).into_bytes(),
            _ => br#"{"include_secrets": false, "limit": 1}"#.to_vec(),
        }
    } else {
        Vec::new()
    };
    if has_body {
        head.push_str(&format!("Content-Type: application/json{eol}"));
        match rng.gen_range(0..12) {
            // Chunked, alone or with a Content-Length beside it (the request-smuggling shape:
            // both transports must read it one way, the chunked one, as RFC 9112 says).
            n @ (0 | 4) => {
                if n == 4 {
                    head.push_str(&format!("Content-Length: {}{eol}", body.len() + 3));
                }
                head.push_str(&format!("Transfer-Encoding: chunked{eol}{eol}"));
                let mut out = head.into_bytes();
                for part in body.chunks(7) {
                    out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                    out.extend_from_slice(part);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
                return out;
            }
            1 => head.push_str(&format!("Content-Length: 00{}{eol}", body.len())),
            2 => head.push_str(&format!(
                "Content-Length: {n}{eol}Content-Length: {n}{eol}",
                n = body.len()
            )),
            3 => head.push_str(&format!(
                "Content-Length: {}, {}{eol}",
                body.len(),
                body.len()
            )),
            // An unknown coding beside a length, a signed length.
            5 => head.push_str(&format!(
                "Transfer-Encoding: gzip{eol}Content-Length: {}{eol}",
                body.len()
            )),
            6 => head.push_str(&format!("Content-Length: +{}{eol}", body.len())),
            _ => head.push_str(&format!("Content-Length: {}{eol}", body.len())),
        }
    }
    head.push_str(eol);
    let mut out = head.into_bytes();
    out.extend_from_slice(&body);
    out
}

/// Sends `raw` on `s` and answers (Atrium's status, what the upstream received meanwhile).
async fn exchange(
    mut s: TcpStream,
    raw: &[u8],
    seen: &Arc<Mutex<Vec<Received>>>,
) -> (u16, Vec<Received>) {
    let before = seen.lock().expect("log").len();
    if s.write_all(raw).await.is_err() {
        return (0, Vec::new());
    }
    let status = read_status(&mut s).await;
    drop(s);
    // The upstream logs before it answers, and Atrium answers after the upstream did.
    let got = seen.lock().expect("log")[before..].to_vec();
    (status, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_path_and_hyper_forward_the_same_request_or_both_refuse() {
    let t = TestApp::new(Db::Sqlite).await;
    let port = t.serve_tcp().await;
    let (up, seen) = recording_upstream().await;
    let w = setup(&t, up, "diff").await;
    let prefix = w.path("");
    let key = w.owner.key.clone();
    let cases: usize = std::env::var("ATRIUM_DIFFERENTIAL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_a781_0001);
    let mut surprises = Vec::new();
    let (mut forwarded, mut refused) = (0, 0);
    for case in 0..cases {
        let raw = generate(&mut rng, &prefix, &key);
        // Fresh connection: the fast path takes the request when it is of the common shape.
        let fresh = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let (fast_status, fast_got) = exchange(fresh, &raw, &seen).await;
        // A connection handed to hyper by a first request that is not a gateway call.
        let mut handed = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        handed
            .write_all(b"GET /api/health HTTP/1.1\r\nHost: atrium.test\r\n\r\n")
            .await
            .expect("write");
        assert_eq!(
            read_status(&mut handed).await,
            200,
            "health on the hyper connection"
        );
        let (hyper_status, hyper_got) = exchange(handed, &raw, &seen).await;
        if fast_got.is_empty() {
            refused += 1;
        } else {
            forwarded += 1;
        }
        if fast_got != hyper_got || fast_status / 100 != hyper_status / 100 {
            surprises.push(format!(
                "case {case}: {:?}\n  fast path: {fast_status} {fast_got:?}\n  hyper:     {hyper_status} {hyper_got:?}",
                String::from_utf8_lossy(&raw)
            ));
            if surprises.len() >= 10 {
                break;
            }
        }
    }
    assert!(
        surprises.is_empty(),
        "{} disagreement(s):\n{}",
        surprises.len(),
        surprises.join("\n")
    );
    eprintln!("{cases} requests, each through both transports: {forwarded} forwarded, {refused} refused by both");
    // The generator exercises both outcomes.
    assert!(
        forwarded > cases / 4 && refused > 0,
        "forwarded {forwarded}, refused {refused}"
    );
}
