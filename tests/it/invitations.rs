//! Invitations end to end with a real SMTP server: invite → the mail arrives → its link → sign-up
//! → accepted → the new member has the invited workspace role. Plus token misuse, the seat race,
//! bad input, delivery failures and the member lifecycle.

use crate::support::*;
use atrium::domain::plan::{EntitlementsPatch, PlanType};
use atrium::domain::role::{AccountRole, BuiltinWorkspaceRole};
use atrium::services::mail::deliver_due;
use serde_json::json;
use std::sync::Arc;

#[tokio::test]
async fn an_emailed_invitation_leads_through_sign_up_to_the_invited_workspace_role() {
    let Some(smtp) = SmtpSink::start() else {
        return;
    };
    let smtp = Arc::new(smtp);
    each_db(|t| {
        let smtp = smtp.clone();
        async move {
            let t = t.reconfigured(|c| c.smtp_url = Some(smtp.url())).await;
            let owner = t.user(&format!("owner-{:?}@x.test", t.db).to_lowercase()).await;
            let a = t.account(&owner, "acme").await;
            let ws = t.workspace(a, &owner.key, "prod").await;
            let invitee = format!("new-{:?}@x.test", t.db).to_lowercase();
            let (s, v) = t
                .call(M::POST, &format!("/api/accounts/{a}/invitations/"), Some(&owner.key),
                    Some(json!([{"email": invitee, "account_role_id": AccountRole::Member.id(), "workspace_id": ws,
                                 "workspace_role_id": BuiltinWorkspaceRole::Developer.id()}])))
                .await;
            assert_eq!(s, S::CREATED, "{v}");
            assert_eq!(v[0]["status"], "pending");
            assert_eq!(v[0]["delivery"]["status"], "pending", "queued in the same transaction");
            assert_eq!(deliver_due(&t.app).await.expect("deliver"), (1, 0));

            let mail = smtp.message_to(&invitee);
            assert!(mail.contains("You are invited to ACME on Atrium"), "{mail}");
            assert!(mail.contains("text/html") && mail.contains("text/plain"), "both bodies");
            let (path, id, code) = invitation_link(&mail);
            assert!(mail.contains(&format!("{}{path}", t.app.config.public_url)), "links use the public URL");
            let (_, list) = t.call(M::GET, &format!("/api/accounts/{a}/invitations/{id}"), Some(&owner.key), None).await;
            assert_eq!(list["delivery"]["status"], "sent");

            let (s, h, html) = t.raw(M::GET, &path, None, None, "text/plain").await;
            assert_eq!(s, S::OK);
            let html = String::from_utf8(html).expect("utf8");
            assert!(html.contains("Join ACME") && html.contains(&invitee));
            let csrf_cookie = csrf_cookie(&h);
            let csrf = hidden(&html, "csrf");
            // A form without the matching CSRF cookie is refused.
            let (s, _, _) = form(&t, &format!("/invitations/{id}"), "atrium_csrf=forged", &[
                ("invite_code", &code), ("csrf", &csrf), ("action", "signup"), ("email", &invitee), ("password", "a-long-password"),
            ]).await;
            assert_eq!(s, S::FORBIDDEN);
            let (s, h, body) = form(&t, &format!("/invitations/{id}"), &csrf_cookie, &[
                ("invite_code", &code), ("csrf", &csrf), ("action", "signup"), ("email", &invitee),
                ("password", "a-long-password"), ("first_name", "Nia"),
            ]).await;
            assert_eq!(s, S::OK, "{body}");
            let session = cookie_of(&h, "atrium_session");

            let req = |path: String| {
                let session = session.clone();
                let t = &t;
                async move {
                    use tower::ServiceExt;
                    let req = axum::http::Request::builder().uri(path).header("cookie", session).body(axum::body::Body::empty()).expect("req");
                    let resp = atrium::http::service(t.app.clone()).oneshot(req).await.expect("resp");
                    let bytes = http_body_util::BodyExt::collect(resp.into_body()).await.expect("body").to_bytes();
                    serde_json::from_slice::<serde_json::Value>(&bytes).expect("json")
                }
            };
            let mine = req("/api/me/workspaces".into()).await;
            assert_eq!(mine[0]["workspace_id"], json!(ws), "{mine}");
            assert_eq!(req(format!("/api/me/workspaces/{ws}/has_scope?scope=write_deployments")).await, json!(true), "Developer");
            assert_eq!(req(format!("/api/me/workspaces/{ws}/has_scope?scope=manage_workspace_users")).await, json!(false));
            let (_, inv) = t.call(M::GET, &format!("/api/accounts/{a}/invitations/{id}"), Some(&owner.key), None).await;
            assert_eq!(inv["status"], "accepted");
            let (_, events) = t
                .call(M::POST, &format!("/api/accounts/{a}/events/filter"), Some(&owner.key),
                    Some(json!({"filter": {"event": {"name": ["prefect-cloud.account-invitation.accepted"]}}})))
                .await;
            assert_eq!(events["total"], 1);
            // The link is used up.
            let (s, _, _) = t.raw(M::GET, &path, None, None, "text/plain").await;
            assert_eq!(s, S::NOT_FOUND);
        }
    })
    .await;
}

