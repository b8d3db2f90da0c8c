//! SCIM 2.0 provisioning: tokens, Users and Groups, the IdPs' dialects, conformance.

use crate::support::*;
use axum::http::{Method as M, StatusCode as S};
use serde_json::{json, Value};

/// A SCIM token of the account: (token, base path).
async fn scim_token(t: &TestApp, a: atrium::domain::AccountId, key: &str) -> (String, String) {
    let (s, v) = t
        .call(
            M::POST,
            &format!("/api/accounts/{a}/scim_tokens"),
            Some(key),
            Some(json!({"name": "Okta"})),
        )
        .await;
    assert_eq!(s, S::CREATED, "{v}");
    let base = v["base_url"].as_str().expect("base_url").to_string();
    assert!(base.ends_with(&format!("/scim/v2/{a}")), "{base}");
    (
        v["token"].as_str().expect("token").to_string(),
        format!("/scim/v2/{a}"),
    )
}

/// A SCIM request with the token: (status, content type, body).
async fn scim(
    t: &TestApp,
    method: M,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (S, String, Value) {
    let (s, h, b) = t
        .raw(
            method,
            path,
            Some(token),
            body.map(|b| b.to_string().into_bytes()),
            "application/scim+json",
        )
        .await;
    let ct = h
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (s, ct, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

#[tokio::test]
async fn scim2_tester_and_scim_sanity_pass_against_a_real_server() {
    let Ok(python) = std::env::var("ATRIUM_TEST_PYTHON") else {
        missing(
            "the SCIM conformance checkers (ATRIUM_TEST_PYTHON with scim2-tester and scim-sanity)",
        );
        return;
    };
    let has = std::process::Command::new(&python)
        .args(["-c", "import scim2_tester, scim_sanity"])
        .status()
        .is_ok_and(|s| s.success());
    if !has {
        missing("scim2-tester and scim-sanity in ATRIUM_TEST_PYTHON");
        return;
    }
    each_db(|t| {
        let python = python.clone();
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let base = format!(
                "http://127.0.0.1:{}",
                listener.local_addr().expect("addr").port()
            );
            let t = t.reconfigured(|c| c.public_url = base.clone()).await;
            let root = t.user("root@elsewhere.test").await;
            let a = t.account(&root, "acme").await;
            let (token, path) = scim_token(&t, a, &root.key).await;
            t.serve_listener(listener).await;
            let url = format!("{base}{path}");
            let script =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scim/conformance.py");
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new(python)
                    .arg(script)
                    .arg(url)
                    .arg(token)
                    .output()
            })
            .await
            .expect("join")
            .expect("conformance.py");
            assert!(
                out.status.success(),
                "conformance.py: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: Value = serde_json::from_slice(&out.stdout).expect("json");
            eprintln!(
                "{:?}: scim2-tester {} checks, {} succeeded, skipped {:?}; scim-sanity {}",
                t.db,
                v["tester"]["total"],
                v["tester"]["success"],
                v["tester"]["skipped"],
                v["sanity"]["summary"]
            );
            assert_eq!(v["tester"]["failed"], json!([]), "scim2-tester failures");
            assert!(
                v["tester"]["total"].as_u64().unwrap_or(0) > 50,
                "scim2-tester ran its checks: {v}"
            );
            let summary = &v["sanity"]["summary"];
            assert_eq!(
                (&summary["failed"], &summary["errors"]),
                (&json!(0), &json!(0)),
                "scim-sanity: {}",
                v["sanity"]
            );
            assert!(
                summary["passed"].as_u64().unwrap_or(0) >= 25,
                "scim-sanity ran its probe: {summary}"
            );
        }
    })
    .await;
}

/// `actual` contains `expected`: objects key by key, arrays of the same length whose every
/// expected element is in some actual element, scalars equal.
fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, ev)| a.get(k).is_some_and(|av| contains(av, ev))),
        (Value::Array(a), Value::Array(e)) => {
            a.len() == e.len() && e.iter().all(|ev| a.iter().any(|av| contains(av, ev)))
        }
        (a, e) => a == e,
    }
}

