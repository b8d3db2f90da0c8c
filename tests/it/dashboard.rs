//! Dashboard pages over HTTP: sign-in (CSRF, session rotation, safe redirects), sign-out, and a
//! workspace's access page listing users, service accounts and teams with role and expiry.

use crate::support::*;
use atrium::domain::role::{AccountRole, BuiltinWorkspaceRole};
use axum::body::Body;
use axum::http::{Method as M, Request, StatusCode as S};
use serde_json::json;

pub(crate) async fn get_page(
    t: &TestApp,
    path: &str,
    cookie: &str,
) -> (S, axum::http::HeaderMap, String) {
    let req = Request::builder()
        .method(M::GET)
        .uri(path)
        .header("cookie", cookie)
        .body(Body::empty())
        .expect("request");
    let (s, h, b) = t.send(req).await;
    (s, h, String::from_utf8(b).expect("utf8"))
}

/// Signs `email` in through the form; returns the session cookie.
pub(crate) async fn sign_in(
    t: &TestApp,
    email: &str,
    password: &str,
    next: &str,
) -> (S, axum::http::HeaderMap) {
    let (s, h, html) = get_page(t, &format!("/login?next={next}"), "").await;
    assert_eq!(s, S::OK);
    let csrf = csrf_cookie(&h);
    let token = hidden(&html, "csrf");
    let (s, h, _) = form(
        t,
        "/login",
        &csrf,
        &[
            ("csrf", &token),
            ("email", email),
            ("password", password),
            ("next", next),
        ],
    )
    .await;
    (s, h)
}

/// An account with workspace `prod`, an Admin `ada@acme.test` who signs in with a password, and
/// a Viewer grant to `vic@acme.test` that expires in three days.
pub(crate) struct Fixture {
    pub account: atrium::domain::AccountId,
    pub ws: atrium::domain::WorkspaceId,
    pub owner: TestUser,
    pub soon: chrono::DateTime<chrono::Utc>,
    pub vic: atrium::domain::UserId,
}

pub(crate) async fn fixture(t: &TestApp) -> Fixture {
    let owner = t.user("owner@acme.test").await;
    let account = t.account(&owner, "acme").await;
    let ws = t.workspace(account, &owner.key, "prod").await;
    let ada = t.user_with_password("ada@acme.test").await;
    let ada = TestUser {
        id: ada,
        key: owner.key.clone(),
        key_id: owner.key_id,
    };
    t.add_member(account, &owner, &ada, AccountRole::Admin)
        .await;
    let vic = t.user("vic@acme.test").await;
    t.add_member(account, &owner, &vic, AccountRole::Member)
        .await;
    let soon = t.app.now() + chrono::Duration::days(3);
    let (s, v) = t
        .call(M::POST, &format!("/api/accounts/{account}/workspaces/{ws}/user_access/"), Some(&owner.key),
            Some(json!([{"user_id": vic.id, "workspace_role_id": BuiltinWorkspaceRole::Viewer.id(), "expires_at": soon}])))
        .await;
    assert_eq!(s, S::OK, "{v}");
    Fixture {
        account,
        ws,
        owner,
        soon,
        vic: vic.id,
    }
}

