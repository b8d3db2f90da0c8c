//! The audit log: every mutating route writes its event in the same transaction; chains detect
//! tampering; concurrent writers never fork a chain; queries page by keyset; retention keeps
//! what remains verifiable.

use crate::matrix::{body_of, fill, is_read_only, normalize, table, world, WHO};
use crate::support::*;
use atrium::domain::audit::{AuditRecord, SYSTEM_CHAIN};
use atrium::domain::role::AccountRole;
use atrium::services::audit as audit_svc;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every event in every chain, by id.
async fn all_events(t: &TestApp) -> BTreeMap<uuid::Uuid, AuditRecord> {
    // Refusals are written by their own task; everything refused so far is in the log first.
    atrium::services::audit::flush_refusals(&t.app).await;
    let mut c = t.app.store.reader().await.expect("conn");
    let mut out = BTreeMap::new();
    for (chain, _, _) in atrium::store::audit::find_heads(&mut c)
        .await
        .expect("heads")
    {
        for e in atrium::store::audit::find_chain(&mut c, chain, 0, 1_000_000)
            .await
            .expect("chain")
        {
            out.insert(e.id, e);
        }
    }
    out
}

/// The event each mutating route must write (`None`: the route changes no state, with why).
fn expected_event(method: &str, template: &str) -> Option<&'static str> {
    let key = format!("{method} {}", normalize(template));
    let table: &[(&str, Option<&str>)] = &[
        ("POST /api/auth/signup", Some("prefect-cloud.user.created")),
        ("POST /api/auth/login", Some("prefect-cloud.user.logged-in")),
        // With a key there is no session to end; the session case is tested below.
        ("POST /api/auth/logout", None),
        (
            "DELETE /api/me/accounts/{}",
            Some("prefect-cloud.account-membership.deleted"),
        ),
        (
            "POST /api/me/api_keys",
            Some("prefect-cloud.api-key.created"),
        ),
        (
            "DELETE /api/me/api_keys/{}",
            Some("prefect-cloud.api-key.deleted"),
        ),
        ("PATCH /api/users/{}", Some("prefect-cloud.user.updated")),
        ("DELETE /api/users/{}", Some("prefect-cloud.user.deleted")),
        (
            "POST /api/users/{}/api_keys",
            Some("prefect-cloud.api-key.created"),
        ),
        (
            "DELETE /api/users/{}/api_keys/{}",
            Some("prefect-cloud.api-key.deleted"),
        ),
        ("POST /api/accounts", Some("prefect-cloud.account.created")),
        (
            "PATCH /api/accounts/{}",
            Some("prefect-cloud.account.updated"),
        ),
        (
            "DELETE /api/accounts/{}",
            Some("prefect-cloud.account.deleted"),
        ),
        (
            "PATCH /api/accounts/{}/settings",
            Some("prefect-cloud.account-settings.updated"),
        ),
        (
            "PUT /api/accounts/{}/ip_allowlist",
            Some("prefect-cloud.ip-allowlist.updated"),
        ),
        (
            "PATCH /api/accounts/{}/account_memberships/{}",
            Some("prefect-cloud.account-membership.updated"),
        ),
        (
            "DELETE /api/accounts/{}/account_memberships/{}",
            Some("prefect-cloud.account-membership.deleted"),
        ),
        (
            "POST /api/accounts/{}/workspaces",
            Some("prefect-cloud.workspace.created"),
        ),
        (
            "PATCH /api/accounts/{}/workspaces/{}",
            Some("prefect-cloud.workspace.updated"),
        ),
        (
            "DELETE /api/accounts/{}/workspaces/{}",
            Some("prefect-cloud.workspace.deleted"),
        ),
        (
            "POST /api/accounts/{}/workspace_roles",
            Some("prefect-cloud.workspace-role.created"),
        ),
        (
            "PATCH /api/accounts/{}/workspace_roles/{}",
            Some("prefect-cloud.workspace-role.updated"),
        ),
        (
            "DELETE /api/accounts/{}/workspace_roles/{}",
            Some("prefect-cloud.workspace-role.deleted"),
        ),
        (
            "POST /api/accounts/{}/workspaces/{}/user_access",
            Some("prefect-cloud.workspace-access.created"),
        ),
        (
            "DELETE /api/accounts/{}/workspaces/{}/user_access/{}",
            Some("prefect-cloud.workspace-access.deleted"),
        ),
        // A checkpoint signs the chain; it is not itself an event.
        ("POST /api/accounts/{}/audit/checkpoint", None),
        (
            "PUT /api/admin/accounts/{}/plan",
            Some("prefect-cloud.subscription.updated"),
        ),
        (
            "POST /api/accounts/{}/invitations",
            Some("prefect-cloud.account-invitation.created"),
        ),
        (
            "POST /api/accounts/{}/invitations/{}/revoke",
            Some("prefect-cloud.account-invitation.revoked"),
        ),
        (
            "POST /api/accounts/{}/invitations/{}/resend",
            Some("prefect-cloud.account-invitation.resent"),
        ),
        (
            "POST /api/accounts/{}/workspaces/{}/invitations",
            Some("prefect-cloud.workspace-invitation.created"),
        ),
        (
            "POST /api/accounts/{}/workspaces/{}/invitations/{}/revoke",
            Some("prefect-cloud.account-invitation.revoked"),
        ),
        (
            "POST /api/invitations/{}/accept",
            Some("prefect-cloud.account-invitation.accepted"),
        ),
        (
            "POST /api/invitations/{}/reject",
            Some("prefect-cloud.account-invitation.rejected"),
        ),
        (
            "PATCH /api/accounts/{}/account_memberships/{}/active",
            Some("prefect-cloud.account-membership.deactivated"),
        ),
        (
            "POST /api/accounts/{}/account_memberships/set_active",
            Some("prefect-cloud.account-membership.deactivated"),
        ),
        (
            "POST /api/accounts/{}/bots",
            Some("prefect-cloud.service-account.created"),
        ),
        (
            "PATCH /api/accounts/{}/bots/{}",
            Some("prefect-cloud.service-account.updated"),
        ),
        (
            "DELETE /api/accounts/{}/bots/{}",
            Some("prefect-cloud.service-account.deleted"),
        ),
        (
            "POST /api/accounts/{}/bots/{}/rotate_api_key",
            Some("prefect-cloud.service-account.rotated"),
        ),
        (
            "DELETE /api/accounts/{}/bots/{}/delete_bot_api_key/{}",
            Some("prefect-cloud.api-key.deleted"),
        ),
        (
            "POST /api/accounts/{}/workspaces/{}/bot_access",
            Some("prefect-cloud.workspace-access.updated"),
        ),
        (
            "DELETE /api/accounts/{}/workspaces/{}/bot_access/{}",
            Some("prefect-cloud.workspace-access.deleted"),
        ),
        (
            "POST /api/accounts/{}/teams",
            Some("prefect-cloud.team.created"),
        ),
        (
            "PUT /api/accounts/{}/teams/{}",
            Some("prefect-cloud.team.updated"),
        ),
        (
            "DELETE /api/accounts/{}/teams/{}",
            Some("prefect-cloud.team.deleted"),
        ),
        (
            "PUT /api/accounts/{}/teams/{}/members",
            Some("prefect-cloud.team-membership.created"),
        ),
        (
            "DELETE /api/accounts/{}/teams/{}/members/{}",
            Some("prefect-cloud.team-membership.deleted"),
        ),
        (
            "PUT /api/accounts/{}/workspaces/{}/team_access",
            Some("prefect-cloud.workspace-access.updated"),
        ),
        (
            "DELETE /api/accounts/{}/workspaces/{}/team_access/{}",
            Some("prefect-cloud.workspace-access.deleted"),
        ),
        (
            "PUT /api/accounts/{}/workspaces/{}/upstream",
            Some("prefect-cloud.workspace-upstream.updated"),
        ),
        (
            "DELETE /api/accounts/{}/workspaces/{}/upstream",
            Some("prefect-cloud.workspace-upstream.deleted"),
        ),
        (
            "POST /api/users/{}/email_change",
            Some("prefect-cloud.user.email-change-requested"),
        ),
        (
            "POST /api/auth/email_change/confirm",
            Some("prefect-cloud.user.email-changed"),
        ),
        // Evaluates a change without applying it.
        ("POST /api/accounts/{}/access/what_if", None),
        (
            "POST /api/accounts/{}/workspaces/{}/webhooks",
            Some("prefect-cloud.webhook.created"),
        ),
        (
            "PUT /api/accounts/{}/workspaces/{}/webhooks/{}",
            Some("prefect-cloud.webhook.updated"),
        ),
        (
            "PATCH /api/accounts/{}/workspaces/{}/webhooks/{}",
            Some("prefect-cloud.webhook.updated"),
        ),
        (
            "DELETE /api/accounts/{}/workspaces/{}/webhooks/{}",
            Some("prefect-cloud.webhook.deleted"),
        ),
        (
            "POST /api/accounts/{}/workspaces/{}/webhooks/{}/rotate",
            Some("prefect-cloud.webhook.rotated"),
        ),
        (
            "PUT /api/accounts/{}/workspaces/{}/deployments/{}/access",
            Some("prefect-cloud.object-acl.updated"),
        ),
        (
            "PUT /api/accounts/{}/workspaces/{}/work_pools/{}/access",
            Some("prefect-cloud.object-acl.updated"),
        ),
        (
            "PUT /api/accounts/{}/workspaces/{}/block_documents/{}/access",
            Some("prefect-cloud.object-acl.updated"),
        ),
        (
            "POST /api/accounts/{}/sso/providers",
            Some("prefect-cloud.sso-provider.created"),
        ),
        (
            "PATCH /api/accounts/{}/sso/providers/{}",
            Some("prefect-cloud.sso-provider.updated"),
        ),
        (
            "DELETE /api/accounts/{}/sso/providers/{}",
            Some("prefect-cloud.sso-provider.deleted"),
        ),
        (
            "PUT /api/accounts/{}/sso/providers/{}/group_mappings",
            Some("prefect-cloud.sso-provider.group-mappings-set"),
        ),
        (
            "POST /api/accounts/{}/sso/domains",
            Some("prefect-cloud.sso-domain.added"),
        ),
        (
            "DELETE /api/accounts/{}/sso/domains/{}",
            Some("prefect-cloud.sso-domain.deleted"),
        ),
        (
            "POST /api/accounts/{}/sso/domains/{}/verify",
            Some("prefect-cloud.sso-domain.verified"),
        ),
        (
            "POST /api/accounts/{}/scim_tokens",
            Some("prefect-cloud.scim-token.created"),
        ),
        (
            "DELETE /api/accounts/{}/scim_tokens/{}",
            Some("prefect-cloud.scim-token.deleted"),
        ),
    ];
    table
        .iter()
        .find(|(k, _)| *k == key)
        .unwrap_or_else(|| panic!("{key}: a mutating route without an audit expectation"))
        .1
}