fn substitute(v: &str, saved: &std::collections::HashMap<String, String>) -> String {
    let mut out = v.to_string();
    for (k, id) in saved {
        out = out.replace(&format!("{{{k}}}"), id);
    }
    out
}

#[tokio::test]
async fn okta_and_entra_requests_from_their_documentation_are_understood() {
    let corpus: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scim/corpus.json"),
        )
        .expect("corpus"),
    )
    .expect("json");
    let corpus = &corpus;
    each_db(|t| async move {
        let root = t.user("root@elsewhere.test").await;
        let a = t.account(&root, "acme").await;
        let (token, base) = scim_token(&t, a, &root.key).await;
        let mut saved = std::collections::HashMap::new();
        let steps = corpus["steps"].as_array().expect("steps");
        let rebuilds = || {
            t.app
                .metrics
                .index_rebuilds
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let rebuilds_before = rebuilds();
        for step in steps {
            let name = step["name"].as_str().expect("name");
            let method: M = step["method"]
                .as_str()
                .expect("method")
                .parse()
                .expect("method");
            let path = format!(
                "{base}{}",
                substitute(step["path"].as_str().expect("path"), &saved)
            );
            let body = step
                .get("body")
                .map(|b| serde_json::from_str(&substitute(&b.to_string(), &saved)).expect("body"));
            let (s, ct, v) = scim(&t, method, &path, &token, body).await;
            assert_eq!(
                s.as_u16() as u64,
                step["status"].as_u64().expect("status"),
                "{name}: {v}"
            );
            if s != S::NO_CONTENT {
                assert_eq!(ct, "application/scim+json", "{name}");
            }
            if let Some(e) = step.get("expect") {
                let e: Value =
                    serde_json::from_str(&substitute(&e.to_string(), &saved)).expect("expect");
                assert!(contains(&v, &e), "{name}: expected {e} in {v}");
            }
            for gone in step["absent"].as_array().into_iter().flatten() {
                assert!(
                    v.get(gone.as_str().expect("name")).is_none(),
                    "{name}: {gone} is not kept: {v}"
                );
            }
            if let Some(k) = step["save"].as_str() {
                saved.insert(k.to_string(), v["id"].as_str().expect("id").to_string());
            }
        }
        eprintln!("{:?}: {} IdP requests replayed", t.db, steps.len());
        // Member and group changes patch the index instead of rebuilding it (only the group's
        // deletion, which takes its grants, rebuilds), and what they patch equals a rebuild.
        let rebuilt = rebuilds() - rebuilds_before;
        assert!(
            rebuilt <= 2,
            "{rebuilt} full rebuilds for {} requests",
            steps.len()
        );
        assert!(
            atrium::services::gate::index::matches_database(&t.app, a)
                .await
                .expect("compare"),
            "the patched permission index drifted from the database"
        );
    })
    .await;
}

