//! The workspace gateway in process, against a recording upstream (an HTTP server in the test that
//! answers with what it received, so the test can see exactly what the upstream sees): which
//! callers get through, what is forwarded, path canonicalization, header stripping, body limits,
//! rate limits, the upstream binding API and the events-path split with the audit log. The real
//! Prefect server is exercised by `prefect_gateway.rs`.

use crate::support::*;
use atrium::domain::role::{AccountRole, BuiltinWorkspaceRole};
use axum::body::Body;
use axum::http::{Method as M, Request, StatusCode as S};
use serde_json::{json, Value};

/// Starts the recording upstream; returns its port.
pub(crate) async fn recording_upstream() -> u16 {
    async fn echo(req: axum::extract::Request) -> axum::response::Response {
        use axum::response::IntoResponse;
        let (parts, body) = req.into_parts();
        if parts.uri.path() == "/api/redirect-me" {
            let port = parts
                .headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.rsplit(':').next())
                .unwrap_or("0")
                .to_string();
            return (
                S::TEMPORARY_REDIRECT,
                [("location", format!("http://127.0.0.1:{port}/api/flows/"))],
            )
                .into_response();
        }
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        let headers: serde_json::Map<String, Value> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
            .collect();
        axum::Json(json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": headers,
            "body": String::from_utf8_lossy(&bytes),
        }))
        .into_response()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, axum::Router::new().fallback(echo)).await;
    });
    port
}

pub(crate) struct Setup {
    pub account: String,
    pub ws: String,
    pub owner: TestUser,
    pub viewer: TestUser,
    pub member: TestUser,
}

pub(crate) async fn setup(t: &TestApp, port: u16, handle: &str) -> Setup {
    let owner = t.user(&format!("owner-{handle}@{handle}.test")).await;
    let viewer = t.user(&format!("viewer-{handle}@{handle}.test")).await;
    let member = t.user(&format!("member-{handle}@{handle}.test")).await;
    let account = t.account(&owner, handle).await;
    t.add_member(account, &owner, &viewer, AccountRole::Member)
        .await;
    t.add_member(account, &owner, &member, AccountRole::Member)
        .await;
    let ws = t.workspace(account, &owner.key, "prod").await;
    let (s, v) = t
        .call(
            M::POST,
            &format!("/api/accounts/{account}/workspaces/{ws}/user_access/"),
            Some(&owner.key),
            Some(json!([{"user_id": viewer.id, "workspace_role_id": BuiltinWorkspaceRole::Viewer.id()}])),
        )
        .await;
    assert_eq!(s, S::OK, "{v}");
    let (s, v) = t
        .call(
            M::PUT,
            &format!("/api/accounts/{account}/workspaces/{ws}/upstream"),
            Some(&owner.key),
            Some(json!({"url": format!("http://127.0.0.1:{port}/api/"), "auth_string": "s3cret-upstream"})),
        )
        .await;
    assert_eq!(s, S::OK, "{v}");
    assert_eq!(
        v["url"],
        format!("http://127.0.0.1:{port}/api"),
        "stored without the trailing slash"
    );
    assert_eq!(v["has_auth_string"], true);
    assert!(
        !v.to_string().contains("s3cret"),
        "the auth string is never returned: {v}"
    );
    Setup {
        account: account.to_string(),
        ws: ws.to_string(),
        owner,
        viewer,
        member,
    }
}

impl Setup {
    pub fn path(&self, rest: &str) -> String {
        format!(
            "/api/accounts/{}/workspaces/{}/{rest}",
            self.account, self.ws
        )
    }
}