#[tokio::test]
async fn every_mutating_route_writes_its_event_in_the_same_transaction() {
    // Every mutating route of the OpenAPI document has an expectation.
    let doc = serde_json::to_value(atrium::http::openapi()).expect("openapi");
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            let m = method.to_uppercase();
            let reads = m == "GET"
                || path.ends_with("/filter")
                || path.ends_with("/count")
                || path.contains("/count-by/");
            if !reads || path.starts_with("/api/auth/") {
                expected_event(&m, path);
            }
        }
    }
    each_db(|t| async move {
        let mut n = 10_000;
        for cell in table()
            .iter()
            .filter(|c| !is_read_only(c) || c.template.starts_with("/api/auth/"))
        {
            // The most privileged caller for whom the route succeeds, or the last failing one.
            let Some(who) = (0..6).rev().find(|i| (200..300).contains(&cell.expect[*i])) else {
                continue;
            };
            n += 1;
            let w = world(&t, n).await;
            let before = all_events(&t).await;
            let body = body_of(cell, &w);
            let (status, v) = t
                .call(
                    cell.method.clone(),
                    &fill(cell.template, &w),
                    w.keys[who].as_deref(),
                    body,
                )
                .await;
            assert!(
                status.is_success(),
                "{} {} as {}: {status} {v}",
                cell.method,
                cell.template,
                WHO[who]
            );
            let after = all_events(&t).await;
            let new: Vec<&AuditRecord> = after
                .values()
                .filter(|e| !before.contains_key(&e.id))
                .collect();
            match expected_event(cell.method.as_str(), cell.template) {
                Some(name) => {
                    assert!(
                        new.iter().any(|e| e.event == name),
                        "{:?} {} {}: expected {name}, got {:?}",
                        t.db,
                        cell.method,
                        cell.template,
                        new.iter().map(|e| &e.event).collect::<Vec<_>>()
                    );
                    for e in &new {
                        let text = serde_json::to_string(&e.payload).expect("json");
                        assert!(
                            !text.contains("pnu_"),
                            "{}: a key leaked into the audit log: {text}",
                            e.event
                        );
                    }
                }
                None => assert!(
                    new.is_empty(),
                    "{} {}: unexpected events {new:?}",
                    cell.method,
                    cell.template
                ),
            }
        }
        // Every chain still verifies after all that.
        for r in audit_svc::verify_all(&t.app, None).await.expect("verify") {
            assert_eq!(r.error, None, "{:?}: chain {} broke", t.db, r.account);
        }
    })
    .await;
}

