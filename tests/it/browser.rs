//! Dashboard flows in a real headless Chromium, driven over the Chrome DevTools Protocol with a
//! small client of our own (a websocket and JSON; no driver binary). Needs
//! `ATRIUM_TEST_CHROMIUM=/usr/bin/chromium`. With `ATRIUM_SCREENSHOTS_DIR` set, pages are saved
//! there as PNG (`scripts/screenshots.sh` regenerates docs/screenshots).

use crate::support::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::BufRead;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

pub struct Browser {
    child: std::process::Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts headless Chromium, or `None` (after reporting) when it is not configured.
    pub fn launch() -> Option<Browser> {
        let Ok(bin) = std::env::var("ATRIUM_TEST_CHROMIUM") else {
            missing("a Chromium browser (ATRIUM_TEST_CHROMIUM)");
            return None;
        };
        let profile = tempfile::tempdir().expect("profile");
        let mut child = std::process::Command::new(bin)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1280,900",
                "--remote-debugging-port=0",
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if !sent {
                    if let Some(rest) = line.split("ws://127.0.0.1:").nth(1) {
                        if let Some(port) =
                            rest.split('/').next().and_then(|p| p.parse::<u16>().ok())
                        {
                            let _ = tx.send(port);
                            sent = true;
                        }
                    }
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium printed its DevTools address");
        Some(Browser {
            child,
            port,
            _profile: profile,
        })
    }

    /// A new tab.
    pub async fn page(&self) -> Page {
        let port = self.port;
        let body = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("devtools");
            // DevTools builds the tab's websocket URL from the Host header.
            let req = format!("PUT /json/new?about:blank HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).expect("write");
            // The DevTools server may keep the connection open: read up to Content-Length.
            s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = s.read(&mut chunk).expect("read");
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
                        .and_then(|v| v.parse::<usize>().ok());
                    if n == 0 || len.is_some_and(|len| body.len() >= len) {
                        return body.to_string();
                    }
                }
                assert!(n > 0, "devtools closed the connection early");
            }
        })
        .await
        .expect("join");
        let target: Value = serde_json::from_str(&body).expect("target json");
        // The URL may name `localhost`, which can resolve to ::1; DevTools listens on 127.0.0.1.
        let url = target["webSocketDebuggerUrl"]
            .as_str()
            .expect("ws url")
            .replace("ws://localhost:", "ws://127.0.0.1:");
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("connect to the tab");
        let mut page = Page { ws, next_id: 0 };
        page.call("Page.enable", json!({})).await;
        page
    }
}

pub struct Page {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Page {
    /// One CDP command; events arriving meanwhile are skipped.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let v = self.command(method, params).await;
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    /// One CDP command's whole answer (its `result` or its `error`).
    async fn command(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.ws
            .send(Message::Text(
                json!({"id": id, "method": method, "params": params})
                    .to_string()
                    .into(),
            ))
            .await
            .expect("send");
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("devtools answered")
                .expect("open")
                .expect("frame");
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(text.as_str()).expect("json");
            if v["id"] == id {
                return v;
            }
        }
    }

