//! Every dashboard page and form of an account passes the gate before its handler runs, whatever
//! it is: a signed-in user of another account gets 404, the account's own Owner calling from
//! outside its enforced IP allowlist gets 403 (before any form field is read), and from inside
//! the same pages open. The routes come from the dashboard's own route table, so a new page is
//! covered the day it is added.

use crate::dashboard::sign_in;
use crate::matrix::{fill, walled_world, OUTSIDE_IP};
use crate::support::*;
use atrium::domain::role::AccountRole;
use atrium::http::ui::routes;
use axum::body::Body;
use axum::http::{Method as M, Request, StatusCode as S};
use serde_json::json;

/// A dashboard request from client address `ip` with a session cookie (a form post carries an
/// empty form: the gate must answer before the handler looks at it).
async fn page_from(t: &TestApp, ip: &str, method: &str, path: &str, cookie: &str) -> (S, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("cookie", cookie);
    let body = if method == "POST" {
        req = req.header("content-type", "application/x-www-form-urlencoded");
        Body::from("csrf=")
    } else {
        Body::empty()
    };
    let mut req = req.body(body).expect("request");
    from_address(&mut req, ip);
    let (s, _, b) = t.send(req).await;
    (s, String::from_utf8_lossy(&b).into_owned())
}

#[tokio::test]
async fn every_account_page_answers_other_tenants_404_and_members_outside_the_allowlist_403() {
    each_db(|t| async move {
        let w = walled_world(&t, 7).await;
        // A second Owner of the account and a user of another account, both signed in.
        let ida = t.user_with_password("ida@walled.test").await;
        let ida = TestUser {
            id: ida,
            key: w.owner.key.clone(),
            key_id: w.owner.key_id,
        };
        let account = atrium::domain::AccountId(w.account.parse().expect("account id"));
        t.add_member(account, &w.owner, &ida, AccountRole::Owner)
            .await;
        let sam = t.user_with_password("sam@elsewhere.test").await;
        let sam = TestUser {
            id: sam,
            key: String::new(),
            key_id: w.owner.key_id,
        };
        t.account(&sam, "elsewhere").await;
        let session = |h: &axum::http::HeaderMap| cookie_of(h, "atrium_session");
        let (_, h) = sign_in(&t, "ida@walled.test", "a-long-password", "/").await;
        let ida_cookie = session(&h);
        let (_, h) = sign_in(&t, "sam@elsewhere.test", "a-long-password", "/").await;
        let sam_cookie = session(&h);

        let pages: Vec<_> = routes::list()
            .into_iter()
            .filter(|(_, p)| p.starts_with(routes::ACCOUNT))
            .collect();
        assert!(
            pages.len() > 50,
            "the route table lists the account pages: {pages:?}"
        );
        let mut surprises = Vec::new();
        for (method, template) in &pages {
            let path = fill(
                &template
                    .replace("{member_id}", "{target_user_id}")
                    .replace("{*rest}", "flows")
                    .replace("{*path}", "index.html"),
                &w,
            );
            let (s, body) = page_from(&t, "127.0.0.1", method, &path, &sam_cookie).await;
            if s != S::NOT_FOUND {
                surprises.push(format!(
                    "{method} {template} as another account's user: {s} {body:.200}"
                ));
            }
            let (s, body) = page_from(&t, OUTSIDE_IP, method, &path, &ida_cookie).await;
            if s != S::FORBIDDEN || !body.contains("only accepts requests from its IP allowlist") {
                surprises.push(format!(
                    "{method} {template} as the Owner outside the allowlist: {s} {body:.200}"
                ));
            }
            if *method == "GET" {
                let (s, body) = page_from(&t, "127.0.0.1", method, &path, &ida_cookie).await;
                // The Prefect UI's pages come from the workspace's upstream, which here is not a
                // Prefect server: 502 is their right answer (tests/it/prefect_ui.rs serves them).
                let ui = template.contains("/ui") && s == S::BAD_GATEWAY;
                if s == S::FORBIDDEN || s == S::NOT_FOUND || (s.is_server_error() && !ui) {
                    surprises.push(format!(
                        "{method} {template} as the Owner inside the allowlist: {s} {body:.200}"
                    ));
                }
            }
        }
        assert_no_surprises(&t.db, &surprises);
    })
    .await;
}

