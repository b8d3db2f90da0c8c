//! Several servers on one database (issue 19): rate limits shared through Redis (and what
//! happens when Redis is gone), the jobs that run once, how fast a change made on one server
//! reaches the others, readiness.

use crate::support::*;
use atrium::domain::role::{AccountRole, BuiltinWorkspaceRole};
use atrium::services::ratelimit::{Bucket, Limits};
use serde_json::json;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// The Redis the shared-limit tests use, or `None` (skipped, or failed in CI).
fn redis_url() -> Option<String> {
    match std::env::var("ATRIUM_TEST_REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            missing("Redis (ATRIUM_TEST_REDIS_URL)");
            None
        }
    }
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// What one GCRA cell admits from a standing overload between two instants: the burst (a whole
/// minute's budget) and then the budget's rate.
fn gcra_admits(per_minute: u32, elapsed: Duration) -> f64 {
    f64::from(per_minute) * (1.0 + elapsed.as_secs_f64() / 60.0)
}

/// Three servers (three `Limits`, each with its own leases, as three processes have) hammer one
/// account's budget through one Redis: together they admit what one server would, within 5 %,
/// where per-server limits admit three times as much.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_share_one_budget_through_redis() {
    let Some(url) = redis_url() else { return };
    let account = uuid::Uuid::new_v4();
    let per_minute = 1200;
    let servers: Vec<std::sync::Arc<Limits>> = (0..3)
        .map(|_| std::sync::Arc::new(Limits::shared(&url).expect("redis url")))
        .collect();
    let run_for = Duration::from_secs(6);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for l in &servers {
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            let (mut admitted, mut refused) = (0u64, 0u64);
            while started.elapsed() < run_for {
                match l
                    .take(account, Bucket::Api, 1, per_minute, now_us(), 3)
                    .await
                {
                    Ok(()) => admitted += 1,
                    Err(_) => refused += 1,
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
            (admitted, refused)
        }));
    }
    let mut admitted = 0;
    let mut per_server = Vec::new();
    for t in tasks {
        let (a, r) = t.await.expect("task");
        assert!(r > 0, "each server met the limit");
        admitted += a;
        per_server.push(a);
    }
    let expected = gcra_admits(per_minute, started.elapsed());
    let off = (admitted as f64 - expected) / expected;
    eprintln!(
        "shared limit: {admitted} admitted by 3 servers ({per_server:?}), one cell admits {expected:.0}: {:+.2} %",
        off * 100.0
    );
    assert!(
        off.abs() <= 0.05,
        "{admitted} admitted across three servers, {expected:.0} expected (±5 %)"
    );
    for l in &servers {
        assert!(l.is_shared());
        assert_eq!(l.fallbacks.load(Relaxed), 0);
    }
}

/// Redis unreachable: every call is still answered — admitted or refused with a retry time from
/// the server's own share of the budget — the failure is counted, and nothing waits long.
#[tokio::test]
async fn without_redis_each_server_limits_its_share_and_never_fails() {
    // Nothing listens on port 1.
    let l = Limits::shared("redis://127.0.0.1:1/").expect("url");
    let account = uuid::Uuid::new_v4();
    let t0 = now_us();
    let started = Instant::now();
    let mut admitted = 0;
    for _ in 0..40 {
        if l.take(account, Bucket::Api, 1, 60, t0, 2).await.is_ok() {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 30, "half of 60 per minute for one of two servers");
    assert!(!l.is_shared());
    assert_eq!(l.fallbacks.load(Relaxed), 40);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "one failed connection attempt, then local decisions for a while ({:?})",
        started.elapsed()
    );
}