#[tokio::test]
async fn denials_logins_and_logouts_are_recorded_with_client_and_actor() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let member = t.user("member@x.test").await;
        let a = t.account(&owner, "acme").await;
        t.add_member(a, &owner, &member, AccountRole::Member).await;
        let (s, _) = t
            .call(
                M::PATCH,
                &format!("/api/accounts/{a}"),
                Some(&member.key),
                Some(json!({"name": "Mine"})),
            )
            .await;
        assert_eq!(s, S::FORBIDDEN);
        let (s, page) = t
            .call(
                M::POST,
                &format!("/api/accounts/{a}/events/filter"),
                Some(&owner.key),
                Some(json!({"filter": {"event": {"prefix": ["prefect-cloud.request."]}}})),
            )
            .await;
        assert_eq!(s, S::OK, "{page}");
        let denial = &page["events"][0];
        assert_eq!(denial["event"], "prefect-cloud.request.access-denied");
        assert_eq!(denial["actor"]["id"], json!(member.id));
        assert_eq!(denial["payload"]["missing"], "update:account");

        t.user_with_password("ann@x.test").await;
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
        assert_eq!(login("wrong-password").await.0, S::UNAUTHORIZED);
        let (s, h, _) = login("a-long-password").await;
        assert_eq!(s, S::OK);
        let cookie = h["set-cookie"]
            .to_str()
            .expect("cookie")
            .split(';')
            .next()
            .expect("kv")
            .to_string();
        assert_eq!(
            t.with_cookie(M::POST, "/api/auth/logout", &cookie).await,
            S::NO_CONTENT
        );
        let names: Vec<String> = all_events(&t)
            .await
            .into_values()
            .filter(|e| e.account == SYSTEM_CHAIN)
            .map(|e| e.event)
            .collect();
        for expected in [
            "prefect-cloud.user.login-failed",
            "prefect-cloud.user.logged-in",
            "prefect-cloud.user.logged-out",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing from {names:?}"
            );
        }
        let all = serde_json::to_string(
            &all_events(&t)
                .await
                .into_values()
                .map(|e| e.payload)
                .collect::<Vec<_>>(),
        )
        .expect("json");
        assert!(
            !all.contains("a-long-password") && !all.contains("wrong-password"),
            "passwords must never be audited"
        );
    })
    .await;
}