#[tokio::test]
async fn the_access_page_shows_every_grant_with_its_role_and_expiry() {
    each_db(|t| async move {
        let Fixture { account, ws, owner, soon, vic } = fixture(&t).await;
        let (s, bot) = t.call(M::POST, &format!("/api/accounts/{account}/bots"), Some(&owner.key), Some(json!({"name": "deployer"}))).await;
        assert_eq!(s, S::CREATED, "{bot}");
        let (s, v) = t
            .call(M::POST, &format!("/api/accounts/{account}/workspaces/{ws}/bot_access/"), Some(&owner.key),
                Some(json!({"bot_id": bot["id"], "workspace_role_id": BuiltinWorkspaceRole::Runner.id()})))
            .await;
        assert_eq!(s, S::OK, "{v}");
        let (s, team) = t.call(M::POST, &format!("/api/accounts/{account}/teams"), Some(&owner.key), Some(json!({"name": "data <team>"}))).await;
        assert_eq!(s, S::CREATED, "{team}");
        let hour = t.app.now() + chrono::Duration::hours(1);
        let (s, v) = t
            .call(M::PUT, &format!("/api/accounts/{account}/workspaces/{ws}/team_access/"), Some(&owner.key),
                Some(json!([{"team_id": team["id"], "workspace_role_id": BuiltinWorkspaceRole::Developer.id(), "expires_at": hour}])))
            .await;
        assert_eq!(s, S::OK, "{v}");

        // Not signed in: the page sends the visitor to sign in and back.
        let path = format!("/account/{account}/workspace/{ws}/access");
        let (s, h, _) = get_page(&t, &path, "").await;
        assert_eq!(s, S::SEE_OTHER);
        assert_eq!(h["location"], format!("/login?next={path}"));
        // A wrong password stays on the form with the API's message; no session.
        let (s, h) = sign_in(&t, "ada@acme.test", "wrong-password", &path).await;
        assert_eq!(s, S::UNAUTHORIZED);
        assert!(h.get("location").is_none());
        let (s, h) = sign_in(&t, "ada@acme.test", "a-long-password", &path).await;
        assert_eq!(s, S::SEE_OTHER);
        assert_eq!(h["location"], path.as_str(), "back to the page asked for");
        let session = cookie_of(&h, "atrium_session");

        let (s, _, html) = get_page(&t, &path, &session).await;
        assert_eq!(s, S::OK, "{html}");
        for needle in ["Access to prod", "vic@acme.test", "Viewer", "deployer", "Runner", "data &lt;team&gt;", "Developer"] {
            assert!(html.contains(needle), "{needle} missing from {html}");
        }
        assert!(!html.contains("data <team>"), "names are escaped");
        assert!(html.contains(&format!("{}</time> (in 3 days)", soon.format("%Y-%m-%d %H:%M UTC"))), "{html}");
        assert!(html.contains(&format!("{}</time> (in 60 minutes)", hour.format("%Y-%m-%d %H:%M UTC"))), "{html}");
        assert!(html.contains("<td>never</td>"), "the service account's grant does not expire");

        // The team links to its page, which shows each membership's expiry and the team's roles.
        let team_path = format!("/account/{account}/team/{}", team["id"].as_str().expect("team id"));
        assert!(html.contains(&format!("href=\"{team_path}\"")), "{html}");
        let until = t.app.now() + chrono::Duration::days(10);
        let (s, v) = t
            .call(M::PUT, &format!("/api/accounts/{account}/teams/{}/members", team["id"].as_str().expect("id")), Some(&owner.key),
                Some(json!({"members": [{"member_id": vic, "member_type": "user", "expires_at": until}]})))
            .await;
        assert_eq!(s, S::OK, "{v}");
        let (s, _, html) = get_page(&t, &team_path, &session).await;
        assert_eq!(s, S::OK, "{html}");
        assert!(html.contains("Team data &lt;team&gt;") && html.contains("vic@acme.test") && html.contains("Developer"), "{html}");
        assert!(html.contains(&format!("{}</time> (in 10 days)", until.format("%Y-%m-%d %H:%M UTC"))), "{html}");

        // Home lists the accounts; the account page shows plan, seats, workspaces and activity.
        let (s, _, html) = get_page(&t, "/", &session).await;
        assert_eq!(s, S::OK, "{html}");
        assert!(html.contains(&format!("href=\"/account/{account}\"")) && html.contains("Admin"), "{html}");
        let (s, _, html) = get_page(&t, &format!("/account/{account}"), &session).await;
        assert_eq!(s, S::OK, "{html}");
        assert!(html.contains("Enterprise · seats used 3 of no limit"), "owner, ada and vic: {html}");
        assert!(html.contains(&format!("href=\"/account/{account}/workspace/{ws}/access\"")), "{html}");
        assert!(html.contains("Recent activity") && html.contains("workspace-access.created"), "{html}");

        // Past its instant the team grant shows as expired (before any sweep).
        t.clock.advance(chrono::Duration::hours(2));
        let (_, _, html) = get_page(&t, &path, &session).await;
        assert!(html.contains("expired 60 minutes ago, no longer counts"), "{html}");

        // A Member without see_workspace_users is refused with the API's message.
        let vic_pw = t.user_with_password("val@acme.test").await;
        let val = TestUser { id: vic_pw, key: owner.key.clone(), key_id: owner.key_id };
        t.add_member(account, &owner, &val, AccountRole::Member).await;
        let (s, v) = t
            .call(M::POST, &format!("/api/accounts/{account}/workspaces/{ws}/user_access/"), Some(&owner.key),
                Some(json!([{"user_id": val.id, "workspace_role_id": BuiltinWorkspaceRole::Viewer.id()}])))
            .await;
        assert_eq!(s, S::OK, "{v}");
        let (_, h) = sign_in(&t, "val@acme.test", "a-long-password", "/").await;
        let val_session = cookie_of(&h, "atrium_session");
        let (s, _, html) = get_page(&t, &path, &val_session).await;
        assert_eq!(s, S::FORBIDDEN);
        assert!(html.contains("missing workspace scope see_workspace_users"), "{html}");
        // A Member sees the workspace but no access link and no audit activity.
        let (s, _, html) = get_page(&t, &format!("/account/{account}"), &val_session).await;
        assert_eq!(s, S::OK, "{html}");
        assert!(html.contains("prod") && !html.contains("/access\"") && !html.contains("Recent activity"), "{html}");
        // Another account's page does not exist for them.
        let other_owner = t.user("other@x.test").await;
        let other = t.account(&other_owner, "other").await;
        let (s, _, _) = get_page(&t, &format!("/account/{other}"), &val_session).await;
        assert_eq!(s, S::NOT_FOUND);

        // Sign-out needs the form's CSRF token, then ends the session.
        let (_, h, html) = get_page(&t, &path, &session).await;
        let csrf = csrf_cookie(&h);
        let (s, _, _) = form(&t, "/logout", &format!("{session}; {csrf}"), &[("csrf", "forged")]).await;
        assert_eq!(s, S::FORBIDDEN);
        let (s, _, _) = form(&t, "/logout", &format!("{session}; {csrf}"), &[("csrf", &hidden(&html, "csrf"))]).await;
        assert_eq!(s, S::SEE_OTHER);
        let (s, _, _) = get_page(&t, &path, &session).await;
        assert_eq!(s, S::SEE_OTHER, "the old session no longer works");
    })
    .await;
}