/// Without Redis, a server takes an equal share of the budget from the live servers of the
/// registry (its heartbeat), and `/api/ready` says what it checked.
#[tokio::test]
async fn servers_register_by_heartbeat_and_report_readiness() {
    each_db(|a| async move {
        let b = a.peer().await;
        let live = atrium::services::node::heartbeat(&a.app)
            .await
            .expect("heartbeat");
        assert_eq!(live, 1);
        let live = atrium::services::node::heartbeat(&b.app)
            .await
            .expect("heartbeat");
        assert_eq!(live, 2, "both servers are in the registry");
        assert_eq!(
            atrium::services::node::live_nodes(&a.app)
                .await
                .expect("nodes")
                .len(),
            2
        );
        // A server that stops cleanly leaves the registry.
        atrium::services::node::leave(&b.app).await.expect("leave");
        assert_eq!(
            atrium::services::node::heartbeat(&a.app)
                .await
                .expect("heartbeat"),
            1
        );
        // One not heard from for longer than LIVE_FOR no longer counts.
        atrium::services::node::heartbeat(&b.app)
            .await
            .expect("heartbeat");
        a.clock.advance(chrono::Duration::seconds(20));
        assert_eq!(
            atrium::services::node::heartbeat(&a.app)
                .await
                .expect("heartbeat"),
            1
        );

        let (s, v) = a.call(M::GET, "/api/ready", None, None).await;
        assert_eq!(s, S::OK, "{v}");
        assert_eq!(v["ready"], true);
        let names: Vec<&str> = v["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .map(|c| c["name"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            names,
            ["database", "migrations", "permission_index", "shutdown"]
        );
        assert_eq!(v["node_id"], a.app.config.node_id.as_str());
        // A stopping server is not ready: load balancers stop sending to it.
        a.app.node.stopping.store(true, Relaxed);
        let (s, v) = a.call(M::GET, "/api/ready", None, None).await;
        assert_eq!(s, S::SERVICE_UNAVAILABLE);
        assert!(
            v["detail"].as_str().unwrap_or("").contains("shutting down"),
            "{v}"
        );
        // The liveness check is unaffected.
        assert_eq!(a.call(M::GET, "/api/health", None, None).await.0, S::OK);
    })
    .await;
}

