//! Servers killed (SIGKILL) in the middle of mixed writes, twenty times on each database: a
//! ledger of the writes the clients saw acknowledged must all be there afterwards (0 lost), every
//! change must sit with its audit event and no event without its change (0 half-applied), and
//! every chain must verify after each restart (`atrium audit verify`).

use crate::support::{http, missing, FreshDatabase, Installation};
use atrium::domain::AccountId;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

const ROUNDS: usize = 20;
const WRITERS: usize = 4;

/// What the clients were told and what they were in the middle of, per workspace.
#[derive(Default)]
struct Ledger {
    /// Workspace id → names it may have now: the last acknowledged name, then any names of
    /// renames sent after it whose answer never came (killed in flight).
    names: BTreeMap<String, Vec<String>>,
    /// Acknowledged deletions, and deletions in flight.
    deleted: BTreeSet<String>,
    maybe_deleted: BTreeSet<String>,
    /// Acknowledged team names.
    teams: BTreeSet<String>,
    acked: usize,
    /// Answers other than 2xx from a live server (there should be none).
    refused: Vec<String>,
}

fn json_of(resp: &str) -> serde_json::Value {
    resp.split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// One writer's mixed load until the server dies: create a workspace, rename it, create a team,
/// delete every third workspace it made. A refused write (anything but 2xx while the server
/// answers) is recorded in the ledger and ends this writer: the test reports it.
fn writer(port: u16, account: &str, key: &str, tag: String, ledger: &Mutex<Ledger>) {
    let ok = |r: &str| {
        if !r.starts_with("HTTP/1.1 2") && !r.is_empty() {
            let status = r.lines().next().unwrap_or_default();
            let body = r.split("\r\n\r\n").nth(1).unwrap_or_default();
            ledger
                .lock()
                .expect("ledger")
                .refused
                .push(format!("{tag}: {status} {body}"));
        }
        r.starts_with("HTTP/1.1 2")
    };
    for i in 0.. {
        let handle = format!("{tag}-{i}");
        let r = http(
            port,
            "POST",
            &format!("/api/accounts/{account}/workspaces/"),
            key,
            &format!(r#"{{"name":"{handle}","handle":"{handle}"}}"#),
        );
        if !ok(&r) {
            return;
        }
        let id = json_of(&r)["id"]
            .as_str()
            .expect("workspace id")
            .to_string();
        {
            let mut l = ledger.lock().expect("ledger");
            l.names.insert(id.clone(), vec![handle.clone()]);
            l.acked += 1;
        }
        let renamed = format!("{handle} renamed");
        ledger
            .lock()
            .expect("ledger")
            .names
            .get_mut(&id)
            .expect("entry")
            .push(renamed.clone());
        let r = http(
            port,
            "PATCH",
            &format!("/api/accounts/{account}/workspaces/{id}"),
            key,
            &format!(r#"{{"name":"{renamed}"}}"#),
        );
        if !ok(&r) {
            return;
        }
        {
            let mut l = ledger.lock().expect("ledger");
            l.names.insert(id.clone(), vec![renamed]);
            l.acked += 1;
        }
        let team = format!("team-{handle}");
        let r = http(
            port,
            "POST",
            &format!("/api/accounts/{account}/teams/"),
            key,
            &format!(r#"{{"name":"{team}"}}"#),
        );
        if !ok(&r) {
            return;
        }
        {
            let mut l = ledger.lock().expect("ledger");
            l.teams.insert(team);
            l.acked += 1;
        }
        if i % 3 == 2 {
            ledger
                .lock()
                .expect("ledger")
                .maybe_deleted
                .insert(id.clone());
            let r = http(
                port,
                "DELETE",
                &format!("/api/accounts/{account}/workspaces/{id}"),
                key,
                "",
            );
            if !ok(&r) {
                return;
            }
            let mut l = ledger.lock().expect("ledger");
            l.deleted.insert(id);
            l.acked += 1;
        }
    }
}

/// Checks the database against the ledger and the audit log against the database.
fn check(db: &str, account: &str, ledger: &Ledger, round: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let store = atrium::store::Store::connect(db, None)
            .await
            .expect("store");
        let mut c = store.reader().await.expect("conn");
        let account = AccountId::parse(account).expect("account id");
        let rows: BTreeMap<String, String> =
            atrium::store::workspaces::find_all_workspaces(&mut c, account)
                .await
                .expect("workspaces")
                .into_iter()
                .map(|w| (w.id.to_string(), w.name))
                .collect();
        let events = atrium::store::audit::find_chain(&mut c, account.0, 0, 10_000_000)
            .await
            .expect("chain");
        let teams: BTreeSet<String> =
            atrium::store::teams::find_teams(&mut c, account, &Default::default(), 1_000_000, 0)
                .await
                .expect("teams")
                .into_iter()
                .map(|t| t.name)
                .collect();
        drop(c);
        store.close().await;
        // 0 lost: every acknowledged write is there.
        for (id, names) in &ledger.names {
            if ledger.deleted.contains(id) {
                assert!(
                    !rows.contains_key(id),
                    "round {round}: {id} was deleted (acknowledged) but is back"
                );
                continue;
            }
            match rows.get(id) {
                Some(name) => assert!(
                    names.contains(name),
                    "round {round}: {id} is named {name:?}, the ledger says one of {names:?}"
                ),
                None => assert!(
                    ledger.maybe_deleted.contains(id),
                    "round {round}: acknowledged workspace {id} is lost"
                ),
            }
        }
        for t in &ledger.teams {
            assert!(
                teams.contains(t),
                "round {round}: acknowledged team {t} is lost"
            );
        }
        // 0 half-applied: each change with its event, each event with its change.
        let mut created = BTreeSet::new();
        let mut deleted = BTreeSet::new();
        let mut last_name: BTreeMap<String, String> = BTreeMap::new();
        let mut team_events = BTreeSet::new();
        for e in &events {
            let id = e
                .resource_id
                .trim_start_matches("prefect-cloud.workspace.")
                .to_string();
            match e.event.as_str() {
                "prefect-cloud.workspace.created" => {
                    assert!(
                        created.insert(id.clone()),
                        "round {round}: two created events for {id}"
                    );
                    if let Some(n) = e.payload["name"].as_str() {
                        last_name.insert(id, n.to_string());
                    }
                }
                "prefect-cloud.workspace.updated" => {
                    if let Some(n) = e.payload["after"]["name"].as_str() {
                        last_name.insert(id, n.to_string());
                    }
                }
                "prefect-cloud.workspace.deleted" => {
                    deleted.insert(id);
                }
                "prefect-cloud.team.created" => {
                    if let Some(n) = e.resource_name.clone() {
                        team_events.insert(n);
                    }
                }
                _ => {}
            }
        }
        for (id, name) in &rows {
            assert!(
                created.contains(id),
                "round {round}: workspace {id} without its created event"
            );
            assert!(
                !deleted.contains(id),
                "round {round}: workspace {id} has a deleted event but exists"
            );
            assert_eq!(
                last_name.get(id),
                Some(name),
                "round {round}: {id}'s name and its last event disagree"
            );
        }
        for id in &created {
            assert!(
                rows.contains_key(id) || deleted.contains(id),
                "round {round}: a created event for {id}, which is neither there nor deleted"
            );
        }
        assert_eq!(
            teams, team_events,
            "round {round}: teams and their created events"
        );
    });
}

fn crash_under_load(db: &str) {
    let inst = Installation::new(db.to_string());
    let (account, key) = inst.bootstrap("ann@crash.test", "crash");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    for round in 0..ROUNDS {
        let mut server = inst.serve();
        let port = server.port;
        let before = ledger.lock().expect("ledger").acked;
        let workers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (account, key, ledger) = (account.clone(), key.clone(), ledger.clone());
                std::thread::spawn(move || {
                    writer(port, &account, &key, format!("r{round}w{w}"), &ledger)
                })
            })
            .collect();
        // Kill after a varying number of acknowledged writes, with requests in flight.
        let target = before + 8 + (round * 7) % 25;
        let start = std::time::Instant::now();
        while ledger.lock().expect("ledger").acked < target
            && start.elapsed() < std::time::Duration::from_secs(120)
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        server.child.kill().expect("kill");
        server.child.wait().expect("wait");
        for w in workers {
            w.join().expect("writer");
        }
        {
            let l = ledger.lock().expect("ledger");
            assert!(
                l.refused.is_empty(),
                "round {round}: writes refused by a live server: {:?}\nserver log:\n{}",
                l.refused,
                std::fs::read_to_string(inst.data.path().join("serve.log")).unwrap_or_default()
            );
            assert!(
                l.acked >= target,
                "round {round}: the load did not get going; server log:\n{}",
                std::fs::read_to_string(inst.data.path().join("serve.log")).unwrap_or_default()
            );
        }
        let out = inst.cli_output(&["audit", "verify"], None);
        assert!(
            out.status.success(),
            "round {round}: audit verify after the kill: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        check(db, &account, &ledger.lock().expect("ledger"), round);
        eprintln!(
            "round {round}: killed after {} acknowledged writes in all",
            ledger.lock().expect("ledger").acked
        );
    }
    let l = ledger.lock().expect("ledger");
    eprintln!("{db}: {ROUNDS} kills, {} acknowledged writes, {} workspaces, {} teams, 0 lost, 0 half-applied", l.acked, l.names.len(), l.teams.len());
}

#[test]
fn servers_killed_mid_write_twenty_times_lose_nothing_acknowledged_and_keep_changes_with_events() {
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
