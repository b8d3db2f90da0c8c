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
            ..Config::default()
        };
        let app = App::new(config, store, clock.clone()).await.expect("app");
        let svc = atrium::http::service(app.clone());
        TestApp {
            app,
            clock,
            db,
            svc,
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
        let v = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, v)
    }

    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Vec<u8>>,
        content_type: &str,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let req = match body {
            Some(b) => req.header("content-type", content_type).body(Body::from(b)),
            None => req.body(Body::empty()),
        }
        .expect("request");
        let resp = self.svc.clone().oneshot(req).await.expect("infallible");
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

    /// A second app on the same database: another `atrium serve` process, as far as the permission
    /// index and the key cache are concerned.
    pub async fn peer(&self) -> TestApp {
        let schema = self.schema.as_ref().map(|(_, n)| n.as_str());
        let store = Store::connect(&self.app.config.database_url, schema)
            .await
            .expect("connect peer store");
        let clock = self.clock.clone();
        let app = App::new((*self.app.config).clone(), store, clock.clone())
            .await
            .expect("peer app");
        let svc = atrium::http::service(app.clone());
        TestApp {
            app,
            clock,
            db: self.db,
            svc,
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
                site_admin: false,
            },
            now,
        )
        .await
        .expect("insert user");
        tx.commit().await.expect("commit");
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