/// A member created through SCIM, with an API key and a session: (user id, key, session cookie).
async fn provisioned(
    t: &TestApp,
    base: &str,
    token: &str,
    email: &str,
) -> (String, String, String) {
    let (s, _, v) = scim(
        t,
        M::POST,
        &format!("{base}/Users"),
        token,
        Some(json!({
            "schemas": [atrium::services::scim::USER_SCHEMA], "userName": email,
            "emails": [{"value": email, "primary": true}], "active": true,
        })),
    )
    .await;
    assert_eq!(s, S::CREATED, "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    let uid = atrium::domain::UserId(id.parse().expect("uuid"));
    let key = atrium::services::users::issue_api_key(&t.app, None, uid, "k", None)
        .await
        .expect("key")
        .key;
    let user = {
        let mut c = t.app.store.reader().await.expect("reader");
        atrium::store::users::find_user_by_id(&mut c, uid)
            .await
            .expect("find")
            .expect("user")
    };
    let session = atrium::services::auth::start_session(&t.app, &user, None, None, "password")
        .await
        .expect("session");
    (id, key, format!("atrium_session={}", session.id))
}

async fn get_with_cookie(t: &TestApp, path: &str, cookie: &str) -> S {
    let req = axum::http::Request::get(path)
        .header("cookie", cookie)
        .body(axum::body::Body::empty())
        .expect("request");
    t.send(req).await.0
}

#[tokio::test]
async fn deactivation_and_removal_through_scim_take_effect_at_the_next_request() {
    each_db(|t| async move {
        let root = t.user("root@elsewhere.test").await;
        let a = t.account(&root, "acme").await;
        let ws = t.workspace(a, &root.key, "prod").await;
        let (token, base) = scim_token(&t, a, &root.key).await;
        let (alice, key, cookie) = provisioned(&t, &base, &token, "alice@acme.test").await;
        // A group → a team with access to the workspace.
        let (s, _, g) = scim(&t, M::POST, &format!("{base}/Groups"), &token, Some(json!({
            "schemas": [atrium::services::scim::GROUP_SCHEMA], "displayName": "Data", "members": [{"value": alice}],
        }))).await;
        assert_eq!(s, S::CREATED, "{g}");
        let team = g["id"].as_str().expect("id").to_string();
        let (s, v) = t.call(M::PUT, &format!("/api/accounts/{a}/workspaces/{ws}/team_access/"), Some(&root.key),
                            Some(json!([{"team_id": team, "workspace_role_id": atrium::domain::role::BuiltinWorkspaceRole::Viewer.id()}]))).await;
        assert_eq!(s, S::OK, "{v}");
        let sees_flows = format!("/api/me/workspaces/{ws}/has_scope?scope=see_flows");
        assert_eq!(t.call(M::GET, &sees_flows, Some(&key), None).await, (S::OK, json!(true)), "the group gives the workspace");
        let account_path = format!("/api/accounts/{a}");
        assert_eq!(t.call(M::GET, &account_path, Some(&key), None).await.0, S::OK);
        assert_eq!(get_with_cookie(&t, &account_path, &cookie).await, S::OK);

        // The team is the IdP's: editing its members by hand is refused, saying why.
        let (s, v) = t.call(M::DELETE, &format!("/api/accounts/{a}/teams/{team}/members/{alice}"), Some(&root.key), None).await;
        assert_eq!(s, S::CONFLICT, "{v}");
        assert!(v["detail"].as_str().unwrap_or("").contains("identity provider"), "{v}");
        let (_, v) = t.call(M::GET, &format!("/api/accounts/{a}/teams/{team}"), Some(&root.key), None).await;
        assert_eq!((v["managed_by_idp"].as_bool(), v["memberships"].as_array().map(Vec::len)), (Some(true), Some(1)), "{v}");

        // Deactivated: the very next request with her key or her session is refused.
        let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                           "Operations": [{"op": "Replace", "path": "active", "value": "False"}]});
        let (s, _, v) = scim(&t, M::PATCH, &format!("{base}/Users/{alice}"), &token, Some(patch)).await;
        assert_eq!((s, v["active"].as_bool()), (S::OK, Some(false)), "{v}");
        assert_eq!(t.call(M::GET, &account_path, Some(&key), None).await.0, S::NOT_FOUND);
        assert_eq!(get_with_cookie(&t, &account_path, &cookie).await, S::NOT_FOUND);
        assert_eq!(t.call(M::GET, &sees_flows, Some(&key), None).await.0, S::NOT_FOUND, "and the workspace");
        let (_, members) = t.call(M::POST, &format!("/api/accounts/{a}/account_memberships/filter"), Some(&root.key), Some(json!({}))).await;
        let row = members.as_array().and_then(|m| m.iter().find(|m| m["email"] == "alice@acme.test")).cloned().unwrap_or_default();
        assert_eq!(row["active"], false, "{members}");

        // Reactivated, then removed: the user stays (she may belong elsewhere), the membership goes.
        let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                           "Operations": [{"op": "replace", "value": {"active": true}}]});
        assert_eq!(scim(&t, M::PATCH, &format!("{base}/Users/{alice}"), &token, Some(patch)).await.0, S::OK);
        assert_eq!(t.call(M::GET, &account_path, Some(&key), None).await.0, S::OK);
        assert_eq!(scim(&t, M::DELETE, &format!("{base}/Users/{alice}"), &token, None).await.0, S::NO_CONTENT);
        assert_eq!(t.call(M::GET, &account_path, Some(&key), None).await.0, S::NOT_FOUND);
        assert_eq!(get_with_cookie(&t, &account_path, &cookie).await, S::NOT_FOUND);
        assert_eq!(t.call(M::GET, "/api/me", Some(&key), None).await.0, S::OK, "the user remains");
        let (_, v) = t.call(M::GET, &format!("/api/accounts/{a}/teams/{team}"), Some(&root.key), None).await;
        assert_eq!(v["memberships"].as_array().map(Vec::len), Some(0), "and left the team: {v}");

        // Every change is audited with the token as the actor.
        let (_, events) = t.call(M::POST, &format!("/api/accounts/{a}/events/filter"), Some(&root.key),
            Some(json!({"filter": {"event": {"prefix": ["prefect-cloud.account-membership."]}}, "limit": 50}))).await;
        let actors: Vec<&str> = events["events"].as_array().expect("events").iter()
            .filter_map(|e| e["related"].as_array()?.iter().find(|r| r["prefect.resource.role"] == "actor")?["prefect.resource.name"].as_str())
            .collect();
        assert!(actors.len() >= 4 && actors.iter().all(|a| *a == "SCIM token Okta"), "{actors:?}");
    })
    .await;
}