    /// Evaluates an expression in the page and returns its value.
    pub async fn eval(&mut self, js: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{js}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits until `js` is true (a page load, a redirect, text appearing).
    pub async fn wait_for(&mut self, js: &str) {
        let start = Instant::now();
        loop {
            let v = self
                .command(
                    "Runtime.evaluate",
                    json!({"expression": js, "returnByValue": true}),
                )
                .await;
            // A page that navigates while the expression runs answers with an error: the wait
            // goes on on the next page.
            let navigating = v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("navigated or closed") || m.contains("context"));
            assert!(v.get("error").is_none() || navigating, "{js}: {v}");
            if v["result"]["result"]["value"] == true {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "timed out waiting for {js}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")
            .await;
    }

    pub async fn text(&mut self) -> String {
        self.eval("document.body.innerText")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Saves a PNG of the page when `ATRIUM_SCREENSHOTS_DIR` is set.
    pub async fn screenshot(&mut self, name: &str) {
        let Ok(dir) = std::env::var("ATRIUM_SCREENSHOTS_DIR") else {
            return;
        };
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true}),
            )
            .await;
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("data"))
            .expect("png");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(format!("{dir}/{name}.png"), png).expect("write png");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_and_read_a_workspaces_access_with_expiries_in_chromium() {
    let Some(browser) = Browser::launch() else {
        return;
    };
    let t = TestApp::new(Db::Sqlite).await;
    let crate::dashboard::Fixture {
        account, ws, soon, ..
    } = crate::dashboard::fixture(&t).await;
    let port = t.serve_tcp().await;
    let base = format!("http://127.0.0.1:{port}");
    let path = format!("/account/{account}/workspace/{ws}/access");

    let mut page = browser.page().await;
    page.goto(&format!("{base}{path}")).await;
    page.wait_for("location.pathname === '/login'").await;
    page.screenshot("sign-in").await;
    page.eval(
        "document.querySelector('#email').value = 'ada@acme.test';\
         document.querySelector('#password').value = 'a-long-password';\
         document.querySelector('button[type=submit]').click(); true",
    )
    .await;
    page.wait_for(&format!(
        "location.pathname === '{path}' && document.readyState === 'complete'"
    ))
    .await;
    let text = page.text().await;
    assert!(text.contains("Access to prod"), "{text}");
    assert!(
        text.contains("vic@acme.test") && text.contains("Viewer"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{} (in 3 days)",
            soon.format("%Y-%m-%d %H:%M UTC")
        )),
        "{text}"
    );
    page.goto(&format!("{base}/account/{account}")).await;
    let text = page.text().await;
    assert!(
        text.contains("Workspaces") && text.contains("seats used 3 of no limit"),
        "{text}"
    );
    page.goto(&format!("{base}{path}")).await;

    // A personal API key: created in the page, shown once, with the copy button our script
    // reveals.
    page.goto(&format!("{base}/me/api-keys")).await;
    page.eval(
        "document.querySelector('#key-name').value = 'laptop';\
         document.querySelector('#key-days').value = '30';\
         document.querySelector('form[action=\"/me/api-keys\"] button').click(); true",
    )
    .await;
    page.wait_for("document.getElementById('new-key') !== null")
        .await;
    let key = page
        .eval("document.getElementById('new-key').textContent")
        .await;
    assert!(key.as_str().is_some_and(|k| k.starts_with("pnu_")), "{key}");
    assert_eq!(
        page.eval("document.querySelector('[data-copy]').hidden")
            .await,
        false
    );
    page.screenshot("api-keys").await;

    // Keyboard users reach the sign-out button, and it works.
    page.eval(
        "document.querySelector('header button').focus(); document.activeElement.textContent",
    )
    .await;
    page.eval("document.querySelector('header button').click(); true")
        .await;
    page.wait_for("location.pathname === '/login'").await;
    page.goto(&format!("{base}{path}")).await;
    page.wait_for("location.pathname === '/login'").await;
}

impl Page {
    /// Runs `js` (which submits a form or follows a link), then waits until `until` holds on the
    /// page that loads.
    pub async fn act(&mut self, js: &str, until: &str) {
        self.eval(&format!("window.__before = true; {js}; true"))
            .await;
        self.wait_for(&format!(
            "window.__before === undefined && document.readyState === 'complete' && ({until})"
        ))
        .await;
    }

    /// Chooses the option whose visible text is `text` in the select `selector`.
    pub async fn choose(&mut self, selector: &str, text: &str) {
        let ok = self
            .eval(&format!(
                "(function(){{const s=document.querySelector('{selector}');const o=[...s.options].find(o=>o.text==={text:?});if(!o)return false;s.value=o.value;return true;}})()"
            ))
            .await;
        assert_eq!(ok, true, "no option {text:?} in {selector}");
    }
}

fn body_has(text: &str) -> String {
    format!("document.body.innerText.includes({text:?})")
}

