//! An open-loop HTTP load generator: sends GET requests at a fixed rate whatever the server's
//! speed (a slow server cannot slow the arrivals down — no coordinated omission), and measures each
//! latency from the moment its request was handed to the client. The generator's own lateness
//! against the schedule (timer granularity ≈ 1 ms) is reported apart as `max_lag_us`. Bounded in
//! count and time; loopback only.
//!
//! `cargo run --release --example loadgen -- URL RATE SECONDS [BEARER_KEY]`
//! prints one JSON line: {"url","rate","sent","ok","errors","p50_us","p90_us","p99_us","max_us"}.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed step here should fail loudly

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: loadgen URL RATE SECONDS [BEARER_KEY]");
        std::process::exit(2);
    }
    let url: hyper::Uri = args[1].parse().expect("a valid URL");
    let host = url.host().unwrap_or_default().to_string();
    assert!(
        host == "127.0.0.1" || host == "localhost" || host == "[::1]",
        "loadgen only targets loopback addresses"
    );
    let rate: u64 = args[2].parse().expect("RATE is requests per second");
    let seconds: u64 = args[3].parse().expect("SECONDS is a whole number");
    let key = args.get(4).cloned();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http();
        let total = rate * seconds;
        let latencies = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
        let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
        let start = Instant::now() + Duration::from_millis(50);
        let mut tasks = Vec::with_capacity(total as usize);
        let mut max_lag = 0u64;
        for i in 0..total {
            let intended = start + interval * i as u32;
            tokio::time::sleep_until(intended.into()).await;
            max_lag = max_lag.max(intended.elapsed().as_micros() as u64);
            let client = client.clone();
            let url = url.clone();
            let key = key.clone();
            let latencies = latencies.clone();
            let errors = errors.clone();
            tasks.push(tokio::spawn(async move {
                let sent = Instant::now();
                let mut req = hyper::Request::get(url);
                if let Some(k) = key {
                    req = req.header("authorization", format!("Bearer {k}"));
                }
                let req = req.body(Empty::new()).expect("request");
                let ok = matches!(
                    tokio::time::timeout(Duration::from_secs(10), async {
                        let resp = client.request(req).await.ok()?;
                        let status = resp.status();
                        resp.into_body().collect().await.ok()?;
                        status.is_success().then_some(())
                    })
                    .await,
                    Ok(Some(()))
                );
                if ok {
                    let us = sent.elapsed().as_micros() as u64;
                    latencies.lock().expect("lock").push(us);
                } else {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let mut l = latencies.lock().expect("lock").clone();
        l.sort_unstable();
        println!(
            "{{\"url\":\"{}\",\"rate\":{},\"sent\":{},\"ok\":{},\"errors\":{},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"max_us\":{},\"max_lag_us\":{}}}",
            args[1],
            rate,
            total,
            l.len(),
            errors.load(std::sync::atomic::Ordering::Relaxed),
            percentile(&l, 0.50),
            percentile(&l, 0.90),
            percentile(&l, 0.99),
            l.last().copied().unwrap_or(0),
            max_lag
        );
    });
}