#[tokio::test]
async fn a_scim_token_does_scim_for_its_own_account_and_nothing_else() {
    each_db(|t| async move {
        let root = t.user("root@elsewhere.test").await;
        let a = t.account(&root, "acme").await;
        let other = t.account(&root, "other").await;
        let (token, base) = scim_token(&t, a, &root.key).await;
        let users = format!("{base}/Users");
        assert_eq!(scim(&t, M::GET, &users, &token, None).await.0, S::OK);
        assert_eq!(
            scim(&t, M::GET, "/scim/v2/acme/Users", &token, None)
                .await
                .0,
            S::OK,
            "the handle works too"
        );
        // Not for another account, not for the API, and no API key for SCIM.
        let (s, ct, v) = scim(&t, M::GET, &format!("/scim/v2/{other}/Users"), &token, None).await;
        assert_eq!(
            (s, ct.as_str(), v["status"].as_str()),
            (S::UNAUTHORIZED, "application/scim+json", Some("401")),
            "{v}"
        );
        assert_eq!(
            t.call(M::GET, &format!("/api/accounts/{a}"), Some(&token), None)
                .await
                .0,
            S::UNAUTHORIZED
        );
        assert_eq!(
            scim(&t, M::GET, &users, &root.key, None).await.0,
            S::UNAUTHORIZED
        );
        assert_eq!(
            scim(&t, M::GET, "/scim/v2/nobody/Users", &token, None)
                .await
                .0,
            S::UNAUTHORIZED
        );
        // Listed with its last use, never the token; revoked → refused at the next request.
        let (s, list) = t
            .call(
                M::GET,
                &format!("/api/accounts/{a}/scim_tokens"),
                Some(&root.key),
                None,
            )
            .await;
        assert_eq!(s, S::OK);
        assert!(
            list[0]["last_used"].is_string() && !list.to_string().contains(&token),
            "{list}"
        );
        let id = list[0]["id"].as_str().expect("id");
        assert_eq!(
            t.call(
                M::DELETE,
                &format!("/api/accounts/{a}/scim_tokens/{id}"),
                Some(&root.key),
                None
            )
            .await
            .0,
            S::NO_CONTENT
        );
        assert_eq!(
            scim(&t, M::GET, &users, &token, None).await.0,
            S::UNAUTHORIZED
        );
        // An Admin lists and revokes tokens but cannot make one: a token acts on Owners too, and
        // would let an Admin deactivate or remove them (the escalation the gate forbids elsewhere).
        let admin = t.user("admin@elsewhere.test").await;
        t.add_member(a, &root, &admin, atrium::domain::role::AccountRole::Admin)
            .await;
        let (s, v) = t
            .call(
                M::POST,
                &format!("/api/accounts/{a}/scim_tokens"),
                Some(&admin.key),
                Some(json!({"name": "mine"})),
            )
            .await;
        assert!(
            s == S::FORBIDDEN && v["detail"].as_str().unwrap_or("").contains("only Owners"),
            "{s} {v}"
        );
        assert_eq!(
            t.call(
                M::GET,
                &format!("/api/accounts/{a}/scim_tokens"),
                Some(&admin.key),
                None
            )
            .await
            .0,
            S::OK
        );
        // Expired tokens are refused; a Member can neither list nor create.
        let (s, v) = t
            .call(
                M::POST,
                &format!("/api/accounts/{a}/scim_tokens"),
                Some(&root.key),
                Some(json!({"name": "old", "expires_at": "2001-01-01T00:00:00Z"})),
            )
            .await;
        assert_eq!(s, S::UNPROCESSABLE_ENTITY, "{v}");
        let member = t.user("m@elsewhere.test").await;
        t.add_member(a, &root, &member, atrium::domain::role::AccountRole::Member)
            .await;
        assert_eq!(
            t.call(
                M::GET,
                &format!("/api/accounts/{a}/scim_tokens"),
                Some(&member.key),
                None
            )
            .await
            .0,
            S::FORBIDDEN
        );
        assert_eq!(
            t.call(
                M::POST,
                &format!("/api/accounts/{a}/scim_tokens"),
                Some(&member.key),
                Some(json!({"name": "x"}))
            )
            .await
            .0,
            S::FORBIDDEN
        );
        // Without the plan feature: refused.
        crate::plans::plan(
            &t,
            &root,
            a,
            atrium::domain::plan::PlanType::Pro,
            Default::default(),
        )
        .await;
        let (token2, _) = {
            crate::plans::plan(
                &t,
                &root,
                a,
                atrium::domain::plan::PlanType::Enterprise,
                Default::default(),
            )
            .await;
            scim_token(&t, a, &root.key).await
        };
        crate::plans::plan(
            &t,
            &root,
            a,
            atrium::domain::plan::PlanType::Pro,
            Default::default(),
        )
        .await;
        assert_eq!(
            scim(&t, M::GET, &users, &token2, None).await.0,
            S::FORBIDDEN
        );
    })
    .await;
}

