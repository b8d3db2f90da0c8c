//! Behaviour of accounts, members, workspaces, roles and access end to end through the API.

use crate::support::*;
use atrium::domain::role::{AccountRole, BuiltinWorkspaceRole};
use serde_json::json;

#[tokio::test]
async fn revoking_access_is_refused_at_the_very_next_request() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let dev = t.user("dev@x.test").await;
        let a = t.account(&owner, "acme").await;
        t.add_member(a, &owner, &dev, AccountRole::Member).await;
        let ws = t.workspace(a, &owner.key, "prod").await;
        let base = format!("/api/accounts/{a}/workspaces/{ws}");
        let (s, _) = t.call(M::GET, &base, Some(&dev.key), None).await;
        assert_eq!(s, S::NOT_FOUND, "no grant yet: the workspace is invisible");
        let (s, v) = t
            .call(M::POST, &format!("{base}/user_access/"), Some(&owner.key),
                Some(json!({"user_id": dev.id, "workspace_role_id": BuiltinWorkspaceRole::Developer.id()})))
            .await;
        assert_eq!(s, S::OK, "{v}");
        let access = v[0]["id"].as_str().expect("id").to_string();
        let (s, v) = t.call(M::GET, "/api/me/workspaces", Some(&dev.key), None).await;
        assert_eq!(s, S::OK);
        assert_eq!(v[0]["workspace_handle"], "prod");
        assert_eq!(v[0]["account_handle"], "acme");
        let (s, v) = t.call(M::GET, &format!("/api/me/workspaces/{ws}/has_scope?scope=run_flows"), Some(&dev.key), None).await;
        assert_eq!((s, v), (S::OK, json!(true)));
        let (s, _) = t.call(M::DELETE, &format!("{base}/user_access/{access}"), Some(&owner.key), None).await;
        assert_eq!(s, S::NO_CONTENT);
        let (s, _) = t.call(M::GET, &base, Some(&dev.key), None).await;
        assert_eq!(s, S::NOT_FOUND, "revoked grant must not count at the next request");
        let (_, v) = t.call(M::GET, "/api/me/workspaces", Some(&dev.key), None).await;
        assert_eq!(v, json!([]));
    })
    .await;
}

#[tokio::test]
async fn default_role_gives_every_member_access_and_expired_grants_stop_counting() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let m = t.user("m@x.test").await;
        let a = t.account(&owner, "acme").await;
        t.add_member(a, &owner, &m, AccountRole::Member).await;
        let ws = t.workspace(a, &owner.key, "prod").await;
        let scopes = |key: String| {
            let t = &t;
            async move { t.call(M::GET, &format!("/api/me/workspaces/{ws}/scopes"), Some(&key), None).await }
        };
        let (s, v) = t
            .call(M::PATCH, &format!("/api/accounts/{a}/workspaces/{ws}"), Some(&owner.key),
                Some(json!({"default_workspace_role_id": BuiltinWorkspaceRole::Viewer.id()})))
            .await;
        assert_eq!(s, S::NO_CONTENT, "{v}");
        let (s, v) = scopes(m.key.clone()).await;
        assert_eq!(s, S::OK);
        let names: Vec<&str> = v.as_array().expect("list").iter().filter_map(|x| x.as_str()).collect();
        assert!(names.contains(&"see_flows") && !names.contains(&"run_deployments"), "{names:?}");

        // A time-bound Runner grant adds run_deployments until its instant.
        let until = t.app.now() + chrono::Duration::hours(1);
        let (s, v) = t
            .call(M::POST, &format!("/api/accounts/{a}/workspaces/{ws}/user_access/"), Some(&owner.key),
                Some(json!([{"user_id": m.id, "workspace_role_id": BuiltinWorkspaceRole::Runner.id(), "expires_at": until}])))
            .await;
        assert_eq!(s, S::OK, "{v}");
        assert!(v[0]["expires_at"].is_string());
        let has_run = format!("/api/me/workspaces/{ws}/has_scope?scope=run_deployments");
        assert_eq!(t.call(M::GET, &has_run, Some(&m.key), None).await.1, json!(true));
        t.clock.advance(chrono::Duration::hours(1));
        assert_eq!(
            t.call(M::GET, &has_run, Some(&m.key), None).await.1,
            json!(false),
            "the grant stops counting at its expiry instant"
        );
        let (_, v) = scopes(m.key.clone()).await;
        assert!(v.as_array().expect("list").iter().any(|x| x == "see_flows"), "the default role still counts");
    })
    .await;
}