/// Item 6 of the dashboard issue, in Chromium: an Admin invites two members, creates a custom
/// role from the scope picker, gives a team access with it, creates and rotates a service
/// account's key, asks why a member has a scope, filters the audit log; then an invitee signs up
/// through the invitation link and lands in the account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_manages_the_account_in_chromium_and_an_invitee_signs_up() {
    let Some(browser) = Browser::launch() else {
        return;
    };
    let t = TestApp::new(Db::Sqlite).await;
    let crate::dashboard::Fixture {
        account, ws, owner, ..
    } = crate::dashboard::fixture(&t).await;
    let port = t.serve_tcp().await;
    let base = format!("http://127.0.0.1:{port}");
    let a = format!("{base}/account/{account}");
    let mut page = browser.page().await;
    page.goto(&format!("{a}/members")).await;
    page.wait_for("location.pathname === '/login'").await;
    page.act(
        "document.querySelector('#email').value = 'ada@acme.test';\
         document.querySelector('#password').value = 'a-long-password';\
         document.querySelector('button[type=submit]').click()",
        "location.pathname.endsWith('/members')",
    )
    .await;

    // Invite two members at once.
    page.act(
        "document.querySelector('#invite-emails').value = 'bea@acme.test\\ncal@acme.test';\
         document.querySelector('form[action$=\"/members/invite\"] button').click()",
        &body_has("Invitations not yet answered"),
    )
    .await;
    let text = page.text().await;
    assert!(
        text.contains("bea@acme.test") && text.contains("cal@acme.test"),
        "{text}"
    );
    page.screenshot("members").await;

    // A custom role from the scope picker, inheriting Viewer.
    page.goto(&format!("{a}/roles/new")).await;
    page.eval(
        "document.querySelector('#role-name').value = 'Deployer';\
         document.querySelector('#scope-run_deployments').checked = true;\
         document.querySelector('#scope-manage_deployments').checked = true; true",
    )
    .await;
    page.choose("#role-inherits", "Viewer").await;
    page.screenshot("role-editor").await;
    page.act(
        "document.querySelector('form[action$=\"/roles\"] button[type=submit]').click()",
        &body_has("Deployer"),
    )
    .await;
    assert!(page.text().await.contains("custom"));

    // A team with vic as a member, granted the custom role in prod.
    page.goto(&format!("{a}/teams")).await;
    page.act(
        "document.querySelector('#team-name').value = 'data';\
         document.querySelector('form[action$=\"/teams\"] button').click()",
        &body_has("Team data"),
    )
    .await;
    page.choose("#tm-who", "vic@acme.test").await;
    page.act(
        "document.querySelector('form[action$=\"/members\"] button').click()",
        "document.querySelector('td') !== null && document.body.innerText.includes('vic@acme.test')",
    )
    .await;
    page.choose("#team-ws", "prod").await;
    page.choose("#team-role", "Deployer").await;
    page.act(
        "document.querySelector('form[action$=\"/access\"] button').click()",
        "[...document.querySelectorAll('td')].some(td => td.textContent === 'Deployer')",
    )
    .await;
    page.screenshot("team").await;
    let (_, grants) = t
        .call(
            axum::http::Method::POST,
            &format!("/api/accounts/{account}/workspaces/{ws}/team_access/filter"),
            Some(&owner.key),
            Some(json!({})),
        )
        .await;
    assert_eq!(grants.as_array().map(Vec::len), Some(1), "{grants}");

    // Why does vic have manage_deployments in prod? Through the team's custom role.
    page.goto(&format!("{a}/workspace/{ws}/access")).await;
    page.choose("#explain-who", "vic@acme.test").await;
    page.eval("document.querySelector('#explain-scope').value = 'manage_deployments'; true")
        .await;
    page.act(
        "document.querySelector('form[method=get] button').click()",
        "document.getElementById('explanation') !== null",
    )
    .await;
    let text = page
        .eval("document.getElementById('explanation').innerText")
        .await;
    let text = text.as_str().unwrap_or_default();
    assert!(
        text.contains("vic@acme.test has manage_deployments here")
            && text.contains("team data with role Deployer — gives it"),
        "{text}"
    );
    page.screenshot("workspace-access").await;

    // A service account: its key shown once, then rotated with a day's overlap.
    page.goto(&format!("{a}/service-accounts")).await;
    page.act(
        "document.querySelector('#sa-name').value = 'ci';\
         document.querySelector('form[action$=\"/service-accounts\"] button').click()",
        "document.getElementById('new-key') !== null",
    )
    .await;
    let first = page
        .eval("document.getElementById('new-key').textContent")
        .await;
    let first = first.as_str().expect("key").to_string();
    assert!(first.starts_with("pnb_"), "{first}");
    page.screenshot("service-account").await;
    page.act(
        "document.querySelector('form[action$=\"/rotate\"] button').click()",
        "document.getElementById('new-key') !== null && document.body.innerText.includes('rotating out')",
    )
    .await;
    let second = page
        .eval("document.getElementById('new-key').textContent")
        .await;
    assert!(
        second
            .as_str()
            .is_some_and(|k| k.starts_with("pnb_") && k != first),
        "{second}"
    );
    for key in [first.as_str(), second.as_str().unwrap_or_default()] {
        let (s, _) = t
            .call(
                axum::http::Method::GET,
                "/api/me/workspaces",
                Some(key),
                None,
            )
            .await;
        assert_eq!(s.as_u16(), 200, "both keys work during the overlap");
    }

    // The audit log, filtered to team creations.
    page.goto(&format!("{a}/audit-log")).await;
    page.eval("document.querySelector('#f-event').value = 'prefect-cloud.team.created'; true")
        .await;
    page.act(
        "document.querySelector('form[action$=\"/audit-log\"] button').click()",
        "location.search.includes('event=prefect-cloud.team.created')",
    )
    .await;
    let text = page.text().await;
    assert!(
        text.contains("1 matching event.")
            && text.contains("team.created")
            && !text.contains("bot.created"),
        "{text}"
    );
    page.screenshot("audit-log").await;
    for (path, name) in [
        ("/workspaces", "workspaces"),
        ("/billing", "billing"),
        ("/settings", "settings"),
        ("", "account"),
    ] {
        page.goto(&format!("{a}{path}")).await;
        page.screenshot(name).await;
    }

    // Sign out; bea signs up through her invitation and sees the account.
    page.act(
        "document.querySelector('aside form[action=\"/logout\"] button').click()",
        "location.pathname === '/login'",
    )
    .await;
    let (_, inv) = t
        .call(
            axum::http::Method::POST,
            &format!("/api/accounts/{account}/invitations/filter"),
            Some(&owner.key),
            Some(json!({"invitations": {"email": {"any_": ["bea@acme.test"]}}})),
        )
        .await;
    let id = inv[0]["id"].as_str().expect("invitation").to_string();
    let code = latest_code(&t, &id).await;
    page.goto(&format!("{base}/invitations/{id}?invite_code={code}"))
        .await;
    page.act(
        "document.querySelector('#first_name').value = 'Bea';\
         document.querySelector('#new_password').value = 'bea-long-password';\
         document.querySelector('form input[value=signup]').form.querySelector('button').click()",
        &body_has("You are in"),
    )
    .await;
    page.act(
        "document.querySelector('a[href=\"/\"]').click()",
        &body_has("ACME"),
    )
    .await;
    page.act(
        &format!("document.querySelector('a[href=\"/account/{account}\"]').click()"),
        &body_has("your role: Member"),
    )
    .await;
}