#[tokio::test]
async fn provisioning_holds_the_seat_limit_under_concurrency_and_leaves_nothing_when_refused() {
    each_db(|t| async move {
        let root = t.user("root@elsewhere.test").await;
        let a = t.account(&root, "acme").await;
        crate::plans::plan(&t, &root, a, atrium::domain::plan::PlanType::Enterprise, atrium::domain::plan::EntitlementsPatch {
            user_limit: Some(Some(2)), ..Default::default()
        }).await;
        let (token, base) = scim_token(&t, a, &root.key).await;
        let users_before = {
            let mut c = t.app.store.reader().await.expect("reader");
            atrium::store::scim::find_users(&mut c, a).await.expect("users").len()
        };
        let t = std::sync::Arc::new(t);
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (t, token, base) = (t.clone(), token.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                let email = format!("c{i}@acme.test");
                scim(&t, M::POST, &format!("{base}/Users"), &token, Some(json!({
                    "schemas": [atrium::services::scim::USER_SCHEMA], "userName": email, "emails": [{"value": email}],
                }))).await
            }));
        }
        let mut created = 0;
        for task in tasks {
            let (s, _, v) = task.await.expect("join");
            match s {
                S::CREATED => created += 1,
                S::CONFLICT => assert!(v["schemas"][0] == atrium::services::scim::ERROR_SCHEMA && v["detail"].as_str().is_some(), "{v}"),
                other => panic!("{other}: {v}"),
            }
        }
        assert_eq!(created, 1, "one free seat, one member");
        let mut c = t.app.store.reader().await.expect("reader");
        assert_eq!(atrium::store::scim::find_users(&mut c, a).await.expect("users").len(), users_before + 1);
        // Refused provisioning created no user either.
        let mut made = 0;
        for i in 0..16 {
            if atrium::store::users::find_user_by_email(&mut c, &format!("c{i}@acme.test")).await.expect("find").is_some() {
                made += 1;
            }
        }
        assert_eq!(made, 1, "no user without a membership");
    })
    .await;
}

