//! Bad input gets a clear error, the right status, and changes nothing.

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn malformed_requests_get_4xx_with_detail_and_leave_no_trace() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let a = t.account(&owner, "acme").await;
        let k = Some(owner.key.as_str());
        let ws = format!("/api/accounts/{a}/workspaces/");
        let cases: Vec<(M, String, Option<serde_json::Value>, u16)> = vec![
            (M::POST, ws.clone(), Some(json!({"name": "W", "handle": "w", "surprise": 1})), 422),
            (M::POST, ws.clone(), Some(json!({"name": 5, "handle": "w"})), 422),
            (M::POST, ws.clone(), Some(json!({"name": "W", "handle": "Not A Handle"})), 422),
            (M::POST, ws.clone(), Some(json!({"name": "", "handle": "w"})), 422),
            (M::POST, ws.clone(), Some(json!({"name": "W"})), 422),
            (M::POST, ws.clone(), Some(json!([1, 2])), 422),
            (M::POST, format!("{ws}filter"), Some(json!({"limit": -1})), 422),
            (M::POST, format!("{ws}filter"), Some(json!({"workspaces": {"handle": {"all_": ["x"]}}})), 422),
            (M::GET, "/api/accounts/not-a-uuid".into(), None, 422),
            (M::GET, format!("/api/accounts/{}", uuid::Uuid::new_v4()), None, 404),
            (M::PATCH, format!("/api/accounts/{a}/settings"), Some(json!({"no_such_setting": true})), 422),
            (M::PATCH, format!("/api/accounts/{a}/settings"), Some(json!({"ai_log_summaries": "yes"})), 422),
            (M::PATCH, format!("/api/accounts/{a}/settings"), Some(json!({"enabled_feature_flags": ["x"]})), 422),
            (M::PATCH, format!("/api/accounts/{a}"), Some(json!({"billing_email": "not-an-email"})), 422),
            (M::POST, format!("/api/accounts/{a}/workspace_roles"), Some(json!({"name": "R", "scopes": ["see_flows"], "inherited_role_id": uuid::Uuid::new_v4()})), 422),
            (M::GET, "/api/me/workspaces/00000000-0000-0000-0000-000000000000/has_scope?scope=see_flows".into(), None, 404),
            (M::GET, "/api/no/such/route".into(), None, 404),
            (M::PUT, format!("/api/accounts/{a}"), Some(json!({})), 405),
        ];
        for (m, path, body, expected) in cases {
            let (s, v) = t.call(m.clone(), &path, k, body.clone()).await;
            assert_eq!(s.as_u16(), expected, "{m} {path} {body:?}: {v}");
            assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{m} {path}: no detail in {v}");
        }
        // Nothing was created by any of the refused requests.
        let (_, v) = t.call(M::POST, &format!("{ws}filter"), k, Some(json!({}))).await;
        assert_eq!(v, json!([]));
        let (_, v) = t.call(M::GET, &format!("/api/accounts/{a}/settings"), k, None).await;
        assert_eq!(v["ai_log_summaries"], json!(true));

        // A partly bad grant list writes none of its grants.
        let w = t.workspace(a, &owner.key, "prod").await;
        let member = t.user("m@x.test").await;
        t.add_member(a, &owner, &member, atrium::domain::role::AccountRole::Member).await;
        let outsider = t.user("o@y.test").await;
        let viewer = atrium::domain::role::BuiltinWorkspaceRole::Viewer.id();
        let (s, v) = t
            .call(M::POST, &format!("/api/accounts/{a}/workspaces/{w}/user_access/"), k,
                Some(json!([{"user_id": member.id, "workspace_role_id": viewer}, {"user_id": outsider.id, "workspace_role_id": viewer}])))
            .await;
        assert_eq!(s, S::NOT_FOUND, "an outsider is not a member to grant to: {v}");
        let (_, v) = t.call(M::POST, &format!("/api/accounts/{a}/workspaces/{w}/user_access/filter"), k, Some(json!({}))).await;
        assert_eq!(v, json!([]), "the valid first grant was rolled back with the bad second one");
    })
    .await;
}

#[tokio::test]
async fn oversize_bodies_get_413_and_non_json_gets_422() {
    let t = TestApp::new(Db::Sqlite).await;
    let owner = t.user("owner@x.test").await;
    let a = t.account(&owner, "acme").await;
    let big = format!(
        "{{\"name\": \"{}\", \"handle\": \"w\"}}",
        "x".repeat(5 * 1024 * 1024 + 10)
    );
    let (s, _, body) = t
        .raw(
            M::POST,
            &format!("/api/accounts/{a}/workspaces/"),
            Some(&owner.key),
            Some(big.into_bytes()),
            "application/json",
        )
        .await;
    assert_eq!(s, S::PAYLOAD_TOO_LARGE);
    assert!(String::from_utf8_lossy(&body).contains("detail"));
    let (s, _, _) = t
        .raw(
            M::POST,
            &format!("/api/accounts/{a}/workspaces/"),
            Some(&owner.key),
            Some(b"{not json".to_vec()),
            "application/json",
        )
        .await;
    assert_eq!(s, S::UNPROCESSABLE_ENTITY);
    let (s, _, _) = t
        .raw(
            M::POST,
            &format!("/api/accounts/{a}/workspaces/"),
            Some(&owner.key),
            Some(b"name=x".to_vec()),
            "application/x-www-form-urlencoded",
        )
        .await;
    assert_eq!(s, S::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_mistyped_key_is_refused_without_touching_the_database() {
    let t = TestApp::new(Db::Sqlite).await;
    let u = t.user("u@x.test").await;
    let mut typo: Vec<char> = u.key.chars().collect();
    typo[12] = if typo[12] == 'Q' { 'R' } else { 'Q' };
    let typo: String = typo.into_iter().collect();
    // Close the database: a well-formed key would now fail with 503, a malformed one still 401.
    t.app.store.close().await;
    assert_eq!(
        t.call(M::GET, "/api/me", Some(&typo), None).await.0,
        S::UNAUTHORIZED
    );
}
