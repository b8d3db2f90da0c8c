//! The real `prefect` CLI (from PyPI) logs in to a real `atrium serve` process, lists its
//! workspaces, and is refused with a wrong key. Needs `ATRIUM_TEST_PREFECT=/path/to/prefect`.

use crate::support::missing;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_atrium");

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn atrium(db: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(BIN)
        .args(args)
        .env("ATRIUM_DATABASE_URL", db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn atrium");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("atrium output");
    assert!(
        out.status.success(),
        "atrium {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

fn http(port: u16, method: &str, path: &str, key: &str, body: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

fn prefect(bin: &str, home: &std::path::Path, port: u16, args: &[&str]) -> std::process::Output {
    Command::new(bin)
        .args(args)
        .env("PREFECT_HOME", home)
        .env(
            "PREFECT_CLOUD_API_URL",
            format!("http://127.0.0.1:{port}/api"),
        )
        .env("DO_NOT_TRACK", "1")
        .env_remove("PREFECT_API_KEY")
        .env_remove("PREFECT_API_URL")
        .output()
        .expect("run prefect")
}

#[test]
fn prefect_cloud_login_and_workspace_ls_work_against_atrium() {
    let Ok(prefect_bin) = std::env::var("ATRIUM_TEST_PREFECT") else {
        missing("the prefect CLI (ATRIUM_TEST_PREFECT)");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    login_and_list(
        &prefect_bin,
        &format!("sqlite://{}/atrium.db", dir.path().display()),
    );
    match std::env::var("ATRIUM_TEST_POSTGRES_URL") {
        Ok(base) => {
            let db = FreshDatabase::create(&base);
            login_and_list(&prefect_bin, &db.url);
        }
        Err(_) => missing("PostgreSQL (ATRIUM_TEST_POSTGRES_URL)"),
    }
}

/// A PostgreSQL database of its own for a server process, dropped afterwards.
struct FreshDatabase {
    base: String,
    name: String,
    url: String,
}

impl FreshDatabase {
    fn create(base: &str) -> FreshDatabase {
        let name = format!("atrium_t_{}", uuid::Uuid::new_v4().simple());
        run_sql(base, &format!("CREATE DATABASE {name}"));
        let (prefix, _) = base.rsplit_once('/').expect("database URL has a path");
        FreshDatabase {
            base: base.to_string(),
            url: format!("{prefix}/{name}"),
            name,
        }
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        run_sql(
            &self.base,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn run_sql(url: &str, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut c = sqlx::AnyConnection::connect(url).await.expect("connect");
        sqlx::query(sql).execute(&mut c).await.expect("sql");
    });
}

fn login_and_list(prefect_bin: &str, db: &str) {
    let db = db.to_string();
    atrium(
        &db,
        &[
            "users",
            "create",
            "--email",
            "ann@acme.test",
            "--site-admin",
        ],
        Some("a-long-password\n"),
    );
    let account = atrium(
        &db,
        &[
            "accounts",
            "create",
            "--handle",
            "acme",
            "--name",
            "Acme",
            "--owner-email",
            "ann@acme.test",
        ],
        None,
    );
    let key = atrium(
        &db,
        &[
            "users",
            "api-key",
            "--email",
            "ann@acme.test",
            "--name",
            "cli",
            "--expires-in",
            "30d",
        ],
        None,
    );
    assert!(
        key.starts_with("pnu_") && !key.contains('\n'),
        "only the key on stdout: {key:?}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let _server = Server(
        Command::new(BIN)
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .env("ATRIUM_DATABASE_URL", &db)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn server"),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let resp = http(
        port,
        "POST",
        &format!("/api/accounts/{account}/workspaces/"),
        &key,
        r#"{"name":"Production","handle":"prod","description":"main"}"#,
    );
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");

    let home = tempfile::tempdir().expect("home");
    let out = prefect(
        prefect_bin,
        home.path(),
        port,
        &["cloud", "login", "--key", &key, "--workspace", "acme/prod"],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "prefect cloud login failed: {text}");
    assert!(text.contains("acme/prod"), "{text}");

    let out = prefect(
        prefect_bin,
        home.path(),
        port,
        &["cloud", "workspace", "ls"],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && text.contains("* acme/prod"),
        "workspace ls: {text}"
    );

    let bad = format!("{}{}", &key[..20], "A".repeat(20));
    let home2 = tempfile::tempdir().expect("home");
    let out = prefect(
        prefect_bin,
        home2.path(),
        port,
        &["cloud", "login", "--key", &bad, "--workspace", "acme/prod"],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "a wrong key must be refused: {text}");
    assert!(text.contains("Unable to authenticate"), "{text}");

    let out = prefect(
        prefect_bin,
        home2.path(),
        port,
        &["cloud", "login", "--key", &key, "--workspace", "acme/nope"],
    );
    assert!(
        !out.status.success(),
        "an unknown workspace must be refused"
    );
}