#[tokio::test]
async fn an_idp_cannot_pull_in_or_rename_people_who_are_not_its_own() {
    each_db(|t| async move {
        let root = t.user("root@elsewhere.test").await;
        let a = t.account(&root, "acme").await;
        let b = t.account(&root, "beta").await;
        let bob = t.user("bob@beta.test").await;
        t.add_member(b, &root, &bob, atrium::domain::role::AccountRole::Member).await;
        let (token, base) = scim_token(&t, a, &root.key).await;
        // Bob has an Atrium user already: acme's IdP cannot make him a member, his domain is not acme's.
        let (s, _, v) = scim(&t, M::POST, &format!("{base}/Users"), &token, Some(json!({
            "schemas": [atrium::services::scim::USER_SCHEMA], "userName": "bob@beta.test",
        }))).await;
        assert_eq!((s, v["scimType"].as_str()), (S::CONFLICT, Some("uniqueness")), "{v}");
        assert!(v["detail"].as_str().unwrap_or("").contains("verify the domain"), "{v}");
        // A member of two accounts: acme's IdP cannot change his address.
        let (_, key, _) = provisioned(&t, &base, &token, "carl@acme.test").await;
        let (s, v) = t.call(M::GET, "/api/me", Some(&key), None).await;
        assert_eq!(s, S::OK);
        let carl = atrium::domain::UserId(v["id"].as_str().expect("id").parse().expect("uuid"));
        atrium::services::memberships::add_member(&t.app, &TestApp::principal(&root), b, carl, atrium::domain::role::AccountRole::Member)
            .await
            .expect("carl joins beta");
        let (s, _, v) = scim(&t, M::PATCH, &format!("{base}/Users/{}", carl.0), &token, Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "emails", "value": [{"value": "mallory@evil.test", "primary": true}]}],
        }))).await;
        assert_eq!((s, v["scimType"].as_str()), (S::BAD_REQUEST, Some("mutability")), "{v}");
        let (_, me) = t.call(M::GET, "/api/me", Some(&key), None).await;
        assert_eq!(me["email"], "carl@acme.test", "unchanged");
        // Another account's user id in a group is ignored, not added.
        let (s, _, g) = scim(&t, M::POST, &format!("{base}/Groups"), &token, Some(json!({
            "schemas": [atrium::services::scim::GROUP_SCHEMA], "displayName": "Ops", "members": [{"value": bob.id.0}],
        }))).await;
        assert_eq!((s, g["members"].as_array().map(Vec::len)), (S::CREATED, Some(0)), "{g}");
        // The account's last active Owner can be neither deactivated nor removed through SCIM.
        let owner = format!("{base}/Users/{}", root.id.0);
        let off = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                         "Operations": [{"op": "replace", "path": "active", "value": false}]});
        assert_eq!(scim(&t, M::PATCH, &owner, &token, Some(off)).await.0, S::CONFLICT);
        assert_eq!(scim(&t, M::DELETE, &owner, &token, None).await.0, S::CONFLICT);
        assert_eq!(t.call(M::GET, &format!("/api/accounts/{a}"), Some(&root.key), None).await.0, S::OK);
    })
    .await;
}