#[tokio::test]
async fn wrong_used_revoked_expired_resent_and_foreign_tokens_are_refused_alike() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let a = t.account(&owner, "acme").await;
        let invitee = t.user("ivy@x.test").await;
        let other = t.user("eve@x.test").await;
        // The code is only in the email: read it from the outbox the way the worker would.
        let invite = |email: &'static str| {
            let t = &t;
            let key = owner.key.clone();
            async move {
                let (s, v) = t
                    .call(
                        M::POST,
                        &format!("/api/accounts/{a}/invitations/"),
                        Some(&key),
                        Some(json!({"email": email})),
                    )
                    .await;
                assert_eq!(s, S::CREATED, "{v}");
                let id = v[0]["id"].as_str().expect("id").to_string();
                (id.clone(), latest_code(t, &id).await)
            }
        };
        let accept = |id: String, code: String, key: String| {
            let t = &t;
            async move {
                t.call(
                    M::POST,
                    &format!("/api/invitations/{id}/accept?invite_code={code}"),
                    Some(&key),
                    None,
                )
                .await
            }
        };

        let (id, code) = invite("ivy@x.test").await;
        let (s, v) = accept(id.clone(), "x".repeat(32), invitee.key.clone()).await;
        assert_eq!(s, S::NOT_FOUND, "{v}");
        let generic = v["detail"].clone();
        let (s, v) = accept(id.clone(), code.clone(), other.key.clone()).await;
        assert_eq!(s, S::FORBIDDEN, "another user's email: {v}");
        let (s, _) = accept(id.clone(), code.clone(), invitee.key.clone()).await;
        assert_eq!(s, S::OK);
        let (s, v) = accept(id.clone(), code.clone(), invitee.key.clone()).await;
        assert_eq!(
            (s, v["detail"].clone()),
            (S::NOT_FOUND, generic.clone()),
            "single use"
        );

        let (id, code) = invite("eve@x.test").await;
        assert_eq!(
            t.call(
                M::POST,
                &format!("/api/accounts/{a}/invitations/{id}/revoke"),
                Some(&owner.key),
                None
            )
            .await
            .0,
            S::NO_CONTENT
        );
        let (s, v) = accept(id, code, other.key.clone()).await;
        assert_eq!(
            (s, v["detail"].clone()),
            (S::NOT_FOUND, generic.clone()),
            "revoked"
        );

        let outsider = t.user("olga@x.test").await;
        let (id, old) = invite("olga@x.test").await;
        let (s, _) = t
            .call(
                M::POST,
                &format!("/api/accounts/{a}/invitations/{id}/resend"),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(s, S::OK);
        let new = latest_code(&t, &id).await;
        assert_ne!(old, new);
        let (s, v) = accept(id.clone(), old, outsider.key.clone()).await;
        assert_eq!(
            (s, v["detail"].clone()),
            (S::NOT_FOUND, generic.clone()),
            "the old link dies on resend"
        );
        t.clock.advance(chrono::Duration::days(8));
        let (s, v) = accept(id.clone(), new, outsider.key.clone()).await;
        assert_eq!((s, v["detail"].clone()), (S::NOT_FOUND, generic), "expired");
        let (_, listed) = t
            .call(
                M::POST,
                &format!("/api/accounts/{a}/invitations/filter"),
                Some(&owner.key),
                Some(json!({"invitations": {"status": {"any_": ["expired"]}}})),
            )
            .await;
        assert_eq!(listed.as_array().expect("list").len(), 1);

        let (id, code) = invite("rex@x.test").await;
        let (s, _) = t
            .call(
                M::POST,
                &format!("/api/invitations/{id}/reject?invite_code={code}"),
                None,
                None,
            )
            .await;
        assert_eq!(s, S::NO_CONTENT, "declining needs no sign-in");
        let (_, inv) = t
            .call(
                M::GET,
                &format!("/api/accounts/{a}/invitations/{id}"),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(inv["status"], "rejected");
        let (_, counts) = t
            .call(
                M::POST,
                &format!("/api/accounts/{a}/invitations/count"),
                Some(&owner.key),
                Some(json!({})),
            )
            .await;
        assert_eq!(counts, 4);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_simultaneous_accepts_competing_for_one_seat_admit_exactly_one() {
    each_db(|t| async move {
        let t = Arc::new(t);
        let owner = t.user("owner@x.test").await;
        let a = t.account(&owner, "acme").await;
        let mut invited = Vec::new();
        for i in 0..32 {
            let u = t.user(&format!("u{i}@x.test")).await;
            let (s, v) = t
                .call(
                    M::POST,
                    &format!("/api/accounts/{a}/invitations/"),
                    Some(&owner.key),
                    Some(json!({"email": format!("u{i}@x.test")})),
                )
                .await;
            assert_eq!(s, S::CREATED, "{v}");
            let id = v[0]["id"].as_str().expect("id").to_string();
            let code = latest_code(&t, &id).await;
            invited.push((u, id, code));
        }
        atrium::services::plans::set_plan(
            &t.app,
            &TestApp::principal(&owner),
            a,
            atrium::services::plans::SetPlan {
                plan_type: PlanType::Enterprise,
                overrides: EntitlementsPatch {
                    user_limit: Some(Some(2)),
                    ..Default::default()
                },
            },
        )
        .await
        .expect("plan");
        let barrier = Arc::new(tokio::sync::Barrier::new(32));
        let mut tasks = Vec::new();
        for (u, id, code) in invited {
            let (t, barrier) = (t.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                t.call(
                    M::POST,
                    &format!("/api/invitations/{id}/accept?invite_code={code}"),
                    Some(&u.key),
                    None,
                )
                .await
            }));
        }
        let mut statuses = Vec::new();
        for task in tasks {
            let (s, v) = task.await.expect("task");
            assert!(s == S::OK || s == S::CONFLICT, "{s} {v}");
            statuses.push(s);
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == S::OK).count(),
            1,
            "{:?}: exactly one seat",
            t.db
        );
        let mut c = t.app.store.reader().await.expect("conn");
        assert_eq!(
            atrium::store::memberships::count_active_members(&mut c, a)
                .await
                .expect("count"),
            2
        );
    })
    .await;
}