/// Applies `sql` (with `$1` = the account id) to a chain and returns the verification error.
async fn tamper(t: &TestApp, account: uuid::Uuid, sqls: &[&str]) -> Option<String> {
    let mut tx = t.app.store.begin().await.expect("tx");
    for sql in sqls {
        sqlx::query(sql)
            .bind(account.to_string())
            .execute(&mut *tx)
            .await
            .expect("tamper sql");
    }
    let _audit_rows_only = tx.commit().await.expect("commit");
    audit_svc::verify_chain(&t.app, account)
        .await
        .expect("verify")
        .error
}

async fn chain_of_ten(t: &TestApp, handle: &str) -> uuid::Uuid {
    let owner = t.user(&format!("{handle}@x.test")).await;
    let a = t.account(&owner, handle).await;
    for i in 0..9 {
        t.workspace(a, &owner.key, &format!("w{i}")).await;
    }
    let r = audit_svc::verify_chain(&t.app, a.0).await.expect("verify");
    assert_eq!((r.events, r.error.clone()), (10, None));
    a.0
}

#[tokio::test]
async fn modifying_deleting_reordering_inserting_or_truncating_events_is_detected() {
    each_db(|t| async move {
        let a = chain_of_ten(&t, "modify").await;
        let e = tamper(&t, a, &["UPDATE audit_events SET payload = '{\"after\":{\"name\":\"evil\"}}' WHERE account_id = $1 AND seq = 4"]).await;
        assert!(e.as_deref().is_some_and(|e| e.contains("#4") && e.contains("modified")), "{e:?}");

        let a = chain_of_ten(&t, "delete").await;
        let e = tamper(&t, a, &["DELETE FROM audit_events WHERE account_id = $1 AND seq = 5"]).await;
        assert!(e.as_deref().is_some_and(|e| e.contains("#6")), "{e:?}");

        let a = chain_of_ten(&t, "reorder").await;
        let e = tamper(&t, a, &[
            "UPDATE audit_events SET seq = -3 WHERE account_id = $1 AND seq = 3",
            "UPDATE audit_events SET seq = 3 WHERE account_id = $1 AND seq = 4",
            "UPDATE audit_events SET seq = 4 WHERE account_id = $1 AND seq = -3",
        ]).await;
        assert!(e.is_some(), "a swap of two events must be detected");

        let a = chain_of_ten(&t, "insert").await;
        let insert = "INSERT INTO audit_events (account_id, seq, id, occurred, event, workspace_id, actor_kind, actor_id, actor_name, resource_id, resource_name, related, payload, ip, user_agent, prev_hash, hash) \
             SELECT account_id, 11, 'f0000000-0000-4000-8000-000000000002', occurred, event, workspace_id, actor_kind, actor_id, actor_name, resource_id, resource_name, related, payload, ip, user_agent, hash, hash \
             FROM audit_events WHERE account_id = $1 AND seq = 5";
        if t.db == Db::Sqlite {
            // On SQLite the database itself refuses an event that does not extend the head; an
            // attacker with write access drops that trigger first.
            let mut c = t.app.store.begin().await.expect("tx");
            let refused = sqlx::query(insert).bind(a.to_string()).execute(&mut *c).await;
            assert!(refused.is_err_and(|e| e.to_string().contains("does not extend")), "the link trigger refuses a stray event");
            drop(c);
            let mut c = t.app.store.begin().await.expect("tx");
            sqlx::query("DROP TRIGGER audit_events_link").execute(&mut *c).await.expect("drop trigger");
            let _no_access_change = c.commit().await.expect("commit");
        }
        let e = tamper(&t, a, &[
            "UPDATE audit_events SET seq = seq + 100 WHERE account_id = $1 AND seq >= 6",
            "UPDATE audit_events SET seq = seq - 99 WHERE account_id = $1 AND seq >= 106",
            "INSERT INTO audit_events (account_id, seq, id, occurred, event, workspace_id, actor_kind, actor_id, actor_name, resource_id, resource_name, related, payload, ip, user_agent, prev_hash, hash) \
             SELECT account_id, 6, 'f0000000-0000-4000-8000-000000000001', occurred, event, workspace_id, actor_kind, actor_id, actor_name, resource_id, resource_name, related, payload, ip, user_agent, hash, hash \
             FROM audit_events WHERE account_id = $1 AND seq = 5",
        ]).await;
        assert!(e.is_some(), "an inserted event must be detected");

        let a = chain_of_ten(&t, "truncate").await;
        audit_svc::checkpoint(&t.app, a).await.expect("checkpoint").expect("signed");
        let e = tamper(&t, a, &["DELETE FROM audit_events WHERE account_id = $1 AND seq >= 9"]).await;
        assert!(e.as_deref().is_some_and(|e| e.contains("checkpoint at #10")), "{e:?}");

        let a = chain_of_ten(&t, "behead").await;
        let e = tamper(&t, a, &["DELETE FROM audit_events WHERE account_id = $1 AND seq <= 2"]).await;
        assert!(e.as_deref().is_some_and(|e| e.contains("no signed checkpoint")), "{e:?}");

        let a = chain_of_ten(&t, "forge").await;
        audit_svc::checkpoint(&t.app, a).await.expect("checkpoint").expect("signed");
        let e = tamper(&t, a, &["UPDATE audit_checkpoints SET hash = 'x' || hash WHERE account_id = $1"]).await;
        assert!(e.as_deref().is_some_and(|e| e.contains("invalid signature")), "{e:?}");
    })
    .await;
}