/// A stand-in for the `prefect` CLI's login server (same routes and CORS as
/// `prefect.cli._cloud_utils.login_api`); returns its port and what it received.
async fn cli_login_server() -> (u16, std::sync::Arc<tokio::sync::Mutex<Option<Value>>>) {
    use axum::response::IntoResponse;
    let got = std::sync::Arc::new(tokio::sync::Mutex::new(None));
    let cors = [
        ("access-control-allow-origin", "*"),
        ("access-control-allow-methods", "*"),
        ("access-control-allow-headers", "*"),
    ];
    let store = got.clone();
    let app = axum::Router::new().route(
        "/success",
        axum::routing::post(move |body: axum::Json<Value>| {
            let store = store.clone();
            async move {
                *store.lock().await = Some(body.0);
                (cors, "null").into_response()
            }
        })
        .options(move || async move { cors.into_response() }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prefect_cli_browser_login_receives_a_working_key() {
    let Some(browser) = Browser::launch() else {
        return;
    };
    let t = TestApp::new(Db::Sqlite).await;
    t.user_with_password("ann@x.test").await;
    let port = t.serve_tcp().await;
    let (cli_port, received) = cli_login_server().await;
    let mut page = browser.page().await;
    page.goto(&format!(
        "http://127.0.0.1:{port}/auth/client?callback=http%3A%2F%2F127.0.0.1%3A{cli_port}"
    ))
    .await;
    page.wait_for("location.pathname === '/login'").await;
    page.eval(
        "document.querySelector('#email').value = 'ann@x.test';\
         document.querySelector('#password').value = 'a-long-password';\
         document.querySelector('button[type=submit]').click(); true",
    )
    .await;
    page.wait_for(
        "location.pathname === '/auth/client' && document.querySelector('#key-name') !== null",
    )
    .await;
    page.screenshot("cli-login").await;
    page.eval("document.querySelector('form[action=\"/auth/client\"] button').click(); true")
        .await;
    page.wait_for("document.getElementById('status') && document.getElementById('status').textContent.startsWith('You are logged in')")
        .await;
    let payload = received
        .lock()
        .await
        .clone()
        .expect("the CLI got a payload");
    let key = payload["api_key"].as_str().expect("api_key").to_string();
    let (s, me) = t
        .call(axum::http::Method::GET, "/api/me", Some(&key), None)
        .await;
    assert_eq!(
        (s.as_u16(), me["email"].as_str()),
        (200, Some("ann@x.test"))
    );

    // A callback that is not this machine's loopback is refused before anything is created.
    page.goto(&format!(
        "http://127.0.0.1:{port}/auth/client?callback=http%3A%2F%2Fevil.test%3A80"
    ))
    .await;
    let text = page.text().await;
    assert!(
        text.contains("the callback must be http://localhost:PORT"),
        "{text}"
    );
}