#[tokio::test]
async fn bad_invitation_requests_are_refused_whole() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let admin = t.user("admin@x.test").await;
        let a = t.account(&owner, "acme").await;
        t.add_member(a, &owner, &admin, AccountRole::Admin).await;
        let path = format!("/api/accounts/{a}/invitations/");
        let many: Vec<String> = (0..101).map(|i| format!("p{i}@x.test")).collect();
        let cases = vec![
            (
                json!([{"email": "ok@x.test"}, {"email": "not an email"}]),
                422,
            ),
            (json!({"emails": ["dup@x.test", "DUP@x.test"]}), 422),
            (json!({"emails": many}), 422),
            (json!({"emails": []}), 422),
            (
                json!({"email": "a@x.test", "account_role_id": uuid::Uuid::new_v4()}),
                422,
            ),
            (
                json!({"email": "a@x.test", "workspace_id": uuid::Uuid::new_v4()}),
                422,
            ),
            (json!({"email": "admin@x.test"}), 409),
            (json!({"email": "a@x.test", "colour": "red"}), 422),
        ];
        for (body, expected) in cases {
            let (s, v) = t
                .call(M::POST, &path, Some(&owner.key), Some(body.clone()))
                .await;
            assert_eq!(s.as_u16(), expected, "{body}: {v}");
            assert!(v["detail"].is_string());
        }
        let (s, _) = t
            .call(
                M::POST,
                &path,
                Some(&admin.key),
                Some(json!({"email": "boss@x.test", "account_role_id": AccountRole::Owner.id()})),
            )
            .await;
        assert_eq!(s, S::FORBIDDEN, "only Owners invite Owners");
        let (s, _) = t
            .call(
                M::POST,
                &path,
                Some(&owner.key),
                Some(json!({"email": "twice@x.test"})),
            )
            .await;
        assert_eq!(s, S::CREATED);
        let (s, _) = t
            .call(
                M::POST,
                &path,
                Some(&owner.key),
                Some(json!({"emails": ["fresh@x.test", "Twice@x.test"]})),
            )
            .await;
        assert_eq!(s, S::CONFLICT, "a pending invitation for that email exists");
        let (_, n) = t
            .call(
                M::POST,
                &format!("/api/accounts/{a}/invitations/count"),
                Some(&owner.key),
                Some(json!({})),
            )
            .await;
        assert_eq!(n, 1, "refused requests wrote nothing");
        let mut c = t.app.store.reader().await.expect("conn");
        let queued: i64 = sqlx::Row::try_get(
            &sqlx::query("SELECT COUNT(*) AS n FROM outbox")
                .fetch_one(&mut *c)
                .await
                .expect("count"),
            "n",
        )
        .expect("n");
        assert_eq!(queued, 1, "and queued one email");
    })
    .await;
}