#[tokio::test]
async fn callers_reach_the_upstream_only_with_the_route_scope_and_see_nothing_of_other_tenants() {
    each_db_and_transport(|t| async move {
        let port = recording_upstream().await;
        let w = setup(&t, port, "acme").await;

        // A Viewer lists flow runs: forwarded with the path as sent and the upstream's own
        // credentials, never the caller's key.
        let (s, v) = t
            .call(
                M::POST,
                &w.path("flow_runs/filter"),
                Some(&w.viewer.key),
                Some(json!({"limit": 5})),
            )
            .await;
        assert_eq!(s, S::OK, "{v}");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/api/flow_runs/filter");
        assert_eq!(v["body"], r#"{"limit":5}"#);
        assert_eq!(v["headers"]["authorization"], "Basic czNjcmV0LXVwc3RyZWFt");
        assert!(
            !v.to_string().contains(&w.viewer.key),
            "the client's key reached the upstream"
        );

        // Slashes are kept as sent: `flows/` stays `flows/`, queries pass through.
        let (s, v) = t
            .call(
                M::GET,
                &format!("{}?limit=3&x=%20y", w.path("flows/")),
                Some(&w.owner.key),
                None,
            )
            .await;
        assert_eq!(s, S::OK, "{v}");
        assert_eq!(v["path"], "/api/flows/");
        assert_eq!(v["query"], "limit=3&x=%20y");

        // The Viewer may not create runs or trigger deployments (403 naming the scope), and the
        // refusal is audited.
        for (method, rest, scope) in [
            (M::POST, "flow_runs/", "run_flows"),
            (
                M::POST,
                "deployments/3c5c1f36-8d0a-4c56-9f55-8f3c3b2a1d11/create_flow_run",
                "run_deployments",
            ),
            (
                M::DELETE,
                "flows/3c5c1f36-8d0a-4c56-9f55-8f3c3b2a1d11",
                "manage_flows",
            ),
            (M::PUT, "admin/storage", "manage_workspace_settings"),
        ] {
            let body =
                (method != M::GET && method != M::DELETE).then(|| json!({"include_secrets": true}));
            let (s, v) = t
                .call(method.clone(), &w.path(rest), Some(&w.viewer.key), body)
                .await;
            assert_eq!(s, S::FORBIDDEN, "{method} {rest}: {v}");
            assert_eq!(
                v["detail"],
                format!("missing workspace scope {scope}"),
                "{method} {rest}"
            );
        }
        // Block reads asking for secrets reach the upstream without asking, for a caller without
        // see_secret_blocks (tests/it/adversarial.rs tries every spelling); the Owner's pass as
        // sent.
        let (s, v) = t
            .call(
                M::GET,
                &w.path(
                    "block_documents/3c5c1f36-8d0a-4c56-9f55-8f3c3b2a1d11?include_secrets=true&x=1",
                ),
                Some(&w.viewer.key),
                None,
            )
            .await;
        assert_eq!((s, &v["query"]), (S::OK, &json!("x=1")), "{v}");
        let (s, v) = t
            .call(
                M::POST,
                &w.path("block_documents/filter"),
                Some(&w.viewer.key),
                Some(json!({"include_secrets": true, "limit": 2})),
            )
            .await;
        assert_eq!(s, S::OK, "{v}");
        let sent: Value = serde_json::from_str(v["body"].as_str().expect("body")).expect("json");
        assert_eq!(sent, json!({"include_secrets": false, "limit": 2}));
        let (s, v) = t
            .call(
                M::POST,
                &w.path("block_documents/filter"),
                Some(&w.owner.key),
                Some(json!({"include_secrets": true})),
            )
            .await;
        assert_eq!(s, S::OK, "{v}");
        assert_eq!(v["body"], json!({"include_secrets": true}).to_string());

        // A route the table does not know: workspace Owners only.
        let (s, v) = t
            .call(
                M::POST,
                &w.path("teleport"),
                Some(&w.viewer.key),
                Some(json!({})),
            )
            .await;
        assert_eq!(s, S::FORBIDDEN, "{v}");
        assert!(
            v["detail"]
                .as_str()
                .unwrap_or("")
                .contains("not in the gateway's route table"),
            "{v}"
        );
        let (s, v) = t
            .call(
                M::POST,
                &w.path("teleport"),
                Some(&w.owner.key),
                Some(json!({})),
            )
            .await;
        assert_eq!(
            (s, v["path"].as_str()),
            (S::OK, Some("/api/teleport")),
            "{v}"
        );

        // No credential → 401; a member without access, another tenant, or a key for another
        // account's workspace → 404.
        let (s, _) = t
            .call(M::POST, &w.path("flow_runs/filter"), None, Some(json!({})))
            .await;
        assert_eq!(s, S::UNAUTHORIZED);
        let (s, _) = t
            .call(
                M::POST,
                &w.path("flow_runs/filter"),
                Some(&w.member.key),
                Some(json!({})),
            )
            .await;
        assert_eq!(s, S::NOT_FOUND);
        let other = setup(&t, recording_upstream().await, "other").await;
        let (s, v) = t
            .call(
                M::POST,
                &other.path("flow_runs/filter"),
                Some(&w.owner.key),
                Some(json!({})),
            )
            .await;
        assert_eq!(s, S::NOT_FOUND, "{v}");
        // Ids that are not UUIDs are not gateway paths at all.
        let (s, _) = t
            .call(
                M::GET,
                &format!("/api/accounts/acme/workspaces/{}/flows/", w.ws),
                Some(&w.owner.key),
                None,
            )
            .await;
        assert_eq!(s, S::NOT_FOUND);

        let (s, v) = t
            .call(
                M::POST,
                &format!("/api/accounts/{}/events/filter", w.account),
                Some(&w.owner.key),
                Some(json!({"limit": 200, "filter": {"event": {"prefix": ["prefect-cloud."]}}})),
            )
            .await;
        assert_eq!(s, S::OK, "{v}");
        let text = v.to_string();
        assert!(
            text.contains("run_deployments"),
            "gateway denials are audited: {text}"
        );
        assert!(
            text.contains("prefect-cloud.workspace-upstream.created"),
            "{text}"
        );
        assert!(
            !text.contains("s3cret"),
            "the auth string never reaches the audit log"
        );
    })
    .await;
}

#[tokio::test]
async fn paths_are_canonical_headers_are_stripped_and_bodies_are_bounded() {
    each_db_and_transport(|t| async move {
        let port = recording_upstream().await;
        let w = setup(&t, port, "acme").await;
        for bad in [
            "flows/%2e%2e/admin/settings",
            "flows/../admin/settings",
            "flows//x",
            "flows%2Fx",
            "flows/%2fx",
            "flows/x%5c",
            "./flows/",
        ] {
            let (s, v) = t.call(M::GET, &w.path(bad), Some(&w.owner.key), None).await;
            assert_eq!(s, S::BAD_REQUEST, "{bad}: {v}");
            assert!(
                v["detail"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("path refused"),
                "{bad}: {v}"
            );
        }

        // Identity and forwarding headers from the client never reach the upstream.
        let req = Request::builder()
            .method(M::GET)
            .uri(w.path("flows/x"))
            .header("authorization", format!("Bearer {}", w.owner.key))
            .header("x-forwarded-for", "6.6.6.6")
            .header("forwarded", "for=6.6.6.6")
            .header("x-real-ip", "6.6.6.6")
            .header("cookie", "atrium_session=stolen")
            .header("x-atrium-user", "root")
            .header("x-prefect-api-version", "0.8.4")
            .header("connection", "keep-alive, X-Hop-Secret")
            .header("x-hop-secret", "named by Connection, so hop-by-hop")
            .body(Body::empty())
            .expect("request");
        let (s, _, body) = t.send(req).await;
        assert_eq!(s, S::OK);
        let v: Value = serde_json::from_slice(&body).expect("json");
        let headers = v["headers"].as_object().expect("headers");
        for h in [
            "x-hop-secret",
            "x-forwarded-for",
            "forwarded",
            "x-real-ip",
            "cookie",
            "x-atrium-user",
        ] {
            assert!(!headers.contains_key(h), "{h} was forwarded: {headers:?}");
        }
        assert_eq!(
            headers["x-prefect-api-version"], "0.8.4",
            "ordinary headers pass"
        );
        assert!(!v.to_string().contains("6.6.6.6"));

        // POST without Content-Length (a body of unknown length: chunked over TCP) → 411; over
        // 5 MiB → 413; nothing reaches the upstream.
        let stream = futures_util::stream::iter([Ok::<_, std::io::Error>(b"{}".to_vec())]);
        let req = Request::builder()
            .method(M::POST)
            .uri(w.path("flow_runs/filter"))
            .header("authorization", format!("Bearer {}", w.owner.key))
            .body(Body::from_stream(stream))
            .expect("request");
        let (s, _, body) = t.send(req).await;
        assert_eq!(s, S::LENGTH_REQUIRED, "{}", String::from_utf8_lossy(&body));
        let big = vec![b' '; 5 * 1024 * 1024 + 1];
        let (s, _, _) = t
            .raw(
                M::POST,
                &w.path("flow_runs/filter"),
                Some(&w.owner.key),
                Some(big),
                "application/json",
            )
            .await;
        assert_eq!(s, S::PAYLOAD_TOO_LARGE);

        // FastAPI's slash redirects point back at the gateway (the configured public URL).
        let (s, h, _) = t
            .raw(M::GET, &w.path("redirect-me"), Some(&w.owner.key), None, "")
            .await;
        assert_eq!(s, S::TEMPORARY_REDIRECT);
        assert_eq!(
            h["location"],
            format!(
                "{}/api/accounts/{}/workspaces/{}/flows/",
                t.app.config.public_url, w.account, w.ws
            )
        );
    })
    .await;
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_recover_as_the_budget_refills() {
    each_db_and_transport(|t| async move {
        let port = recording_upstream().await;
        let w = setup(&t, port, "acme").await;
        let root = t.site_admin("root@x.test").await;
        let (s, v) = t
            .call(M::PUT, &format!("/api/admin/accounts/{}/plan", w.account), Some(&root.key),
                Some(json!({"plan_type": "pro", "overrides": {"api_rate_limit": 6, "logs_rate_limit": 5}})))
            .await;
        assert_eq!(s, S::OK, "{v}");
        for i in 0..6 {
            let (s, v) = t.call(M::POST, &w.path("flows/filter"), Some(&w.viewer.key), Some(json!({}))).await;
            assert_eq!(s, S::OK, "call {i}: {v}");
        }
        let (s, h, body) = t
            .raw(M::POST, &w.path("flows/filter"), Some(&w.viewer.key), Some(b"{}".to_vec()), "application/json")
            .await;
        assert_eq!(s, S::TOO_MANY_REQUESTS, "{}", String::from_utf8_lossy(&body));
        assert_eq!(h["retry-after"], "10", "one call per 10 s at 6 per minute");
        let (s, v) = t
            .call(M::GET, &format!("/api/accounts/{}/rate-limits/status", w.account), Some(&w.owner.key), None)
            .await;
        assert_eq!(s, S::OK, "{v}");
        assert_eq!(v["exceeded_buckets"], json!(["orchestration-api"]));
        t.clock.advance(chrono::Duration::seconds(10));
        let (s, _) = t.call(M::POST, &w.path("flows/filter"), Some(&w.viewer.key), Some(json!({}))).await;
        assert_eq!(s, S::OK, "the bucket refilled by one");

        // Logs count per line: 3 + 3 > 5.
        let logs = json!([{"message": "a"}, {"message": "b"}, {"message": "c"}]);
        let (s, v) = t.call(M::POST, &w.path("logs/"), Some(&w.owner.key), Some(logs.clone())).await;
        assert_eq!(s, S::OK, "{v}");
        let (s, _) = t.call(M::POST, &w.path("logs/"), Some(&w.owner.key), Some(logs.clone())).await;
        assert_eq!(s, S::TOO_MANY_REQUESTS);
        // Another account's budget is its own.
        let other = setup(&t, recording_upstream().await, "other").await;
        let (s, _) = t.call(M::POST, &other.path("logs/"), Some(&other.owner.key), Some(logs)).await;
        assert_eq!(s, S::OK);

        // The refusals show in the metrics.
        let (s, _, body) = t.raw(M::GET, "/metrics", None, None, "").await;
        assert_eq!(s, S::OK);
        let text = String::from_utf8(body).expect("utf8");
        assert!(text.contains("atrium_rate_limited_total{bucket=\"orchestration-api\"} 1"), "{text}");
        assert!(text.contains("atrium_rate_limited_total{bucket=\"logs-and-events\"} 1"), "{text}");
        assert!(text.contains("atrium_http_requests_total{class=\"gateway\",status=\"429\"} 2"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn binding_is_validated_and_unbound_or_unreachable_upstreams_answer_clearly() {
    each_db_and_transport(|t| async move {
        let port = recording_upstream().await;
        let w = setup(&t, port, "acme").await;
        let up = format!("/api/accounts/{}/workspaces/{}/upstream", w.account, w.ws);
        for (body, why) in [
            (json!({"url": "ftp://x/api"}), "must start with http://"),
            (json!({"url": "https://x/api"}), "https"),
            (json!({"url": "http://u:p@x/api"}), "credentials"),
            (json!({"url": "http://x/api?a=1"}), "query"),
            (json!({"url": "http://x/api/../admin"}), "dot segments"),
            (
                json!({"url": "http://x/api", "auth_string": ""}),
                "auth_string",
            ),
            (json!({"url": "http://x/api", "extra": 1}), "unknown field"),
        ] {
            let (s, v) = t
                .call(M::PUT, &up, Some(&w.owner.key), Some(body.clone()))
                .await;
            assert_eq!(s, S::UNPROCESSABLE_ENTITY, "{body}: {v}");
            assert!(
                v["detail"].as_str().unwrap_or("").contains(why),
                "{body}: {v}"
            );
        }
        // Nothing changed: still bound to the recording upstream with its auth string.
        let (s, v) = t.call(M::GET, &up, Some(&w.owner.key), None).await;
        assert_eq!(
            (s, v["url"].clone(), v["has_auth_string"].clone()),
            (
                S::OK,
                json!(format!("http://127.0.0.1:{port}/api")),
                json!(true)
            )
        );
        // Omitting the auth string keeps it; null removes it.
        let (s, v) = t
            .call(
                M::PUT,
                &up,
                Some(&w.owner.key),
                Some(json!({"url": format!("http://127.0.0.1:{port}/api")})),
            )
            .await;
        assert_eq!(
            (s, v["has_auth_string"].clone()),
            (S::OK, json!(true)),
            "{v}"
        );
        let (s, v) = t
            .call(M::GET, &w.path("flows/x"), Some(&w.owner.key), None)
            .await;
        assert_eq!(
            (s, v["headers"]["authorization"].clone()),
            (S::OK, json!("Basic czNjcmV0LXVwc3RyZWFt"))
        );
        let (s, v) = t
            .call(
                M::PUT,
                &up,
                Some(&w.owner.key),
                Some(json!({"url": format!("http://127.0.0.1:{port}/api"), "auth_string": null})),
            )
            .await;
        assert_eq!(
            (s, v["has_auth_string"].clone()),
            (S::OK, json!(false)),
            "{v}"
        );
        let (s, v) = t
            .call(M::GET, &w.path("flows/x"), Some(&w.owner.key), None)
            .await;
        assert_eq!(s, S::OK);
        assert!(v["headers"].get("authorization").is_none(), "{v}");

        // A port nobody listens on → 502 at once, with a clear detail.
        let (s, _) = t
            .call(
                M::PUT,
                &up,
                Some(&w.owner.key),
                Some(json!({"url": "http://127.0.0.1:9/api"})),
            )
            .await;
        assert_eq!(s, S::OK);
        let (s, v) = t
            .call(M::GET, &w.path("flows/x"), Some(&w.owner.key), None)
            .await;
        assert_eq!(s, S::BAD_GATEWAY, "{v}");
        assert!(
            v["detail"].as_str().unwrap_or("").contains("unreachable"),
            "{v}"
        );
        // Unbound → 503 naming how to bind; the Viewer (no admin rights) cannot unbind.
        let (s, _) = t.call(M::DELETE, &up, Some(&w.viewer.key), None).await;
        assert_eq!(s, S::FORBIDDEN);
        let (s, _) = t.call(M::DELETE, &up, Some(&w.owner.key), None).await;
        assert_eq!(s, S::NO_CONTENT);
        let (s, v) = t
            .call(M::GET, &w.path("flows/x"), Some(&w.viewer.key), None)
            .await;
        assert_eq!(s, S::SERVICE_UNAVAILABLE, "{v}");
        assert!(
            v["detail"].as_str().unwrap_or("").contains("/upstream"),
            "{v}"
        );
        let (s, _) = t.call(M::GET, &up, Some(&w.owner.key), None).await;
        assert_eq!(s, S::NOT_FOUND);

        // The stored auth string is not readable in the database.
        let (s, _) = t
            .call(
                M::PUT,
                &up,
                Some(&w.owner.key),
                Some(json!({"url": "http://127.0.0.1:9/api", "auth_string": "s3cret-upstream"})),
            )
            .await;
        assert_eq!(s, S::OK);
        let mut c = t.app.store.reader().await.expect("reader");
        let stored: Option<String> =
            sqlx::query_scalar("SELECT auth_string_enc FROM workspace_upstreams")
                .fetch_one(&mut *c)
                .await
                .expect("row");
        let stored = stored.expect("encrypted auth string");
        assert!(
            !stored.contains("s3cret") && !stored.contains("czNjcmV0"),
            "{stored}"
        );
    })
    .await;
}

#[tokio::test]
async fn workspace_events_paths_serve_audit_queries_and_forward_prefect_event_queries() {
    each_db_and_transport(|t| async move {
        let port = recording_upstream().await;
        let w = setup(&t, port, "acme").await;
        // Prefect's events query → the upstream.
        let (s, v) = t
            .call(
                M::POST,
                &w.path("events/filter"),
                Some(&w.viewer.key),
                Some(json!({"filter": {"event": {"prefix": ["prefect.flow-run."]}}, "limit": 10})),
            )
            .await;
        assert_eq!(s, S::OK, "{v}");
        assert_eq!(v["path"], "/api/events/filter");
        let (s, v) = t
            .call(
                M::GET,
                &format!("{}?page-token=abc", w.path("events/filter/next")),
                Some(&w.viewer.key),
                None,
            )
            .await;
        assert_eq!(
            (s, v["path"].as_str()),
            (S::OK, Some("/api/events/filter/next")),
            "{v}"
        );
        // Audit query → Atrium's audit log (Owners and Admins), with the workspace's events.
        let (s, v) = t
            .call(
                M::POST,
                &w.path("events/filter"),
                Some(&w.owner.key),
                Some(json!({"filter": {"event": {"prefix": ["prefect-cloud."]}}})),
            )
            .await;
        assert_eq!(s, S::OK, "{v}");
        let names: Vec<&str> = v["events"]
            .as_array()
            .expect("events")
            .iter()
            .filter_map(|e| e["event"].as_str())
            .collect();
        assert!(
            names.contains(&"prefect-cloud.workspace-upstream.created"),
            "{names:?}"
        );
        let (s, _) = t
            .call(
                M::POST,
                &w.path("events/filter"),
                Some(&w.viewer.key),
                Some(json!({"filter": {"event": {"prefix": ["prefect-cloud."]}}})),
            )
            .await;
        assert_eq!(s, S::FORBIDDEN, "a Viewer cannot read the audit log");
    })
    .await;
}

/// The route table covers the whole API of the Prefect server we test with (its route list,
/// `tests/fixtures/prefect-3.9.1-routes.txt`, was read from `prefect.server.api.server.API_ROUTERS`
/// plus `/health` and `/version`, which the API app serves itself),
/// and every rule of the table matches a real route (no dead or misspelt rules), except the
/// Prefect Cloud route clients also call.
#[test]
fn the_route_table_covers_every_route_of_the_prefect_server() {
    use atrium::domain::gateway_routes::{lookup, TABLE};
    let list = include_str!("../fixtures/prefect-3.9.1-routes.txt");
    let mut missing = Vec::new();
    let mut used = std::collections::BTreeSet::new();
    let mut n = 0;
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let (method, path) = line.split_once(' ').expect("METHOD /path");
        let concrete: Vec<String> = path
            .trim_start_matches('/')
            .split('/')
            .map(|s| {
                if s.starts_with('{') {
                    "x".to_string()
                } else {
                    s.to_string()
                }
            })
            .collect();
        n += 1;
        match lookup(method, &concrete.join("/")) {
            Some(rule) => {
                used.insert((rule.method, rule.pattern));
            }
            None => missing.push(line),
        }
    }
    assert!(n > 180, "the fixture lists the whole API ({n} routes)");
    assert!(
        missing.is_empty(),
        "Prefect routes without a rule: {missing:?}"
    );
    let dead: Vec<_> = TABLE
        .iter()
        .filter(|r| !used.contains(&(r.method, r.pattern)))
        .map(|r| format!("{} {}", r.method, r.pattern))
        .collect();
    assert_eq!(
        dead,
        vec!["GET collections/work_pool_types".to_string()],
        "rules matching no Prefect route"
    );
}

#[tokio::test]
async fn websockets_are_authorized_before_the_upgrade() {
    each_db_and_transport(|t| async move {
        let port = recording_upstream().await;
        let w = setup(&t, port, "acme").await;
        let ws = |key: Option<&str>, rest: &str, protocol: Option<&str>| {
            let mut req = Request::builder()
                .method(M::GET)
                .uri(w.path(rest))
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
            if let Some(k) = key {
                req = req.header("authorization", format!("bearer {k}"));
            }
            if let Some(p) = protocol {
                req = req.header("sec-websocket-protocol", p);
            }
            req.body(Body::empty()).expect("request")
        };
        // Emitting events needs manage_events, which a Viewer lacks; another tenant sees 404;
        // no credential and no in-band protocol → 401.
        let (s, _, body) = t.send(ws(Some(&w.viewer.key), "events/in", None)).await;
        assert_eq!(s, S::FORBIDDEN, "{}", String::from_utf8_lossy(&body));
        assert!(String::from_utf8_lossy(&body).contains("manage_events"));
        let (s, _, _) = t
            .send(ws(Some(&w.member.key), "events/out", Some("prefect")))
            .await;
        assert_eq!(s, S::NOT_FOUND);
        let (s, _, _) = t.send(ws(None, "events/in", None)).await;
        assert_eq!(s, S::UNAUTHORIZED);
        let (s, _, _) = t
            .send(ws(Some(&w.viewer.key), "events/../admin", None))
            .await;
        assert_eq!(s, S::BAD_REQUEST);
        // The account-wide stream: someone of another account sees 404, no credential and no
        // in-band protocol 401, a malformed account id 422 — all before the upgrade.
        let outsider = t.user("outsider@elsewhere.test").await;
        let account_ws = |key: Option<&str>, account: &str| {
            let mut req = Request::builder()
                .method(M::GET)
                .uri(format!("/api/accounts/{account}/events/out"))
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
            if let Some(k) = key {
                req = req.header("authorization", format!("bearer {k}"));
            }
            req.body(Body::empty()).expect("request")
        };
        let (s, _, _) = t.send(account_ws(Some(&outsider.key), &w.account)).await;
        assert_eq!(s, S::NOT_FOUND);
        let (s, _, _) = t.send(account_ws(None, &w.account)).await;
        assert_eq!(s, S::UNAUTHORIZED);
        let (s, _, _) = t.send(account_ws(Some(&w.viewer.key), "not-a-uuid")).await;
        assert_eq!(s, S::UNPROCESSABLE_ENTITY);
    })
    .await;
}

#[tokio::test]
async fn accounts_can_shorten_but_not_lengthen_their_plans_run_retention() {
    each_db_and_transport(|t| async move {
        let port = recording_upstream().await;
        let w = setup(&t, port, "acme").await;
        let settings = format!("/api/accounts/{}/settings", w.account);
        let account = format!("/api/accounts/{}", w.account);
        let plan_days = t.call(M::GET, &account, Some(&w.owner.key), None).await.1
            ["run_retention_days"]
            .as_i64()
            .expect("days");
        let (s, v) = t
            .call(
                M::PATCH,
                &settings,
                Some(&w.owner.key),
                Some(json!({"run_retention_days": 3})),
            )
            .await;
        assert!(s.is_success(), "{v}");
        assert_eq!(
            t.call(M::GET, &account, Some(&w.owner.key), None).await.1["run_retention_days"],
            3
        );
        assert_eq!(
            t.app
                .upstreams
                .account(&uuid::Uuid::parse_str(&w.account).expect("id"))
                .expect("gateway")
                .run_retention_days,
            3
        );
        let (s, v) = t
            .call(
                M::PATCH,
                &settings,
                Some(&w.owner.key),
                Some(json!({"run_retention_days": plan_days + 100})),
            )
            .await;
        assert!(s.is_success(), "{v}");
        assert_eq!(
            t.call(M::GET, &account, Some(&w.owner.key), None).await.1["run_retention_days"],
            plan_days,
            "capped at the plan's"
        );
        for bad in [json!(0), json!(4000), json!("7"), json!(1.5)] {
            let (s, _) = t
                .call(
                    M::PATCH,
                    &settings,
                    Some(&w.owner.key),
                    Some(json!({"run_retention_days": bad})),
                )
                .await;
            assert_eq!(s, S::UNPROCESSABLE_ENTITY, "{bad}");
        }
    })
    .await;
}

/// A keep-alive HTTP/1.1 upstream written on raw sockets, answering by the path's last segment:
/// `small` (150 bytes), `big` (1 MiB, Content-Length), `chunked` (three chunks, no length),
/// `close` (answers with `connection: close`, then closes), `drop` (answers keep-alive, then
/// closes the idle connection). Ignores request bodies. Counts the connections it accepts.
async fn raw_upstream() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    buf.drain(..head_end);
                    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                    let last = path.rsplit('/').next().unwrap_or("").to_string();
                    let out: Vec<u8> = match last.as_str() {
                        "big" => {
                            let body = vec![b'x'; 1 << 20];
                            let mut o = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len()).into_bytes();
                            o.extend_from_slice(&body);
                            o
                        }
                        "chunked" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n".to_vec(),
                        "close" => b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nclosed".to_vec(),
                        _ => {
                            let body = format!("{{\"host\":{:?},\"pad\":\"{}\"}}", head.lines().find(|l| l.to_ascii_lowercase().starts_with("host:")).unwrap_or(""), "p".repeat(100));
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len()).into_bytes()
                        }
                    };
                    if s.write_all(&out).await.is_err() || last == "close" {
                        return;
                    }
                    if last == "drop" {
                        // Answers keep-alive, then drops the idle connection (as uvicorn does
                        // after its keep-alive timeout).
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        return;
                    }
                }
            });
        }
    });
    (port, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_pool_keeps_connections_alive_streams_large_bodies_and_survives_closes() {
    use http_body_util::BodyExt;
    use std::sync::atomic::Ordering::SeqCst;
    let (port, accepted) = raw_upstream().await;
    let client = atrium::upstream::upstream_client();
    let get = |path: &str| {
        axum::http::Request::get(format!("http://127.0.0.1:{port}{path}"))
            .body(axum::body::Body::empty())
            .expect("request")
    };
    // The pool takes a connection back on the connection's own task once it has read the end of
    // the answer: a moment after each body lets the next call find it (under a loaded test run a
    // call sent at once could open another, which is not what these counts are about).
    let body = |r: axum::http::Response<hyper::body::Incoming>| async move {
        let b = r.into_body().collect().await.expect("body").to_bytes();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        b
    };
    // Small answers: one connection carries them all, with the Host header of the upstream.
    for _ in 0..20 {
        let r = client.request(get("/small")).await.expect("small");
        let b = body(r).await;
        assert!(
            String::from_utf8_lossy(&b).contains(&format!("127.0.0.1:{port}")),
            "{b:?}"
        );
    }
    let n = accepted.load(SeqCst);
    assert!(
        n <= 2,
        "20 sequential calls kept alive and reused: {n} connections"
    );
    // A large body streams through whole, and the connection is pooled again after it.
    let r = client.request(get("/big")).await.expect("big");
    assert_eq!(body(r).await.len(), 1 << 20);
    let r = client.request(get("/chunked")).await.expect("chunked");
    assert_eq!(&body(r).await[..], b"hello world");
    let r = client
        .request(get("/small"))
        .await
        .expect("small after big");
    body(r).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let before = accepted.load(SeqCst);
    assert!(
        before <= 2,
        "connections reused after streamed bodies: {before}"
    );
    // A connection the upstream closes is not reused; the next call opens a fresh one.
    let r = client.request(get("/close")).await.expect("close");
    assert_eq!(&body(r).await[..], b"closed");
    let r = client.request(get("/small")).await.expect("after close");
    body(r).await;
    // A body the client abandons half-way does not poison the pool.
    let r = client.request(get("/big")).await.expect("big");
    drop(r);
    for _ in 0..3 {
        let r = client
            .request(get("/small"))
            .await
            .expect("after an abandoned body");
        assert!(body(r).await.len() > 100);
    }
    // A dead upstream is a connect error.
    let dead = axum::http::Request::get("http://127.0.0.1:9/x")
        .body(axum::body::Body::empty())
        .expect("req");
    let e = client.request(dead).await.expect_err("refused");
    assert!(e.is_connect(), "{e}");
}

/// Reads one response from a raw connection: status (0 once the server closed it), lower-cased
/// headers, and the body as sent (framed by Content-Length, or chunked and still encoded).
async fn read_response(
    s: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    async fn more(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> usize {
        let mut chunk = vec![0u8; 1 << 16];
        let n = s.read(&mut chunk).await.unwrap_or(0);
        buf.extend_from_slice(&chunk[..n]);
        n
    }
    let (status, headers, len) = loop {
        let mut h = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut h);
        if let Ok(httparse::Status::Complete(n)) = r.parse(buf) {
            let headers: Vec<(String, String)> = r
                .headers
                .iter()
                .map(|h| {
                    let v = String::from_utf8_lossy(h.value).to_string();
                    (h.name.to_ascii_lowercase(), v)
                })
                .collect();
            break (r.code.expect("status"), headers, n);
        }
        if more(s, buf).await == 0 {
            return (0, vec![], vec![]);
        }
    };
    buf.drain(..len);
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse::<usize>().expect("length"));
    let chunked = headers.iter().any(|(n, _)| n == "transfer-encoding");
    loop {
        let end = match (length, chunked) {
            (Some(l), _) => (buf.len() >= l).then_some(l),
            (None, true) => buf
                .windows(5)
                .position(|w| w == b"0\r\n\r\n")
                .map(|i| i + 5),
            (None, false) => Some(0),
        };
        if let Some(end) = end {
            let body = buf.drain(..end).collect();
            return (status, headers, body);
        }
        assert!(more(s, buf).await > 0, "connection closed mid-body");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_path_pipelines_relays_every_framing_and_hands_other_requests_to_the_router() {
    use std::sync::atomic::Ordering::SeqCst;
    use tokio::io::AsyncWriteExt;
    let (up, accepted) = raw_upstream().await;
    let t = TestApp::new(Db::Sqlite).await;
    let w = setup(&t, up, "raw").await;
    let port = t.serve_tcp().await;
    let key = w.owner.key.clone();
    let req = |method: &str, rest: &str, extra: &str| {
        format!(
            "{method} {} HTTP/1.1\r\nhost: atrium\r\nauthorization: Bearer {key}\r\n{extra}\r\n",
            w.path(rest)
        )
    };
    let connect = || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect")
    };
    let has = |h: &[(String, String)], n: &str, v: &str| h.iter().any(|(a, b)| a == n && b == v);
    let mut c = connect().await;
    let mut buf = Vec::new();

    // Two calls in one write (pipelined) are answered in order; the chunked body is relayed as
    // the upstream framed it.
    let two = format!("{}{}", req("GET", "small", ""), req("GET", "chunked", ""));
    c.write_all(two.as_bytes()).await.expect("write");
    let (s, _, b) = read_response(&mut c, &mut buf).await;
    assert_eq!(s, 200);
    assert!(
        String::from_utf8_lossy(&b).contains(&format!("127.0.0.1:{up}")),
        "the upstream gets its own Host: {}",
        String::from_utf8_lossy(&b)
    );
    let (s, h, b) = read_response(&mut c, &mut buf).await;
    assert_eq!(s, 200);
    assert!(has(&h, "transfer-encoding", "chunked"), "{h:?}");
    assert_eq!(&b[..], b"5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n");
    // A 1 MiB body arrives whole; every call so far used the one upstream connection this client
    // connection keeps.
    c.write_all(req("GET", "big", "").as_bytes())
        .await
        .expect("write");
    let (s, _, b) = read_response(&mut c, &mut buf).await;
    assert_eq!((s, b.len()), (200, 1 << 20));
    assert_eq!(accepted.load(SeqCst), 1, "one upstream connection");

    // The upstream closing its connection is hop-by-hop: the client's stays open, and the next
    // call opens a new upstream connection.
    c.write_all(req("GET", "close", "").as_bytes())
        .await
        .expect("write");
    let (s, h, b) = read_response(&mut c, &mut buf).await;
    assert_eq!((s, &b[..]), (200, &b"closed"[..]));
    assert!(!h.iter().any(|(n, _)| n == "connection"), "{h:?}");
    c.write_all(req("GET", "small", "").as_bytes())
        .await
        .expect("write");
    assert_eq!(read_response(&mut c, &mut buf).await.0, 200);
    assert_eq!(accepted.load(SeqCst), 2, "a new upstream connection");
    // A kept upstream connection the upstream drops while idle: the next call still succeeds
    // (the dead connection is noticed, or the bodiless call is sent again on a new one).
    c.write_all(req("GET", "drop", "").as_bytes())
        .await
        .expect("write");
    assert_eq!(read_response(&mut c, &mut buf).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    c.write_all(req("GET", "small", "").as_bytes())
        .await
        .expect("write");
    assert_eq!(read_response(&mut c, &mut buf).await.0, 200);

    // Atrium's own API on the same connection: the router serves it, and gateway calls after it.
    let me = format!("GET /api/me HTTP/1.1\r\nhost: atrium\r\nauthorization: Bearer {key}\r\n\r\n");
    c.write_all(me.as_bytes()).await.expect("write");
    let (s, _, b) = read_response(&mut c, &mut buf).await;
    assert_eq!(s, 200);
    assert!(
        String::from_utf8_lossy(&b).contains("owner-raw@raw.test"),
        "{}",
        String::from_utf8_lossy(&b)
    );
    c.write_all(req("GET", "small", "").as_bytes())
        .await
        .expect("write");
    assert_eq!(read_response(&mut c, &mut buf).await.0, 200);
    drop(c);

    // A refused call whose body came whole keeps the connection for the next request…
    let mut c = connect().await;
    buf.clear();
    let refused = format!(
        "POST {} HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\n{{}}{}",
        w.path("flows/filter"),
        req("GET", "small", "")
    );
    c.write_all(refused.as_bytes()).await.expect("write");
    let (s, h, b) = read_response(&mut c, &mut buf).await;
    assert_eq!(s, 401, "{}", String::from_utf8_lossy(&b));
    assert!(String::from_utf8_lossy(&b).contains("\"detail\""));
    assert!(!has(&h, "connection", "close"), "{h:?}");
    assert_eq!(read_response(&mut c, &mut buf).await.0, 200);
    // …and `Connection: close` is honoured.
    c.write_all(req("GET", "small", "connection: close\r\n").as_bytes())
        .await
        .expect("write");
    let (s, h, _) = read_response(&mut c, &mut buf).await;
    assert_eq!(s, 200);
    assert!(has(&h, "connection", "close"), "{h:?}");
    assert_eq!(read_response(&mut c, &mut buf).await.0, 0, "closed");

    // A write without Content-Length is refused with 411 (its body, if any, is unframed).
    let mut c = connect().await;
    buf.clear();
    c.write_all(req("POST", "flows/filter", "").as_bytes())
        .await
        .expect("write");
    let (s, _, b) = read_response(&mut c, &mut buf).await;
    assert_eq!(s, 411, "{}", String::from_utf8_lossy(&b));

    // A refused call whose body has not all arrived is answered, then the connection closes
    // (the rest of its body cannot be told from a next request).
    let mut c = connect().await;
    buf.clear();
    let partial = format!(
        "POST {} HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\n12345",
        w.path("flows/filter")
    );
    c.write_all(partial.as_bytes()).await.expect("write");
    let (s, h, _) = read_response(&mut c, &mut buf).await;
    assert_eq!(s, 401);
    assert!(has(&h, "connection", "close"), "{h:?}");
    assert_eq!(read_response(&mut c, &mut buf).await.0, 0, "closed");
}