#[tokio::test]
async fn custom_roles_validate_scopes_follow_their_builtin_and_cannot_be_deleted_in_use() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let m = t.user("m@x.test").await;
        let a = t.account(&owner, "acme").await;
        t.add_member(a, &owner, &m, AccountRole::Member).await;
        let ws = t.workspace(a, &owner.key, "prod").await;
        let roles = format!("/api/accounts/{a}/workspace_roles/");
        let (s, v) = t.call(M::POST, &roles, Some(&owner.key), Some(json!({"name": "Bad", "scopes": ["see_flows", "fly"]}))).await;
        assert_eq!(s, S::UNPROCESSABLE_ENTITY);
        assert!(v["detail"].as_str().expect("detail").contains("fly"));
        let (s, _) = t.call(M::POST, &roles, Some(&owner.key), Some(json!({"name": "Viewer", "scopes": []}))).await;
        assert_eq!(s, S::CONFLICT, "built-in names are reserved");
        let (s, v) = t
            .call(M::POST, &roles, Some(&owner.key),
                Some(json!({"name": "Var keeper", "scopes": ["manage_variables"], "inherited_role_id": BuiltinWorkspaceRole::Viewer.id()})))
            .await;
        assert_eq!(s, S::CREATED, "{v}");
        let role = v["id"].as_str().expect("id").to_string();
        let scopes: Vec<&str> = v["scopes"].as_array().expect("scopes").iter().filter_map(|x| x.as_str()).collect();
        assert!(scopes.contains(&"write_variables") && scopes.contains(&"see_flows"), "closure and inheritance: {scopes:?}");
        let (s, _) = t.call(M::POST, &roles, Some(&owner.key), Some(json!({"name": "Var keeper", "scopes": []}))).await;
        assert_eq!(s, S::CONFLICT);

        let (s, _) = t
            .call(M::POST, &format!("/api/accounts/{a}/workspaces/{ws}/user_access/"), Some(&owner.key),
                Some(json!({"user_id": m.id, "workspace_role_id": role})))
            .await;
        assert_eq!(s, S::OK);
        let (_, v) = t.call(M::GET, &format!("/api/me/workspaces/{ws}/has_scope?scope=manage_variables"), Some(&m.key), None).await;
        assert_eq!(v, json!(true));
        let (s, v) = t.call(M::DELETE, &format!("{roles}{role}"), Some(&owner.key), None).await;
        assert_eq!(s, S::CONFLICT, "{v}");
        // Editing the role changes every holder's scopes at once.
        let (s, _) = t.call(M::PATCH, &format!("{roles}{role}"), Some(&owner.key), Some(json!({"scopes": []}))).await;
        assert_eq!(s, S::NO_CONTENT);
        let (_, v) = t.call(M::GET, &format!("/api/me/workspaces/{ws}/has_scope?scope=manage_variables"), Some(&m.key), None).await;
        assert_eq!(v, json!(false));
        let (s, v) = t.call(M::POST, &format!("{roles}filter"), Some(&m.key), Some(json!({}))).await;
        assert_eq!(s, S::OK);
        assert_eq!(v.as_array().expect("list").len(), 6, "five built-ins and one custom role");
        // A role of another account cannot be granted here.
        let other_owner = t.user("o2@y.test").await;
        let b = t.account(&other_owner, "beta").await;
        let (_, v) = t.call(M::POST, &format!("/api/accounts/{b}/workspace_roles/"), Some(&other_owner.key), Some(json!({"name": "Theirs", "scopes": ["see_flows"]}))).await;
        let (s, _) = t
            .call(M::POST, &format!("/api/accounts/{a}/workspaces/{ws}/user_access/"), Some(&owner.key),
                Some(json!({"user_id": m.id, "workspace_role_id": v["id"]})))
            .await;
        assert_eq!(s, S::NOT_FOUND, "another account's role does not exist here");
    })
    .await;
}

