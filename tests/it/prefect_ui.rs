//! Each workspace's Prefect UI behind Atrium, in a real Chromium, with a real Prefect server (its
//! UI at `PREFECT_UI_SERVE_BASE=/atrium-prefect-ui`) behind the real `atrium` binary: sign-in
//! and back, a flow run the stock client made through the gateway with its logs, a Viewer who
//! cannot delete a flow (nothing deleted upstream) and an Owner who can, a deployment an object ACL
//! hides from the Viewer's UI, a page of another
//! origin refused with the user's cookie, another account's UI answering 404, CLI links landing
//! on the UI. Needs `ATRIUM_TEST_CHROMIUM`, `ATRIUM_TEST_PREFECT` and `ATRIUM_TEST_PYTHON`.

use crate::browser::{Browser, Page};
use crate::prefect_gateway::{raw_http, start_prefect_server_with};
use crate::support::*;
use atrium::domain::role::BuiltinWorkspaceRole;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const AUTH: &str = "ui-upstream-secret";

/// A flow that logs while it runs (long enough to watch its logs arrive in the UI), made by the
/// stock client through the gateway; prints its run's id.
const FLOW: &str = r#"
import time
from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.utilities.urls import url_for
@flow(name="ui-probe")
def probe():
    log = get_run_logger()
    # The link the client prints for a run, as it prints it.
    print("URL", url_for("flow-run", obj_id=flow_run.id), flush=True)
    print("RUN", flow_run.id, flush=True)
    for i in range(1, 41):
        log.info("tick %s of the ui probe", i)
        time.sleep(0.5)
probe()
"#;

