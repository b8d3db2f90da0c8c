//! Object access control lists end to end, against a real Prefect server as the workspace's
//! upstream, on both databases and both gateway transports: the ACL API (Prefect Cloud's routes,
//! the Terraform provider's shapes), and the ACL matrix — object × accessor × route class →
//! expected status, and listed or hidden in filters, pages and counts — with 0 surprises.
//! Needs `ATRIUM_TEST_PREFECT`.

use crate::prefect_gateway::{start_prefect_server, PrefectServer};
use crate::support::*;
use atrium::domain::role::{AccountRole, BuiltinWorkspaceRole};
use serde_json::{json, Value};
use std::sync::OnceLock;

pub(crate) const AUTH: &str = "acl-upstream-secret";

/// One Prefect server for the tests of this module and `webhooks.rs` (each run uses names of its
/// own).
pub(crate) fn upstream() -> Option<&'static PrefectServer> {
    static SERVER: OnceLock<Option<PrefectServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let prefect = std::env::var("ATRIUM_TEST_PREFECT").ok()?;
            Some(start_prefect_server(&prefect, AUTH))
        })
        .as_ref()
}

struct World {
    gw: String,
    acct: String,
    owner: TestUser,
    dev_a: TestUser,
    dev_b: TestUser,
    /// A Developer through the team `ops` only.
    dev_c: TestUser,
    viewer: TestUser,
    bot_key: String,
    bot_actor: String,
    team: String,
    flow: String,
    flow_name: String,
    pool_open: String,
    pool_locked: String,
    d_open: String,
    d_acl: String,
    d_acl_name: String,
    d_inpool: String,
    b_open: String,
    b_acl: String,
    b_acl_name: String,
}

