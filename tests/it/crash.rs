//! A server killed (SIGKILL) in the middle of a write load leaves every change with its audit
//! event or neither, and every chain verifiable (`atrium audit verify`).

use crate::support::{http, missing, FreshDatabase, Installation};
use atrium::domain::AccountId;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn crash_under_load(db: &str) {
    let inst = Installation::new(db.to_string());
    let (account, key) = inst.bootstrap("ann@crash.test", "crash");
    let mut server = inst.serve();
    let port = server.port;
    let created = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (account, key, created, stop) =
                (account.clone(), key.clone(), created.clone(), stop.clone());
            std::thread::spawn(move || {
                for i in 0..400 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let body = format!(r#"{{"name":"w","handle":"w{w}-{i}"}}"#);
                    let resp = http(
                        port,
                        "POST",
                        &format!("/api/accounts/{account}/workspaces/"),
                        &key,
                        &body,
                    );
                    if resp.starts_with("HTTP/1.1 201") {
                        created.fetch_add(1, Ordering::Relaxed);
                    } else if resp.is_empty() {
                        break;
                    }
                }
            })
        })
        .collect();
    // Kill the server while writes are in flight.
    let start = std::time::Instant::now();
    while created.load(Ordering::Relaxed) < 60
        && start.elapsed() < std::time::Duration::from_secs(60)
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    server.child.kill().expect("kill");
    server.child.wait().expect("wait");
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    assert!(
        created.load(Ordering::Relaxed) >= 60,
        "the load did not get going"
    );

    // The CLI verifies every chain.
    let out = inst.cli_output(&["audit", "verify"], None);
    assert!(
        out.status.success(),
        "audit verify after the crash: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Each workspace has exactly its created event, and each event its workspace.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = atrium::store::Store::connect(db, None)
            .await
            .expect("store");
        let mut c = store.reader().await.expect("conn");
        let account = AccountId::parse(&account).expect("account id");
        let workspaces: std::collections::BTreeSet<String> =
            atrium::store::workspaces::find_all_workspaces(&mut c, account)
                .await
                .expect("workspaces")
                .into_iter()
                .map(|w| format!("prefect-cloud.workspace.{}", w.id))
                .collect();
        let events: Vec<String> = atrium::store::audit::find_chain(&mut c, account.0, 0, 1_000_000)
            .await
            .expect("chain")
            .into_iter()
            .filter(|e| e.event == "prefect-cloud.workspace.created")
            .map(|e| e.resource_id)
            .collect();
        let event_set: std::collections::BTreeSet<String> = events.iter().cloned().collect();
        assert_eq!(events.len(), event_set.len(), "one event per workspace");
        assert_eq!(
            workspaces, event_set,
            "changes and events committed together"
        );
        assert!(workspaces.len() >= 60);
    });
}

#[test]
fn a_server_killed_mid_write_leaves_changes_and_events_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    crash_under_load(&format!("sqlite://{}/atrium.db", dir.path().display()));
    match std::env::var("ATRIUM_TEST_POSTGRES_URL") {
        Ok(base) => {
            let db = FreshDatabase::create(&base);
            crash_under_load(&db.url);
        }
        Err(_) => missing("PostgreSQL (ATRIUM_TEST_POSTGRES_URL)"),
    }
}

/// SIGTERM: the server stops accepting, closes idle keep-alive connections — one that never sent a
/// byte, one left after a gateway call (the fast path's loop), one left after an API call (handed
/// to hyper) — and exits 0 instead of waiting for them.
#[test]
fn a_server_asked_to_stop_closes_idle_connections_and_exits_cleanly() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().expect("tempdir");
    let inst = Installation::new(format!("sqlite://{}/atrium.db", dir.path().display()));
    let (account, key) = inst.bootstrap("ann@stop.test", "stop");
    let mut server = inst.serve();
    let port = server.port;
    let connect = || {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .expect("timeout");
        s
    };
    let ask = |s: &mut std::net::TcpStream, req: String| {
        s.write_all(req.as_bytes()).expect("write");
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).expect("read");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let mut silent = connect();
    let mut gateway = connect();
    let missing_ws = "3c5c1f36-8d0a-4c56-9f55-8f3c3b2a1d11";
    let resp = ask(
        &mut gateway,
        format!(
            "GET /api/accounts/{account}/workspaces/{missing_ws}/flows/x HTTP/1.1\r\nhost: a\r\nauthorization: Bearer {key}\r\n\r\n"
        ),
    );
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    let mut api = connect();
    let resp = ask(
        &mut api,
        "GET /api/health HTTP/1.1\r\nhost: a\r\n\r\n".to_string(),
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");

    let pid = server.child.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    // Idle connections are closed by the server: each read ends (0 bytes), none times out.
    for (name, s) in [
        ("silent", &mut silent),
        ("gateway", &mut gateway),
        ("api", &mut api),
    ] {
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("{name}: unexpected bytes {:?}", &buf[..n]),
            Err(e) => assert!(
                e.kind() == std::io::ErrorKind::ConnectionReset,
                "{name}: the server did not close the idle connection: {e}"
            ),
        }
    }
    let status = server.child.wait().expect("wait");
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