#[tokio::test]
async fn owners_are_protected_and_nobody_grants_above_their_role() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let admin = t.user("admin@x.test").await;
        let a = t.account(&owner, "acme").await;
        let admin_m = t.add_member(a, &owner, &admin, AccountRole::Admin).await;
        let (_, me) = t
            .call(
                M::GET,
                &format!("/api/accounts/{a}/account_memberships/by-user/{}", owner.id),
                Some(&owner.key),
                None,
            )
            .await;
        let owner_m = me["id"].as_str().expect("id").to_string();
        let mem = |id: &str| format!("/api/accounts/{a}/account_memberships/{id}");
        // The only Owner cannot leave, be demoted or be removed.
        let (s, v) = t
            .call(
                M::DELETE,
                &format!("/api/me/accounts/{a}"),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(s, S::CONFLICT, "{v}");
        let (s, _) = t
            .call(
                M::PATCH,
                &mem(&owner_m),
                Some(&owner.key),
                Some(json!({"account_role_id": AccountRole::Member.id()})),
            )
            .await;
        assert_eq!(s, S::CONFLICT);
        // An Admin cannot make themselves Owner nor touch the Owner.
        let (s, _) = t
            .call(
                M::PATCH,
                &mem(&admin_m.to_string()),
                Some(&admin.key),
                Some(json!({"account_role_id": AccountRole::Owner.id()})),
            )
            .await;
        assert_eq!(s, S::FORBIDDEN);
        let (s, _) = t
            .call(M::DELETE, &mem(&owner_m), Some(&admin.key), None)
            .await;
        assert_eq!(s, S::FORBIDDEN);
        // With a second Owner, the first may step down.
        let (s, _) = t
            .call(
                M::PATCH,
                &mem(&admin_m.to_string()),
                Some(&owner.key),
                Some(json!({"account_role_id": AccountRole::Owner.id()})),
            )
            .await;
        assert_eq!(s, S::NO_CONTENT);
        let (s, _) = t
            .call(
                M::PATCH,
                &mem(&owner_m),
                Some(&owner.key),
                Some(json!({"account_role_id": AccountRole::Member.id()})),
            )
            .await;
        assert_eq!(s, S::NO_CONTENT);
        let (s, v) = t
            .call(
                M::GET,
                &format!("/api/accounts/{a}/account_memberships/by-user/{}", owner.id),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(
            (s, v["account_role_name"].as_str()),
            (S::OK, Some("Member"))
        );
        // Now a Member, the former Owner cannot manage members.
        let (s, _) = t
            .call(
                M::DELETE,
                &mem(&admin_m.to_string()),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(s, S::FORBIDDEN);
    })
    .await;
}

#[tokio::test]
async fn api_keys_are_shown_once_expire_and_die_when_deleted() {
    each_db(|t| async move {
        let u = t.user("u@x.test").await;
        let (s, v) = t
            .call(M::POST, "/api/me/api_keys", Some(&u.key),
                Some(json!({"name": "short", "expiration": t.app.now() + chrono::Duration::minutes(5)})))
            .await;
        assert_eq!(s, S::CREATED, "{v}");
        let key = v["key"].as_str().expect("key").to_string();
        assert!(key.starts_with("pnu_") && key.len() == 40);
        let id = v["id"].as_str().expect("id").to_string();
        let (_, list) = t.call(M::GET, "/api/me/api_keys?name=short", Some(&u.key), None).await;
        assert_eq!(list.as_array().expect("list").len(), 1);
        assert!(list[0].get("key").is_none(), "listing never shows the secret");
        assert!(!list.to_string().contains(&key[4..36]));
        assert_eq!(t.call(M::GET, "/api/me", Some(&key), None).await.0, S::OK);
        t.clock.advance(chrono::Duration::minutes(5));
        assert_eq!(t.call(M::GET, "/api/me", Some(&key), None).await.0, S::UNAUTHORIZED, "expired");
        // Deleting the test user's own long-lived key stops it at once (even though it is cached).
        assert_eq!(t.call(M::GET, "/api/me", Some(&u.key), None).await.0, S::OK);
        let (s, _) = t.call(M::DELETE, &format!("/api/users/{}/api_keys/{}", u.id, u.key_id), Some(&u.key), None).await;
        assert_eq!(s, S::NO_CONTENT);
        assert_eq!(t.call(M::GET, "/api/me", Some(&u.key), None).await.0, S::UNAUTHORIZED);
        let _ = id;
    })
    .await;
}

