//! Prometheus metrics, kept in fixed arrays of atomics (no locks, no allocation on the request
//! path) and written in the text exposition format at `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What kind of route a request reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// Atrium's own JSON API.
    Api,
    /// Forwarded to a workspace's upstream Prefect server.
    Gateway,
    /// A gateway websocket (counted when the upgrade is answered).
    GatewayWs,
    /// Dashboard pages and everything else.
    Ui,
}

impl RouteClass {
    const ALL: [RouteClass; 4] = [
        RouteClass::Api,
        RouteClass::Gateway,
        RouteClass::GatewayWs,
        RouteClass::Ui,
    ];
    fn name(self) -> &'static str {
        match self {
            RouteClass::Api => "api",
            RouteClass::Gateway => "gateway",
            RouteClass::GatewayWs => "gateway_ws",
            RouteClass::Ui => "ui",
        }
    }
}

/// Upper bounds (seconds) of the latency histograms' buckets.
const BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: std::time::Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BOUNDS.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us
            .fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, n) in BOUNDS.iter().zip(&self.buckets) {
            cumulative += n.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Status codes 100–599 per route class.
const STATUSES: usize = 500;

pub struct Metrics {
    requests: Vec<AtomicU64>,
    latency: [Histogram; 4],
    pub rate_limited: [AtomicU64; 2],
    pub upstream_errors: [AtomicU64; 3],
    pub upstream_latency: Histogram,
    pub index_rebuilds: AtomicU64,
    pub websockets_open: AtomicU64,
    /// Passes of each job that runs once (on the leading server only), by [`Job`].
    pub job_runs: [AtomicU64; 6],
}

/// The jobs that run on one server at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Outbox = 0,
    AuditCheckpoints = 1,
    AuditRetention = 2,
    RunRetention = 3,
    ExpirySweep = 4,
    DomainReverification = 5,
}

impl Job {
    pub const ALL: [Job; 6] = [
        Job::Outbox,
        Job::AuditCheckpoints,
        Job::AuditRetention,
        Job::RunRetention,
        Job::ExpirySweep,
        Job::DomainReverification,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Job::Outbox => "outbox",
            Job::AuditCheckpoints => "audit_checkpoints",
            Job::AuditRetention => "audit_retention",
            Job::RunRetention => "run_retention",
            Job::ExpirySweep => "expiry_sweep",
            Job::DomainReverification => "domain_reverification",
        }
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            requests: (0..RouteClass::ALL.len() * STATUSES)
                .map(|_| AtomicU64::new(0))
                .collect(),
            latency: Default::default(),
            rate_limited: Default::default(),
            upstream_errors: Default::default(),
            upstream_latency: Histogram::default(),
            index_rebuilds: AtomicU64::new(0),
            websockets_open: AtomicU64::new(0),
            job_runs: Default::default(),
        }
    }
}

/// What `/metrics` shows that is kept outside [`Metrics`]: the permission index's size, the rate
/// limiter's and this server's state.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gauges {
    pub index_accounts: usize,
    pub index_grants: usize,
    pub rate_limit_shared: bool,
    pub rate_limit_fallbacks: u64,
    pub jobs_leader: bool,
    pub nodes_live: u32,
}

/// Why an upstream call failed.
#[derive(Debug, Clone, Copy)]
pub enum UpstreamError {
    Connect = 0,
    Timeout = 1,
    Other = 2,
}

const UPSTREAM_ERRORS: [&str; 3] = ["connect", "timeout", "other"];

impl Metrics {
    pub fn request(&self, class: RouteClass, status: u16, d: std::time::Duration) {
        let ci = RouteClass::ALL
            .iter()
            .position(|c| *c == class)
            .unwrap_or(0);
        if (100..600).contains(&status) {
            self.requests[ci * STATUSES + usize::from(status - 100)].fetch_add(1, Relaxed);
        }
        self.latency[ci].observe(d);
    }

    /// Counts one pass of a job that runs once.
    pub fn job_ran(&self, job: Job) {
        self.job_runs[job as usize].fetch_add(1, Relaxed);
    }

    /// Passes of `job` so far on this server.
    pub fn job_runs(&self, job: Job) -> u64 {
        self.job_runs[job as usize].load(Relaxed)
    }

    pub fn upstream_error(&self, e: UpstreamError) {
        self.upstream_errors[e as usize].fetch_add(1, Relaxed);
    }

