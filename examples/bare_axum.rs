//! The peer for HTTP benchmarks: a bare axum server that answers `GET /api/me/workspaces` with a
//! fixed JSON body of the same shape Atrium returns, doing no authentication, authorization or
//! database work. `cargo run --release --example bare_axum -- 127.0.0.1:4502`
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed step here should fail loudly

use axum::routing::get;
use axum::Json;

fn main() {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4502".into());
    let body = serde_json::json!([{
        "account_id": "9a2b7c1e-0000-4000-8000-000000000001",
        "account_name": "Bench",
        "account_handle": "bench",
        "workspace_id": "9a2b7c1e-0000-4000-8000-000000000002",
        "workspace_name": "prod",
        "workspace_description": "",
        "workspace_handle": "prod"
    }]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let app = axum::Router::new().route(
            "/api/me/workspaces",
            get(move || {
                let body = body.clone();
                async move { Json(body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind(&bind).await.expect("bind");
        axum::serve(listener, app).await.expect("serve");
    });
}
