//! First run: a fresh installation's one-time setup link creates the first site admin and account
//! in the browser, once.

use crate::support::*;
use atrium::services::setup::SetupToken;

#[tokio::test]
async fn the_setup_link_creates_the_first_admin_and_account_once() {
    each_db(|t| async move {
        let token = SetupToken::issue(&t.app)
            .await
            .expect("issue")
            .expect("no users yet: a token");
        assert_eq!(
            t.raw(M::GET, "/setup?token=wrong", None, None, "text/plain")
                .await
                .0,
            S::NOT_FOUND
        );
        let (s, h, html) = t
            .raw(
                M::GET,
                &format!("/setup?token={token}"),
                None,
                None,
                "text/plain",
            )
            .await;
        assert_eq!(s, S::OK);
        let html = String::from_utf8(html).expect("utf8");
        let (csrf_cookie, csrf) = (csrf_cookie(&h), hidden(&html, "csrf"));
        let fields = [
            ("token", token.as_str()),
            ("csrf", csrf.as_str()),
            ("email", "root@acme.test"),
            ("password", "a-long-password"),
            ("account_name", "Acme"),
            ("account_handle", "acme"),
        ];
        let (s, h, body) = form(&t, "/setup", &csrf_cookie, &fields).await;
        assert_eq!(s, S::SEE_OTHER, "{body}");
        let session = cookie_of(&h, "atrium_session");
        // Signed in, on the new account's page, with the next steps.
        let landing = h["location"].to_str().expect("location").to_string();
        assert!(landing.starts_with("/account/"), "{landing}");
        let (s, _, page) = crate::dashboard::get_page(&t, &landing, &session).await;
        assert_eq!(s, S::OK, "{page}");
        for step in [
            "Getting started",
            "Create a workspace",
            "set-upstream --account acme",
            "Create an API key",
            "Invite people",
        ] {
            assert!(page.contains(step), "{step}: {page}");
        }
        assert_eq!(
            t.with_cookie(M::GET, "/api/me/accounts", &session).await,
            S::OK
        );
        let me = atrium::services::me::my_accounts(
            &t.app,
            &atrium::services::auth::authenticate_session(
                &t.app,
                session.split('=').nth(1).expect("value"),
            )
            .await
            .expect("session"),
        )
        .await
        .expect("accounts");
        assert_eq!(
            (me[0].account_handle.as_str(), me[0].account_role_name),
            ("acme", "Owner")
        );
        // The link is dead, and a new one is not issued while users exist.
        let (s, _, _) = form(&t, "/setup", &csrf_cookie, &fields).await;
        assert_eq!(s, S::NOT_FOUND);
        assert_eq!(
            t.raw(
                M::GET,
                &format!("/setup?token={token}"),
                None,
                None,
                "text/plain"
            )
            .await
            .0,
            S::NOT_FOUND
        );
        assert!(SetupToken::issue(&t.app).await.expect("issue").is_none());
    })
    .await;
}