#[tokio::test]
async fn password_login_sets_a_fresh_session_and_logout_ends_it() {
    each_db(|t| async move {
        atrium::services::auth::create_user(
            &t.app,
            atrium::services::auth::Signup {
                email: "Ann@X.test".into(),
                password: "a-long-password".into(),
                handle: None,
                first_name: Some("Ann".into()),
                last_name: None,
            },
            false,
        )
        .await
        .expect("user");
        let login = |pw: &str| {
            let body = json!({"email": "ann@x.test", "password": pw})
                .to_string()
                .into_bytes();
            t.raw(
                M::POST,
                "/api/auth/login",
                None,
                Some(body),
                "application/json",
            )
        };
        let (s, _, _) = login("wrong-password").await;
        assert_eq!(s, S::UNAUTHORIZED);
        let (s, h1, _) = login("a-long-password").await;
        assert_eq!(s, S::OK);
        let (_, h2, _) = login("a-long-password").await;
        let cookie = |h: &axum::http::HeaderMap| {
            h["set-cookie"]
                .to_str()
                .expect("cookie")
                .split(';')
                .next()
                .expect("kv")
                .to_string()
        };
        let (c1, c2) = (cookie(&h1), cookie(&h2));
        assert_ne!(c1, c2, "every login gets a new session id");
        assert!(h1["set-cookie"].to_str().expect("c").contains("HttpOnly"));
        assert_eq!(t.with_cookie(M::GET, "/api/me", &c1).await, S::OK);
        assert_eq!(
            t.with_cookie(M::POST, "/api/auth/logout", &c1).await,
            S::NO_CONTENT
        );
        assert_eq!(
            t.with_cookie(M::GET, "/api/me", &c1).await,
            S::UNAUTHORIZED,
            "logged-out session is dead"
        );
        assert_eq!(
            t.with_cookie(M::GET, "/api/me", &c2).await,
            S::OK,
            "other sessions live on"
        );
    })
    .await;
}

#[tokio::test]
async fn health_answers_503_when_the_database_is_gone() {
    let t = TestApp::new(Db::Sqlite).await;
    assert_eq!(
        t.call(M::GET, "/api/health", None, None).await,
        (S::OK, json!(true))
    );
    t.app.store.close().await;
    let (s, v) = t.call(M::GET, "/api/health", None, None).await;
    assert_eq!(s, S::SERVICE_UNAVAILABLE);
    assert!(v["detail"].is_string());
}

#[tokio::test]
async fn deleting_an_account_removes_it_for_its_members() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let a = t.account(&owner, "acme").await;
        t.workspace(a, &owner.key, "prod").await;
        let (s, _) = t
            .call(
                M::DELETE,
                &format!("/api/accounts/{a}"),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(s, S::NO_CONTENT);
        assert_eq!(
            t.call(
                M::GET,
                &format!("/api/accounts/{a}"),
                Some(&owner.key),
                None
            )
            .await
            .0,
            S::NOT_FOUND
        );
        assert_eq!(
            t.call(M::GET, "/api/me/workspaces", Some(&owner.key), None)
                .await
                .1,
            json!([])
        );
        assert_eq!(
            t.call(M::GET, "/api/me/accounts", Some(&owner.key), None)
                .await
                .1,
            json!([])
        );
    })
    .await;
}