    /// The exposition text, with the gauges the caller read from elsewhere.
    pub fn render(&self, g: &Gauges) -> String {
        let Gauges {
            index_accounts,
            index_grants,
            ..
        } = *g;
        let mut out = String::with_capacity(8192);
        out.push_str("# HELP atrium_http_requests_total HTTP requests answered, by route class and status.\n# TYPE atrium_http_requests_total counter\n");
        for (ci, c) in RouteClass::ALL.iter().enumerate() {
            for s in 0..STATUSES {
                let n = self.requests[ci * STATUSES + s].load(Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "atrium_http_requests_total{{class=\"{}\",status=\"{}\"}} {n}",
                        c.name(),
                        s + 100
                    );
                }
            }
        }
        out.push_str("# HELP atrium_http_request_duration_seconds Time to the response head, by route class.\n# TYPE atrium_http_request_duration_seconds histogram\n");
        for (ci, c) in RouteClass::ALL.iter().enumerate() {
            self.latency[ci].write(
                &mut out,
                "atrium_http_request_duration_seconds",
                &format!("class=\"{}\"", c.name()),
            );
        }
        out.push_str("# HELP atrium_rate_limited_total Requests and websocket frames refused or delayed by a rate limit.\n# TYPE atrium_rate_limited_total counter\n");
        for (b, n) in crate::services::ratelimit::Bucket::ALL
            .iter()
            .zip(&self.rate_limited)
        {
            let _ = writeln!(
                out,
                "atrium_rate_limited_total{{bucket=\"{}\"}} {}",
                b.key(),
                n.load(Relaxed)
            );
        }
        out.push_str("# HELP atrium_upstream_errors_total Gateway calls that got no answer from the upstream.\n# TYPE atrium_upstream_errors_total counter\n");
        for (k, n) in UPSTREAM_ERRORS.iter().zip(&self.upstream_errors) {
            let _ = writeln!(
                out,
                "atrium_upstream_errors_total{{kind=\"{k}\"}} {}",
                n.load(Relaxed)
            );
        }
        out.push_str("# HELP atrium_upstream_duration_seconds Time from forwarding to the upstream's response head.\n# TYPE atrium_upstream_duration_seconds histogram\n");
        self.upstream_latency
            .write(&mut out, "atrium_upstream_duration_seconds", "");
        let _ = writeln!(out, "# HELP atrium_websockets_open Gateway websockets currently relayed.\n# TYPE atrium_websockets_open gauge\natrium_websockets_open {}", self.websockets_open.load(Relaxed));
        let _ = writeln!(out, "# HELP atrium_index_accounts Accounts in the permission index.\n# TYPE atrium_index_accounts gauge\natrium_index_accounts {index_accounts}");
        let _ = writeln!(out, "# HELP atrium_index_grants Workspace grants (user, service account, team) in the permission index.\n# TYPE atrium_index_grants gauge\natrium_index_grants {index_grants}");
        out.push_str("# HELP atrium_job_runs_total Passes of the jobs that run on one server at a time (only the leader's grow).\n# TYPE atrium_job_runs_total counter\n");
        for j in Job::ALL {
            let _ = writeln!(
                out,
                "atrium_job_runs_total{{job=\"{}\"}} {}",
                j.name(),
                self.job_runs(j)
            );
        }
        let _ = writeln!(out, "# HELP atrium_index_rebuilds_total Account snapshots rebuilt.\n# TYPE atrium_index_rebuilds_total counter\natrium_index_rebuilds_total {}", self.index_rebuilds.load(Relaxed));
        let _ = writeln!(out, "# HELP atrium_rate_limit_shared 1 when rate limits are shared through Redis and it answers.\n# TYPE atrium_rate_limit_shared gauge\natrium_rate_limit_shared {}", u8::from(g.rate_limit_shared));
        let _ = writeln!(out, "# HELP atrium_rate_limit_fallback_total Rate-limit decisions made per server because Redis failed.\n# TYPE atrium_rate_limit_fallback_total counter\natrium_rate_limit_fallback_total {}", g.rate_limit_fallbacks);
        let _ = writeln!(out, "# HELP atrium_jobs_leader 1 on the server that runs the jobs that run once.\n# TYPE atrium_jobs_leader gauge\natrium_jobs_leader {}", u8::from(g.jobs_leader));
        let _ = writeln!(out, "# HELP atrium_nodes_live Servers sharing the database, by heartbeat.\n# TYPE atrium_nodes_live gauge\natrium_nodes_live {}", g.nodes_live);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_cumulative_buckets() {
        let m = Metrics::default();
        m.request(
            RouteClass::Gateway,
            200,
            std::time::Duration::from_micros(300),
        );
        m.request(
            RouteClass::Gateway,
            200,
            std::time::Duration::from_millis(3),
        );
        m.request(RouteClass::Api, 404, std::time::Duration::from_millis(3));
        let text = m.render(&Gauges {
            index_accounts: 2,
            index_grants: 7,
            ..Gauges::default()
        });
        assert!(text.contains("atrium_http_requests_total{class=\"gateway\",status=\"200\"} 2"));
        assert!(text.contains("atrium_http_requests_total{class=\"api\",status=\"404\"} 1"));
        assert!(text.contains(
            "atrium_http_request_duration_seconds_bucket{class=\"gateway\",le=\"0.0005\"} 1"
        ));
        assert!(text.contains(
            "atrium_http_request_duration_seconds_bucket{class=\"gateway\",le=\"0.005\"} 2"
        ));
        assert!(text.contains("atrium_index_accounts 2"));
        assert!(text.contains("atrium_index_grants 7"));
    }
}