/// Markup a user could type into any name or description; a page that printed it unescaped would
/// hold an `<x-probe` element (and, with a script, run it in an Owner's session).
const PROBE: &str = "<x-probe title=\"q\">'&";

#[tokio::test]
async fn every_page_escapes_what_users_typed() {
    each_db(|t| async move {
        let w = crate::matrix::world(&t, 3).await;
        let owner = w.keys[5].as_deref();
        let a = &w.account;
        let named = |s: &str| format!("{PROBE} {s}");
        // Every free-text field the dashboard shows, set through the API to hold markup.
        let edits = [
            (
                M::PATCH,
                format!("/api/accounts/{a}"),
                json!({"name": named("account"), "location": PROBE, "billing_email": null}),
            ),
            (
                M::PATCH,
                fill("/api/accounts/{account_id}/workspaces/{workspace_id}", &w),
                json!({"name": named("workspace"), "description": PROBE}),
            ),
            (
                M::PUT,
                fill("/api/accounts/{account_id}/teams/{team_id}", &w),
                json!({"name": named("team"), "description": PROBE}),
            ),
            (
                M::PATCH,
                fill("/api/accounts/{account_id}/bots/{bot_id}", &w),
                json!({"name": named("bot")}),
            ),
            (
                M::PATCH,
                fill("/api/accounts/{account_id}/workspace_roles/{role_id}", &w),
                json!({"name": named("role"), "description": PROBE}),
            ),
            (
                M::PUT,
                format!("/api/accounts/{a}/ip_allowlist"),
                json!({"entries": [{"ip_network": "127.0.0.1", "description": PROBE}]}),
            ),
        ];
        for (method, path, body) in edits {
            let (s, v) = t.call(method.clone(), &path, owner, Some(body)).await;
            assert!(s.is_success(), "{method} {path}: {s} {v}");
        }
        // A signed-in Owner whose own name holds markup too.
        let ida = atrium::services::auth::create_user(
            &t.app,
            atrium::services::auth::Signup {
                email: "ida@probe.test".into(),
                password: "a-long-password".into(),
                handle: None,
                first_name: Some(PROBE.into()),
                last_name: Some(PROBE.into()),
            },
            false,
        )
        .await
        .expect("user");
        let ida = TestUser {
            id: ida.id,
            key: w.owner.key.clone(),
            key_id: w.owner.key_id,
        };
        let account = atrium::domain::AccountId(a.parse().expect("account id"));
        t.add_member(account, &w.owner, &ida, AccountRole::Owner)
            .await;
        let (_, h) = sign_in(&t, "ida@probe.test", "a-long-password", "/").await;
        let cookie = cookie_of(&h, "atrium_session");

        let pages: Vec<String> = routes::list()
            .into_iter()
            // The Prefect UI's pages are Prefect's files, not ours (tests/it/prefect_ui.rs).
            .filter(|(m, p)| *m == "GET" && !p.contains("/export") && !p.contains("/ui"))
            .map(|(_, p)| {
                fill(
                    &p.replace("{member_id}", "{target_user_id}")
                        .replace("{*rest}", "flows"),
                    &w,
                )
            })
            .collect();
        let mut raw = Vec::new();
        let mut shown = 0;
        for path in &pages {
            let (s, body) = page_from(&t, "127.0.0.1", "GET", path, &cookie).await;
            assert!(!s.is_server_error(), "GET {path}: {s} {body:.300}");
            if body.contains("<x-probe") {
                raw.push(path.clone());
            }
            shown += usize::from(body.contains("&lt;x-probe"));
        }
        assert!(
            raw.is_empty(),
            "pages printing typed markup unescaped: {raw:?}"
        );
        assert!(
            shown >= 8,
            "the typed names reach the pages (escaped) on most of them, not only on {shown}"
        );
    })
    .await;
}