#[tokio::test]
async fn the_dashboard_makes_and_revokes_scim_tokens_and_marks_what_the_idp_manages() {
    use crate::dashboard::get_page;
    each_db(|t| async move {
        let root = t.user("root@elsewhere.test").await;
        let a = t.account(&root, "acme").await;
        let olga = t.user_with_password("olga@acme.test").await;
        let olga_user = TestUser {
            id: olga,
            key: root.key.clone(),
            key_id: root.key_id,
        };
        t.add_member(
            a,
            &root,
            &olga_user,
            atrium::domain::role::AccountRole::Owner,
        )
        .await;
        let (_, h) = crate::dashboard::sign_in(&t, "olga@acme.test", "a-long-password", "/").await;
        let cookie = cookie_of(&h, "atrium_session");
        let page = format!("/account/{a}/sso");
        let (s, _, html) = get_page(&t, &page, &cookie).await;
        assert_eq!(s, S::OK);
        assert!(
            html.contains("Directory sync (SCIM)")
                && html.contains(&format!("/scim/v2/{a}"))
                && html.contains("No SCIM token yet."),
            "{html:.3000}"
        );
        let csrf = hidden(&html, "csrf");
        // Created from the form: shown once, never cached, and it works.
        let (s, h, html) = form(
            &t,
            &format!("{page}/scim_tokens"),
            &cookie,
            &[("csrf", &csrf), ("name", "Entra"), ("days", "30")],
        )
        .await;
        assert_eq!(s, S::OK, "{html:.2000}");
        assert_eq!(h["cache-control"], "no-store");
        let token = html
            .split("<code id=\"new-key\">")
            .nth(1)
            .and_then(|r| r.split('<').next())
            .expect("the token, once")
            .to_string();
        assert!(token.starts_with("atrium_scim_"), "{token}");
        let base = format!("/scim/v2/{a}");
        assert_eq!(
            scim(&t, M::GET, &format!("{base}/Users"), &token, None)
                .await
                .0,
            S::OK
        );
        let (_, _, html) = get_page(&t, &page, &cookie).await;
        assert!(
            !html.contains(&token) && html.contains("Entra") && html.contains("olga@acme.test"),
            "listed, not shown: {html:.3000}"
        );
        // What the IdP manages is marked on the members and team pages.
        let (_, _, g) = scim(
            &t,
            M::POST,
            &format!("{base}/Groups"),
            &token,
            Some(json!({
                "schemas": [atrium::services::scim::GROUP_SCHEMA], "displayName": "Synced",
            })),
        )
        .await;
        provisioned(&t, &base, &token, "pat@acme.test").await;
        let (_, _, html) = get_page(
            &t,
            &format!("/account/{a}/team/{}", g["id"].as_str().expect("id")),
            &cookie,
        )
        .await;
        assert!(
            html.contains("Managed by your identity provider") && !html.contains("Add member"),
            "{html:.3000}"
        );
        let (_, _, html) = get_page(&t, &format!("/account/{a}/members"), &cookie).await;
        assert!(html.contains("IdP ·"), "{html:.4000}");
        // Revoked from the page: the next SCIM request is refused.
        let id = html_id(
            &get_page(&t, &page, &cookie).await.2,
            &format!("{page}/scim_tokens/"),
        );
        let (s, _, _) = form(
            &t,
            &format!("{page}/scim_tokens/{id}/delete"),
            &cookie,
            &[("csrf", &csrf)],
        )
        .await;
        assert!(s.is_redirection(), "{s}");
        assert_eq!(
            scim(&t, M::GET, &format!("{base}/Users"), &token, None)
                .await
                .0,
            S::UNAUTHORIZED
        );
    })
    .await;
}

