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
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
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
            let r = self
                .call(
                    "Runtime.evaluate",
                    json!({"expression": js, "returnByValue": true}),
                )
                .await;
            if r["result"]["value"] == true {
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
    page.screenshot("workspace-access").await;
    page.goto(&format!("{base}/account/{account}")).await;
    let text = page.text().await;
    assert!(
        text.contains("Workspaces") && text.contains("seats used 3 of no limit"),
        "{text}"
    );
    page.screenshot("account").await;
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