#[tokio::test]
async fn retention_deletes_old_events_behind_a_checkpoint_and_the_rest_still_verifies() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let a = t.account(&owner, "acme").await;
        t.workspace(a, &owner.key, "old").await;
        t.clock.advance(chrono::Duration::days(400));
        t.workspace(a, &owner.key, "new").await;
        let deleted = audit_svc::prune(&t.app, a.0, 365).await.expect("prune");
        assert_eq!(deleted, 2, "account.created and the old workspace.created");
        let r = audit_svc::verify_chain(&t.app, a.0).await.expect("verify");
        assert_eq!((r.events, r.error), (1, None));
        assert_eq!(
            audit_svc::prune(&t.app, a.0, 365).await.expect("prune"),
            0,
            "nothing more is old"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_to_one_account_never_fork_or_break_its_chain() {
    each_db(|t| async move {
        let t = Arc::new(t);
        let owner = t.user("owner@x.test").await;
        let a = t.account(&owner, "acme").await;
        let barrier = Arc::new(tokio::sync::Barrier::new(32));
        let mut tasks = Vec::new();
        for i in 0..32 {
            let (t, key, barrier) = (t.clone(), owner.key.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                t.call(
                    M::POST,
                    &format!("/api/accounts/{a}/workspaces/"),
                    Some(&key),
                    Some(json!({"name": "w", "handle": format!("w{i}")})),
                )
                .await
                .0
            }));
        }
        for task in tasks {
            assert_eq!(task.await.expect("task"), S::CREATED);
        }
        let r = audit_svc::verify_chain(&t.app, a.0).await.expect("verify");
        assert_eq!((r.events, r.error), (33, None), "{:?}", t.db);
    })
    .await;
}