#[tokio::test]
async fn open_signup_and_account_creation_for_anyone_when_configured() {
    each_db(|t| async move {
        let t = t
            .reconfigured(|c| {
                c.signup_policy = atrium::config::SignupPolicy::Open;
                c.account_creation = atrium::config::AccountCreation::Anyone;
            })
            .await;
        let body =
            json!({"email": "Zoe@X.test", "password": "a-long-password", "first_name": "Zoe"});
        let (s, v) = t.call(M::POST, "/api/auth/signup", None, Some(body)).await;
        assert_eq!(s, S::CREATED, "{v}");
        assert_eq!(v["handle"], "zoe");
        let (s, _) = t
            .call(
                M::POST,
                "/api/auth/signup",
                None,
                Some(json!({"email": "zoe@x.TEST", "password": "another-password"})),
            )
            .await;
        assert_eq!(s, S::CONFLICT, "emails are unique case-insensitively");
        let (s, _) = t
            .call(
                M::POST,
                "/api/auth/signup",
                None,
                Some(json!({"email": "short@x.test", "password": "short"})),
            )
            .await;
        assert_eq!(s, S::UNPROCESSABLE_ENTITY);
        let u = t.user("maker@x.test").await;
        let (s, v) = t
            .call(
                M::POST,
                "/api/accounts/",
                Some(&u.key),
                Some(json!({"name": "Mine", "handle": "mine"})),
            )
            .await;
        assert_eq!(s, S::CREATED, "{v}");
        assert_eq!(v["handle"], "mine");
        let (s, _) = t
            .call(
                M::POST,
                "/api/accounts/",
                Some(&u.key),
                Some(json!({"name": "Again", "handle": "mine"})),
            )
            .await;
        assert_eq!(s, S::CONFLICT, "account handles are unique");
        let (_, me) = t.call(M::GET, "/api/me/accounts", Some(&u.key), None).await;
        assert_eq!(me[0]["account_role_name"], "Owner");
    })
    .await;
}

#[tokio::test]
async fn workspace_counts_are_exact_past_any_page_size() {
    each_db(|t| async move {
        let owner = t.user("owner@count.test").await;
        let member = t.user("member@count.test").await;
        let a = t.account(&owner, "count").await;
        t.add_member(a, &owner, &member, AccountRole::Member).await;
        // 1,000 workspaces, written in one transaction (through the API this test would spend
        // its time rebuilding the index a thousand times).
        let now = t.app.now();
        let mut tx = atrium::services::unit::Unit::account(&t.app, a)
            .await
            .expect("tx");
        for i in 0..1000 {
            let w = atrium::domain::Workspace {
                id: atrium::domain::WorkspaceId::new(),
                created: now,
                updated: now,
                account_id: a,
                name: format!("W{i}"),
                handle: format!("w{i}"),
                description: String::new(),
                default_workspace_role_id: (i % 3 == 0).then(|| {
                    atrium::domain::RoleId(atrium::domain::role::BuiltinWorkspaceRole::Viewer.id())
                }),
                is_public: false,
            };
            atrium::store::workspaces::insert_workspace(&mut tx.access(a), &w)
                .await
                .expect("insert");
        }
        // The unit of work refreshes the account's permission index at commit.
        tx.commit().await.expect("commit");
        let count = |key: String, body: serde_json::Value| {
            let t = &t;
            async move {
                let (s, v) = t
                    .call(
                        M::POST,
                        &format!("/api/accounts/{a}/workspaces/count"),
                        Some(&key),
                        Some(body),
                    )
                    .await;
                assert_eq!(s, S::OK, "{v}");
                v.as_i64().expect("a count")
            }
        };
        assert_eq!(count(owner.key.clone(), json!({})).await, 1000);
        let handles: Vec<String> = (0..600).map(|i| format!("w{i}")).collect();
        let filtered = json!({"workspaces": {"handle": {"any_": handles}}});
        assert_eq!(count(owner.key.clone(), filtered.clone()).await, 600);
        // A Member reaches only the workspaces whose default role admits every member.
        assert_eq!(count(member.key.clone(), json!({})).await, 334);
        assert_eq!(count(member.key.clone(), filtered).await, 200);
        // And the filter's pages add up to the count.
        let mut seen = 0;
        for offset in (0..1000).step_by(200) {
            let (_, v) = t
                .call(
                    M::POST,
                    &format!("/api/accounts/{a}/workspaces/filter"),
                    Some(&owner.key),
                    Some(json!({"limit": 200, "offset": offset})),
                )
                .await;
            seen += v.as_array().expect("page").len();
        }
        assert_eq!(seen, 1000);
    })
    .await;
}

