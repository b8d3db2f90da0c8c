//! End to end with the real `prefect` package on both sides: a real Prefect OSS server (with an
//! API auth string) is the upstream of a workspace, the stock client and CLI talk to Atrium in
//! Cloud mode. Covers login, a flow with a task (events/in → task run recorded), a `flow.serve()`
//! deployment hosted by a Runner service account and triggered through the gateway (events/out,
//! logs/out), Viewer limits, cross-tenant 404, rate limiting with client recovery, and run
//! retention. Needs `ATRIUM_TEST_PREFECT`.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const UPSTREAM_AUTH: &str = "upstream-secret";

/// A `prefect server start` child, stopped with SIGTERM when dropped.
pub struct PrefectServer {
    child: Child,
    pub port: u16,
    _home: tempfile::TempDir,
}

impl Drop for PrefectServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts a Prefect OSS server requiring `auth` and waits for `/api/health`.
pub fn start_prefect_server(prefect: &str, auth: &str) -> PrefectServer {
    start_prefect_server_with(prefect, auth, false)
}

/// [`start_prefect_server`], with its UI where Atrium serves it from when `ui` is set
/// (`PREFECT_UI_SERVE_BASE=/atrium-prefect-ui`, docs/gateway.md "Prefect UI").
pub fn start_prefect_server_with(prefect: &str, auth: &str, ui: bool) -> PrefectServer {
    let home = tempfile::tempdir().expect("home");
    let port = free_port();
    let mut cmd = Command::new(prefect);
    cmd.args([
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--analytics-off",
    ]);
    if ui {
        cmd.env("PREFECT_UI_SERVE_BASE", "/atrium-prefect-ui");
    } else {
        cmd.arg("--no-ui");
    }
    let child = cmd
        .env("PREFECT_HOME", home.path())
        .env("DO_NOT_TRACK", "1")
        .env("PREFECT_SERVER_API_AUTH_STRING", auth)
        .env("PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED", "true")
        .env("PREFECT_SERVER_LOGS_STREAM_PUBLISHING_ENABLED", "true")
        .env_remove("PREFECT_API_URL")
        .env_remove("PREFECT_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn prefect server");
    let server = PrefectServer {
        child,
        port,
        _home: home,
    };
    let start = Instant::now();
    loop {
        let resp = raw_http(port, "GET", "/api/health", &[], "");
        if resp.starts_with("HTTP/1.1 200") && resp.ends_with("true") {
            return server;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "prefect server did not start: {resp}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One request with arbitrary headers; the raw response.
pub(crate) fn raw_http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    if s.write_all(req.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn body_of(resp: &str) -> serde_json::Value {
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

/// The environment of a Cloud-mode client of `port` using `key` in a workspace.
struct Client<'a> {
    python: PathBuf,
    prefect: &'a str,
    home: tempfile::TempDir,
    cloud_url: String,
    api_url: String,
    key: String,
}

impl Client<'_> {
    fn command(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.env("PREFECT_HOME", self.home.path())
            .env("DO_NOT_TRACK", "1")
            .env("PREFECT_CLOUD_API_URL", &self.cloud_url)
            .env("PREFECT_API_URL", &self.api_url)
            .env("PREFECT_API_KEY", &self.key)
            .env("PREFECT_RUNNER_POLL_FREQUENCY", "1")
            .env_remove("PREFECT_API_AUTH_STRING");
        c
    }

    fn python(&self, script: &str) -> (bool, String) {
        let out = self
            .command(&self.python)
            .args(["-c", script])
            .output()
            .expect("run python");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn prefect(&self, args: &[&str]) -> (bool, String) {
        let out = self
            .command(Path::new(self.prefect))
            .args(args)
            .output()
            .expect("run prefect");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
}

const FLOW: &str = r#"
from prefect import flow, task, get_run_logger
@task
def add(a, b):
    return a + b
@flow(name="probe-flow")
def probe():
    get_run_logger().info("hello through the gateway")
    return add(1, 2)
print("RESULT", probe())
"#;

const SERVE: &str = r#"
from prefect import flow, get_run_logger
@flow(name="served-flow")
def served(x: int = 1):
    get_run_logger().info("served run %s", x)
    return x * 2
# The runner loads this file to run the flow: serve only when run as a script.
if __name__ == "__main__":
    served.serve(name="probe-deploy")
"#;

const VIEWER: &str = r#"
import asyncio, httpx
from prefect.client.orchestration import get_client
async def main():
    async with get_client() as c:
        runs = await c.read_flow_runs()
        print("LIST OK", len(runs))
        deps = await c.read_deployments()
        try:
            await c.create_flow_run_from_deployment(deps[0].id)
            print("CREATE ALLOWED")
        except httpx.HTTPStatusError as e:
            print("CREATE", e.response.status_code, e.response.json()["detail"])
asyncio.run(main())
"#;

const BURST: &str = r#"
import asyncio
from prefect.client.orchestration import get_client
async def main():
    async with get_client() as c:
        for i in range(70):
            await c.read_flows(limit=1)
    print("BURST DONE")
asyncio.run(main())
"#;

const SECRET_VALUE: &str = "s3cr3t-value-7f2a";

const SAVE_SECRET: &str = r#"
from prefect.blocks.system import Secret
Secret(value="s3cr3t-value-7f2a").save("db-password", overwrite=True)
print("SAVED")
"#;

const LOAD_SECRET: &str = r#"
from prefect.blocks.system import Secret
print("LOADED", Secret.load("db-password").get())
"#;

/// The Owner saves a Secret block; the Viewer's stock client loads it with the value obfuscated,
/// and no spelling of `include_secrets` on any secret-bearing route gets the value through.
fn secrets_stay_with_those_who_may_see_them(
    owner: &Client,
    viewer: &Client,
    port: u16,
    gw: &str,
    viewer_key: &str,
) {
    let (ok, text) = owner.python(SAVE_SECRET);
    assert!(ok && text.contains("SAVED"), "save: {text}");
    let (ok, text) = owner.python(LOAD_SECRET);
    assert!(
        ok && text.contains(&format!("LOADED {SECRET_VALUE}")),
        "the Owner reads the value: {text}"
    );
    let (ok, text) = viewer.python(LOAD_SECRET);
    assert!(
        ok && text.contains("LOADED") && !text.contains(SECRET_VALUE),
        "the Viewer's Secret.load: {text}"
    );
    let auth = format!("Bearer {viewer_key}");
    let id = body_of(&raw_http(
        port,
        "POST",
        &format!("{gw}/block_documents/filter"),
        &[("Authorization", &auth)],
        "{}",
    ))[0]["id"]
        .as_str()
        .expect("block id")
        .to_string();
    let mut tried = 0;
    for q in [
        "include_secrets=true",
        "include_secrets=1",
        "include_secrets=yes",
        "include%5Fsecrets=on",
        "include_secrets=false&include_secrets=t",
        "INCLUDE_SECRETS=true&include_secrets=y",
    ] {
        for path in [
            format!("{gw}/block_documents/{id}?{q}"),
            format!("{gw}/block_types/slug/secret/block_documents?{q}"),
            format!("{gw}/block_types/slug/secret/block_documents/name/db-password?{q}"),
        ] {
            let resp = raw_http(port, "GET", &path, &[("Authorization", &auth)], "");
            assert!(
                resp.starts_with("HTTP/1.1 200") && !resp.contains(SECRET_VALUE),
                "{path}: {resp}"
            );
            tried += 1;
        }
    }
    for body in [
        r#"{"include_secrets": true}"#,
        r#"{"include_secrets": "true"}"#,
        r#"{"include_secrets": 1}"#,
        r#"{"include_secrets": false, "include_secrets": true}"#,
        "\u{feff}{\"include_secrets\": true}",
        r#"{"include_secrets": true, "limit": NaN}"#,
    ] {
        let resp = raw_http(
            port,
            "POST",
            &format!("{gw}/block_documents/filter"),
            &[("Authorization", &auth)],
            body,
        );
        assert!(
            (resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.1 400"))
                && !resp.contains(SECRET_VALUE),
            "{body}: {resp}"
        );
        tried += 1;
    }
    assert_eq!(tried, 24);
}

/// Every route of the real Prefect server that takes `include_secrets` (query parameter or body
/// field) is one the gateway treats as secret-bearing.
fn the_upstreams_secret_routes_are_all_in_the_table(port: u16) {
    use atrium::domain::gateway_routes::{lookup, Need};
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(UPSTREAM_AUTH)
    );
    let doc = body_of(&raw_http(
        port,
        "GET",
        "/api/openapi.json",
        &[("Authorization", &basic)],
        "",
    ));
    let resolve = |v: &serde_json::Value| -> serde_json::Value {
        match v["$ref"].as_str().and_then(|r| r.strip_prefix("#/")) {
            Some(r) => r.split('/').fold(doc.clone(), |d, k| d[k].clone()),
            None => v.clone(),
        }
    };
    let mut found = Vec::new();
    for (path, item) in doc["paths"]
        .as_object()
        .expect("the upstream's OpenAPI paths")
    {
        for (method, op) in item.as_object().expect("path item") {
            let in_query = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| resolve(p)["name"] == "include_secrets"));
            let body = resolve(&op["requestBody"]["content"]["application/json"]["schema"]);
            let in_body = body["properties"].get("include_secrets").is_some();
            if !(in_query || in_body) {
                continue;
            }
            let rest = path.trim_start_matches("/api").trim_start_matches('/');
            let sample: Vec<&str> = rest
                .split('/')
                .map(|s| {
                    if s.starts_with('{') {
                        "3c5c1f36-8d0a-4c56-9f55-8f3c3b2a1d11"
                    } else {
                        s
                    }
                })
                .collect();
            let m = method.to_uppercase();
            let rule = lookup(&m, &sample.join("/"));
            assert_eq!(
                rule.map(|r| r.need),
                Some(Need::Secrets),
                "{m} {path} takes include_secrets upstream"
            );
            found.push(format!("{m} {path}"));
        }
    }
    assert!(
        found.len() >= 4,
        "the upstream's secret-bearing routes: {found:?}"
    );
}

fn wait_for(what: &str, secs: u64, f: impl FnMut() -> bool) {
    wait_for_or(what, secs, String::new, f);
}

/// Waits for `f`; on timeout, fails with `context()` (a log to look at).
fn wait_for_or(what: &str, secs: u64, context: impl Fn() -> String, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}: {}",
            context()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn prefect_flows_run_through_the_gateway_under_rbac_limits_and_retention() {
    let Ok(prefect) = std::env::var("ATRIUM_TEST_PREFECT") else {
        missing("the prefect CLI (ATRIUM_TEST_PREFECT)");
        return;
    };
    let upstream = start_prefect_server(&prefect, UPSTREAM_AUTH);
    let dir = tempfile::tempdir().expect("tempdir");
    scenario(
        &prefect,
        &upstream,
        format!("sqlite://{}/atrium.db", dir.path().display()),
    );
    match std::env::var("ATRIUM_TEST_POSTGRES_URL") {
        Ok(base) => {
            let db = FreshDatabase::create(&base);
            scenario(&prefect, &upstream, db.url.clone());
        }
        Err(_) => missing("PostgreSQL (ATRIUM_TEST_POSTGRES_URL)"),
    }
    the_upstreams_secret_routes_are_all_in_the_table(upstream.port);
    retention_in_process(upstream.port);
    over_tls(&prefect, &upstream);
}

/// The same Prefect server behind a TLS endpoint that requires a client certificate (a rustls
/// server made in the test, a private CA): bound as an `https://` upstream with the CA bundle and
/// a client certificate from the CLI, the stock client runs a flow with a task through Atrium —
/// HTTP calls and the `events/in` websocket both over TLS to the upstream.
fn over_tls(prefect: &str, upstream: &PrefectServer) {
    let Some(pki) = crate::upstream_tls::Pki::make() else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let front = rt.block_on(crate::upstream_tls::tls_front(&pki, upstream.port, true));
    let dir = tempfile::tempdir().expect("tempdir");
    let inst = Installation::new(format!("sqlite://{}/atrium.db", dir.path().display()));
    let (account, key) = inst.bootstrap("ann@acme.test", "acme");
    let server = inst.serve();
    let port = server.port;
    let auth = format!("Bearer {key}");
    let resp = http(
        port,
        "POST",
        &format!("/api/accounts/{account}/workspaces/"),
        &key,
        r#"{"name":"Prod","handle":"prod"}"#,
    );
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    let ws = body_of(&resp)["id"]
        .as_str()
        .expect("workspace id")
        .to_string();
    let gw = format!("/api/accounts/{account}/workspaces/{ws}");
    let secret = inst.data.path().join("upstream-auth");
    std::fs::write(&secret, UPSTREAM_AUTH).expect("write auth file");
    let path = |f: &str| pki.path(f).to_str().expect("utf8 path").to_string();
    let out = inst.cli(
        &[
            "workspaces",
            "set-upstream",
            "--account",
            "acme",
            "--workspace",
            "prod",
            "--url",
            &format!("https://localhost:{front}/api"),
            "--auth-string-file",
            secret.to_str().expect("utf8 path"),
            "--ca-file",
            &path("ca.pem"),
            "--client-cert-file",
            &path("client.pem"),
            "--client-key-file",
            &path("client.key"),
        ],
        None,
    );
    assert!(
        out.contains("BEGIN CERTIFICATE") && !out.contains("PRIVATE KEY"),
        "{out}"
    );
    wait_for("the https binding to reach the server", 30, || {
        raw_http(
            port,
            "GET",
            &format!("{gw}/health"),
            &[("Authorization", &auth)],
            "",
        )
        .starts_with("HTTP/1.1 200")
    });
    let python = Path::new(prefect).with_file_name("python");
    let cloud_url = format!("http://127.0.0.1:{port}/api");
    let owner = Client {
        python,
        prefect,
        home: tempfile::tempdir().expect("home"),
        cloud_url: cloud_url.clone(),
        api_url: format!("{cloud_url}/accounts/{account}/workspaces/{ws}"),
        key: key.clone(),
    };
    let (ok, text) = owner.python(FLOW);
    assert!(ok && text.contains("RESULT 3"), "flow run over TLS: {text}");
    wait_for(
        "the task run to be recorded from events sent over TLS",
        30,
        || {
            let r = raw_http(
                port,
                "POST",
                &format!("{gw}/task_runs/filter"),
                &[("Authorization", &auth)],
                "{}",
            );
            body_of(&r).as_array().is_some_and(|a| {
                a.iter().any(|t| {
                    t["state_type"] == "COMPLETED"
                        && t["name"].as_str().is_some_and(|n| n.starts_with("add-"))
                })
            })
        },
    );
    drop(rt);
}

fn scenario(prefect: &str, upstream: &PrefectServer, db: String) {
    let python = Path::new(prefect).with_file_name("python");
    let inst = Installation::new(db);
    let (account, key) = inst.bootstrap("ann@acme.test", "acme");
    let server = inst.serve();
    let port = server.port;
    let auth = format!("Bearer {key}");
    let resp = http(
        port,
        "POST",
        &format!("/api/accounts/{account}/workspaces/"),
        &key,
        r#"{"name":"Prod","handle":"prod"}"#,
    );
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    let ws = body_of(&resp)["id"]
        .as_str()
        .expect("workspace id")
        .to_string();
    let gw = format!("/api/accounts/{account}/workspaces/{ws}");

    // Bind with the CLI (the auth string from a file); the running server picks it up.
    let secret = inst.data.path().join("upstream-auth");
    std::fs::write(&secret, format!("{UPSTREAM_AUTH}\n")).expect("write auth file");
    let out = inst.cli(
        &[
            "workspaces",
            "set-upstream",
            "--account",
            "acme",
            "--workspace",
            "prod",
            "--url",
            &format!("http://127.0.0.1:{}/api", upstream.port),
            "--auth-string-file",
            secret.to_str().expect("utf8 path"),
        ],
        None,
    );
    assert!(
        out.contains("\"has_auth_string\": true") && !out.contains(UPSTREAM_AUTH),
        "{out}"
    );
    wait_for("the binding to reach the server", 30, || {
        raw_http(
            port,
            "GET",
            &format!("{gw}/health"),
            &[("Authorization", &auth)],
            "",
        )
        .starts_with("HTTP/1.1 200")
    });

    let cloud_url = format!("http://127.0.0.1:{port}/api");
    let client = |k: &str| Client {
        python: python.clone(),
        prefect,
        home: tempfile::tempdir().expect("home"),
        cloud_url: cloud_url.clone(),
        api_url: format!("{cloud_url}/accounts/{account}/workspaces/{ws}"),
        key: k.to_string(),
    };

    // `prefect cloud login` against Atrium.
    let owner = client(&key);
    let (ok, text) = owner.prefect(&["cloud", "login", "--key", &key, "--workspace", "acme/prod"]);
    assert!(ok && text.contains("acme/prod"), "login: {text}");

    // A flow with a task completes; its task run exists upstream, which proves events/in.
    let (ok, text) = owner.python(FLOW);
    assert!(ok && text.contains("RESULT 3"), "flow run: {text}");
    wait_for("the task run to be recorded from events", 30, || {
        let r = raw_http(
            port,
            "POST",
            &format!("{gw}/task_runs/filter"),
            &[("Authorization", &auth)],
            "{}",
        );
        body_of(&r).as_array().is_some_and(|a| {
            a.iter().any(|t| {
                t["state_type"] == "COMPLETED"
                    && t["name"].as_str().is_some_and(|n| n.starts_with("add-"))
            })
        })
    });

    // The worker catalogue Prefect Cloud serves (`collections/work_pool_types`), answered from the
    // upstream's own aggregate worker metadata: the stock CLI creates a pool of a type whose
    // worker package is not installed here (kubernetes) from the catalogue's base job template.
    let r = raw_http(
        port,
        "GET",
        &format!("{gw}/collections/work_pool_types"),
        &[("Authorization", &auth)],
        "",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let catalogue = body_of(&r);
    assert_eq!(
        catalogue["prefect-kubernetes"]["kubernetes"]["type"], "kubernetes",
        "{catalogue}"
    );
    assert_eq!(catalogue["prefect"]["process"]["type"], "process");
    // One upstream serves both databases' scenarios: a pool name of this workspace's own.
    let pool = format!("k8s-{}", &ws[..8]);
    let (ok, text) = owner.prefect(&["work-pool", "create", &pool, "--type", "kubernetes"]);
    assert!(
        ok && text.contains(&pool),
        "work-pool create from the catalogue: {text}"
    );
    let (ok, text) = owner.prefect(&["work-pool", "inspect", &pool]);
    assert!(
        ok && text.contains("kubernetes") && text.contains("job_manifest"),
        "{text}"
    );

    // A Runner service account hosts a deployment with flow.serve(); a run triggered through the
    // gateway executes and completes (runner polling, events/out, logs/out via --watch).
    let resp = http(
        port,
        "POST",
        &format!("/api/accounts/{account}/bots/"),
        &key,
        r#"{"name":"runner"}"#,
    );
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    let bot = body_of(&resp);
    let bot_key = bot["api_key"]["key"].as_str().expect("bot key").to_string();
    let grant = format!(
        r#"{{"bot_id":"{}","workspace_role_id":"{}"}}"#,
        bot["id"].as_str().expect("id"),
        atrium::domain::role::BuiltinWorkspaceRole::Runner.id()
    );
    let resp = http(port, "POST", &format!("{gw}/bot_access/"), &key, &grant);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let runner = client(&bot_key);
    // flow.serve() needs its flow in a file (it records the entrypoint).
    let script = runner.home.path().join("serve_probe.py");
    std::fs::write(&script, SERVE).expect("write script");
    let log = std::fs::File::create(runner.home.path().join("serve.log")).expect("log");
    let mut serving = runner
        .command(&python)
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn serve");
    let serve_log = runner.home.path().join("serve.log");
    wait_for_or(
        "the served deployment",
        90,
        || std::fs::read_to_string(&serve_log).unwrap_or_default(),
        || {
            raw_http(
                port,
                "GET",
                &format!("{gw}/deployments/name/served-flow/probe-deploy"),
                &[("Authorization", &auth)],
                "",
            )
            .starts_with("HTTP/1.1 200")
        },
    );
    let (ok, text) = runner.prefect(&[
        "deployment",
        "run",
        "served-flow/probe-deploy",
        "--watch",
        "--watch-timeout",
        "90",
    ]);
    let _ = Command::new("kill").arg(serving.id().to_string()).status();
    let _ = serving.wait();
    assert!(
        ok && text.contains("Completed"),
        "deployment run: {text}\nrunner log:\n{}\natrium log:\n{}",
        std::fs::read_to_string(&serve_log).unwrap_or_default(),
        std::fs::read_to_string(inst.data.path().join("serve.log")).unwrap_or_default()
    );

    // A Viewer lists flow runs but may not create one (403 naming the scope).
    inst.cli(
        &["users", "create", "--email", "vic@acme.test"],
        Some("another-long-password\n"),
    );
    inst.cli(
        &[
            "accounts",
            "add-member",
            "--account",
            "acme",
            "--email",
            "vic@acme.test",
        ],
        None,
    );
    let viewer_key = inst.cli(
        &[
            "users",
            "api-key",
            "--email",
            "vic@acme.test",
            "--name",
            "v",
        ],
        None,
    );
    let me: serde_json::Value = body_of(&http(port, "GET", "/api/me", &viewer_key, ""));
    let grant = format!(
        r#"[{{"user_id":"{}","workspace_role_id":"{}"}}]"#,
        me["id"].as_str().expect("viewer id"),
        atrium::domain::role::BuiltinWorkspaceRole::Viewer.id()
    );
    let resp = http(port, "POST", &format!("{gw}/user_access/"), &key, &grant);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let (ok, text) = client(&viewer_key).python(VIEWER);
    assert!(ok && text.contains("LIST OK"), "viewer: {text}");
    assert!(
        text.contains("CREATE 403 missing workspace scope run_deployments"),
        "viewer: {text}"
    );
    secrets_stay_with_those_who_may_see_them(&owner, &client(&viewer_key), port, &gw, &viewer_key);

    // A key for workspace A gets 404 on workspace B (another account's).
    inst.cli(
        &[
            "accounts",
            "create",
            "--handle",
            "beta",
            "--name",
            "Beta",
            "--owner-email",
            "ann@acme.test",
        ],
        None,
    );
    // The CLI wrote to the database; the server sees the new account within its sweep.
    let mut beta = String::new();
    wait_for("the new account", 30, || {
        let accounts = body_of(&http(port, "GET", "/api/me/accounts", &key, ""));
        beta = accounts
            .as_array()
            .and_then(|a| a.iter().find(|a| a["account_handle"] == "beta"))
            .and_then(|a| a["account_id"].as_str())
            .unwrap_or("")
            .to_string();
        !beta.is_empty()
    });
    let mut resp = String::new();
    wait_for("the new account in the permission index", 30, || {
        resp = http(
            port,
            "POST",
            &format!("/api/accounts/{beta}/workspaces/"),
            &key,
            r#"{"name":"B","handle":"b"}"#,
        );
        resp.starts_with("HTTP/1.1 201")
    });
    let ws_b = body_of(&resp)["id"]
        .as_str()
        .expect("workspace b")
        .to_string();
    for k in [&bot_key, &viewer_key] {
        let resp = http(
            port,
            "POST",
            &format!("/api/accounts/{beta}/workspaces/{ws_b}/flow_runs/filter"),
            k,
            "{}",
        );
        assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    }

    // Rate limit: 60 API calls a minute. 70 quick calls get 429s with Retry-After; the stock
    // client waits and retries, and finishes.
    inst.cli(
        &[
            "accounts",
            "set-plan",
            "--account",
            "acme",
            "--plan",
            "enterprise",
            "--api-rate-limit",
            "60",
        ],
        None,
    );
    wait_for("the new limit", 30, || {
        body_of(&http(
            port,
            "GET",
            &format!("/api/accounts/{account}/rate-limits/status"),
            &key,
            "",
        ))["buckets"][0]["limit_per_minute"]
            == 60
    });
    let (ok, text) = client(&viewer_key).python(BURST);
    assert!(ok && text.contains("BURST DONE"), "burst: {text}");
    let metrics = raw_http(port, "GET", "/metrics", &[], "");
    let limited: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("atrium_rate_limited_total{bucket=\"orchestration-api\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(limited >= 1, "the burst was rate limited: {metrics}");
    assert!(
        metrics.contains("atrium_http_requests_total{class=\"gateway\",status=\"429\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("atrium_http_requests_total{class=\"gateway_ws\",status=\"101\"}"),
        "{metrics}"
    );

    // Usage counts come from the upstream.
    let usage = body_of(&http(
        port,
        "GET",
        &format!("/api/accounts/{account}/usage"),
        &key,
        "",
    ));
    let prod = usage
        .as_array()
        .expect("usage")
        .iter()
        .find(|w| w["id"] == ws.as_str())
        .expect("prod usage");
    assert_eq!(prod["has_upstream"], true, "{usage}");
    assert!(
        prod["flow_runs"].as_i64().unwrap_or(0) >= 2
            && prod["deployments"].as_i64().unwrap_or(0) >= 1,
        "{usage}"
    );

    // Retention from the CLI: a dry run reports without deleting.
    let out = inst.cli(
        &["retention", "run", "--account", "acme", "--dry-run"],
        None,
    );
    let report: serde_json::Value = serde_json::from_str(&out).expect("retention json");
    assert_eq!(report[0]["workspace_id"], ws.as_str(), "{out}");
    assert_eq!(report[0]["deleted"], 0, "{out}");
    drop(server);
}

/// Retention against the real upstream with a controlled clock: a run that ended just before the
/// cut is deleted, one that ended just after it and a run still going are kept.
fn retention_in_process(upstream_port: u16) {
    use axum::http::{Method as M, StatusCode as S};
    use serde_json::json;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(each_db(|t| async move {
        let owner = t.user("keeper@acme.test").await;
        let account = t.account(&owner, "keep").await;
        let ws = t.workspace(account, &owner.key, "prod").await;
        let gw = format!("/api/accounts/{account}/workspaces/{ws}");
        let (s, v) = t
            .call(M::PUT, &format!("{gw}/upstream"), Some(&owner.key),
                Some(json!({"url": format!("http://127.0.0.1:{upstream_port}/api"), "auth_string": UPSTREAM_AUTH})))
            .await;
        assert_eq!(s, S::OK, "{v}");
        let root = t.site_admin("root@x.test").await;
        let (s, v) = t
            .call(M::PUT, &format!("/api/admin/accounts/{account}/plan"), Some(&root.key),
                Some(json!({"plan_type": "pro", "overrides": {"run_retention_days": 7}})))
            .await;
        assert_eq!(s, S::OK, "{v}");
        let (s, flow) = t.call(M::POST, &format!("{gw}/flows/"), Some(&owner.key), Some(json!({"name": "retention-probe"}))).await;
        assert!(s.is_success(), "{flow}");
        let run = |state: &'static str| {
            let (t, gw, key, flow_id) = (&t, gw.clone(), owner.key.clone(), flow["id"].clone());
            async move {
                // The upstream Prefect server (on SQLite) answers 503 when its database is busy;
                // like the stock client, try again after a pause.
                let mut attempt = 0;
                loop {
                    let (s, v) = t
                        .call(M::POST, &format!("{gw}/flow_runs/"), Some(&key),
                            Some(json!({"flow_id": flow_id, "state": {"type": state, "name": state}})))
                        .await;
                    if s == S::SERVICE_UNAVAILABLE && attempt < 5 {
                        attempt += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(500 * attempt)).await;
                        continue;
                    }
                    assert!(s.is_success(), "{v}");
                    break v;
                }
            }
        };
        let running = run("RUNNING").await;
        let old = run("COMPLETED").await;
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let recent = run("COMPLETED").await;
        let end = |v: &serde_json::Value| {
            chrono::DateTime::parse_from_rfc3339(v["end_time"].as_str().expect("end_time"))
                .expect("time")
                .with_timezone(&chrono::Utc)
        };
        // Seven days after a point between the two ends.
        let cut = end(&old) + (end(&recent) - end(&old)) / 2;
        let target = cut + chrono::Duration::days(7);
        t.clock.advance(target - t.app.now());

        let p = TestApp::principal(&owner);
        let dry = atrium::services::retention::apply(&t.app, Some(&p), account, true).await.expect("dry run");
        assert!(dry[0].expired >= 1 && dry[0].deleted == 0, "{dry:?}");
        let exists = |v: &serde_json::Value| {
            let (t, path, key) = (&t, format!("{gw}/flow_runs/{}", v["id"].as_str().unwrap_or("")), owner.key.clone());
            async move { t.call(M::GET, &path, Some(&key), None).await.0 }
        };
        assert_eq!(exists(&old).await, S::OK, "a dry run deletes nothing");
        let done = atrium::services::retention::apply(&t.app, Some(&p), account, false).await.expect("retention");
        assert!(done[0].deleted >= 1 && done[0].deleted == done[0].expired && done[0].error.is_none(), "{done:?}");
        assert_eq!(exists(&old).await, S::NOT_FOUND, "the run that ended before the cut is gone");
        assert_eq!(exists(&recent).await, S::OK, "the run that ended after the cut is kept");
        assert_eq!(exists(&running).await, S::OK, "a run that has not ended is kept");
        let (_, events) = t
            .call(M::POST, &format!("/api/accounts/{account}/events/filter"), Some(&owner.key),
                Some(json!({"filter": {"event": {"name": ["prefect-cloud.flow-run-retention.applied"]}}})))
            .await;
        assert_eq!(events["events"][0]["payload"]["deleted"], json!(done[0].deleted), "{events}");
    }));
}
