//! The real `prefect` CLI (from PyPI) logs in to a real `atrium serve` process, lists its
//! workspaces, and is refused with a wrong key. Needs `ATRIUM_TEST_PREFECT=/path/to/prefect`.

use crate::support::{http, missing, FreshDatabase, Installation};
use std::process::Command;

fn prefect(bin: &str, home: &std::path::Path, port: u16, args: &[&str]) -> std::process::Output {
    prefect_with_input(bin, home, port, args, "")
}

/// `prefect …` answering its prompts from `input`.
fn prefect_with_input(
    bin: &str,
    home: &std::path::Path,
    port: u16,
    args: &[&str],
    input: &str,
) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(bin)
        .args(args)
        .env("PREFECT_HOME", home)
        .env(
            "PREFECT_CLOUD_API_URL",
            format!("http://127.0.0.1:{port}/api"),
        )
        .env("DO_NOT_TRACK", "1")
        .env_remove("PREFECT_API_KEY")
        .env_remove("PREFECT_API_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run prefect");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    child.wait_with_output().expect("prefect output")
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

fn login_and_list(prefect_bin: &str, db: &str) {
    let inst = Installation::new(db.to_string());
    let (account, key) = inst.bootstrap("ann@acme.test", "acme");
    assert!(
        key.starts_with("pnu_") && !key.contains('\n'),
        "only the key on stdout: {key:?}"
    );
    let server = inst.serve();
    let port = server.port;
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

    // The IP allowlist through the CLI: add this machine, enforce, still in; list; disable.
    let run = |args: &[&str]| {
        let out = prefect_with_input(prefect_bin, home.path(), port, args, "y\n");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "prefect {args:?}: {text}");
        text
    };
    run(&[
        "cloud",
        "ip-allowlist",
        "add",
        "127.0.0.1",
        "--description",
        "this machine",
    ]);
    run(&["cloud", "ip-allowlist", "add", "10.0.0.0/8"]);
    let text = run(&["cloud", "ip-allowlist", "enable"]);
    assert!(text.contains("IP allowlist enabled"), "{text}");
    let text = run(&["cloud", "ip-allowlist", "ls"]);
    assert!(
        text.contains("127.0.0.1/32") && text.contains("10.0.0.0/8") && text.contains("ENABLED"),
        "{text}"
    );
    run(&["cloud", "ip-allowlist", "remove", "10.0.0.0/8"]);
    run(&["cloud", "ip-allowlist", "disable"]);

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

    // A service account's key logs in too, and sees the workspaces it was granted.
    let resp = http(
        port,
        "POST",
        &format!("/api/accounts/{account}/bots/"),
        &key,
        r#"{"name":"ci"}"#,
    );
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    let body = &resp[resp.find("\r\n\r\n").expect("body") + 4..];
    let bot: serde_json::Value = serde_json::from_str(body).expect("bot json");
    let bot_key = bot["api_key"]["key"].as_str().expect("bot key").to_string();
    let ws: serde_json::Value = {
        let resp = http(port, "GET", "/api/me/workspaces", &key, "");
        serde_json::from_str(&resp[resp.find("\r\n\r\n").expect("body") + 4..]).expect("json")
    };
    let ws_id = ws[0]["workspace_id"].as_str().expect("workspace id");
    let grant = format!(
        r#"{{"bot_id":"{}","workspace_role_id":"{}"}}"#,
        bot["id"].as_str().expect("id"),
        atrium::domain::role::BuiltinWorkspaceRole::Runner.id()
    );
    let resp = http(
        port,
        "POST",
        &format!("/api/accounts/{account}/workspaces/{ws_id}/bot_access/"),
        &key,
        &grant,
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let home3 = tempfile::tempdir().expect("home");
    let out = prefect(
        prefect_bin,
        home3.path(),
        port,
        &[
            "cloud",
            "login",
            "--key",
            &bot_key,
            "--workspace",
            "acme/prod",
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "login with a service-account key: {text}"
    );
}
