//! Webhooks end to end against a real Prefect server as the workspace's upstream, on both
//! databases: the API (`…/webhooks/…`, what `prefect cloud webhook` calls) with its scopes and
//! validation, and the receiver `/hooks/{slug}` — the template rendered from the call, the event
//! emitted into Prefect (read back through Prefect's own events API), failures answered 400 and
//! audited, rotation, disabling, and authentication by a service account's key.
//! Needs `ATRIUM_TEST_PREFECT`.

use crate::object_acls::{call, ok, upstream, AUTH};
use crate::prefect_gateway::raw_http;
use crate::support::*;
use atrium::domain::role::{AccountRole, BuiltinWorkspaceRole};
use serde_json::{json, Value};

const TEMPLATE: &str = r#"{
  "event": "acme.{{ json.kind }}.{{ method | lower }}",
  "resource": {"prefect.resource.id": "acme.order.{{ json.order }}", "content-type": "{{ headers['content-type'] }}"},
  "payload": {"raw": {{ body | tojson }}, "q": {{ query | tojson }}}
}"#;

/// The events of `name` the workspace's Prefect server has, through the gateway.
async fn events_named(t: &TestApp, gw: &str, key: &str, name: &str) -> Vec<Value> {
    let (s, v) = call(t, M::POST, &format!("{gw}/events/filter"), key,
        // The events occur at the test's clock.
        Some(json!({"filter": {"event": {"name": [name]}, "occurred": {
            "since": t.app.now() - chrono::Duration::hours(1), "until": t.app.now() + chrono::Duration::hours(1),
        }}, "limit": 50}))).await;
    assert_eq!(s, S::OK, "{v}");
    v["events"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn webhooks_render_calls_into_prefect_events_under_their_rules() {
    let Some(server) = upstream() else {
        missing("the prefect CLI (ATRIUM_TEST_PREFECT)");
        return;
    };
    let port = server.port;
    each_db(|t| async move {
        let owner = t.user("owner@hooks.test").await;
        let dev = t.user("dev@hooks.test").await;
        let viewer = t.user("viewer@hooks.test").await;
        let account = t.account(&owner, "hooks").await;
        for u in [&dev, &viewer] {
            t.add_member(account, &owner, u, AccountRole::Member).await;
        }
        let ws = t.workspace(account, &owner.key, "prod").await;
        let gw = format!("/api/accounts/{account}/workspaces/{ws}");
        ok(&t, M::POST, &format!("{gw}/user_access/"), &owner.key, Some(json!([
            {"user_id": dev.id, "workspace_role_id": BuiltinWorkspaceRole::Developer.id()},
            {"user_id": viewer.id, "workspace_role_id": BuiltinWorkspaceRole::Viewer.id()},
        ]))).await;
        ok(&t, M::PUT, &format!("{gw}/upstream"), &owner.key,
            Some(json!({"url": format!("http://127.0.0.1:{port}/api"), "auth_string": AUTH}))).await;
        let hooks = format!("{gw}/webhooks");

        // Scopes: a Viewer sees webhooks, a Developer manages them.
        let body = json!({"name": "orders", "description": "shop", "template": TEMPLATE});
        let (s, v) = t.call(M::POST, &format!("{hooks}/"), Some(&viewer.key), Some(body.clone())).await;
        assert_eq!((s, v["detail"].as_str().unwrap_or("")), (S::FORBIDDEN, "missing workspace scope manage_webhooks"));
        for (bad, why) in [
            (json!({"name": "x", "template": "{{ unclosed"}), "template syntax"),
            (json!({"name": "x", "template": "{}", "extra": 1}), "unknown field"),
            (json!({"name": "", "template": "{}"}), "empty name"),
            (json!({"name": "x", "template": "{}", "service_account_id": uuid::Uuid::new_v4()}), "unknown service account"),
        ] {
            let (s, v) = t.call(M::POST, &format!("{hooks}/"), Some(&dev.key), Some(bad)).await;
            assert_eq!(s, S::UNPROCESSABLE_ENTITY, "{why}: {v}");
        }
        let (s, hook) = t.call(M::POST, &format!("{hooks}/"), Some(&dev.key), Some(body)).await;
        assert_eq!(s, S::CREATED, "{hook}");
        let id = hook["id"].as_str().expect("id").to_string();
        let slug = hook["slug"].as_str().expect("slug").to_string();
        assert_eq!(slug.len(), 32);
        assert!(hook["url"].as_str().expect("url").ends_with(&format!("/hooks/{slug}")), "{hook}");
        // The CLI posts the filter without a body.
        let (s, _, listed) = t.raw(M::POST, &format!("{hooks}/filter"), Some(&viewer.key), None, "").await;
        assert_eq!(s, S::OK);
        let listed: Value = serde_json::from_slice(&listed).expect("json");
        assert_eq!(listed[0]["slug"], json!(slug), "{listed}");
        assert_eq!(t.call(M::GET, &format!("{hooks}/{id}"), Some(&viewer.key), None).await.1["template"], TEMPLATE);

        // A call renders into an event in the workspace's Prefect server.
        let suffix = &ws.to_string()[..8];
        let kind = format!("paid{suffix}");
        let payload = json!({"kind": kind, "order": 42});
        let (s, _, _) = t.raw(M::POST, &format!("/hooks/{slug}?via=test"), None,
            Some(payload.to_string().into_bytes()), "application/json").await;
        assert_eq!(s, S::NO_CONTENT);
        let name = format!("acme.{kind}.post");
        let mut found = vec![];
        for _ in 0..50 {
            found = events_named(&t, &gw, &owner.key, &name).await;
            if !found.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        assert_eq!(found.len(), 1, "the event reached Prefect: {found:?}");
        let e = &found[0];
        assert_eq!(e["resource"]["prefect.resource.id"], "acme.order.42");
        assert_eq!(e["payload"]["raw"], json!(payload.to_string()));
        assert_eq!(e["payload"]["q"]["via"], "test");
        assert_eq!(e["resource"]["content-type"], "application/json");
        assert!(e["related"].to_string().contains(&format!("prefect-cloud.webhook.{id}")), "{e}");

        // A template that does not render an event: 400 with the reason, audited.
        let (s, _, v) = t.raw(M::POST, &format!("/hooks/{slug}"), None, Some(b"not json".to_vec()), "text/plain").await;
        let v = json_or_text(&v);
        assert_eq!(s, S::BAD_REQUEST, "{v}");
        assert!(v["detail"].as_str().unwrap_or("").starts_with("the webhook's template failed"), "{v}");
        let (s, events) = t.call(M::POST, &format!("/api/accounts/{account}/events/filter"), Some(&owner.key),
            Some(json!({"filter": {"event": {"prefix": ["prefect-cloud.webhook."]}}}))).await;
        assert_eq!(s, S::OK);
        let text = events.to_string();
        assert!(text.contains("prefect-cloud.webhook.failed") && text.contains("prefect-cloud.webhook.created"), "{text}");
        assert!(!text.contains(&slug), "the slug is never audited");

        // Disabled: 404, as for an unknown slug. Rotated: the old URL is gone.
        let (s, _) = t.call(M::PATCH, &format!("{hooks}/{id}"), Some(&dev.key), Some(json!({"enabled": false}))).await;
        assert_eq!(s, S::NO_CONTENT);
        let post = |slug: String| {
            let t = &t;
            async move {
                t.raw(M::POST, &format!("/hooks/{slug}"), None, Some(json!({"kind": "x", "order": 1}).to_string().into_bytes()), "application/json").await.0
            }
        };
        assert_eq!(post(slug.clone()).await, S::NOT_FOUND);
        assert_eq!(post("A".repeat(32)).await, S::NOT_FOUND);
        t.call(M::PATCH, &format!("{hooks}/{id}"), Some(&dev.key), Some(json!({"enabled": true}))).await;
        assert_eq!(post(slug.clone()).await, S::NO_CONTENT);
        let (s, rotated) = t.call(M::POST, &format!("{hooks}/{id}/rotate"), Some(&dev.key), None).await;
        assert_eq!(s, S::OK, "{rotated}");
        let new_slug = rotated["slug"].as_str().expect("slug").to_string();
        assert_ne!(new_slug, slug);
        assert_eq!(post(slug.clone()).await, S::NOT_FOUND, "the old URL is gone");
        assert_eq!(post(new_slug.clone()).await, S::NO_CONTENT);

        // Authentication: a webhook bound to a service account needs that account's key.
        let (_, bot) = t.call(M::POST, &format!("/api/accounts/{account}/bots/"), Some(&owner.key), Some(json!({"name": "shop"}))).await;
        let bot_key = bot["api_key"]["key"].as_str().expect("key").to_string();
        ok(&t, M::POST, &format!("{gw}/bot_access/"), &owner.key,
            Some(json!([{"bot_id": bot["id"], "workspace_role_id": BuiltinWorkspaceRole::Developer.id()}]))).await;
        let (s, _) = t.call(M::PUT, &format!("{hooks}/{id}"), Some(&dev.key),
            Some(json!({"name": "orders", "description": "", "template": TEMPLATE, "service_account_id": bot["id"]}))).await;
        assert_eq!(s, S::NO_CONTENT);
        assert_eq!(post(new_slug.clone()).await, S::UNAUTHORIZED);
        let with_key = |key: String| {
            let (t, slug) = (&t, new_slug.clone());
            async move {
                t.raw(M::POST, &format!("/hooks/{slug}"), Some(&key), Some(json!({"kind": "k", "order": 2}).to_string().into_bytes()), "application/json").await.0
            }
        };
        assert_eq!(with_key(dev.key.clone()).await, S::FORBIDDEN, "another principal's key");
        assert_eq!(with_key(bot_key.clone()).await, S::NO_CONTENT);

        // The account setting requires a key for every webhook.
        let (_, plain) = t.call(M::POST, &format!("{hooks}/"), Some(&dev.key), Some(json!({"name": "open", "template": TEMPLATE}))).await;
        let plain_slug = plain["slug"].as_str().expect("slug").to_string();
        assert_eq!(post(plain_slug.clone()).await, S::NO_CONTENT);
        let (s, v) = t.call(M::PATCH, &format!("/api/accounts/{account}/settings"), Some(&owner.key),
            Some(json!({"enforce_webhook_authentication": true}))).await;
        assert_eq!(s, S::NO_CONTENT, "{v}");
        assert_eq!(post(plain_slug.clone()).await, S::UNAUTHORIZED);

        // Deleted: gone, and other tenants never see it.
        let other = t.user("other@else.test").await;
        t.account(&other, "else").await;
        assert_eq!(t.call(M::GET, &format!("{hooks}/{id}"), Some(&other.key), None).await.0, S::NOT_FOUND);
        assert_eq!(t.call(M::DELETE, &format!("{hooks}/{id}"), Some(&dev.key), None).await.0, S::NO_CONTENT);
        assert_eq!(t.call(M::GET, &format!("{hooks}/{id}"), Some(&dev.key), None).await.0, S::NOT_FOUND);
        assert_eq!(with_key(bot_key).await, S::NOT_FOUND);
    })
    .await;
}

/// The JSON body of a raw HTTP response.
fn body_of(resp: &str) -> Value {
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or(Value::Null)
}

/// Runs the stock `prefect` CLI in Cloud mode against a workspace of Atrium; `stdin` answers its
/// prompts.
fn prefect_cli(
    prefect: &str,
    home: &std::path::Path,
    api: &str,
    key: &str,
    args: &[&str],
    stdin: &str,
) -> (bool, String) {
    use std::io::Write;
    let cloud = api.split("/accounts/").next().unwrap_or(api);
    let mut child = std::process::Command::new(prefect)
        .args(args)
        .env("PREFECT_HOME", home)
        .env("DO_NOT_TRACK", "1")
        .env("PREFECT_CLOUD_API_URL", cloud)
        .env("PREFECT_API_URL", api)
        .env("PREFECT_API_KEY", key)
        .env("COLUMNS", "400")
        .env_remove("PREFECT_API_AUTH_STRING")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run prefect");
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("prefect output");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Every `prefect cloud webhook` command, unchanged, against Atrium with a real Prefect server
/// behind it; then a call to the webhook's URL fires a real Prefect automation on the upstream
/// (it pauses a work pool), on both databases.
#[test]
fn the_prefect_cli_manages_webhooks_and_a_webhook_fires_a_prefect_automation() {
    let Ok(prefect) = std::env::var("ATRIUM_TEST_PREFECT") else {
        missing("the prefect CLI (ATRIUM_TEST_PREFECT)");
        return;
    };
    let Some(up) = upstream() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let (dbs, _pg) = installation_databases(dir.path());
    for db in dbs {
        let inst = Installation::new(db);
        let (account, key) = inst.bootstrap("ann@hooks.test", "hooks");
        let server = inst.serve();
        let port = server.port;
        let ws = create_workspace(port, &account, &key, "prod");
        let gw = format!("/api/accounts/{account}/workspaces/{ws}");
        bind_upstream(port, &gw, &key, up.port, AUTH);
        let sfx = &ws[..8];
        let pool = format!("hook-pool-{sfx}");
        let r = http(
            port,
            "POST",
            &format!("{gw}/work_pools/"),
            &key,
            &json!({"name": pool, "type": "process"}).to_string(),
        );
        assert!(r.starts_with("HTTP/1.1 201"), "{r}");
        let pool_id = body_of(&r)["id"].as_str().expect("pool id").to_string();
        let event = format!("atrium.hook.{sfx}");
        let automation = json!({
            "name": format!("on-{sfx}"), "enabled": true,
            "trigger": {"type": "event", "posture": "Reactive", "expect": [event], "match": {}, "threshold": 1, "within": 0},
            "actions": [{"type": "pause-work-pool", "source": "selected", "work_pool_id": pool_id}],
        });
        let r = http(
            port,
            "POST",
            &format!("{gw}/automations/"),
            &key,
            &automation.to_string(),
        );
        assert!(r.starts_with("HTTP/1.1 201"), "{r}");

        let home = tempfile::tempdir().expect("home");
        let api = format!("http://127.0.0.1:{port}/api/accounts/{account}/workspaces/{ws}");
        let cli = |args: &[&str], stdin: &str| {
            prefect_cli(&prefect, home.path(), &api, &key, args, stdin)
        };
        let template = format!(
            r#"{{"event": "{event}", "resource": {{"prefect.resource.id": "order.{{{{ json.order }}}}"}}}}"#
        );
        let (ok, text) = cli(
            &[
                "cloud",
                "webhook",
                "create",
                "orders",
                "--description",
                "shop",
                "--template",
                &template,
            ],
            "",
        );
        assert!(
            ok && text.contains("Successfully created webhook orders"),
            "{text}"
        );
        let listed = body_of(&http(
            port,
            "POST",
            &format!("{gw}/webhooks/filter"),
            &key,
            "",
        ));
        let id = listed[0]["id"].as_str().expect("id").to_string();
        let (ok, text) = cli(&["cloud", "webhook", "ls"], "");
        assert!(
            ok && text.contains(&id) && text.contains("orders"),
            "{text}"
        );
        let (ok, text) = cli(&["cloud", "webhook", "get", &id, "--output", "json"], "");
        assert!(ok && text.contains(&event), "{text}");
        let (ok, text) = cli(
            &[
                "cloud",
                "webhook",
                "update",
                &id,
                "--description",
                "the shop",
            ],
            "",
        );
        assert!(ok && text.contains("Successfully updated"), "{text}");
        let (ok, text) = cli(&["cloud", "webhook", "toggle", &id], "");
        assert!(ok && text.contains("disabled"), "{text}");
        let (ok, text) = cli(&["cloud", "webhook", "toggle", &id], "");
        assert!(ok && text.contains("enabled"), "{text}");
        let (ok, text) = cli(&["cloud", "webhook", "rotate", &id], "y\n");
        assert!(
            ok && text.contains("Successfully rotated webhook URL to"),
            "{text}"
        );
        let hook = body_of(&http(port, "GET", &format!("{gw}/webhooks/{id}"), &key, ""));
        assert_eq!(hook["description"], "the shop");
        let slug = hook["slug"].as_str().expect("slug").to_string();
        assert!(
            text.contains(&slug),
            "the rotated slug is the one shown: {text}"
        );

        // A call to the webhook's URL (no key: none required) fires the automation upstream.
        let r = raw_http(
            port,
            "POST",
            &format!("/hooks/{slug}"),
            &[],
            r#"{"order": 7}"#,
        );
        assert!(r.starts_with("HTTP/1.1 204"), "{r}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let p = body_of(&http(
                port,
                "GET",
                &format!("{gw}/work_pools/{pool}"),
                &key,
                "",
            ));
            if p["is_paused"] == json!(true) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the automation did not pause the pool: {p}"
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }

        let (ok, text) = cli(&["cloud", "webhook", "delete", &id], "y\n");
        assert!(ok && text.contains("Successfully deleted"), "{text}");
        let r = raw_http(
            port,
            "POST",
            &format!("/hooks/{slug}"),
            &[],
            r#"{"order": 8}"#,
        );
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        drop(server);
    }
}