#[tokio::test]
async fn an_accounts_auth_expiration_bounds_its_members_sessions_and_cli_login_keys() {
    use crate::dashboard::{get_page, sign_in};
    each_db(|t| async move {
        let owner = t.user("owner@bound.test").await;
        let a = t.account(&owner, "bound").await;
        let ann = t.user_with_password("ann@bound.test").await;
        t.user_with_password("bob@bound.test").await;
        atrium::services::memberships::add_member(
            &t.app,
            &TestApp::principal(&owner),
            a,
            ann,
            AccountRole::Member,
        )
        .await
        .expect("member");
        let (s, v) = t
            .call(
                M::PATCH,
                &format!("/api/accounts/{a}"),
                Some(&owner.key),
                Some(json!({"auth_expiration_seconds": 3600})),
            )
            .await;
        assert_eq!(s, S::NO_CONTENT, "{v}");
        let login = |email: &'static str| {
            let t = &t;
            async move {
                let body = json!({"email": email, "password": "a-long-password"})
                    .to_string()
                    .into_bytes();
                let (s, h, _) = t
                    .raw(
                        M::POST,
                        "/api/auth/login",
                        None,
                        Some(body),
                        "application/json",
                    )
                    .await;
                assert_eq!(s, S::OK);
                let cookie = h["set-cookie"].to_str().expect("cookie").to_string();
                let max_age: i64 = cookie
                    .split(';')
                    .find_map(|p| p.trim().strip_prefix("Max-Age="))
                    .and_then(|n| n.parse().ok())
                    .expect("Max-Age");
                (cookie.split(';').next().expect("pair").to_string(), max_age)
            }
        };
        // Ann (a member) gets an hour; Bob (in no such account) the server's 14 days.
        let (ann_session, ann_age) = login("ann@bound.test").await;
        assert_eq!(ann_age, 3600);
        let (bob_session, bob_age) = login("bob@bound.test").await;
        assert_eq!(bob_age, 14 * 24 * 3600);
        t.clock.advance(chrono::Duration::seconds(3601));
        assert_eq!(
            t.with_cookie(M::GET, "/api/me", &ann_session).await,
            S::UNAUTHORIZED
        );
        assert_eq!(t.with_cookie(M::GET, "/api/me", &bob_session).await, S::OK);
        // A key the Prefect CLI's browser login makes for her expires within the hour too, even
        // when 90 days are asked for.
        let (_, h) = sign_in(&t, "ann@bound.test", "a-long-password", "/").await;
        let session = cookie_of(&h, "atrium_session");
        let callback = "http%3A%2F%2F127.0.0.1%3A9";
        let (s, _, html) =
            get_page(&t, &format!("/auth/client?callback={callback}"), &session).await;
        assert_eq!(s, S::OK, "{html}");
        let (s, _, html) = form(
            &t,
            "/auth/client",
            &session,
            &[
                ("csrf", &hidden(&html, "csrf")),
                ("callback", "http://127.0.0.1:9"),
                ("name", "cli"),
                ("days", "90"),
            ],
        )
        .await;
        assert_eq!(s, S::OK, "{html}");
        let keys = atrium::services::users::list_api_keys(
            &t.app,
            &atrium::services::auth::authenticate_session(
                &t.app,
                session.split('=').nth(1).expect("value"),
            )
            .await
            .expect("session"),
            ann,
            None,
            None,
            None,
        )
        .await
        .expect("keys");
        let expires = keys[0].expiration.expect("bounded");
        assert_eq!(expires, t.app.now() + chrono::Duration::seconds(3600));
    })
    .await;
}

