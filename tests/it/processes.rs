//! Several processes on one database: the permission index and the key cache of one process
//! follow changes made by another (access versions for every engine; NOTIFY on PostgreSQL).

use crate::support::*;
use atrium::domain::role::{AccountRole, BuiltinWorkspaceRole};
use serde_json::json;

#[tokio::test]
async fn a_change_made_by_one_process_reaches_another_through_the_version_sweep() {
    each_db(|a| async move {
        let b = a.peer().await;
        let owner = a.user("owner@x.test").await;
        let dev = a.user("dev@x.test").await;
        let acct = a.account(&owner, "acme").await;
        a.add_member(acct, &owner, &dev, AccountRole::Member).await;
        let ws = a.workspace(acct, &owner.key, "prod").await;
        let probe = format!("/api/accounts/{acct}/workspaces/{ws}");
        // b started before the account existed: it does not know it yet.
        assert_eq!(b.call(M::GET, &probe, Some(&owner.key), None).await.0, S::NOT_FOUND);
        assert!(atrium::services::index::refresh_stale(&b.app).await.expect("sweep") >= 1);
        assert_eq!(b.call(M::GET, &probe, Some(&owner.key), None).await.0, S::OK);

        let (s, v) = a
            .call(M::POST, &format!("{probe}/user_access/"), Some(&owner.key),
                Some(json!({"user_id": dev.id, "workspace_role_id": BuiltinWorkspaceRole::Viewer.id()})))
            .await;
        assert_eq!(s, S::OK, "{v}");
        let access = v[0]["id"].as_str().expect("id").to_string();
        atrium::services::index::refresh_stale(&b.app).await.expect("sweep");
        assert_eq!(b.call(M::GET, &probe, Some(&dev.key), None).await.0, S::OK);
        assert_eq!(a.call(M::DELETE, &format!("{probe}/user_access/{access}"), Some(&owner.key), None).await.0, S::NO_CONTENT);
        atrium::services::index::refresh_stale(&b.app).await.expect("sweep");
        assert_eq!(b.call(M::GET, &probe, Some(&dev.key), None).await.0, S::NOT_FOUND, "revocation reached the other process");
        // Nothing changed since: a sweep rebuilds nothing.
        assert_eq!(atrium::services::index::refresh_stale(&b.app).await.expect("sweep"), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_other_processes_hear_of_changes_without_waiting_for_the_sweep() {
    if std::env::var("ATRIUM_TEST_POSTGRES_URL").is_err() {
        missing("PostgreSQL (ATRIUM_TEST_POSTGRES_URL)");
        return;
    }
    let a = TestApp::new(Db::Postgres).await;
    let b = a.peer().await;
    let listener = atrium::jobs::spawn_listener(&b.app).expect("listener on PostgreSQL");
    let owner = a.user("owner@x.test").await;
    let acct = a.account(&owner, "acme").await;
    let ws = a.workspace(acct, &owner.key, "prod").await;
    let probe = format!("/api/accounts/{acct}/workspaces/{ws}");
    // Wait (bounded) for the notification; no sweep is running in b.
    let mut seen = false;
    for _ in 0..200 {
        if b.call(M::GET, &probe, Some(&owner.key), None).await.0 == S::OK {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    listener.abort();
    assert!(
        seen,
        "the workspace created through a never reached b's index"
    );
}

#[tokio::test]
async fn a_key_revoked_elsewhere_stops_working_once_its_cache_entry_ages_out() {
    each_db(|a| async move {
        let b = a.peer().await;
        let u = a.user("u@x.test").await;
        assert_eq!(
            b.call(M::GET, "/api/me", Some(&u.key), None).await.0,
            S::OK,
            "b caches the key"
        );
        let (s, _) = a
            .call(
                M::DELETE,
                &format!("/api/me/api_keys/{}", u.key_id),
                Some(&u.key),
                None,
            )
            .await;
        assert_eq!(s, S::NO_CONTENT);
        assert_eq!(
            a.call(M::GET, "/api/me", Some(&u.key), None).await.0,
            S::UNAUTHORIZED,
            "at once where it was revoked"
        );
        a.clock.advance(chrono::Duration::seconds(61));
        assert_eq!(
            b.call(M::GET, "/api/me", Some(&u.key), None).await.0,
            S::UNAUTHORIZED,
            "within the cache TTL elsewhere"
        );
    })
    .await;
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled_then_allowed_again() {
    let t = TestApp::new(Db::Sqlite).await;
    t.user_with_password("ann@x.test").await;
    let login = |pw: &'static str| {
        let body = json!({"email": "Ann@x.test", "password": pw})
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
    for _ in 0..atrium::services::auth::MAX_FAILURES_PER_ADDRESS_AND_EMAIL {
        assert_eq!(login("wrong-password").await.0, S::UNAUTHORIZED);
    }
    let (s, headers, _) = login("a-long-password").await;
    assert_eq!(
        s,
        S::TOO_MANY_REQUESTS,
        "even the right password waits out the window"
    );
    assert!(headers.contains_key("retry-after"));
    t.clock.advance(chrono::Duration::minutes(15));
    assert_eq!(login("a-long-password").await.0, S::OK);
}
