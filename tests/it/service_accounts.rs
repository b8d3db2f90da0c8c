//! Service accounts: keys shown once, authentication like user keys, workspace grants, rotation
//! with overlap, and immediate revocation on delete, key deletion and grant removal.

use crate::support::*;
use atrium::domain::plan::{EntitlementsPatch, PlanType};
use atrium::domain::role::{AccountRole, BuiltinWorkspaceRole};
use serde_json::json;

#[tokio::test]
async fn a_service_account_works_like_a_member_with_its_own_key_and_dies_with_it() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let a = t.account(&owner, "acme").await;
        let ws = t.workspace(a, &owner.key, "prod").await;
        let (s, bot) = t.call(M::POST, &format!("/api/accounts/{a}/bots/"), Some(&owner.key), Some(json!({"name": "ci"}))).await;
        assert_eq!(s, S::CREATED, "{bot}");
        let key = bot["api_key"]["key"].as_str().expect("key shown once").to_string();
        assert!(key.starts_with("pnb_") && key.len() == 40);
        let id = bot["id"].as_str().expect("id").to_string();
        let (_, read) = t.call(M::GET, &format!("/api/accounts/{a}/bots/{id}"), Some(&owner.key), None).await;
        assert!(read["api_key"].get("key").is_none() && read["api_key"]["masked_key"].is_string());
        assert_eq!(read["account_role_name"], "Member");

        // No grant yet: the bot is a member but sees no workspace.
        assert_eq!(t.call(M::GET, "/api/me/workspaces", Some(&key), None).await.1, json!([]));
        let (s, v) = t
            .call(M::POST, &format!("/api/accounts/{a}/workspaces/{ws}/bot_access/"), Some(&owner.key),
                Some(json!({"bot_id": id, "workspace_role_id": BuiltinWorkspaceRole::Runner.id()})))
            .await;
        assert_eq!(s, S::OK, "{v}");
        let grant = v[0]["id"].as_str().expect("grant").to_string();
        let (_, mine) = t.call(M::GET, "/api/me/workspaces", Some(&key), None).await;
        assert_eq!(mine[0]["workspace_handle"], "prod");
        assert_eq!(t.call(M::GET, &format!("/api/me/workspaces/{ws}/has_scope?scope=run_deployments"), Some(&key), None).await.1, json!(true));
        assert_eq!(t.call(M::GET, &format!("/api/me/workspaces/{ws}/has_scope?scope=manage_deployments"), Some(&key), None).await.1, json!(false));
        let (_, me) = t.call(M::GET, "/api/me/accounts", Some(&key), None).await;
        assert_eq!(me[0]["account_handle"], "acme");
        assert_eq!(t.call(M::GET, "/api/me", Some(&key), None).await.0, S::NOT_FOUND, "bots have no user profile");
        assert_eq!(t.call(M::GET, "/api/me/api_keys", Some(&key), None).await.0, S::NOT_FOUND);
        // Members see it among the account's memberships.
        let (_, bots) = t.call(M::POST, &format!("/api/accounts/{a}/account_memberships/filter"), Some(&owner.key), Some(json!({"only_bots": true}))).await;
        assert_eq!(bots[0]["handle"], "ci");
        // Another account does not exist for this key.
        let other = t.user("o@y.test").await;
        let b = t.account(&other, "beta").await;
        assert_eq!(t.call(M::GET, &format!("/api/accounts/{b}"), Some(&key), None).await.0, S::NOT_FOUND);
        // Removing the grant is seen at the next request.
        assert_eq!(t.call(M::DELETE, &format!("/api/accounts/{a}/workspaces/{ws}/bot_access/{grant}"), Some(&owner.key), None).await.0, S::NO_CONTENT);
        assert_eq!(t.call(M::GET, "/api/me/workspaces", Some(&key), None).await.1, json!([]));
        // The bot's actions are attributed to it.
        let (_, events) = t.call(M::POST, &format!("/api/accounts/{a}/events/filter"), Some(&owner.key),
            Some(json!({"filter": {"event": {"name": ["prefect-cloud.service-account.created"]}}}))).await;
        assert_eq!(events["total"], 1);
        // Deleting the bot kills its key at once.
        assert_eq!(t.call(M::GET, &format!("/api/accounts/{a}"), Some(&key), None).await.0, S::OK);
        assert_eq!(t.call(M::DELETE, &format!("/api/accounts/{a}/bots/{id}"), Some(&owner.key), None).await.0, S::NO_CONTENT);
        assert_eq!(t.call(M::GET, &format!("/api/accounts/{a}"), Some(&key), None).await.0, S::UNAUTHORIZED);
    })
    .await;
}