#[tokio::test]
async fn events_are_filtered_paged_by_keyset_and_counted() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let a = t.account(&owner, "acme").await;
        let ws = t.workspace(a, &owner.key, "prod").await;
        for i in 0..7 {
            t.clock.advance(chrono::Duration::minutes(1));
            t.call(M::POST, &format!("/api/accounts/{a}/workspace_roles/"), Some(&owner.key), Some(json!({"name": format!("r{i}"), "scopes": []}))).await;
        }
        let filter = json!({"limit": 3, "filter": {"event": {"prefix": ["prefect-cloud.workspace-role."]}}});
        let (s, page) = t.call(M::POST, &format!("/api/accounts/{a}/events/filter"), Some(&owner.key), Some(filter)).await;
        assert_eq!(s, S::OK, "{page}");
        assert_eq!(page["total"], 7);
        let mut names: Vec<String> = Vec::new();
        let mut page = page;
        loop {
            for e in page["events"].as_array().expect("events") {
                names.push(e["resource"]["prefect.resource.name"].as_str().expect("name").to_string());
            }
            let Some(next) = page["next_page"].as_str() else { break };
            let path = next.trim_start_matches(t.app.config.public_url.as_str()).to_string();
            let (s, p) = t.call(M::GET, &path, Some(&owner.key), None).await;
            assert_eq!(s, S::OK, "{p}");
            page = p;
        }
        assert_eq!(names, ["r6", "r5", "r4", "r3", "r2", "r1", "r0"], "newest first, each once");

        let (_, ws_page) = t.call(M::POST, &format!("/api/accounts/{a}/workspaces/{ws}/events/filter"), Some(&owner.key), Some(json!({}))).await;
        assert_eq!(ws_page["total"], 1, "only the workspace's own event: {ws_page}");
        let (_, by_event) = t.call(M::POST, &format!("/api/accounts/{a}/events/count-by/event"), Some(&owner.key), Some(json!({}))).await;
        let roles = by_event.as_array().expect("buckets").iter().find(|b| b["value"] == "prefect-cloud.workspace-role.created").expect("bucket");
        assert_eq!(roles["count"], 7);
        let (s, by_minute) = t.call(M::POST, &format!("/api/accounts/{a}/events/count-by/time"), Some(&owner.key), Some(json!({"time_unit": "minute", "filter": {"occurred": {"since": t.app.now() - chrono::Duration::hours(1), "until": t.app.now()}}}))).await;
        assert_eq!(s, S::OK);
        let total: i64 = by_minute.as_array().expect("buckets").iter().map(|b| b["count"].as_i64().expect("count")).sum();
        assert_eq!(total, 9, "account + workspace + 7 roles");
        let (s, _) = t.call(M::POST, &format!("/api/accounts/{a}/events/filter"), Some(&owner.key),
            Some(json!({"filter": {"occurred": {"since": "2020-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}}}))).await;
        assert_eq!(s, S::UNPROCESSABLE_ENTITY, "windows over 14 days are refused");
        let (s, _) = t.call(M::POST, &format!("/api/accounts/{a}/events/filter"), Some(&owner.key), Some(json!({"filter": {"bogus": 1}}))).await;
        assert_eq!(s, S::UNPROCESSABLE_ENTITY);
    })
    .await;
}

#[tokio::test]
async fn an_export_verifies_offline_with_the_public_key_and_a_tampered_one_does_not() {
    let t = TestApp::new(Db::Sqlite).await;
    let a = chain_of_ten(&t, "acme").await;
    let mut buf = Vec::new();
    audit_svc::export(&t.app, a, None, &mut buf)
        .await
        .expect("export");
    let text = String::from_utf8(buf).expect("utf8");
    let key_hex = audit_svc::public_key(&t.app).public_key;
    let key = atrium::domain::audit::parse_public_key(&key_hex).expect("key");
    assert_eq!(audit_svc::verify_export(&text, &key), Ok((1, 10)));
    let evil = text.replacen("\"w3\"", "\"w9\"", 1);
    assert_ne!(evil, text);
    assert!(audit_svc::verify_export(&evil, &key).is_err());
    let other = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]).verifying_key();
    audit_svc::checkpoint(&t.app, a).await.expect("checkpoint");
    let mut buf = Vec::new();
    audit_svc::export(&t.app, a, None, &mut buf)
        .await
        .expect("export");
    assert!(
        audit_svc::verify_export(&String::from_utf8(buf).expect("utf8"), &other).is_err(),
        "checkpoints signed by another key fail"
    );
}
