//! Test harness: a `TestApp` per database (SQLite in a temp dir; PostgreSQL in a fresh schema when
//! `ATRIUM_TEST_POSTGRES_URL` is set), requests through the real router in-process, and helpers
//! that build accounts, users and keys through the service layer.

use atrium::app::{App, ManualClock};
use atrium::authz::Principal;
use atrium::config::Config;
use atrium::domain::role::AccountRole;
use atrium::domain::{AccountId, ApiKeyId, MembershipId, UserId, WorkspaceId};
use atrium::http::AppService;
use atrium::services;
use atrium::store::{self, Store};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use tower::ServiceExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub fn require_all() -> bool {
    std::env::var("ATRIUM_TEST_REQUIRE_ALL").as_deref() == Ok("1")
}

/// Reports a missing optional dependency: a failure under `ATRIUM_TEST_REQUIRE_ALL=1`.
pub fn missing(what: &str) {
    assert!(
        !require_all(),
        "{what} is required (ATRIUM_TEST_REQUIRE_ALL=1) but not configured"
    );
    eprintln!("skipping the {what} part of this test: not configured");
}

pub struct TestApp {
    pub app: App,
    pub clock: Arc<ManualClock>,
    pub db: Db,
    svc: AppService,
    /// When set, requests go over TCP to this port (Atrium's own server, so gateway calls take
    /// its fast path) with a keep-alive client, instead of through the router in process.
    tcp: Option<(u16, atrium::upstream::UpstreamClient)>,
    schema: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

/// Runs `f` on SQLite, then on PostgreSQL when configured.
pub async fn each_db<F, Fut>(f: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    f(TestApp::new(Db::Sqlite).await).await;
    match std::env::var("ATRIUM_TEST_POSTGRES_URL") {
        Ok(_) => {
            let t = TestApp::new(Db::Postgres).await;
            let schema = t.schema.clone();
            f(t).await;
            if let Some((url, name)) = schema {
                drop_schema(&url, &name).await;
            }
        }
        Err(_) => missing("PostgreSQL (ATRIUM_TEST_POSTGRES_URL)"),
    }
}

/// Runs `f` on each database twice: through the router in process, then over TCP through
/// Atrium's own server, where gateway calls take the fast path (`http::gateway::fast`).
pub async fn each_db_and_transport<F, Fut>(f: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    each_db(&f).await;
    each_db(|t| {
        let f = &f;
        async move { f(t.over_tcp().await).await }
    })
    .await;
}

async fn drop_schema(url: &str, name: &str) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    if let Ok(mut c) = sqlx::AnyConnection::connect(url).await {
        let _ = sqlx::query(&format!("DROP SCHEMA \"{name}\" CASCADE"))
            .execute(&mut c)
            .await;
    }
}

pub fn start_time() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("valid time")
        .with_timezone(&chrono::Utc)
}