#[tokio::test]
async fn a_failing_smtp_server_keeps_the_invitation_and_shows_the_failure() {
    let t = TestApp::new(Db::Sqlite).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let t = t
        .reconfigured(|c| c.smtp_url = Some(format!("smtp://127.0.0.1:{closed}")))
        .await;
    let owner = t.user("owner@x.test").await;
    let a = t.account(&owner, "acme").await;
    let (_, v) = t
        .call(
            M::POST,
            &format!("/api/accounts/{a}/invitations/"),
            Some(&owner.key),
            Some(json!({"email": "z@x.test"})),
        )
        .await;
    let id = v[0]["id"].as_str().expect("id").to_string();
    assert_eq!(deliver_due(&t.app).await.expect("deliver"), (0, 1));
    let (_, inv) = t
        .call(
            M::GET,
            &format!("/api/accounts/{a}/invitations/{id}"),
            Some(&owner.key),
            None,
        )
        .await;
    assert_eq!(inv["status"], "pending");
    assert_eq!(
        (
            inv["delivery"]["status"].clone(),
            inv["delivery"]["attempts"].clone()
        ),
        (json!("pending"), json!(1))
    );
    assert!(inv["delivery"]["last_error"].is_string());
    assert_eq!(
        deliver_due(&t.app).await.expect("deliver"),
        (0, 0),
        "the retry waits for its backoff"
    );
    t.clock.advance(chrono::Duration::seconds(31));
    assert_eq!(
        deliver_due(&t.app).await.expect("deliver"),
        (0, 1),
        "then it is tried again"
    );
}

