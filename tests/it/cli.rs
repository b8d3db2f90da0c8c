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