#[tokio::test]
async fn sign_in_refuses_forged_forms_and_follows_only_local_paths() {
    each_db(|t| async move {
        t.user_with_password("ann@x.test").await;
        let (s, h, html) = get_page(&t, "/login?next=https://evil.test/", "").await;
        assert_eq!(s, S::OK);
        assert!(html.contains("name=\"next\" value=\"/\""), "{html}");
        let csrf = csrf_cookie(&h);
        let (s, h, _) = form(
            &t,
            "/login",
            &csrf,
            &[
                ("csrf", "not-the-cookie"),
                ("email", "ann@x.test"),
                ("password", "a-long-password"),
            ],
        )
        .await;
        assert_eq!(s, S::UNAUTHORIZED, "a forged form signs nobody in");
        assert!(h
            .get_all("set-cookie")
            .iter()
            .all(|c| !c.to_str().unwrap_or("").starts_with("atrium_session=")));
        let (s, h) = sign_in(&t, "ann@x.test", "a-long-password", "//evil.test").await;
        assert_eq!(s, S::SEE_OTHER);
        assert_eq!(h["location"], "/");
        // Each sign-in gets a new session.
        let first = cookie_of(&h, "atrium_session");
        let (_, h) = sign_in(&t, "ann@x.test", "a-long-password", "/").await;
        assert_ne!(first, cookie_of(&h, "atrium_session"));
    })
    .await;
}

#[tokio::test]
async fn personal_api_keys_are_created_shown_once_listed_masked_and_deleted() {
    each_db(|t| async move {
        t.user_with_password("ann@x.test").await;
        let (_, h) = sign_in(&t, "ann@x.test", "a-long-password", "/me/api-keys").await;
        let session = cookie_of(&h, "atrium_session");
        let (s, h, html) = get_page(&t, "/me/api-keys", &session).await;
        assert_eq!(s, S::OK, "{html}");
        assert!(html.contains("No keys yet."), "{html}");
        let cookies = format!("{session}; {}", csrf_cookie(&h));
        let csrf = hidden(&html, "csrf");
        // Bad input gets the API's message and creates nothing.
        let (s, _, html) = form(
            &t,
            "/me/api-keys",
            &cookies,
            &[("csrf", &csrf), ("name", "laptop"), ("days", "0")],
        )
        .await;
        assert_eq!(s, S::UNPROCESSABLE_ENTITY, "{html}");
        let (s, _, _) = form(
            &t,
            "/me/api-keys",
            &cookies,
            &[("csrf", "forged"), ("name", "laptop"), ("days", "")],
        )
        .await;
        assert_eq!(s, S::FORBIDDEN);
        let (s, h, html) = form(
            &t,
            "/me/api-keys",
            &cookies,
            &[("csrf", &csrf), ("name", "laptop"), ("days", "30")],
        )
        .await;
        assert_eq!(s, S::OK, "{html}");
        assert_eq!(
            h["cache-control"], "no-store",
            "a page with a secret is not cached"
        );
        let key = html
            .split("<code id=\"new-key\">")
            .nth(1)
            .and_then(|r| r.split('<').next())
            .expect("the new key is shown")
            .to_string();
        assert!(key.starts_with("pnu_") && key.len() == 40, "{key}");
        // The key works against the API.
        let (s, me) = t.call(M::GET, "/api/me", Some(&key), None).await;
        assert_eq!((s, me["email"].as_str()), (S::OK, Some("ann@x.test")));
        // Listed masked with its expiry; never shown again.
        let (_, h, html) = get_page(&t, "/me/api-keys", &session).await;
        let cookies = format!("{session}; {}", csrf_cookie(&h));
        assert!(!html.contains(&key), "the key is shown only once");
        assert!(
            html.contains("laptop") && html.contains("(in 30 days)"),
            "{html}"
        );
        let delete = html
            .split("action=\"")
            .find(|s| s.starts_with("/me/api-keys/") && s.contains("/delete"))
            .and_then(|s| s.split('"').next())
            .expect("a delete form")
            .to_string();
        let csrf = hidden(&html, "csrf");
        let (s, h, _) = form(&t, &delete, &cookies, &[("csrf", &csrf)]).await;
        assert_eq!(
            (s, h["location"].to_str().unwrap_or("")),
            (S::SEE_OTHER, "/me/api-keys")
        );
        let (s, _) = t.call(M::GET, "/api/me", Some(&key), None).await;
        assert_eq!(s, S::UNAUTHORIZED, "a deleted key stops working at once");
    })
    .await;
}