/// A call, retried as the `prefect` client retries it when the upstream is briefly busy (a
/// Prefect server on SQLite answers 503 while its database is locked).
pub(crate) async fn call(
    t: &TestApp,
    m: M,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (S, Value) {
    for _ in 0..5 {
        let (s, v) = t.call(m.clone(), path, Some(key), body.clone()).await;
        if !matches!(s, S::SERVICE_UNAVAILABLE | S::BAD_GATEWAY) {
            return (s, v);
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    t.call(m, path, Some(key), body).await
}

pub(crate) async fn ok(t: &TestApp, m: M, path: &str, key: &str, body: Option<Value>) -> Value {
    let (s, v) = call(t, m.clone(), path, key, body).await;
    assert!(s.is_success(), "{m} {path}: {s} {v}");
    v
}

async fn actor_of(t: &TestApp, acct: &str, owner: &TestUser, user: &TestUser) -> String {
    let v = ok(
        t,
        M::POST,
        &format!("/api/accounts/{acct}/account_memberships/filter"),
        &owner.key,
        Some(json!({})),
    )
    .await;
    v.as_array()
        .expect("memberships")
        .iter()
        .find(|m| m["user_id"] == json!(user.id))
        .and_then(|m| m["actor_id"].as_str())
        .expect("actor id")
        .to_string()
}

async fn world(t: &TestApp, port: u16) -> World {
    let owner = t.user("owner@acl.test").await;
    let dev_a = t.user("dev-a@acl.test").await;
    let dev_b = t.user("dev-b@acl.test").await;
    let dev_c = t.user("dev-c@acl.test").await;
    let viewer = t.user("viewer@acl.test").await;
    let account = t.account(&owner, "acl").await;
    for u in [&dev_a, &dev_b, &dev_c, &viewer] {
        t.add_member(account, &owner, u, AccountRole::Member).await;
    }
    let ws = t.workspace(account, &owner.key, "prod").await;
    let acct = account.to_string();
    let base = format!("/api/accounts/{acct}/workspaces/{ws}");
    let dev = BuiltinWorkspaceRole::Developer.id();
    ok(
        t,
        M::POST,
        &format!("{base}/user_access/"),
        &owner.key,
        Some(json!([
            {"user_id": dev_a.id, "workspace_role_id": dev},
            {"user_id": dev_b.id, "workspace_role_id": dev},
            {"user_id": viewer.id, "workspace_role_id": BuiltinWorkspaceRole::Viewer.id()},
        ])),
    )
    .await;
    let team = ok(
        t,
        M::POST,
        &format!("/api/accounts/{acct}/teams/"),
        &owner.key,
        Some(json!({"name": "ops"})),
    )
    .await;
    let team = team["id"].as_str().expect("team").to_string();
    ok(
        t,
        M::PUT,
        &format!("/api/accounts/{acct}/teams/{team}/members"),
        &owner.key,
        Some(json!({"members": [{"member_id": dev_c.id, "member_type": "user"}]})),
    )
    .await;
    ok(
        t,
        M::PUT,
        &format!("{base}/team_access/"),
        &owner.key,
        Some(json!([{"team_id": team, "workspace_role_id": dev}])),
    )
    .await;
    let bot = ok(
        t,
        M::POST,
        &format!("/api/accounts/{acct}/bots/"),
        &owner.key,
        Some(json!({"name": "worker"})),
    )
    .await;
    let bot_key = bot["api_key"]["key"].as_str().expect("bot key").to_string();
    let bot_actor = bot["actor_id"].as_str().expect("bot actor").to_string();
    ok(
        t,
        M::POST,
        &format!("{base}/bot_access/"),
        &owner.key,
        Some(json!([{"bot_id": bot["id"], "workspace_role_id": dev}])),
    )
    .await;
    ok(
        t,
        M::PUT,
        &format!("{base}/upstream"),
        &owner.key,
        Some(json!({"url": format!("http://127.0.0.1:{port}/api"), "auth_string": AUTH})),
    )
    .await;

    // The objects, made upstream through the gateway by the Owner; names of this run's own.
    let sfx = &ws.to_string()[..8];
    let o = &owner.key;
    let flow_name = format!("acl-flow-{sfx}");
    let flow = ok(
        t,
        M::POST,
        &format!("{base}/flows/"),
        o,
        Some(json!({"name": flow_name})),
    )
    .await;
    let flow = flow["id"].as_str().expect("flow").to_string();
    let pool_open = format!("open-{sfx}");
    let pool_locked = format!("locked-{sfx}");
    for p in [&pool_open, &pool_locked] {
        ok(
            t,
            M::POST,
            &format!("{base}/work_pools/"),
            o,
            Some(json!({"name": p, "type": "process"})),
        )
        .await;
    }
    let deploy = |name: String, pool: String| {
        let (base, flow) = (base.clone(), flow.clone());
        async move {
            let v = ok(
                t,
                M::POST,
                &format!("{base}/deployments/"),
                o,
                Some(json!({"name": name, "flow_id": flow, "work_pool_name": pool})),
            )
            .await;
            v["id"].as_str().expect("deployment").to_string()
        }
    };
    let d_acl_name = "d-acl".to_string();
    let d_open = deploy("d-open".into(), pool_open.clone()).await;
    let d_acl = deploy(d_acl_name.clone(), pool_open.clone()).await;
    let d_inpool = deploy("d-inpool".into(), pool_locked.clone()).await;
    ok(
        t,
        M::POST,
        &format!("{base}/block_types/install_system_block_types"),
        o,
        None,
    )
    .await;
    let json_type = ok(
        t,
        M::GET,
        &format!("{base}/block_types/slug/secret"),
        o,
        None,
    )
    .await;
    let schemas = ok(
        t,
        M::POST,
        &format!("{base}/block_schemas/filter"),
        o,
        Some(json!({"block_schemas": {"block_type_id": {"any_": [json_type["id"]]}}})),
    )
    .await;
    let block = |name: String| {
        let (base, json_type, schemas) = (base.clone(), json_type.clone(), schemas.clone());
        async move {
            let v = ok(t, M::POST, &format!("{base}/block_documents/"), o, Some(json!({
                "name": name, "block_type_id": json_type["id"], "block_schema_id": schemas[0]["id"],
                "data": {"value": "not-so-secret"},
            }))).await;
            v["id"].as_str().expect("block").to_string()
        }
    };
    let b_open = block(format!("b-open-{sfx}")).await;
    let b_acl_name = format!("b-acl-{sfx}");
    let b_acl = block(b_acl_name.clone()).await;
    World {
        gw: base,
        acct,
        owner,
        dev_a,
        dev_b,
        dev_c,
        viewer,
        bot_key,
        bot_actor,
        team,
        flow,
        flow_name,
        pool_open,
        pool_locked,
        d_open,
        d_acl,
        d_acl_name,
        d_inpool,
        b_open,
        b_acl,
        b_acl_name,
    }
}

/// One cell of the matrix: who, their key, method, route below the workspace, body, expected.
type Case<'a> = (&'a str, &'a String, M, String, Option<Value>, S);

/// The ids (or names) of a list answer's objects, sorted.
fn keys(v: &Value, field: &str) -> Vec<String> {
    let list = v.get("results").unwrap_or(v);
    let mut k: Vec<String> = list
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o[field].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    k.sort();
    k
}

fn sorted(mut v: Vec<&String>) -> Vec<String> {
    v.sort();
    v.into_iter().cloned().collect()
}

#[tokio::test]
async fn object_acls_restrict_deployments_work_pools_and_blocks_on_every_route() {
    let Some(server) = upstream() else {
        missing("the prefect CLI (ATRIUM_TEST_PREFECT)");
        return;
    };
    let port = server.port;
    each_db_and_transport(|t| async move {
        let w = world(&t, port).await;
        let g = |rest: &str| format!("{}/{rest}", w.gw);
        let dev_a_actor = actor_of(&t, &w.acct, &w.owner, &w.dev_a).await;
        let viewer_actor = actor_of(&t, &w.acct, &w.owner, &w.viewer).await;

        // The ACL API: reading an object without an ACL shows `*` at every level.
        let (s, v) = t.call(M::GET, &g(&format!("deployments/{}/access", w.d_acl)), Some(&w.dev_b.key), None).await;
        assert_eq!(s, S::OK, "{v}");
        for level in ["manage_actors", "run_actors", "view_actors"] {
            assert_eq!(v[level], json!([{"id": "*", "name": "*", "email": null, "type": "*"}]), "{v}");
        }
        let (s, v) = t.call(M::GET, &g(&format!("block_documents/{}/access", w.b_acl)), Some(&w.dev_b.key), None).await;
        assert_eq!(s, S::OK, "{v}");
        assert!(v.get("run_actors").is_none(), "blocks have no run level: {v}");

        // Setting ACLs needs manage_acls (a Developer has none) and names accessors of the account.
        let d_acl_body = json!({"access_control": {
            "manage_actor_ids": [dev_a_actor], "run_actor_ids": [], "view_actor_ids": [viewer_actor],
            "manage_team_ids": [], "run_team_ids": [w.team], "view_team_ids": null,
        }});
        let (s, v) = t.call(M::PUT, &g(&format!("deployments/{}/access", w.d_acl)), Some(&w.dev_a.key), Some(d_acl_body.clone())).await;
        assert_eq!((s, v["detail"].as_str().unwrap_or("")), (S::FORBIDDEN, "missing workspace scope manage_acls"));
        for (bad, why) in [
            (json!({"access_control": {"manage_actor_ids": [uuid::Uuid::new_v4()]}}), "unknown actor"),
            (json!({"access_control": {"manage_team_ids": ["not-a-uuid"]}}), "malformed id"),
            (json!({"access_control": {"manage_actor_ids": [], "extra": 1}}), "unknown field"),
            (json!({"access_control": {"manage_actor_ids": "x"}}), "wrong type"),
        ] {
            let (s, v) = t.call(M::PUT, &g(&format!("deployments/{}/access", w.d_acl)), Some(&w.owner.key), Some(bad)).await;
            assert_eq!(s, S::UNPROCESSABLE_ENTITY, "{why}: {v}");
            assert!(v["detail"].is_string(), "{why}: {v}");
        }
        let (s, v) = t.call(M::PUT, &g(&format!("block_documents/{}/access", w.b_acl)), Some(&w.owner.key),
            Some(json!({"access_control": {"run_actor_ids": ["*"]}}))).await;
        assert_eq!(s, S::UNPROCESSABLE_ENTITY, "blocks have no run level: {v}");
        let (s, v) = t.call(M::PUT, &g(&format!("deployments/{}/access", uuid::Uuid::new_v4())), Some(&w.owner.key), Some(d_acl_body.clone())).await;
        assert_eq!(s, S::NOT_FOUND, "no such deployment upstream: {v}");

        let put = |path: String, body: Value| {
            let t = &t;
            let key = w.owner.key.clone();
            async move {
                let (s, v) = t.call(M::PUT, &path, Some(&key), Some(body)).await;
                assert_eq!(s, S::NO_CONTENT, "{path}: {v}");
            }
        };
        put(g(&format!("deployments/{}/access", w.d_acl)), d_acl_body).await;
        put(g(&format!("work_pools/{}/access", w.pool_locked)), json!({"access_control": {
            "manage_actor_ids": [dev_a_actor], "run_actor_ids": [w.bot_actor], "view_actor_ids": [],
        }})).await;
        put(g(&format!("block_documents/{}/access", w.b_acl)), json!({"access_control": {
            "manage_actor_ids": [dev_a_actor], "view_team_ids": [w.team],
        }})).await;

        let (s, v) = t.call(M::GET, &g(&format!("deployments/{}/access", w.d_acl)), Some(&w.dev_a.key), None).await;
        assert_eq!(s, S::OK, "{v}");
        assert_eq!(v["manage_actors"][0]["id"], json!(dev_a_actor));
        assert_eq!(v["manage_actors"][0]["type"], "user");
        assert_eq!(v["manage_actors"][0]["email"], "dev-a@acl.test");
        assert_eq!(v["run_actors"], json!([{"id": w.team, "name": "ops", "email": null, "type": "team"}]));
        assert_eq!(v["view_actors"][0]["type"], "user");
        let (s, v) = t.call(M::GET, &g(&format!("work_pools/{}/access", w.pool_locked)), Some(&w.bot_key), None).await;
        assert_eq!(s, S::OK, "{v}");
        assert_eq!(v["run_actors"][0]["type"], "service_account");

        // The matrix: (who, method, route, body) → status. 404 where the ACL hides the object
        // from the caller, 403 where they see it but lack the level (or the role's scope).
        let (a, b, c, vw, bot, own) = (&w.dev_a.key, &w.dev_b.key, &w.dev_c.key, &w.viewer.key, &w.bot_key, &w.owner.key);
        let run_body = json!({});
        let patch = json!({"description": "changed through an ACL"});
        let dep = |id: &str| format!("deployments/{id}");
        let cases: Vec<Case> = vec![
            // A deployment with its own ACL: manage dev_a, run team ops (dev_c), view viewer.
            ("dev_a", a, M::GET, dep(&w.d_acl), None, S::OK),
            ("dev_c", c, M::GET, dep(&w.d_acl), None, S::OK),
            ("viewer", vw, M::GET, dep(&w.d_acl), None, S::OK),
            ("owner", own, M::GET, dep(&w.d_acl), None, S::OK),
            ("dev_b", b, M::GET, dep(&w.d_acl), None, S::NOT_FOUND),
            ("bot", bot, M::GET, dep(&w.d_acl), None, S::NOT_FOUND),
            ("dev_b", b, M::GET, format!("deployments/name/{}/{}", w.flow_name, w.d_acl_name), None, S::NOT_FOUND),
            ("dev_a", a, M::GET, format!("deployments/name/{}/{}", w.flow_name, w.d_acl_name), None, S::OK),
            ("dev_b", b, M::GET, format!("{}/schedules", dep(&w.d_acl)), None, S::NOT_FOUND),
            ("dev_c", c, M::POST, format!("{}/create_flow_run", dep(&w.d_acl)), Some(run_body.clone()), S::CREATED),
            ("dev_a", a, M::POST, format!("{}/create_flow_run", dep(&w.d_acl)), Some(run_body.clone()), S::CREATED),
            ("viewer", vw, M::POST, format!("{}/create_flow_run", dep(&w.d_acl)), Some(run_body.clone()), S::FORBIDDEN),
            ("dev_b", b, M::POST, format!("{}/create_flow_run", dep(&w.d_acl)), Some(run_body.clone()), S::NOT_FOUND),
            ("dev_b", b, M::POST, "flow_runs/".into(), Some(json!({"flow_id": w.flow, "deployment_id": w.d_acl})), S::NOT_FOUND),
            ("dev_c", c, M::PATCH, dep(&w.d_acl), Some(patch.clone()), S::FORBIDDEN),
            ("dev_b", b, M::PATCH, dep(&w.d_acl), Some(patch.clone()), S::NOT_FOUND),
            ("dev_a", a, M::PATCH, dep(&w.d_acl), Some(patch.clone()), S::NO_CONTENT),
            ("dev_c", c, M::POST, format!("{}/pause_deployment", dep(&w.d_acl)), None, S::FORBIDDEN),
            ("dev_b", b, M::DELETE, dep(&w.d_acl), None, S::NOT_FOUND),
            // An upsert by flow and name replaces the deployment: manage on it is needed.
            ("dev_b", b, M::POST, "deployments/".into(), Some(json!({"name": w.d_acl_name, "flow_id": w.flow})), S::NOT_FOUND),
            ("dev_c", c, M::POST, "deployments/".into(), Some(json!({"name": w.d_acl_name, "flow_id": w.flow})), S::FORBIDDEN),
            // A deployment in the locked pool is governed by the pool's ACL (manage dev_a, run bot).
            ("dev_a", a, M::GET, dep(&w.d_inpool), None, S::OK),
            ("bot", bot, M::GET, dep(&w.d_inpool), None, S::OK),
            ("dev_b", b, M::GET, dep(&w.d_inpool), None, S::NOT_FOUND),
            ("viewer", vw, M::GET, dep(&w.d_inpool), None, S::NOT_FOUND),
            ("dev_c", c, M::GET, dep(&w.d_inpool), None, S::NOT_FOUND),
            ("bot", bot, M::POST, format!("{}/create_flow_run", dep(&w.d_inpool)), Some(run_body.clone()), S::CREATED),
            ("dev_b", b, M::POST, "flow_runs/".into(), Some(json!({"flow_id": w.flow, "deployment_id": w.d_inpool})), S::NOT_FOUND),
            ("bot", bot, M::PATCH, dep(&w.d_inpool), Some(patch.clone()), S::FORBIDDEN),
            ("dev_b", b, M::POST, "deployments/get_scheduled_flow_runs".into(), Some(json!({"deployment_ids": [w.d_inpool]})), S::NOT_FOUND),
            // Creating a deployment in the locked pool makes it the pool's: manage on the pool.
            ("dev_b", b, M::POST, "deployments/".into(), Some(json!({"name": "sneak", "flow_id": w.flow, "work_pool_name": w.pool_locked})), S::NOT_FOUND),
            ("bot", bot, M::POST, "deployments/".into(), Some(json!({"name": "sneak", "flow_id": w.flow, "work_pool_name": w.pool_locked})), S::FORBIDDEN),
            ("dev_b", b, M::PATCH, dep(&w.d_open), Some(json!({"work_pool_name": w.pool_locked})), S::NOT_FOUND),
            // Objects without an ACL: roles alone.
            ("dev_b", b, M::GET, dep(&w.d_open), None, S::OK),
            ("dev_b", b, M::PATCH, dep(&w.d_open), Some(patch.clone()), S::NO_CONTENT),
            ("viewer", vw, M::PATCH, dep(&w.d_open), Some(patch.clone()), S::FORBIDDEN),
            // A filter could reach what an ACL keeps from the caller.
            ("dev_b", b, M::POST, "deployments/bulk_delete".into(), Some(json!({"deployments": {"id": {"any_": [w.d_open]}}})), S::FORBIDDEN),
            // The locked work pool.
            ("dev_a", a, M::GET, format!("work_pools/{}", w.pool_locked), None, S::OK),
            ("bot", bot, M::GET, format!("work_pools/{}", w.pool_locked), None, S::OK),
            ("dev_b", b, M::GET, format!("work_pools/{}", w.pool_locked), None, S::NOT_FOUND),
            ("dev_b", b, M::POST, format!("work_pools/{}/queues/filter", w.pool_locked), Some(json!({})), S::NOT_FOUND),
            ("bot", bot, M::POST, format!("work_pools/{}/get_scheduled_flow_runs", w.pool_locked), Some(json!({})), S::OK),
            ("dev_b", b, M::POST, format!("work_pools/{}/get_scheduled_flow_runs", w.pool_locked), Some(json!({})), S::NOT_FOUND),
            ("bot", bot, M::POST, format!("work_pools/{}/workers/heartbeat", w.pool_locked), Some(json!({"name": "w1"})), S::NO_CONTENT),
            ("dev_b", b, M::POST, format!("work_pools/{}/workers/heartbeat", w.pool_locked), Some(json!({"name": "w1"})), S::NOT_FOUND),
            ("bot", bot, M::PATCH, format!("work_pools/{}", w.pool_locked), Some(patch.clone()), S::FORBIDDEN),
            ("dev_a", a, M::PATCH, format!("work_pools/{}", w.pool_locked), Some(patch.clone()), S::NO_CONTENT),
            ("dev_b", b, M::DELETE, format!("work_pools/{}", w.pool_locked), None, S::NOT_FOUND),
            ("dev_b", b, M::GET, format!("work_pools/{}", w.pool_open), None, S::OK),
            // The block document: manage dev_a, view team ops.
            ("dev_a", a, M::GET, format!("block_documents/{}", w.b_acl), None, S::OK),
            ("dev_c", c, M::GET, format!("block_documents/{}", w.b_acl), None, S::OK),
            ("dev_b", b, M::GET, format!("block_documents/{}", w.b_acl), None, S::NOT_FOUND),
            ("viewer", vw, M::GET, format!("block_documents/{}", w.b_acl), None, S::NOT_FOUND),
            ("dev_b", b, M::GET, format!("block_types/slug/secret/block_documents/name/{}", w.b_acl_name), None, S::NOT_FOUND),
            ("dev_c", c, M::GET, format!("block_types/slug/secret/block_documents/name/{}", w.b_acl_name), None, S::OK),
            ("dev_c", c, M::PATCH, format!("block_documents/{}", w.b_acl), Some(json!({"data": {"value": "other"}})), S::FORBIDDEN),
            ("dev_b", b, M::DELETE, format!("block_documents/{}", w.b_acl), None, S::NOT_FOUND),
            ("dev_b", b, M::GET, format!("block_documents/{}", w.b_open), None, S::OK),
            // Other spellings of the same object are the same object.
            ("dev_b", b, M::GET, dep(&w.d_acl.to_uppercase()), None, S::NOT_FOUND),
            ("dev_b", b, M::GET, format!("{}/", dep(&w.d_acl)), None, S::NOT_FOUND),
            ("dev_b", b, M::GET, dep(&w.d_acl.replace('-', "")), None, S::NOT_FOUND),
            ("dev_b", b, M::GET, format!("deployments/%7B{}%7D", w.d_acl), None, S::NOT_FOUND),
            ("dev_b", b, M::GET, format!("work_pools/{}/", w.pool_locked), None, S::NOT_FOUND),
            ("dev_b", b, M::GET, format!("work_pools/{}", w.pool_locked.replacen('l', "%6C", 1)), None, S::BAD_REQUEST),
            ("dev_b", b, M::GET, format!("block_documents/{}", w.b_acl.to_uppercase()), None, S::NOT_FOUND),
            // The ACL of an object the caller cannot see does not exist for them either.
            ("dev_b", b, M::GET, format!("deployments/{}/access", w.d_acl), None, S::NOT_FOUND),
            ("dev_b", b, M::GET, format!("work_pools/{}/access", w.pool_locked), None, S::NOT_FOUND),
        ];
        let mut surprises = Vec::new();
        for (who, key, m, rest, body, want) in cases {
            let (s, v) = call(&t, m.clone(), &g(&rest), key, body).await;
            if s != want {
                surprises.push(format!("{who} {m} {rest}: {s}, expected {want}: {v}"));
            } else if !s.is_success() && !v["detail"].is_string() {
                surprises.push(format!("{who} {m} {rest}: {s} without a detail: {v}"));
            }
        }

        // Lists, pages and counts leave out what the caller may not view (by id and by name).
        let ours = json!({"flows": {"id": {"any_": [w.flow]}}});
        let all_deps = sorted(vec![&w.d_open, &w.d_acl, &w.d_inpool]);
        for (who, key, want) in [
            ("dev_a", a, all_deps.clone()),
            ("owner", own, all_deps.clone()),
            ("dev_b", b, sorted(vec![&w.d_open])),
            ("viewer", vw, sorted(vec![&w.d_open, &w.d_acl])),
            ("dev_c", c, sorted(vec![&w.d_open, &w.d_acl])),
            ("bot", bot, sorted(vec![&w.d_open, &w.d_inpool])),
        ] {
            let (_, v) = t.call(M::POST, &g("deployments/filter"), Some(key), Some(ours.clone())).await;
            if keys(&v, "id") != want {
                surprises.push(format!("{who} deployments/filter: {:?}, expected {want:?}", keys(&v, "id")));
            }
            let (_, v) = t.call(M::POST, &g("deployments/count"), Some(key), Some(ours.clone())).await;
            if v != json!(want.len()) {
                surprises.push(format!("{who} deployments/count: {v}, expected {}", want.len()));
            }
            let mut page = ours.clone();
            page["limit"] = json!(2);
            let (_, v) = t.call(M::POST, &g("deployments/paginate"), Some(key), Some(page)).await;
            if v["count"] != json!(want.len()) || v["pages"] != json!(want.len().div_ceil(2)) {
                surprises.push(format!("{who} deployments/paginate: count {} pages {}, expected {}", v["count"], v["pages"], want.len()));
            }
        }
        let pools = json!({"work_pools": {"name": {"any_": [w.pool_open, w.pool_locked]}}});
        for (who, key, want) in [
            ("dev_a", a, sorted(vec![&w.pool_open, &w.pool_locked])),
            ("bot", bot, sorted(vec![&w.pool_open, &w.pool_locked])),
            ("dev_b", b, sorted(vec![&w.pool_open])),
            ("viewer", vw, sorted(vec![&w.pool_open])),
        ] {
            let (_, v) = t.call(M::POST, &g("work_pools/filter"), Some(key), Some(pools.clone())).await;
            if keys(&v, "name") != want {
                surprises.push(format!("{who} work_pools/filter: {:?}, expected {want:?}", keys(&v, "name")));
            }
            let (_, v) = t.call(M::POST, &g("work_pools/count"), Some(key), Some(pools.clone())).await;
            if v != json!(want.len()) {
                surprises.push(format!("{who} work_pools/count: {v}, expected {}", want.len()));
            }
        }
        let blocks = json!({"block_documents": {"id": {"any_": [w.b_open, w.b_acl]}}});
        for (who, key, want) in [
            ("dev_a", a, sorted(vec![&w.b_open, &w.b_acl])),
            ("dev_c", c, sorted(vec![&w.b_open, &w.b_acl])),
            ("dev_b", b, sorted(vec![&w.b_open])),
            ("viewer", vw, sorted(vec![&w.b_open])),
        ] {
            let (_, v) = t.call(M::POST, &g("block_documents/filter"), Some(key), Some(blocks.clone())).await;
            if keys(&v, "id") != want {
                surprises.push(format!("{who} block_documents/filter: {:?}, expected {want:?}", keys(&v, "id")));
            }
            let (_, v) = t.call(M::POST, &g("block_documents/count"), Some(key), Some(blocks.clone())).await;
            if v != json!(want.len()) {
                surprises.push(format!("{who} block_documents/count: {v}, expected {}", want.len()));
            }
            let (_, v) = t.call(M::GET, &g("block_types/slug/secret/block_documents"), Some(key), None).await;
            let listed: Vec<String> = keys(&v, "id").into_iter().filter(|k| want.contains(k) || *k == w.b_acl).collect();
            if listed != want {
                surprises.push(format!("{who} block_types/slug/secret/block_documents: {listed:?}, expected {want:?}"));
            }
        }
        assert_no_surprises(&t.db, &surprises);

        // Every ACL change is audited with the lists before and after.
        let (s, events) = t.call(M::POST, &format!("/api/accounts/{}/events/filter", w.acct), Some(&w.owner.key),
            Some(json!({"filter": {"event": {"prefix": ["prefect-cloud.object-acl."]}}}))).await;
        assert_eq!(s, S::OK, "{events}");
        assert_eq!(events["total"], 3, "three ACL updates audited: {events}");
        let text = events.to_string();
        assert!(text.contains(&dev_a_actor) && text.contains(&w.team), "the lists are in the record: {text}");

        // The dashboard: an Admin (an implicit workspace Owner: manage_acls) picks the locked work
        // pool by name, sees its list, and gives dev_b view access from the form.
        let ada = t.user_with_password("ada@acl.test").await;
        let ada_user = TestUser { id: ada, key: w.owner.key.clone(), key_id: w.owner.key_id };
        let acct = atrium::domain::AccountId(uuid::Uuid::parse_str(&w.acct).expect("account id"));
        t.add_member(acct, &w.owner, &ada_user, AccountRole::Admin).await;
        let (_, h) = crate::dashboard::sign_in(&t, "ada@acl.test", "a-long-password", "/").await;
        let session = cookie_of(&h, "atrium_session");
        let ws_id = w.gw.rsplit('/').next().expect("ws").to_string();
        let (s, _, html) = crate::dashboard::get_page(&t, &format!("/account/{}/workspace/{ws_id}", w.acct), &session).await;
        assert_eq!(s, S::OK);
        assert!(html.contains("/object-access") && html.contains("Webhooks"), "{html}");
        let page = format!("/account/{}/workspace/{ws_id}/object-access?kind=work_pool&name={}", w.acct, w.pool_locked);
        let (s, h, html) = crate::dashboard::get_page(&t, &page, &session).await;
        assert_eq!(s, S::OK, "{html}");
        assert!(html.contains("dev-a@acl.test") && html.contains("service account worker"), "{html}");
        let csrf = csrf_cookie(&h);
        let (s, _, html) = form(&t, &format!("/account/{}/workspace/{ws_id}/object-access", w.acct), &format!("{session}; {csrf}"), &[
            ("csrf", &hidden(&html, "csrf")),
            ("kind", "work_pool"),
            ("key", &w.pool_locked),
            ("name", &w.pool_locked),
            ("manage", "dev-a@acl.test"),
            ("run", "worker"),
            ("view", "dev-b@acl.test\nteam:ops"),
        ]).await;
        assert_eq!(s, S::SEE_OTHER, "{html}");
        let (s, v) = call(&t, M::GET, &g(&format!("work_pools/{}", w.pool_locked)), b, None).await;
        assert_eq!(s, S::OK, "the dashboard gave dev_b view access: {v}");
        let (_, v) = t.call(M::GET, &g(&format!("work_pools/{}/access", w.pool_locked)), Some(own), None).await;
        assert_eq!(v["view_actors"].as_array().map(Vec::len), Some(2), "{v}");

        // Every level `*` removes the ACL (the Terraform provider's destroy): roles alone again.
        put(g(&format!("deployments/{}/access", w.d_acl)), json!({"access_control": {
            "manage_actor_ids": ["*"], "run_actor_ids": ["*"], "view_actor_ids": ["*"],
        }})).await;
        let (s, v) = t.call(M::GET, &g(&dep(&w.d_acl)), Some(&w.dev_b.key), None).await;
        assert_eq!(s, S::OK, "the ACL is gone: {v}");
    })
    .await;
}
