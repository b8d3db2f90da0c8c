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
use axum::http::{Request, StatusCode as S};

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
                    .replace("{*rest}", "flows"),
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
                if s == S::FORBIDDEN || s == S::NOT_FOUND || s.is_server_error() {
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
