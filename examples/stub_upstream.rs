//! The upstream for gateway benchmarks: a minimal hyper HTTP/1.1 server that answers every request
//! with the same small JSON body (a Prefect flow), doing no work, so a benchmark measures only what
//! sits in front of it. `cargo run --release --example stub_upstream -- 127.0.0.1:4503`
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed step here should fail loudly

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

const BODY: &str = r#"{"id":"3c5c1f36-8d0a-4c56-9f55-8f3c3b2a1d11","created":"2026-01-01T00:00:00Z","updated":"2026-01-01T00:00:00Z","name":"bench-flow","tags":[],"labels":{}}"#;

fn main() {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4503".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        // Atrium's backlog (1024), not std's 128: a proxy opening its upstream pool in a burst
        // must not see handshakes dropped (uvicorn, Prefect's server, asks for 2048).
        let listener = atrium::http::server::listen(&bind).await.expect("bind");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(BODY.as_bytes())))
                            .expect("response"),
                    )
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}