#[tokio::test]
async fn deactivated_members_lose_access_at_once_keep_their_record_and_free_their_seat() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let m = t.user("m@x.test").await;
        let a = t.account(&owner, "acme").await;
        let mid = t.add_member(a, &owner, &m, AccountRole::Member).await;
        let ws = t.workspace(a, &owner.key, "prod").await;
        t.call(
            M::PATCH,
            &format!("/api/accounts/{a}/workspaces/{ws}"),
            Some(&owner.key),
            Some(json!({"default_workspace_role_id": BuiltinWorkspaceRole::Viewer.id()})),
        )
        .await;
        assert_eq!(
            t.call(M::GET, &format!("/api/accounts/{a}"), Some(&m.key), None)
                .await
                .0,
            S::OK
        );
        let active = format!("/api/accounts/{a}/account_memberships/{mid}/active");
        assert_eq!(
            t.call(
                M::PATCH,
                &active,
                Some(&owner.key),
                Some(json!({"active": false}))
            )
            .await
            .0,
            S::NO_CONTENT
        );
        assert_eq!(
            t.call(M::GET, &format!("/api/accounts/{a}"), Some(&m.key), None)
                .await
                .0,
            S::NOT_FOUND,
            "at the next request"
        );
        assert_eq!(
            t.call(M::GET, "/api/me/workspaces", Some(&m.key), None)
                .await
                .1,
            json!([])
        );
        let (_, rec) = t
            .call(
                M::GET,
                &format!("/api/accounts/{a}/account_memberships/{mid}"),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(rec["active"], false, "the record stays");
        let (_, limits) = t
            .call(
                M::GET,
                &format!("/api/accounts/{a}/usage_limits"),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(limits["user_limit"], json!(null));
        let (s, _) = t
            .call(
                M::POST,
                &format!("/api/accounts/{a}/account_memberships/set_active"),
                Some(&owner.key),
                Some(json!({"membership_ids": [mid], "active": true})),
            )
            .await;
        assert_eq!(s, S::NO_CONTENT);
        assert_eq!(
            t.call(
                M::GET,
                &format!("/api/accounts/{a}/workspaces/{ws}"),
                Some(&m.key),
                None
            )
            .await
            .0,
            S::OK
        );
        let (_, me) = t
            .call(
                M::GET,
                &format!("/api/accounts/{a}/account_memberships/by-user/{}", owner.id),
                Some(&owner.key),
                None,
            )
            .await;
        let (s, _) = t
            .call(
                M::PATCH,
                &format!(
                    "/api/accounts/{a}/account_memberships/{}/active",
                    me["id"].as_str().expect("id")
                ),
                Some(&owner.key),
                Some(json!({"active": false})),
            )
            .await;
        assert_eq!(s, S::CONFLICT, "the last active Owner stays active");
        // CSV, with formula-looking cells defused.
        atrium::services::users::update_user(
            &t.app,
            &TestApp::principal(&m),
            m.id,
            serde_json::from_value(json!({"first_name": "=HYPERLINK(\"x\")"})).expect("patch"),
        )
        .await
        .expect("update");
        let (s, h, body) = t
            .raw(
                M::GET,
                &format!("/api/accounts/{a}/account_memberships/download"),
                Some(&owner.key),
                None,
                "text/plain",
            )
            .await;
        assert_eq!(s, S::OK);
        assert!(h["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/csv"));
        let csv = String::from_utf8(body).expect("utf8");
        assert!(csv.starts_with("email,handle,first_name"), "{csv}");
        assert!(csv.contains("m@x.test") && csv.contains("owner@x.test"));
        assert!(csv.contains("\"'=HYPERLINK(\"\"x\"\")\""), "{csv}");
    })
    .await;
}