#[tokio::test]
async fn rotation_keeps_the_old_key_only_for_the_overlap_and_deleted_keys_die_at_once() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let a = t.account(&owner, "acme").await;
        let (_, bot) = t
            .call(
                M::POST,
                &format!("/api/accounts/{a}/bots/"),
                Some(&owner.key),
                Some(json!({"name": "ci"})),
            )
            .await;
        let id = bot["id"].as_str().expect("id").to_string();
        let k1 = bot["api_key"]["key"].as_str().expect("key").to_string();
        let probe = format!("/api/accounts/{a}");
        assert_eq!(t.call(M::GET, &probe, Some(&k1), None).await.0, S::OK);
        let rotate = format!("/api/accounts/{a}/bots/{id}/rotate_api_key");
        let (s, v) = t
            .call(
                M::POST,
                &rotate,
                Some(&owner.key),
                Some(json!({"old_key_expires_in_seconds": 3600})),
            )
            .await;
        assert_eq!(s, S::CREATED, "{v}");
        let k2 = v["api_key"]["key"].as_str().expect("new key").to_string();
        assert_eq!(
            t.call(M::GET, &probe, Some(&k1), None).await.0,
            S::OK,
            "old key inside the overlap"
        );
        assert_eq!(t.call(M::GET, &probe, Some(&k2), None).await.0, S::OK);
        let (_, keys) = t
            .call(
                M::GET,
                &format!("/api/accounts/{a}/bots/{id}/read_bot_api_keys"),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(keys["rotating_keys"].as_array().expect("rotating").len(), 1);
        assert!(keys["active_key"]["masked_key"].is_string());
        t.clock.advance(chrono::Duration::seconds(3601));
        assert_eq!(
            t.call(M::GET, &probe, Some(&k1), None).await.0,
            S::UNAUTHORIZED,
            "overlap over"
        );
        assert_eq!(t.call(M::GET, &probe, Some(&k2), None).await.0, S::OK);
        let (s, _) = t
            .call(
                M::POST,
                &rotate,
                Some(&owner.key),
                Some(json!({"old_key_expires_in_seconds": 172801})),
            )
            .await;
        assert_eq!(s, S::UNPROCESSABLE_ENTITY, "at most 48 hours");
        let (_, v) = t
            .call(M::POST, &rotate, Some(&owner.key), Some(json!({})))
            .await;
        let k3 = v["api_key"]["key"].as_str().expect("key").to_string();
        assert_eq!(
            t.call(M::GET, &probe, Some(&k2), None).await.0,
            S::UNAUTHORIZED,
            "no overlap: at once"
        );
        let key3_id = v["api_key"]["id"].as_str().expect("id").to_string();
        assert_eq!(
            t.call(
                M::DELETE,
                &format!("/api/accounts/{a}/bots/{id}/delete_bot_api_key/{key3_id}"),
                Some(&owner.key),
                None
            )
            .await
            .0,
            S::NO_CONTENT
        );
        assert_eq!(
            t.call(M::GET, &probe, Some(&k3), None).await.0,
            S::UNAUTHORIZED
        );
    })
    .await;
}

