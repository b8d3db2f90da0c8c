//! The `atrium` command line as operators type it.

use crate::support::BIN;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Starts `atrium` with `args` (and no `ATRIUM_*` variables), waits for its first line on
/// standard error, checks the server answers, and stops it; that line.
fn serve_with(args: &[&str], port: u16) -> String {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ATRIUM_")) {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .args(args)
        .env("ATRIUM_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn atrium");
    let mut first = String::new();
    // Kept open until the server is stopped: a closed pipe would end it at its next line.
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    stderr.read_line(&mut first).expect("first line");
    let health = crate::support::http(port, "GET", "/api/health", "", "");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        health.starts_with("HTTP/1.1 200"),
        "{args:?}: {first} {health}"
    );
    first
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn serve_takes_its_settings_after_the_subcommand_as_well_as_before() {
    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite://{}/flags.db", dir.path().display());
    let data = dir.path().join("data").display().to_string();
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let after = serve_with(
        &[
            "serve",
            "--bind",
            &bind,
            "--database-url",
            &db,
            "--public-url",
            "https://atrium.example.test",
            "--data-dir",
            &data,
        ],
        port,
    );
    assert!(
        after.contains("public URL https://atrium.example.test"),
        "{after}"
    );
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let before = serve_with(
        &[
            "--database-url",
            &db,
            "--public-url",
            "https://before.example.test",
            "--data-dir",
            &data,
            "serve",
            "--bind",
            &bind,
        ],
        port,
    );
    assert!(
        before.contains("public URL https://before.example.test"),
        "{before}"
    );
}

/// A server whose standard error is closed from the start (a supervisor that never reads it)
/// starts and keeps serving: its start-up lines must not panic on the broken pipe.
#[test]
fn a_server_whose_standard_error_is_closed_keeps_serving() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("ATRIUM_")) {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            &format!("sqlite://{}/closed.db", dir.path().display()),
            "--data-dir",
            &dir.path().join("data").display().to_string(),
        ])
        .env("ATRIUM_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn atrium");
    // Close the read end before the server writes anything.
    drop(child.stderr.take());
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the server exited while starting"
        );
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The start-up lines are written right after the listener is bound.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let health = crate::support::http(port, "GET", "/api/health", "", "");
    let running = child.try_wait().expect("wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(running, "the server exited: {health}");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
}