fn status(resp: &str) -> u16 {
    resp.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn body(resp: &str) -> Value {
    let b = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(b).unwrap_or(Value::Null)
}

/// Creates a user who signs in with `a-long-password`; their id (the CLI says it on stderr).
fn create_user(inst: &Installation, email: &str) -> String {
    let out = inst.cli_output(
        &["users", "create", "--email", email],
        Some("a-long-password\n"),
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    said.trim()
        .rsplit(' ')
        .next()
        .expect("created user … with id ID")
        .to_string()
}

async fn sign_in(page: &mut Page, base: &str, path: &str, email: &str) {
    page.goto(&format!("{base}{path}")).await;
    page.wait_for("location.pathname === '/login'").await;
    page.eval(&format!(
        "document.querySelector('#email').value = {email:?};\
         document.querySelector('#password').value = 'a-long-password';\
         document.querySelector('button[type=submit]').click(); true"
    ))
    .await;
    page.wait_for(&format!(
        "location.pathname.startsWith({path:?}) && document.readyState === 'complete'"
    ))
    .await;
}

/// Waits (up to 60 s: the UI polls) until the page's text contains `text`.
async fn wait_text(page: &mut Page, text: &str) {
    let start = Instant::now();
    loop {
        let t = page.text().await;
        if t.contains(text) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no {text:?} on {}: {t}",
            page.eval("location.href").await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prefect_ui_runs_inside_atrium_with_each_users_role() {
    let Some(browser) = Browser::launch() else {
        return;
    };
    let Some((prefect, python)) = prefect_and_python() else {
        return;
    };
    let up = start_prefect_server_with(&prefect, AUTH, true);
    let dir = tempfile::tempdir().expect("tempdir");
    let inst = Installation::new(format!("sqlite://{}/atrium.db", dir.path().display()));
    let (account, key) = inst.bootstrap("olga@ui.test", "ui");
    let vic = create_user(&inst, "vic@ui.test");
    inst.cli(
        &[
            "accounts",
            "add-member",
            "--account",
            "ui",
            "--email",
            "vic@ui.test",
        ],
        None,
    );
    create_user(&inst, "zed@ui.test");
    let other = inst.cli(
        &[
            "accounts",
            "create",
            "--handle",
            "other",
            "--name",
            "Other",
            "--owner-email",
            "zed@ui.test",
        ],
        None,
    );
    let zed_key = inst.cli(
        &["users", "api-key", "--email", "zed@ui.test", "--name", "k"],
        None,
    );
    // Enterprise: object ACLs hold in the UI as in the API.
    inst.cli(
        &[
            "accounts",
            "set-plan",
            "--account",
            "ui",
            "--plan",
            "enterprise",
        ],
        None,
    );
    let server = inst.serve();
    let port = server.port;
    let base = format!("http://127.0.0.1:{port}");
    let ws = create_workspace(port, &account, &key, "prod");
    let other_ws = create_workspace(port, &other, &zed_key, "theirs");
    let gw = format!("/api/accounts/{account}/workspaces/{ws}");
    bind_upstream(port, &gw, &key, up.port, AUTH);
    let r = http(
        port,
        "POST",
        &format!("{gw}/user_access/"),
        &key,
        &json!([{"user_id": vic, "workspace_role_id": BuiltinWorkspaceRole::Viewer.id()}])
            .to_string(),
    );
    assert_eq!(status(&r), 200, "{r}");
    let vic_access = body(&r)[0]["id"]
        .as_str()
        .expect("the Viewer's grant")
        .to_string();
    let ui = format!("/account/{account}/workspace/{ws}/ui");

    // The stock client runs a flow through the gateway; it logs for 20 s.
    let mut run = std::process::Command::new(&python)
        .args(["-c", FLOW])
        .env("PREFECT_HOME", dir.path().join("client"))
        .env("DO_NOT_TRACK", "1")
        .env("PREFECT_CLOUD_API_URL", format!("{base}/api"))
        .env("PREFECT_API_URL", format!("{base}{gw}"))
        .env("PREFECT_API_KEY", &key)
        .env_remove("PREFECT_API_AUTH_STRING")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run the flow");
    let (link, run_id) = {
        use std::io::BufRead;
        let out = run.stdout.take().expect("stdout");
        let mut lines = std::io::BufReader::new(out).lines().map_while(Result::ok);
        let mut find = |prefix: &str| {
            lines
                .find_map(|l| l.strip_prefix(prefix).map(str::to_string))
                .expect("the flow's output")
        };
        (find("URL "), find("RUN "))
    };
    assert_eq!(
        link,
        format!("{base}/account/{account}/workspace/{ws}/runs/flow-run/{run_id}"),
        "the client's link into the UI"
    );

    // Signed out, the UI sends the visitor through sign-in and back.
    let mut owner = browser.page().await;
    let run_page = format!("{ui}/runs/flow-run/{run_id}");
    sign_in(&mut owner, &base, &run_page, "olga@ui.test").await;
    // The run's logs arrive while it runs.
    wait_text(&mut owner, "tick 3 of the ui probe").await;
    wait_text(&mut owner, "tick 30 of the ui probe").await;
    owner.screenshot("prefect-ui").await;
    let _ = run.wait();

    // The link the client printed lands on the same page of the UI.
    owner.goto(&link).await;
    owner
        .wait_for(&format!(
            "location.pathname === '{ui}/runs/flow-run/{run_id}'"
        ))
        .await;
    wait_text(&mut owner, "tick 40 of the ui probe").await;

    // Prefect's second UI, as the upstream offers it, under the same path.
    owner.goto(&format!("{base}{ui}/v2/runs")).await;
    wait_text(&mut owner, "ui-probe").await;
    owner.screenshot("prefect-ui-v2").await;

    let flows = body(&http(
        port,
        "POST",
        &format!("{gw}/flows/filter"),
        &key,
        "{}",
    ));
    let flow_id = flows[0]["id"].as_str().expect("flow id").to_string();
    let flow_exists = || {
        status(&http(
            port,
            "GET",
            &format!("{gw}/flows/{flow_id}"),
            &key,
            "",
        )) == 200
    };

    // A Viewer browses the same run, but deleting its flow from the UI fails with Atrium's
    // message in Prefect's toast, and nothing is deleted upstream.
    let viewer_browser = Browser::launch().expect("a second browser");
    let mut viewer = viewer_browser.page().await;
    sign_in(&mut viewer, &base, &run_page, "vic@ui.test").await;
    wait_text(&mut viewer, "tick 40 of the ui probe").await;

    // Two deployments of the flow; an ACL keeps one to those who manage ACLs (the Owner). The
    // Viewer's UI lists the other only, and the hidden one's page shows nothing of it.
    let deploy = |name: &str| {
        let r = http(
            port,
            "POST",
            &format!("{gw}/deployments/"),
            &key,
            &json!({"name": name, "flow_id": flow_id}).to_string(),
        );
        assert_eq!(status(&r), 201, "{r}");
        body(&r)["id"].as_str().expect("deployment id").to_string()
    };
    deploy("open-deployment");
    let hidden = deploy("acl-deployment");
    let r = http(
        port,
        "PUT",
        &format!("{gw}/deployments/{hidden}/access"),
        &key,
        &json!({"access_control": {"manage_actor_ids": [], "run_actor_ids": [], "view_actor_ids": []}})
            .to_string(),
    );
    assert_eq!(status(&r), 204, "{r}");
    owner.goto(&format!("{base}{ui}/deployments")).await;
    wait_text(&mut owner, "acl-deployment").await;
    viewer.goto(&format!("{base}{ui}/deployments")).await;
    wait_text(&mut viewer, "open-deployment").await;
    viewer
        .goto(&format!("{base}{ui}/deployments/deployment/{hidden}"))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = viewer.text().await;
    assert!(!seen.contains("acl-deployment"), "{seen}");
    viewer.goto(&format!("{base}{ui}/deployments")).await;
    wait_text(&mut viewer, "open-deployment").await;
    let seen = viewer.text().await;
    assert!(!seen.contains("acl-deployment"), "{seen}");

    delete_flow(&mut viewer, &base, &ui, &flow_id).await;
    wait_text(&mut viewer, "missing workspace scope manage_flows").await;
    viewer.screenshot("prefect-ui-viewer-refused").await;
    // Without the grant, the next request for the UI is not found.
    let r = http(
        port,
        "DELETE",
        &format!("{gw}/user_access/{vic_access}"),
        &key,
        "",
    );
    assert_eq!(status(&r), 204, "{r}");
    viewer.goto(&format!("{base}{run_page}")).await;
    wait_text(&mut viewer, "not found").await;
    assert!(flow_exists(), "the Viewer's delete reached the upstream");
    let denials = body(&http(
        port,
        "POST",
        &format!("/api/accounts/{account}/events/filter"),
        &key,
        &json!({"filter": {"event": {"name": ["prefect-cloud.request.access-denied"]}}})
            .to_string(),
    ));
    // Browsing asked for nothing a Viewer may not have: the refusals are the delete and the
    // hidden deployment's page (the server's settings, which the UI reads on every page, are
    // answered empty for a Viewer).
    let mut missing: Vec<String> = denials["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["payload"]["missing"].as_str().unwrap_or("").to_string())
        .collect();
    missing.sort();
    assert_eq!(
        missing,
        vec![
            "manage_flows".to_string(),
            format!("view access to deployment {hidden} (object access control list)"),
        ],
        "{denials}"
    );

    // A page of another origin (same site: another port) posting with the Owner's cookie is
    // refused, and so is a cookie-only write from our origin without Prefect's CSRF token.
    let cookies = owner
        .call("Network.getCookies", json!({"urls": [base]}))
        .await;
    let cookie = cookies["cookies"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "atrium_session"))
        .map(|c| format!("atrium_session={}", c["value"].as_str().unwrap_or("")))
        .expect("the session cookie");
    let evil = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let evil_port = evil.local_addr().expect("addr").port();
    let page = format!(
        "<!doctype html><script>fetch('{base}{gw}/flows/', {{method: 'POST', mode: 'no-cors', credentials: 'include', headers: {{'Content-Type': 'text/plain'}}, body: JSON.stringify({{name: 'planted-by-evil'}})}}).then(() => document.title = 'sent', () => document.title = 'sent')</script>"
    );
    let evil_app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    );
    tokio::spawn(async move { axum::serve(evil, evil_app).await });
    owner.goto(&format!("http://127.0.0.1:{evil_port}/")).await;
    owner.wait_for("document.title === 'sent'").await;
    let planted = body(&http(
        port,
        "POST",
        &format!("{gw}/flows/filter"),
        &key,
        &json!({"flows": {"name": {"any_": ["planted-by-evil"]}}}).to_string(),
    ));
    assert_eq!(
        planted,
        json!([]),
        "a cross-site write reached the upstream"
    );
    let flows_path = format!("{gw}/flows/");
    let post = |headers: Vec<(&str, String)>| {
        let mut h: Vec<(&str, &str)> = vec![("Cookie", cookie.as_str())];
        h.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
        raw_http(port, "POST", &flows_path, &h, r#"{"name": "cookie-made"}"#)
    };
    let r = post(vec![("Origin", format!("http://127.0.0.1:{evil_port}"))]);
    assert_eq!(status(&r), 403, "{r}");
    let r = post(vec![("Origin", base.clone())]);
    assert_eq!(status(&r), 403, "{r}");
    assert!(r.contains("Invalid CSRF token"), "{r}");
    let token = body(&raw_http(
        port,
        "GET",
        &format!("{gw}/csrf-token?client=test-client"),
        &[("Cookie", cookie.as_str())],
        "",
    ));
    let token = token["token"].as_str().expect("a CSRF token").to_string();
    let r = post(vec![
        ("Origin", base.clone()),
        ("Prefect-Csrf-Token", token.clone()),
        ("Prefect-Csrf-Client", "another-client".into()),
    ]);
    assert_eq!(status(&r), 403, "a token of another client: {r}");
    let r = post(vec![
        ("Origin", base.clone()),
        ("Prefect-Csrf-Token", token),
        ("Prefect-Csrf-Client", "test-client".into()),
    ]);
    assert_eq!(status(&r), 201, "{r}");

    // The files carry validators: a reload costs a 304, bundle files are immutable and gzipped.
    let ask = |method: &str, path: &str, extra: &[(&str, &str)]| {
        let mut h: Vec<(&str, &str)> = vec![("Cookie", cookie.as_str())];
        h.extend_from_slice(extra);
        raw_http(port, method, path, &h, "")
    };
    let get = |path: &str, extra: &[(&str, &str)]| ask("GET", path, extra);
    let header = |resp: &str, name: &str| {
        resp.split("\r\n\r\n")
            .next()
            .unwrap_or("")
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
    };
    let index = get(&format!("{ui}/"), &[]);
    assert_eq!(status(&index), 200, "{index}");
    let etag = header(&index, "etag").expect("an ETag");
    let again = get(&format!("{ui}/"), &[("If-None-Match", etag.as_str())]);
    assert_eq!(status(&again), 304, "{again}");
    let script = index
        .split(&format!("src=\"{ui}/"))
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the bundle's script, at the workspace's path");
    // (HEAD: the gzipped body is not text.)
    let asset = ask(
        "HEAD",
        &format!("{ui}/{script}"),
        &[("Accept-Encoding", "gzip")],
    );
    assert_eq!(status(&asset), 200, "{}", &asset[..asset.len().min(400)]);
    assert_eq!(header(&asset, "content-encoding").as_deref(), Some("gzip"));
    assert!(
        header(&asset, "cache-control").is_some_and(|c| c.contains("immutable")),
        "{}",
        &asset[..400]
    );

    // A visit to the first UI's start page goes to the UI the visitor prefers (Prefect's rule:
    // its cookie, else the upstream's default); the second UI's pages are served.
    let html = [("Accept", "text/html")];
    let v1 = get(
        &format!("{ui}/"),
        &[("Accept", "text/html"), ("Cookie", "prefect_ui_version=v1")],
    );
    assert_eq!(status(&v1), 200, "{}", &v1[..v1.len().min(300)]);
    let prefers_v2 = raw_http(
        port,
        "GET",
        &format!("{ui}/?x=1"),
        &[
            ("Accept", "text/html"),
            ("Cookie", &format!("{cookie}; prefect_ui_version=v2")),
        ],
        "",
    );
    assert_eq!(status(&prefers_v2), 307, "{prefers_v2}");
    assert_eq!(
        header(&prefers_v2, "location").as_deref(),
        Some(format!("{ui}/v2/?x=1").as_str())
    );
    assert_eq!(status(&get(&format!("{ui}/v2/runs"), &html)), 200);

    // The dashboard's workspace page leads to the UI.
    owner
        .goto(&format!("{base}/account/{account}/workspace/{ws}"))
        .await;
    owner
        .act(
            "[...document.querySelectorAll('a')].find(a => a.innerText.includes('Open the Prefect UI')).click()",
            &format!("location.pathname.startsWith('{ui}')"),
        )
        .await;

    // Another account's workspace UI is not found; the Owner deletes the flow from the UI.
    for path in [
        format!("/account/{other}/workspace/{other_ws}/ui/"),
        format!("/account/{other}/workspace/{other_ws}/ui/ui-settings"),
    ] {
        let r = raw_http(port, "GET", &path, &[("Cookie", cookie.as_str())], "");
        assert_eq!(status(&r), 404, "{path}: {r}");
    }
    delete_flow(&mut owner, &base, &ui, &flow_id).await;
    let start = Instant::now();
    while flow_exists() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the Owner's delete did not happen"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let _ = vic;
    drop(server);
}

/// Deletes a flow the way a user does in Prefect's UI: the flow's page, its menu, "Delete", and
/// "Delete" again in the confirmation.
async fn delete_flow(page: &mut Page, base: &str, ui: &str, flow_id: &str) {
    page.goto(&format!("{base}{ui}/flows/flow/{flow_id}")).await;
    wait_text(page, "ui-probe").await;
    let click = |within: &str, text: &str| {
        format!(
            "(function(){{const b=[...document.querySelectorAll('{within} button')].find(b=>b.innerText.trim()==={text:?});if(!b)return false;b.click();return true;}})()"
        )
    };
    page.eval("document.querySelector('.p-icon-button-menu button, button.p-icon-button-menu, [class*=menu] button').click(); true")
        .await;
    page.wait_for(&click("", "Delete")).await;
    page.wait_for(&click(".p-modal", "Delete")).await;
}