/// The jobs that run once: of three servers on one PostgreSQL exactly one leads; when it dies
/// (its lock's connection closes) another leads within 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_leads_the_jobs_and_another_takes_over_when_it_dies() {
    if std::env::var("ATRIUM_TEST_POSTGRES_URL").is_err() {
        missing("PostgreSQL (ATRIUM_TEST_POSTGRES_URL)");
        return;
    }
    let a = TestApp::new(Db::Postgres).await;
    let (b, c) = (a.peer().await, a.peer().await);
    let apps = [&a.app, &b.app, &c.app];
    let mut loops: Vec<_> = apps
        .iter()
        .map(|app| Some(atrium::jobs::spawn_leadership(app)))
        .collect();
    let leaders = || {
        apps.iter()
            .filter(|app| app.node.leading.load(Relaxed))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while leaders() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Over several claim rounds, never more than one.
    for _ in 0..30 {
        assert_eq!(leaders(), 1, "exactly one leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = apps
        .iter()
        .position(|app| app.node.leading.load(Relaxed))
        .expect("a leader");
    // Only the leader ran the jobs that run once (each runs its first pass at once).
    use atrium::metrics::Job;
    let runs = |app: &atrium::app::App| Job::ALL.map(|j| app.metrics.job_runs(j));
    for (i, app) in apps.iter().enumerate() {
        let r = runs(app);
        if i == first {
            for j in [
                Job::Outbox,
                Job::AuditCheckpoints,
                Job::AuditRetention,
                Job::ExpirySweep,
            ] {
                assert!(
                    app.metrics.job_runs(j) > 0,
                    "the leader ran {}: {r:?}",
                    j.name()
                );
            }
        } else {
            assert_eq!(r, [0; 6], "server {i} does not lead yet ran jobs");
        }
    }
    // The leader dies: its loop (and the connection holding the lock) is gone.
    loops[first].take().expect("loop").abort();
    apps[first].node.leading.store(false, Relaxed);
    let died = Instant::now();
    while leaders() == 0 && died.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = died.elapsed();
    eprintln!("jobs leadership taken over after {took:?}");
    assert_eq!(leaders(), 1, "another server leads");
    let second = apps
        .iter()
        .position(|app| app.node.leading.load(Relaxed))
        .expect("a leader");
    let t0 = Instant::now();
    for j in [Job::Outbox, Job::AuditCheckpoints, Job::ExpirySweep] {
        while apps[second].metrics.job_runs(j) == 0 {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "the new leader runs {}",
                j.name()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let third = (0..3)
        .find(|&i| i != first && i != second)
        .expect("the third");
    assert_eq!(
        runs(apps[third]),
        [0; 6],
        "the server that never led never ran a job"
    );
    assert!(!apps[first].node.leading.load(Relaxed));
    assert!(
        took < Duration::from_secs(10),
        "taken over within 10 s ({took:?})"
    );
    for l in loops.into_iter().flatten() {
        l.abort();
    }
}

/// Email queued once is sent once, even when two servers run the outbox at the same moment (a
/// leader that lost its lock and has not noticed yet): each message is claimed before it is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_outboxes_at_once_send_each_message_once() {
    let Some(smtp) = SmtpSink::start() else {
        return;
    };
    let smtp = std::sync::Arc::new(smtp);
    each_db(|t| {
        let smtp = smtp.clone();
        async move {
            let t = t.reconfigured(|c| c.smtp_url = Some(smtp.url())).await;
            let peer = t.peer().await;
            let tag = format!("{:?}", t.db).to_lowercase();
            let owner = t.user(&format!("owner-{tag}@x.test")).await;
            let acct = t.account(&owner, "acme").await;
            let invitees: Vec<String> = (0..12).map(|i| format!("out{i}-{tag}@x.test")).collect();
            let body: Vec<_> = invitees
                .iter()
                .map(|e| json!({"email": e, "account_role_id": AccountRole::Member.id()}))
                .collect();
            let (s, v) = t
                .call(
                    M::POST,
                    &format!("/api/accounts/{acct}/invitations/"),
                    Some(&owner.key),
                    Some(json!(body)),
                )
                .await;
            assert_eq!(s, S::CREATED, "{v}");
            let (x, y) = tokio::join!(
                atrium::services::mail::deliver_due(&t.app),
                atrium::services::mail::deliver_due(&peer.app),
            );
            let (x, y) = (x.expect("outbox a"), y.expect("outbox b"));
            assert_eq!(
                x.0 + y.0,
                12,
                "every message sent by one of them ({x:?}, {y:?})"
            );
            let sent: Vec<String> = smtp
                .messages()
                .into_iter()
                .filter(|m| m.contains(&format!("-{tag}@x.test")))
                .collect();
            for e in &invitees {
                let n = sent
                    .iter()
                    .filter(|m| m.contains(&format!("To: {e}")))
                    .count();
                assert_eq!(n, 1, "{e} got {n} messages");
            }
        }
    })
    .await;
}

/// On SQLite, a change made by another process (the CLI) reaches the running server through
/// its `data_version` watch, without waiting for the 5 s sweep (not running here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_change_made_elsewhere_arrives_without_the_sweep() {
    let a = TestApp::new(Db::Sqlite).await;
    let owner = a.user("owner@x.test").await;
    let dev = a.user("dev@x.test").await;
    let acct = a.account(&owner, "acme").await;
    a.add_member(acct, &owner, &dev, AccountRole::Member).await;
    let ws = a.workspace(acct, &owner.key, "prod").await;
    // The other process (as the CLI does) starts after the account exists.
    let cli = a.peer().await;
    let watch = atrium::jobs::spawn_sqlite_watch(&a.app);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let probe = format!("/api/accounts/{acct}/workspaces/{ws}");
    let mut took = Vec::new();
    for _ in 0..5 {
        // Granted elsewhere, then revoked elsewhere; `a` follows each within the watch period.
        let (s, v) = cli.call(M::POST, &format!("{probe}/user_access/"), Some(&owner.key),
            Some(json!({"user_id": dev.id, "workspace_role_id": BuiltinWorkspaceRole::Viewer.id()}))).await;
        assert_eq!(s, S::OK, "{v}");
        let access = v[0]["id"].as_str().expect("id").to_string();
        let t0 = Instant::now();
        wait_for_status(&a, &probe, &dev.key, S::OK).await;
        took.push(t0.elapsed());
        assert_eq!(
            cli.call(
                M::DELETE,
                &format!("{probe}/user_access/{access}"),
                Some(&owner.key),
                None
            )
            .await
            .0,
            S::NO_CONTENT
        );
        let t0 = Instant::now();
        wait_for_status(&a, &probe, &dev.key, S::NOT_FOUND).await;
        took.push(t0.elapsed());
    }
    watch.abort();
    took.sort();
    eprintln!(
        "SQLite: changes made by another process seen after {:?} (median) … {:?} (max)",
        took[took.len() / 2],
        took[took.len() - 1]
    );
}

/// Polls `a` until `path` answers `want` for `key` (at most 10 s; the sweep would take 5).
async fn wait_for_status(a: &TestApp, path: &str, key: &str, want: S) {
    let t0 = Instant::now();
    loop {
        let s = a.call(M::GET, path, Some(key), None).await.0;
        if s == want {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{path} still {s}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// 1,000 revocations made on one server, each checked on another until refused there — the four
/// kinds in turn: a grant removed, a key deleted, a member deactivated, a role edited (a scope
/// taken out of a custom role) — p50 and p99 reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_revocations_reach_another_server_quickly() {
    if std::env::var("ATRIUM_TEST_POSTGRES_URL").is_err() {
        missing("PostgreSQL (ATRIUM_TEST_POSTGRES_URL)");
        return;
    }
    let a = TestApp::new(Db::Postgres).await;
    let owner = a.user("owner@x.test").await;
    let dev = a.user("dev@x.test").await;
    let ops = a.user("ops@x.test").await;
    let acct = a.account(&owner, "acme").await;
    a.add_member(acct, &owner, &dev, AccountRole::Member).await;
    let ops_membership = a.add_member(acct, &owner, &ops, AccountRole::Member).await;
    let ws = a.workspace(acct, &owner.key, "prod").await;
    let probe = format!("/api/accounts/{acct}/workspaces/{ws}");
    // `ops` holds a custom role with `see_flows`: a gateway read of a flow passes the gate and
    // ends in 503 (no upstream bound); without the scope it is refused before that.
    let (s, role) = a
        .call(
            M::POST,
            &format!("/api/accounts/{acct}/workspace_roles/"),
            Some(&owner.key),
            Some(json!({"name": "Flow readers", "scopes": ["see_flows"]})),
        )
        .await;
    assert_eq!(s, S::CREATED, "{role}");
    let role_path = format!(
        "/api/accounts/{acct}/workspace_roles/{}",
        role["id"].as_str().expect("id")
    );
    let (s, v) = a
        .call(
            M::POST,
            &format!("{probe}/user_access/"),
            Some(&owner.key),
            Some(json!({"user_id": ops.id, "workspace_role_id": role["id"]})),
        )
        .await;
    assert_eq!(s, S::OK, "{v}");
    let flow = format!("{probe}/flows/3c5c1f36-8d0a-4c56-9f55-8f3c3b2a1d11");
    let active = format!("/api/accounts/{acct}/account_memberships/{ops_membership}/active");
    let account_probe = format!("/api/accounts/{acct}");
    let b = a.peer().await;
    let listener = atrium::jobs::spawn_listener(&b.app).expect("listener on PostgreSQL");
    // Announcements made before the listener is connected would only reach b at its sweep.
    let t0 = Instant::now();
    while !b.app.node.listening.load(Relaxed) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the listener never connected"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let n: usize = std::env::var("ATRIUM_TEST_REVOCATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut took: [Vec<Duration>; 4] = Default::default();
    for i in 0..n {
        let kind = i % 4;
        match kind {
            0 => {
                let (s, v) = a.call(M::POST, &format!("{probe}/user_access/"), Some(&owner.key),
                    Some(json!({"user_id": dev.id, "workspace_role_id": BuiltinWorkspaceRole::Viewer.id()}))).await;
                assert_eq!(s, S::OK, "{v}");
                let access = v[0]["id"].as_str().expect("id").to_string();
                wait_for_status(&b, &probe, &dev.key, S::OK).await;
                assert_eq!(
                    a.call(
                        M::DELETE,
                        &format!("{probe}/user_access/{access}"),
                        Some(&owner.key),
                        None
                    )
                    .await
                    .0,
                    S::NO_CONTENT
                );
                let t0 = Instant::now();
                wait_for_status(&b, &probe, &dev.key, S::NOT_FOUND).await;
                took[kind].push(t0.elapsed());
            }
            1 => {
                let (s, v) = a
                    .call(
                        M::POST,
                        "/api/me/api_keys",
                        Some(&dev.key),
                        Some(json!({"name": format!("k{i}")})),
                    )
                    .await;
                assert_eq!(s, S::CREATED, "{v}");
                let (id, key) = (
                    v["id"].as_str().expect("id").to_string(),
                    v["key"].as_str().expect("key").to_string(),
                );
                wait_for_status(&b, "/api/me", &key, S::OK).await;
                assert_eq!(
                    a.call(
                        M::DELETE,
                        &format!("/api/me/api_keys/{id}"),
                        Some(&dev.key),
                        None
                    )
                    .await
                    .0,
                    S::NO_CONTENT
                );
                let t0 = Instant::now();
                wait_for_status(&b, "/api/me", &key, S::UNAUTHORIZED).await;
                took[kind].push(t0.elapsed());
            }
            2 => {
                wait_for_status(&b, &account_probe, &ops.key, S::OK).await;
                let (s, v) = a
                    .call(
                        M::PATCH,
                        &active,
                        Some(&owner.key),
                        Some(json!({"active": false})),
                    )
                    .await;
                assert_eq!(s, S::NO_CONTENT, "{v}");
                let t0 = Instant::now();
                wait_for_status(&b, &account_probe, &ops.key, S::NOT_FOUND).await;
                took[kind].push(t0.elapsed());
                let (s, v) = a
                    .call(
                        M::PATCH,
                        &active,
                        Some(&owner.key),
                        Some(json!({"active": true})),
                    )
                    .await;
                assert_eq!(s, S::NO_CONTENT, "{v}");
            }
            _ => {
                wait_for_status(&b, &flow, &ops.key, S::SERVICE_UNAVAILABLE).await;
                let (s, v) = a
                    .call(
                        M::PATCH,
                        &role_path,
                        Some(&owner.key),
                        Some(json!({"scopes": ["see_deployments"]})),
                    )
                    .await;
                assert!(s.is_success(), "{v}");
                let t0 = Instant::now();
                wait_for_status(&b, &flow, &ops.key, S::FORBIDDEN).await;
                took[kind].push(t0.elapsed());
                let (s, v) = a
                    .call(
                        M::PATCH,
                        &role_path,
                        Some(&owner.key),
                        Some(json!({"scopes": ["see_flows"]})),
                    )
                    .await;
                assert!(s.is_success(), "{v}");
            }
        }
    }
    listener.abort();
    let pct = |t: &mut Vec<Duration>, p: f64| {
        t.sort();
        t[((t.len() as f64 * p) as usize).min(t.len() - 1)]
    };
    let mut all: Vec<Duration> = took.iter().flatten().copied().collect();
    for (name, t) in [
        "grant removed",
        "key deleted",
        "member deactivated",
        "role edited",
    ]
    .iter()
    .zip(took.iter_mut())
    {
        eprintln!(
            "{name}: {} on another server: p50 {:?}, p99 {:?}",
            t.len(),
            pct(t, 0.5),
            pct(t, 0.99)
        );
    }
    eprintln!(
        "{n} revocations on another server: p50 {:?}, p99 {:?}, max {:?}",
        pct(&mut all, 0.5),
        pct(&mut all, 0.99),
        all[all.len() - 1]
    );
}

/// A running `atrium serve` on SQLite sees a plan changed by `atrium accounts set-plan` (another
/// process) without waiting for the 5 s sweep, and says so in one start line with its version,
/// database and node id; SIGTERM stops it cleanly, taking it out of the node registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_change_reaches_a_running_sqlite_server_and_sigterm_stops_it_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inst = Installation::new(format!("sqlite://{}/atrium.db", dir.path().display()));
    let (account, key) = inst.bootstrap("owner@x.test", "acme");
    let mut server = inst.serve();
    let port = server.port;
    let status = format!("/api/accounts/{account}/rate-limits/status");
    let limit_of = move || {
        let r = http(port, "GET", &status, &key, "");
        r.split("\"limit_per_minute\":")
            .nth(1)
            .and_then(|x| x.split([',', '}']).next())
            .unwrap_or("")
            .to_string()
    };
    assert_ne!(limit_of(), "7");
    let out = inst.cli_output(
        &[
            "accounts",
            "set-plan",
            "--account",
            "acme",
            "--plan",
            "pro",
            "--api-rate-limit",
            "7",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t0 = Instant::now();
    while limit_of() != "7" {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the plan change never arrived"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "set-plan reached the running server after {:?}",
        t0.elapsed()
    );
    // SIGTERM: the server stops accepting, finishes and exits 0.
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let t0 = Instant::now();
    let code = loop {
        if let Some(code) = server.child.try_wait().expect("wait") {
            break code;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "{code:?}");
    let log = std::fs::read_to_string(inst.data.path().join("serve.log")).expect("log");
    let start = log
        .lines()
        .find(|l| l.contains("atrium started"))
        .unwrap_or_else(|| panic!("no start line in {log}"));
    for field in [env!("CARGO_PKG_VERSION"), "sqlite", "node_id="] {
        assert!(start.contains(field), "{field} missing from {start}");
    }
    assert!(log.contains("atrium stopped"), "{log}");
    let nodes = inst.cli(&["nodes"], None);
    assert!(nodes.contains("no live servers"), "{nodes}");
}

/// The backup procedures of docs/operations.md, on both databases: a copy taken while the data
/// is in use, restored into a new database, still verifies its audit chains and serves the same
/// accounts.
#[test]
fn a_backup_restored_into_a_new_database_still_verifies_its_audit_chains() {
    // SQLite: `atrium backup --to FILE` (VACUUM INTO), then the copy is the database.
    let dir = tempfile::tempdir().expect("tempdir");
    let inst = Installation::new(format!("sqlite://{}/atrium.db", dir.path().display()));
    let (account, key) = inst.bootstrap("owner@x.test", "acme");
    let server = inst.serve();
    let ws = create_workspace(server.port, &account, &key, "prod");
    let copy = dir.path().join("backup.db");
    inst.cli(&["backup", "--to", copy.to_str().expect("utf8")], None);
    drop(server);
    let restored = Installation {
        db: format!("sqlite://{}", copy.display()),
        data: tempfile::tempdir().expect("tempdir"),
    };
    std::fs::copy(
        inst.data.path().join("audit-signing.key"),
        restored.data.path().join("audit-signing.key"),
    )
    .expect("key");
    verify_restored(&restored, &account, &ws, &key);
    let again = inst.cli_output(&["backup", "--to", copy.to_str().expect("utf8")], None);
    assert!(
        !again.status.success(),
        "an existing file is never overwritten"
    );

    // PostgreSQL: pg_dump, then pg_restore into a new database.
    let Ok(base) = std::env::var("ATRIUM_TEST_POSTGRES_URL") else {
        missing("PostgreSQL (ATRIUM_TEST_POSTGRES_URL)");
        return;
    };
    let source = FreshDatabase::create(&base);
    let inst = Installation::new(source.url.clone());
    let (account, key) = inst.bootstrap("owner@x.test", "acme");
    let server = inst.serve();
    let ws = create_workspace(server.port, &account, &key, "prod");
    let dump = inst.data.path().join("atrium.dump");
    let status = std::process::Command::new("pg_dump")
        .args(["--format=custom", "--no-owner", "--file"])
        .arg(&dump)
        .arg(&source.url)
        .status();
    if !status.as_ref().is_ok_and(|s| s.success()) {
        missing("pg_dump");
        return;
    }
    drop(server);
    let target = FreshDatabase::create(&base);
    let status = std::process::Command::new("pg_restore")
        .args(["--no-owner", "--exit-on-error", "--dbname", &target.url])
        .arg(&dump)
        .status()
        .expect("pg_restore");
    assert!(status.success(), "pg_restore");
    let restored = Installation {
        db: target.url.clone(),
        data: tempfile::tempdir().expect("tempdir"),
    };
    std::fs::copy(
        inst.data.path().join("audit-signing.key"),
        restored.data.path().join("audit-signing.key"),
    )
    .expect("key");
    verify_restored(&restored, &account, &ws, &key);
}

/// A restored installation: every audit chain verifies (with the original signing key), and a
/// server on it answers the original key with the original account and its workspace.
fn verify_restored(restored: &Installation, account: &str, ws: &str, key: &str) {
    let out = restored.cli_output(&["audit", "verify"], None);
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("ok: chain") && !text.contains("BROKEN"),
        "{text}"
    );
    let server = restored.serve();
    let r = http(
        server.port,
        "GET",
        &format!("/api/accounts/{account}/workspaces/{ws}"),
        key,
        "",
    );
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("\"handle\":\"prod\""),
        "{r}"
    );
}

/// SIGTERM: the server stops accepting, lets a gateway call in flight finish within the grace
/// period and exits 0; a call longer than the grace period is cut when it ends.
#[test]
fn sigterm_lets_calls_in_flight_finish_up_to_the_grace_period() {
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    // An upstream that answers every call after DELAY milliseconds.
    static DELAY: AtomicU64 = AtomicU64::new(0);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let upstream = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let slow = || async {
            tokio::time::sleep(Duration::from_millis(DELAY.load(SeqCst))).await;
            axum::Json(json!({"id": "3c5c1f36-8d0a-4c56-9f55-8f3c3b2a1d11", "name": "slow"}))
        };
        tokio::spawn(async move {
            let _ = axum::serve(listener, axum::Router::new().fallback(slow)).await;
        });
        port
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let inst = Installation::new(format!("sqlite://{}/atrium.db", dir.path().display()));
    let (account, key) = inst.bootstrap("owner@x.test", "acme");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let serve = || inst.serve_on(port, &[("ATRIUM_SHUTDOWN_GRACE_SECONDS", "3")]);
    let mut server = serve();
    let ws = create_workspace(port, &account, &key, "prod");
    inst.cli(
        &[
            "workspaces",
            "set-upstream",
            "--account",
            "acme",
            "--workspace",
            "prod",
            "--url",
            &format!("http://127.0.0.1:{upstream}/api"),
        ],
        None,
    );
    let flow = format!(
        "/api/accounts/{account}/workspaces/{ws}/flows/3c5c1f36-8d0a-4c56-9f55-8f3c3b2a1d11"
    );
    let t0 = Instant::now();
    while !http(port, "GET", &flow, &key, "").starts_with("HTTP/1.1 200") {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the upstream binding never arrived"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let term = |s: &Server| {
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &s.child.id().to_string()])
            .status()
            .expect("kill")
            .success());
    };
    let wait_exit = |s: &mut Server| -> (std::process::ExitStatus, Duration) {
        let t0 = Instant::now();
        loop {
            if let Some(code) = s.child.try_wait().expect("wait") {
                return (code, t0.elapsed());
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "still running 30 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };

    // A 1.5 s call in flight when SIGTERM arrives is answered, then the server exits.
    DELAY.store(1500, SeqCst);
    let (k, f) = (key.clone(), flow.clone());
    let call = std::thread::spawn(move || http(port, "GET", &f, &k, ""));
    std::thread::sleep(Duration::from_millis(300));
    term(&server);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "no new connections once stopping"
    );
    let (code, _) = wait_exit(&mut server);
    let answer = call.join().expect("call");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the call in flight finished: {answer}"
    );
    assert!(code.success(), "{code:?}");

    // A call longer than the grace period (3 s) does not hold the server: it exits at the end of
    // the grace period and the call is cut.
    DELAY.store(20_000, SeqCst);
    let mut server = serve();
    let (k, f) = (key.clone(), flow.clone());
    let call = std::thread::spawn(move || http(port, "GET", &f, &k, ""));
    std::thread::sleep(Duration::from_millis(300));
    term(&server);
    let (code, took) = wait_exit(&mut server);
    assert!(code.success(), "{code:?}");
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(15),
        "exited after {took:?}, grace 3 s"
    );
    let answer = call.join().expect("call");
    assert!(
        !answer.starts_with("HTTP/1.1 200"),
        "the call was cut, not answered: {answer}"
    );
    let log =
        std::fs::read_to_string(inst.data.path().join(format!("serve-{port}.log"))).expect("log");
    assert!(log.contains("grace period over"), "{log}");
}

/// A Redis of its own on a free port (`redis-server` from the PATH), killed when dropped.
struct OwnRedis {
    child: std::process::Child,
    port: u16,
}

impl OwnRedis {
    fn start(port: u16) -> Option<OwnRedis> {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if t0.elapsed() > Duration::from_secs(10) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(OwnRedis { child, port })
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Redis going away and coming back under a running limiter: every decision is still made (no
/// error but a retry time), the server limits alone meanwhile (counted), and it shares the
/// budget through Redis again once Redis answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_goes_away_and_comes_back_is_survived_and_used_again() {
    if redis_url().is_none() {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let Some(redis) = OwnRedis::start(port) else {
        missing("redis-server on the PATH");
        return;
    };
    let l = Limits::shared(&format!("redis://127.0.0.1:{}/", redis.port)).expect("url");
    let account = uuid::Uuid::new_v4();
    // 6,000 a minute: leases of 60 units; the cell is far from empty throughout.
    let take = || l.take(account, Bucket::Api, 1, 6000, now_us(), 1);
    for _ in 0..100 {
        assert!(take().await.is_ok());
    }
    assert!(l.is_shared());
    assert_eq!(l.fallbacks.load(Relaxed), 0);

    drop(redis);
    let mut decided = 0;
    for _ in 0..300 {
        // Admitted or refused with a retry time: never an error of its own.
        let _ = take().await;
        decided += 1;
    }
    assert_eq!(decided, 300);
    assert!(!l.is_shared(), "Redis is gone");
    assert!(l.fallbacks.load(Relaxed) > 0, "local decisions are counted");

    let _redis = OwnRedis::start(port).expect("redis again");
    let t0 = Instant::now();
    loop {
        let _ = take().await;
        if l.is_shared() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "Redis was never used again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = l.fallbacks.load(Relaxed);
    for _ in 0..100 {
        assert!(take().await.is_ok());
    }
    assert_eq!(
        l.fallbacks.load(Relaxed),
        before,
        "shared again: no more local decisions"
    );
    eprintln!("Redis used again {:?} after it came back", t0.elapsed());
}