impl TestApp {
    pub async fn new(db: Db) -> TestApp {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, schema) = match db {
            Db::Sqlite => (format!("sqlite://{}/atrium.db", dir.path().display()), None),
            Db::Postgres => {
                use sqlx::Connection;
                let url = std::env::var("ATRIUM_TEST_POSTGRES_URL").expect("postgres url");
                let name = format!("t_{}", uuid::Uuid::new_v4().simple());
                let mut c = sqlx::AnyConnection::connect(&url)
                    .await
                    .expect("connect to PostgreSQL");
                sqlx::query(&format!("CREATE SCHEMA \"{name}\""))
                    .execute(&mut c)
                    .await
                    .expect("create schema");
                (url.clone(), Some((url, name)))
            }
        };
        let store = Store::connect(&url, schema.as_ref().map(|(_, n)| n.as_str()))
            .await
            .expect("connect store");
        store.migrate().await.expect("migrate");
        let clock = Arc::new(ManualClock::new(start_time()));
        let config = Config {
            database_url: url,
            data_dir: dir.path().to_path_buf(),
            audit_key_file: dir.path().join("audit-signing.key"),
            // The tests' upstreams (recording servers, Prefect) listen on loopback; as an
            // operator would, the tests let account Owners bind them there.
            upstream_networks: vec![atrium::domain::upstream_policy::UpstreamNetwork::parse(
                "127.0.0.0/8",
            )
            .expect("network")],
            ..Config::default()
        };
        let app = App::new(config, store, clock.clone()).await.expect("app");
        let svc = atrium::http::service(app.clone());
        TestApp {
            app,
            clock,
            db,
            svc,
            tcp: None,
            schema,
            _dir: Some(dir),
        }
    }

    /// Sends a request through the router; returns the status and the JSON body (Null if none).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, bytes) = self
            .raw(
                method,
                path,
                key,
                body.map(|b| b.to_string().into_bytes()),
                "application/json",
            )
            .await;
        (status, json_or_text(&bytes))
    }

    /// [`TestApp::call`] from client address `ip` (in process: the address the server would have
    /// seen on the connection).
    pub async fn call_from(
        &self,
        ip: &str,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        assert!(self.tcp.is_none(), "call_from sends in process");
        let mut req = request(
            method,
            path,
            key,
            body.map(|b| b.to_string().into_bytes()),
            "application/json",
        );
        from_address(&mut req, ip);
        let (status, _, bytes) = self.send(req).await;
        (status, json_or_text(&bytes))
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Vec<u8>>,
        content_type: &str,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        self.send(request(method, path, key, body, content_type))
            .await
    }

    /// Serves this app on a loopback port (for browsers and other real clients); the server lives
    /// as long as the test's runtime.
    pub async fn serve_tcp(&self) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        self.serve_listener(listener).await
    }

    /// Serves this app on a listener bound by the caller (when the address must be known before,
    /// as the public URL an identity provider sends browsers back to).
    pub async fn serve_listener(&self, listener: tokio::net::TcpListener) -> u16 {
        let port = listener.local_addr().expect("addr").port();
        let app = self.app.clone();
        tokio::spawn(async move {
            let _ = atrium::http::server::serve(listener, app, std::future::pending::<()>()).await;
        });
        // Serving has begun once the server has registered its address.
        while !self
            .app
            .listening
            .lock()
            .expect("lock")
            .iter()
            .any(|a| a.port() == port)
        {
            tokio::task::yield_now().await;
        }
        port
    }

    /// From now on, requests go over TCP through Atrium's server (see `tcp`).
    pub async fn over_tcp(mut self) -> TestApp {
        let port = self.serve_tcp().await;
        self.tcp = Some((port, atrium::upstream::upstream_client()));
        self
    }

    /// Sends a request built by the caller (exact headers).
    pub async fn send(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let resp = match &self.tcp {
            Some((port, client)) => {
                let (mut parts, body) = req.into_parts();
                let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                parts.uri = format!("http://127.0.0.1:{port}{target}")
                    .parse()
                    .expect("uri");
                client
                    .request(Request::from_parts(parts, body))
                    .await
                    .expect("the server answers over TCP")
                    .map(Body::new)
            }
            None => self.svc.clone().oneshot(req).await.expect("infallible"),
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        (status, headers, bytes)
    }

    /// The same database with a changed configuration.
    pub async fn reconfigured(self, f: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = (*self.app.config).clone();
        f(&mut config);
        let app = App::new(config, self.app.store.clone(), self.clock.clone())
            .await
            .expect("app");
        let svc = atrium::http::service(app.clone());
        let over_tcp = self.tcp.is_some();
        let t = TestApp {
            app,
            svc,
            tcp: None,
            ..self
        };
        if over_tcp {
            t.over_tcp().await
        } else {
            t
        }
    }

    /// A second app on the same database: another `atrium serve` process, as far as the permission
    /// index and the key cache are concerned.
    pub async fn peer(&self) -> TestApp {
        let schema = self.schema.as_ref().map(|(_, n)| n.as_str());
        let store = Store::connect(&self.app.config.database_url, schema)
            .await
            .expect("connect peer store");
        let clock = self.clock.clone();
        // Another server: same configuration, its own node id.
        let mut config = (*self.app.config).clone();
        config.node_id = format!("peer-{}", uuid::Uuid::new_v4().simple());
        let app = App::new(config, store, clock.clone())
            .await
            .expect("peer app");
        let svc = atrium::http::service(app.clone());
        TestApp {
            app,
            clock,
            db: self.db,
            svc,
            tcp: None,
            schema: None,
            _dir: None,
        }
    }

    /// Sends a bodiless request authenticated by a `name=value` session cookie.
    pub async fn with_cookie(&self, method: Method, path: &str, cookie: &str) -> StatusCode {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("cookie", cookie)
            .body(Body::empty())
            .expect("request");
        self.svc
            .clone()
            .oneshot(req)
            .await
            .expect("infallible")
            .status()
    }

    /// A user (no password) with a fresh API key.
    pub async fn user(&self, email: &str) -> TestUser {
        self.user_with(email, false).await
    }

    /// A user who signs in with the password `a-long-password` (no API key).
    pub async fn user_with_password(&self, email: &str) -> UserId {
        services::auth::create_user(
            &self.app,
            services::auth::Signup {
                email: email.into(),
                password: "a-long-password".into(),
                handle: None,
                first_name: None,
                last_name: None,
            },
            false,
        )
        .await
        .expect("user")
        .id
    }

    /// A site admin with a fresh API key.
    pub async fn site_admin(&self, email: &str) -> TestUser {
        self.user_with(email, true).await
    }

    async fn user_with(&self, email: &str, site_admin: bool) -> TestUser {
        let now = self.app.now();
        let mut tx = self.app.store.begin().await.expect("tx");
        let handle = email
            .split('@')
            .next()
            .unwrap_or("u")
            .replace(['.', '+', '_'], "-");
        let u = store::users::insert_user(
            &mut tx,
            store::users::NewUser {
                email,
                handle: &handle,
                first_name: "Test",
                last_name: "User",
                password_hash: None,
                site_admin,
            },
            now,
        )
        .await
        .expect("insert user");
        let _user_only = tx.commit().await.expect("commit");
        let k = services::users::issue_api_key(&self.app, None, u.id, "test", None)
            .await
            .expect("key");
        TestUser {
            id: u.id,
            key: k.key,
            key_id: k.id,
        }
    }

    pub fn principal(u: &TestUser) -> Principal {
        Principal::cli(u.id, format!("user {}", u.id))
    }

    /// An account owned by `owner`.
    pub async fn account(&self, owner: &TestUser, handle: &str) -> AccountId {
        services::accounts::create_account(
            &self.app,
            &Self::principal(owner),
            services::accounts::CreateAccount {
                name: handle.to_uppercase(),
                handle: handle.to_string(),
                location: None,
                link: None,
                billing_email: None,
            },
        )
        .await
        .expect("create account")
        .id
    }

    pub async fn add_member(
        &self,
        account: AccountId,
        owner: &TestUser,
        user: &TestUser,
        role: AccountRole,
    ) -> MembershipId {
        services::memberships::add_member(
            &self.app,
            &Self::principal(owner),
            account,
            user.id,
            role,
        )
        .await
        .expect("add member")
        .id
    }

    pub async fn workspace(&self, account: AccountId, key: &str, handle: &str) -> WorkspaceId {
        let (s, v) = self
            .call(
                Method::POST,
                &format!("/api/accounts/{account}/workspaces/"),
                Some(key),
                Some(serde_json::json!({"name": handle, "handle": handle})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        WorkspaceId::parse(v["id"].as_str().expect("id")).expect("uuid")
    }
}

#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: UserId,
    pub key: String,
    pub key_id: ApiKeyId,
}

pub use axum::http::Method as M;
pub use axum::http::StatusCode as S;

/// A PostgreSQL database of its own for a server process, dropped afterwards.
pub struct FreshDatabase {
    base: String,
    name: String,
    pub url: String,
}

impl FreshDatabase {
    pub fn create(base: &str) -> FreshDatabase {
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

/// A real `atrium` installation for process-level tests: a database URL, a data directory, the
/// CLI and `atrium serve` as child processes.
pub struct Installation {
    pub db: String,
    pub data: tempfile::TempDir,
}

pub const BIN: &str = env!("CARGO_BIN_EXE_atrium");

/// A running `atrium serve`, killed (SIGKILL) when dropped.
pub struct Server {
    pub child: std::process::Child,
    pub port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Installation {
    pub fn new(db: String) -> Installation {
        Installation {
            db,
            data: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Runs the CLI; panics on failure; returns standard output trimmed.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.cli_output(args, stdin);
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

    pub fn cli_output(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use std::io::Write;
        let mut child = std::process::Command::new(BIN)
            .args(args)
            .env("ATRIUM_DATABASE_URL", &self.db)
            .env("ATRIUM_DATA_DIR", self.data.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
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
        child.wait_with_output().expect("atrium output")
    }

    /// A site-admin user, an account and a key: (account id, key).
    pub fn bootstrap(&self, email: &str, handle: &str) -> (String, String) {
        self.cli(
            &["users", "create", "--email", email, "--site-admin"],
            Some("a-long-password\n"),
        );
        let account = self.cli(
            &[
                "accounts",
                "create",
                "--handle",
                handle,
                "--name",
                handle,
                "--owner-email",
                email,
            ],
            None,
        );
        let key = self.cli(
            &[
                "users",
                "api-key",
                "--email",
                email,
                "--name",
                "cli",
                "--expires-in",
                "30d",
            ],
            None,
        );
        (account, key)
    }

    /// Starts `atrium serve` on a free port and waits until it accepts connections.
    pub fn serve(&self) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        self.serve_on(port, &[])
    }

    /// Starts `atrium serve` on `port` with extra environment variables (its log goes to
    /// `serve-PORT.log` then) and waits until it accepts connections.
    pub fn serve_on(&self, port: u16, env: &[(&str, &str)]) -> Server {
        let log = if env.is_empty() {
            "serve.log".to_string()
        } else {
            format!("serve-{port}.log")
        };
        let child = std::process::Command::new(BIN)
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .env("ATRIUM_DATABASE_URL", &self.db)
            .env("ATRIUM_DATA_DIR", self.data.path())
            .env("ATRIUM_LOG", "warn,atrium::cli=info")
            .env("ATRIUM_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::File::create(self.data.path().join(log))
                    .map_or_else(|_| std::process::Stdio::null(), Into::into),
            )
            .spawn()
            .expect("spawn server");
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Server { child, port }
    }
}

/// The databases a test of the real binary runs on: a SQLite file in `dir`, then a fresh
/// PostgreSQL database when configured (dropped with the returned guard).
pub fn installation_databases(dir: &std::path::Path) -> (Vec<String>, Option<FreshDatabase>) {
    let mut dbs = vec![format!("sqlite://{}/atrium.db", dir.display())];
    let pg = std::env::var("ATRIUM_TEST_POSTGRES_URL")
        .ok()
        .map(|b| FreshDatabase::create(&b));
    match &pg {
        Some(db) => dbs.push(db.url.clone()),
        None => missing("PostgreSQL (ATRIUM_TEST_POSTGRES_URL)"),
    }
    (dbs, pg)
}

/// The `prefect` CLI and the Python that has the `prefect` package, or `None` (after reporting)
/// when they are not configured.
pub fn prefect_and_python() -> Option<(String, String)> {
    match (
        std::env::var("ATRIUM_TEST_PREFECT"),
        std::env::var("ATRIUM_TEST_PYTHON"),
    ) {
        (Ok(prefect), Ok(python)) => Some((prefect, python)),
        _ => {
            missing("the prefect package (ATRIUM_TEST_PREFECT, ATRIUM_TEST_PYTHON)");
            None
        }
    }
}

/// Binds the workspace of gateway path `gw` to the Prefect server on `upstream` (with its auth
/// string) through a running server's API.
pub fn bind_upstream(port: u16, gw: &str, key: &str, upstream: u16, auth: &str) {
    let r = http(
        port,
        "PUT",
        &format!("{gw}/upstream"),
        key,
        &serde_json::json!({"url": format!("http://127.0.0.1:{upstream}/api"), "auth_string": auth})
            .to_string(),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

/// Creates a workspace through a running server's API; its id.
pub fn create_workspace(port: u16, account: &str, key: &str, handle: &str) -> String {
    let resp = http(
        port,
        "POST",
        &format!("/api/accounts/{account}/workspaces/"),
        key,
        &format!(r#"{{"name":"{handle}","handle":"{handle}"}}"#),
    );
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    resp.split("\"id\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("workspace id")
        .to_string()
}

/// One HTTP/1.1 request on a fresh connection; the raw response (empty if the server is gone).
pub fn http(port: u16, method: &str, path: &str, key: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(30)));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// A real SMTP server (Python `aiosmtpd`) writing every message into a maildir.
pub struct SmtpSink {
    child: std::process::Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpSink {
    /// Starts the sink with `ATRIUM_TEST_PYTHON` (a Python with `aiosmtpd`); `None` (or a failure
    /// under `ATRIUM_TEST_REQUIRE_ALL=1`) when it is not configured.
    pub fn start() -> Option<SmtpSink> {
        let Ok(python) = std::env::var("ATRIUM_TEST_PYTHON") else {
            missing("an SMTP server (ATRIUM_TEST_PYTHON with aiosmtpd)");
            return None;
        };
        let dir = tempfile::tempdir().expect("maildir");
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("maildir folders");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let child = std::process::Command::new(python)
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "aiosmtpd did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Some(SmtpSink { child, port, dir })
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, raw.
    pub fn messages(&self) -> Vec<String> {
        let new = self.dir.path().join("new");
        let Ok(entries) = std::fs::read_dir(new) else {
            return vec![];
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect()
    }

    /// The one message to `to`, decoded from quoted-printable.
    pub fn message_to(&self, to: &str) -> String {
        let all: Vec<String> = self
            .messages()
            .into_iter()
            .filter(|m| {
                m.to_lowercase()
                    .contains(&format!("to: {}", to.to_lowercase()))
            })
            .collect();
        assert_eq!(
            all.len(),
            1,
            "expected one message to {to}, got {}",
            all.len()
        );
        decode_qp(&all[0])
    }
}

/// Undoes quoted-printable soft breaks and `=XX` escapes (enough for our ASCII mails).
pub fn decode_qp(s: &str) -> String {
    let joined = s.replace("=\r\n", "").replace("=\n", "");
    let mut out = String::with_capacity(joined.len());
    let b = joined.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(v as char);
                i += 3;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// The invitation link in a message: (path with query, invitation id, code).
pub fn invitation_link(message: &str) -> (String, String, String) {
    let start = message.find("/invitations/").expect("a link in the email");
    let rest = &message[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .unwrap_or(rest.len());
    let path = rest[..end].to_string();
    let (id_part, query) = path
        .trim_start_matches("/invitations/")
        .split_once("?invite_code=")
        .expect("code");
    (path.clone(), id_part.to_string(), query.to_string())
}

/// Reads the code of an invitation's latest queued email from the outbox (as the SMTP worker
/// would), since the API never shows it.
pub async fn latest_code(t: &TestApp, id: &str) -> String {
    use sqlx::Row;
    let mut c = t.app.store.reader().await.expect("conn");
    let row = sqlx::query("SELECT body_text FROM outbox WHERE invitation_id = $1 AND status = 'pending' ORDER BY created DESC LIMIT 1")
        .bind(id)
        .fetch_one(&mut *c)
        .await
        .expect("queued email");
    let body: String = row.try_get("body_text").expect("body");
    let body = atrium::services::mail::open_body(&t.app, &body).expect("the body opens");
    invitation_link(&body).2
}

// ---- browser-like helpers for server-rendered pages ----

/// The pre-session CSRF cookie a page set, or "" (signed-in pages bind their forms to the
/// session and set none).
pub fn csrf_cookie(h: &axum::http::HeaderMap) -> String {
    h.get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("atrium_csrf="))
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .to_string()
}

pub fn cookie_of(h: &axum::http::HeaderMap, name: &str) -> String {
    h.get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie"))
        .to_string()
}

pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field"))
        + marker.len();
    html[start..].split('"').next().expect("value").to_string()
}

pub async fn form(
    t: &TestApp,
    path: &str,
    cookie: &str,
    fields: &[(&str, &str)],
) -> (axum::http::StatusCode, axum::http::HeaderMap, String) {
    use tower::ServiceExt;
    let body: String = fields
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.replace('%', "%25")
                    .replace('&', "%26")
                    .replace('+', "%2B")
                    .replace('@', "%40")
                    .replace(' ', "+")
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let req = axum::http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .body(axum::body::Body::from(body))
        .expect("request");
    let resp = atrium::http::service(t.app.clone())
        .oneshot(req)
        .await
        .expect("response");
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// A request as every real client sends it (Content-Length always, the gateway requires it on
/// writes).
fn request(
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Vec<u8>>,
    content_type: &str,
) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    match body {
        Some(b) => req
            .header("content-type", content_type)
            .header("content-length", b.len())
            .body(Body::from(b)),
        None => req.header("content-length", 0).body(Body::empty()),
    }
    .expect("request")
}

/// Fails with every surprise listed (tests that sweep a table collect them all first).
pub fn assert_no_surprises(db: &Db, surprises: &[String]) {
    assert!(
        surprises.is_empty(),
        "{db:?}: {} surprise(s):\n{}",
        surprises.len(),
        surprises.join("\n")
    );
}

/// A response body as JSON (`Null` when empty, a string when it is not JSON).
pub fn json_or_text(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into()))
    }
}

/// Makes an in-process request come from client address `ip` (what the server would have seen
/// on the connection).
pub fn from_address(req: &mut Request<Body>, ip: &str) {
    let addr = std::net::SocketAddr::new(ip.parse().expect("ip"), 40000);
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(addr));
}
