//! Cost of authenticating a request by API key, in one run with its peers:
//! - `verify_key/cache_hit`: format + checksum check, SHA-256, cache lookup, expiry compare;
//! - `verify_key/cache_miss_sqlite`: the same plus the indexed lookup by hash in SQLite;
//! - `sha256_only`: hashing the key alone (the floor of any hash-at-rest scheme);
//! - `argon2id_verify`: what verifying the key with a password KDF would cost instead (why keys
//!   are stored as SHA-256: they carry ≥160 random bits, a slow KDF buys nothing).
//!
//! Run: `cargo bench --bench credentials`. Results go in BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed step here should fail loudly

use atrium::app::{App, SystemClock};
use atrium::config::Config;
use atrium::services::{self, credentials};
use atrium::store::{self, Store};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::sync::Arc;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let (app, key) = rt.block_on(async {
        let store = Store::connect(&url, None).await.expect("store");
        store.migrate().await.expect("migrate");
        let app = App::new(
            Config {
                database_url: url.clone(),
                ..Config::default()
            },
            store,
            Arc::new(SystemClock),
        )
        .await
        .expect("app");
        // 10,000 users with a key each, so the lookup runs against a realistic index.
        let mut last = None;
        for i in 0..10_000 {
            let mut tx = app.store.begin().await.expect("tx");
            let email = format!("user{i}@bench.test");
            let handle = format!("user{i}");
            let u = store::users::insert_user(
                &mut tx,
                store::users::NewUser {
                    email: &email,
                    handle: &handle,
                    first_name: "",
                    last_name: "",
                    password_hash: None,
                    site_admin: false,
                },
                app.now(),
            )
            .await
            .expect("user");
            let _users_only = tx.commit().await.expect("commit");
            last = Some(
                services::users::issue_api_key(&app, None, u.id, "k", None)
                    .await
                    .expect("key")
                    .key,
            );
        }
        (app, last.expect("a key"))
    });

    let mut g = c.benchmark_group("verify_key");
    g.bench_function("cache_hit", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                services::auth::authenticate_key(&app, &key)
                    .await
                    .expect("valid"),
            )
        })
    });
    g.bench_function("cache_miss_sqlite", |b| {
        b.to_async(&rt).iter(|| async {
            app.keys.clear();
            black_box(
                services::auth::authenticate_key(&app, &key)
                    .await
                    .expect("valid"),
            )
        })
    });
    g.bench_function("sha256_only", |b| {
        b.iter(|| black_box(credentials::sha256(black_box(&key))))
    });
    let hash = rt
        .block_on(app.hasher.hash(key.clone()))
        .expect("argon2 hash");
    g.sample_size(10);
    g.bench_function("argon2id_verify", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(
                app.hasher
                    .verify(key.clone(), Some(hash.clone()))
                    .await
                    .expect("verify"),
            )
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