#[tokio::test]
async fn service_accounts_follow_the_plan_and_the_role_ceiling() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let admin = t.user("admin@x.test").await;
        let a = t.account(&owner, "acme").await;
        t.add_member(a, &owner, &admin, AccountRole::Admin).await;
        let path = format!("/api/accounts/{a}/bots/");
        let (s, _) = t
            .call(
                M::POST,
                &path,
                Some(&admin.key),
                Some(json!({"name": "boss", "account_role_id": AccountRole::Owner.id()})),
            )
            .await;
        assert_eq!(s, S::FORBIDDEN, "an Admin cannot create an Owner bot");
        let (s, _) = t
            .call(
                M::POST,
                &path,
                Some(&owner.key),
                Some(json!({"name": "dup"})),
            )
            .await;
        assert_eq!(s, S::CREATED);
        let (s, _) = t
            .call(
                M::POST,
                &path,
                Some(&owner.key),
                Some(json!({"name": "dup"})),
            )
            .await;
        assert_eq!(s, S::CONFLICT, "names are unique in the account");
        atrium::services::plans::set_plan(
            &t.app,
            &TestApp::principal(&owner),
            a,
            atrium::services::plans::SetPlan {
                plan_type: PlanType::Starter,
                overrides: EntitlementsPatch::default(),
            },
        )
        .await
        .expect("plan");
        let (s, v) = t
            .call(
                M::POST,
                &path,
                Some(&owner.key),
                Some(json!({"name": "new"})),
            )
            .await;
        assert_eq!(s, S::FORBIDDEN);
        assert!(v["detail"]
            .as_str()
            .expect("detail")
            .contains("service_accounts"));
    })
    .await;
}

#[tokio::test]
async fn a_stored_role_code_the_store_does_not_know_is_an_error_not_a_member() {
    each_db(|t| async move {
        let owner = t.user("owner@codes.test").await;
        let a = t.account(&owner, "codes").await;
        let (s, bot) = t
            .call(
                M::POST,
                &format!("/api/accounts/{a}/bots/"),
                Some(&owner.key),
                Some(json!({"name": "ci"})),
            )
            .await;
        assert_eq!(s, S::CREATED, "{bot}");
        let (s, inv) = t
            .call(
                M::POST,
                &format!("/api/accounts/{a}/invitations/"),
                Some(&owner.key),
                Some(json!({"email": "new@codes.test"})),
            )
            .await;
        assert_eq!(s, S::CREATED, "{inv}");
        // A code this release does not know (as a newer release could write during a rolling
        // upgrade): the schema's CHECK is set aside to write it.
        let mut c = t.app.store.reader().await.expect("conn");
        if t.db == Db::Sqlite {
            sqlx::query("PRAGMA ignore_check_constraints = ON")
                .execute(&mut *c)
                .await
                .expect("pragma");
        } else {
            for table in ["bots", "invitations"] {
                sqlx::query(&format!(
                    "ALTER TABLE {table} DROP CONSTRAINT {table}_account_role_check"
                ))
                .execute(&mut *c)
                .await
                .expect("drop the check");
            }
        }
        for (table, id) in [
            ("bots", bot["id"].as_str().expect("id")),
            ("invitations", inv[0]["id"].as_str().expect("id")),
        ] {
            sqlx::query(&format!(
                "UPDATE {table} SET account_role = 'superuser' WHERE id = $1"
            ))
            .bind(id)
            .execute(&mut *c)
            .await
            .expect("corrupt the row");
        }
        let bot_id = uuid::Uuid::parse_str(bot["id"].as_str().expect("id")).expect("uuid");
        let e = atrium::store::service_accounts::find_bot(
            &mut c,
            a,
            atrium::domain::ServiceAccountId(bot_id),
        )
        .await
        .expect_err("an unknown code");
        assert!(
            e.to_string().contains("unknown account role \"superuser\""),
            "{e}"
        );
        let inv_id = uuid::Uuid::parse_str(inv[0]["id"].as_str().expect("id")).expect("uuid");
        let e = atrium::store::invitations::find_invitation(&mut c, a, inv_id)
            .await
            .expect_err("an unknown code");
        assert!(
            e.to_string().contains("unknown account role \"superuser\""),
            "{e}"
        );
    })
    .await;
}