/// `DELETE /api/users/{id}`: only the user themself; it leaves every account (audited there) and
/// ends the user's keys at once; the last active Owner of an account cannot leave this way, and
/// two Owners deleting themselves at the same moment leave one Owner behind — on both databases,
/// with many accounts raced at once.
#[tokio::test]
async fn users_delete_themselves_but_never_an_accounts_last_owner() {
    each_db(|t| async move {
        let ann = t.user("ann@del.test").await;
        let bob = t.user("bob@del.test").await;
        let acme = t.account(&ann, "acme").await;
        t.add_member(acme, &ann, &bob, AccountRole::Member).await;
        let me = |u: &TestUser| format!("/api/users/{}", u.id);

        let (s, v) = t.call(M::DELETE, &me(&ann), Some(&bob.key), None).await;
        assert_eq!(s, S::NOT_FOUND, "nobody deletes someone else: {v}");
        let (s, v) = t.call(M::DELETE, &me(&ann), Some(&ann.key), None).await;
        assert_eq!(s, S::CONFLICT, "{v}");
        assert!(v["detail"].as_str().unwrap_or("").contains("last active Owner"), "{v}");
        assert_eq!(t.call(M::GET, "/api/me", Some(&ann.key), None).await.0, S::OK, "nothing changed");
        let (_, members) = t.call(M::POST, &format!("/api/accounts/{acme}/account_memberships/count"), Some(&ann.key), Some(json!({}))).await;
        assert_eq!(members, json!(2));

        let (s, v) = t.call(M::DELETE, &me(&bob), Some(&bob.key), None).await;
        assert_eq!(s, S::NO_CONTENT, "{v}");
        assert_eq!(t.call(M::GET, "/api/me", Some(&bob.key), None).await.0, S::UNAUTHORIZED, "the key ended with the user");
        let (_, members) = t.call(M::POST, &format!("/api/accounts/{acme}/account_memberships/count"), Some(&ann.key), Some(json!({}))).await;
        assert_eq!(members, json!(1));
        let (_, events) = t.call(M::POST, &format!("/api/accounts/{acme}/events/filter"), Some(&ann.key),
            Some(json!({"filter": {"event": {"name": ["prefect-cloud.account-membership.deleted"]}}}))).await;
        assert_eq!(events["total"], 1, "leaving is audited in the account: {events}");

        // Eight accounts with two Owners each; both Owners of every account delete themselves at
        // once: in each account exactly one succeeds.
        let mut pairs = Vec::new();
        for i in 0..8 {
            let o1 = t.user(&format!("o1-{i}@race.test")).await;
            let o2 = t.user(&format!("o2-{i}@race.test")).await;
            let a = t.account(&o1, &format!("race-{i}")).await;
            t.add_member(a, &o1, &o2, AccountRole::Owner).await;
            pairs.push((a, o1, o2));
        }
        let calls = pairs.iter().flat_map(|(_, o1, o2)| [o1, o2]).map(|u| {
            let (t, path, key) = (&t, me(u), u.key.clone());
            async move { t.call(M::DELETE, &path, Some(&key), None).await.0 }
        });
        let statuses = futures_util::future::join_all(calls).await;
        for (i, pair) in statuses.chunks(2).enumerate() {
            let mut got = pair.to_vec();
            got.sort();
            assert_eq!(got, vec![S::NO_CONTENT, S::CONFLICT], "{:?}: account {i}: {pair:?}", t.db);
        }
        for (a, o1, o2) in &pairs {
            let survivor = if t.call(M::GET, "/api/me", Some(&o1.key), None).await.0 == S::OK { o1 } else { o2 };
            let (s, n) = t.call(M::POST, &format!("/api/accounts/{a}/account_memberships/count"), Some(&survivor.key), Some(json!({}))).await;
            assert_eq!((s, n), (S::OK, json!(1)), "one Owner remains");
        }
    })
    .await;
}