/// The id that follows `prefix` in a page's links or form actions.
fn html_id(html: &str, prefix: &str) -> String {
    html.split(prefix)
        .nth(1)
        .and_then(|r| r.split('/').next())
        .expect("an id")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivation_through_one_server_reaches_another_on_the_same_postgresql() {
    if std::env::var("ATRIUM_TEST_POSTGRES_URL").is_err() {
        missing("PostgreSQL (ATRIUM_TEST_POSTGRES_URL)");
        return;
    }
    let a = TestApp::new(Db::Postgres).await;
    let b = a.peer().await;
    let listener = atrium::jobs::spawn_listener(&b.app).expect("listener on PostgreSQL");
    let root = a.user("root@elsewhere.test").await;
    let acct = a.account(&root, "acme").await;
    let (token, base) = scim_token(&a, acct, &root.key).await;
    let (alice, key, _) = provisioned(&a, &base, &token, "alice@acme.test").await;
    let probe = format!("/api/accounts/{acct}");
    // b learns of Alice's membership, then of her deactivation made through a (no sweep runs in b).
    let until = |want: S| {
        let (b, probe, key) = (&b, probe.clone(), key.clone());
        async move {
            for i in 0..200 {
                if b.call(M::GET, &probe, Some(&key), None).await.0 == want {
                    return Some(i);
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            None
        }
    };
    assert!(until(S::OK).await.is_some(), "b never saw the new member");
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                       "Operations": [{"op": "replace", "path": "active", "value": false}]});
    assert_eq!(
        scim(
            &a,
            M::PATCH,
            &format!("{base}/Users/{alice}"),
            &token,
            Some(patch)
        )
        .await
        .0,
        S::OK
    );
    assert_eq!(
        a.call(M::GET, &probe, Some(&key), None).await.0,
        S::NOT_FOUND,
        "refused at once where it was made"
    );
    let waited = until(S::NOT_FOUND).await;
    listener.abort();
    let waited = waited.expect("the deactivation never reached the other server");
    eprintln!("the other server refused Alice after {waited} polls of 25 ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_of_many_concurrent_provisionings_is_in_the_index_when_it_answers() {
    // One index rebuild serves the commits announced before it starts (a burst of SCIM writes
    // costs a rebuild per batch): no answer may come before a rebuild that includes its write.
    each_db(|t| async move {
        let root = t.user("root@elsewhere.test").await;
        let a = t.account(&root, "acme").await;
        let (token, base) = scim_token(&t, a, &root.key).await;
        let t = std::sync::Arc::new(t);
        let mut tasks = Vec::new();
        for i in 0..24 {
            let (t, token, base) = (t.clone(), token.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                let email = format!("burst{i}@acme.test");
                let (s, _, v) = scim(
                    &t,
                    M::POST,
                    &format!("{base}/Users"),
                    &token,
                    Some(json!({
                        "schemas": [atrium::services::scim::USER_SCHEMA], "userName": email,
                    })),
                )
                .await;
                assert_eq!(s, S::CREATED, "{v}");
                let id =
                    atrium::domain::UserId(v["id"].as_str().expect("id").parse().expect("uuid"));
                let key = atrium::services::users::issue_api_key(&t.app, None, id, "k", None)
                    .await
                    .expect("key")
                    .key;
                t.call(M::GET, &format!("/api/accounts/{a}"), Some(&key), None)
                    .await
                    .0
            }));
        }
        for task in tasks {
            assert_eq!(
                task.await.expect("join"),
                S::OK,
                "a member missing from the index after their 201"
            );
        }
        assert!(
            atrium::services::gate::index::matches_database(&t.app, a)
                .await
                .expect("compare"),
            "the patched permission index drifted from the database"
        );
    })
    .await;
}
