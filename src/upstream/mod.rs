//! The upstream side of the workspace gateway, below the service layer: the HTTP client the
//! general path forwards with, the idle-connection pool of the fast path, and their settings.
//! It knows nothing of accounts or permissions (the services decide; `http::gateway` carries).

pub mod pool;
pub mod tls;

use axum::body::Body;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// The gateway's HTTP client.
pub type UpstreamClient = hyper_util::client::legacy::Client<HttpConnector, Body>;

/// How long the upstream may take to connect, and to answer with a response head.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long an idle upstream connection is kept, and how many per upstream.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const MAX_IDLE_PER_UPSTREAM: usize = 512;

pub fn upstream_client() -> UpstreamClient {
    let mut c = HttpConnector::new();
    c.set_connect_timeout(Some(CONNECT_TIMEOUT));
    c.set_nodelay(true);
    c.set_keepalive(Some(IDLE_TIMEOUT));
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(MAX_IDLE_PER_UPSTREAM)
        .build(c)
}
