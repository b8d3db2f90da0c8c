//! Plans: entitlements on the account object, feature gates, seat and workspace limits (also under
//! concurrency), site-admin plan changes, configuration overrides.

use crate::support::*;
use atrium::domain::plan::{EntitlementsPatch, PlanType};
use atrium::domain::role::{AccountRole, BuiltinWorkspaceRole};
use atrium::services::plans::{set_plan, SetPlan};
use serde_json::json;
use std::sync::Arc;

pub(crate) async fn plan(
    t: &TestApp,
    owner: &TestUser,
    account: atrium::domain::AccountId,
    plan: PlanType,
    overrides: EntitlementsPatch,
) {
    set_plan(
        &t.app,
        &TestApp::principal(owner),
        account,
        SetPlan {
            plan_type: plan,
            overrides,
        },
    )
    .await
    .expect("set plan");
}

#[tokio::test]
async fn a_starter_account_is_refused_enterprise_features_with_a_named_reason() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let m = t.user("m@x.test").await;
        let a = t.account(&owner, "acme").await;
        t.add_member(a, &owner, &m, AccountRole::Member).await;
        let ws = t.workspace(a, &owner.key, "prod").await;
        let (_, acct) = t
            .call(
                M::GET,
                &format!("/api/accounts/{a}"),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(acct["plan_type"], "enterprise", "the default plan");
        plan(
            &t,
            &owner,
            a,
            PlanType::Starter,
            EntitlementsPatch::default(),
        )
        .await;
        let (_, acct) = t
            .call(
                M::GET,
                &format!("/api/accounts/{a}"),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(
            (acct["plan_type"].as_str(), acct["features"].clone()),
            (Some("starter"), json!([]))
        );
        assert_eq!(acct["run_retention_days"], 7);

        let refused = [
            (
                M::POST,
                format!("/api/accounts/{a}/events/filter"),
                json!({}),
                "audit_log",
            ),
            (
                M::POST,
                format!("/api/accounts/{a}/workspace_roles/"),
                json!({"name": "R", "scopes": []}),
                "custom_roles",
            ),
            (
                M::POST,
                format!("/api/accounts/{a}/workspaces/{ws}/user_access/"),
                json!({"user_id": m.id, "workspace_role_id": BuiltinWorkspaceRole::Viewer.id()}),
                "workspace_rbac",
            ),
        ];
        for (method, path, body, feature) in refused {
            let (s, v) = t
                .call(method.clone(), &path, Some(&owner.key), Some(body))
                .await;
            assert_eq!(s, S::FORBIDDEN, "{method} {path}: {v}");
            let detail = v["detail"].as_str().expect("detail");
            assert!(
                detail.contains(feature) && detail.contains("Starter"),
                "{detail}"
            );
        }
        // Starter allows one workspace; the second is refused and nothing is written.
        let (s, v) = t
            .call(
                M::POST,
                &format!("/api/accounts/{a}/workspaces/"),
                Some(&owner.key),
                Some(json!({"name": "Dev", "handle": "dev"})),
            )
            .await;
        assert_eq!(s, S::CONFLICT, "{v}");
        assert!(v["detail"]
            .as_str()
            .expect("detail")
            .contains("1 workspace"));
        let (_, n) = t
            .call(
                M::POST,
                &format!("/api/accounts/{a}/workspaces/count"),
                Some(&owner.key),
                Some(json!({})),
            )
            .await;
        assert_eq!(n, 1);
        let (_, limits) = t
            .call(
                M::GET,
                &format!("/api/accounts/{a}/usage_limits"),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(limits["user_limit"], 3);
        assert_eq!(limits["free_user_slots"], 1, "two members of three seats");
        assert_eq!(limits["orchestration_rate_limit"], 1250);
        let (s, usage) = t
            .call(
                M::GET,
                &format!("/api/accounts/{a}/usage"),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(s, S::OK);
        assert_eq!(usage[0]["name"], "prod");
        // Upgrading lifts the gates at the next request.
        plan(&t, &owner, a, PlanType::Pro, EntitlementsPatch::default()).await;
        let (s, _) = t
            .call(
                M::POST,
                &format!("/api/accounts/{a}/events/filter"),
                Some(&owner.key),
                Some(json!({})),
            )
            .await;
        assert_eq!(s, S::OK);
        let (s, _) = t
            .call(
                M::POST,
                &format!("/api/accounts/{a}/workspace_roles/"),
                Some(&owner.key),
                Some(json!({"name": "R", "scopes": []})),
            )
            .await;
        assert_eq!(s, S::FORBIDDEN, "custom roles stay Enterprise-only");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_additions_competing_for_one_free_seat_admit_exactly_one() {
    each_db(|t| async move {
        let t = Arc::new(t);
        let owner = t.user("owner@x.test").await;
        let a = t.account(&owner, "acme").await;
        plan(
            &t,
            &owner,
            a,
            PlanType::Pro,
            EntitlementsPatch {
                user_limit: Some(Some(2)),
                ..Default::default()
            },
        )
        .await;
        let mut candidates = Vec::new();
        for i in 0..32 {
            candidates.push(t.user(&format!("c{i}@x.test")).await);
        }
        let barrier = Arc::new(tokio::sync::Barrier::new(32));
        let mut tasks = Vec::new();
        for c in candidates {
            let (t, owner, barrier) = (t.clone(), owner.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                atrium::services::memberships::add_member(
                    &t.app,
                    &TestApp::principal(&owner),
                    a,
                    c.id,
                    AccountRole::Member,
                )
                .await
            }));
        }
        let mut ok = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(_) => ok += 1,
                Err(atrium::services::Error::Conflict(m)) => assert!(m.contains("seat"), "{m}"),
                Err(e) => panic!("{:?}: unexpected {e:?}", t.db),
            }
        }
        assert_eq!(
            ok, 1,
            "{:?}: exactly one candidate gets the free seat",
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
async fn only_site_admins_set_plans_and_overrides_are_validated() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let a = t.account(&owner, "acme").await;
        let path = format!("/api/admin/accounts/{a}/plan");
        let (s, _) = t.call(M::PUT, &path, Some(&owner.key), Some(json!({"plan_type": "hobby"}))).await;
        assert_eq!(s, S::NOT_FOUND, "an account Owner is not a site admin");
        let admin = t.site_admin("root@x.test").await;
        let (s, v) = t
            .call(M::PUT, &path, Some(&admin.key), Some(json!({"plan_type": "enterprise", "overrides": {"user_limit": 50, "api_rate_limit": 12345}})))
            .await;
        assert_eq!(s, S::OK, "{v}");
        assert_eq!((v["user_limit"].clone(), v["api_rate_limit"].clone()), (json!(50), json!(12345)));
        for bad in [json!({"plan_type": "platinum"}), json!({"plan_type": "pro", "overrides": {"features": ["warp"]}}), json!({"plan_type": "pro", "seats": 1})] {
            let (s, v) = t.call(M::PUT, &path, Some(&admin.key), Some(bad.clone())).await;
            assert_eq!(s, S::UNPROCESSABLE_ENTITY, "{bad}: {v}");
        }
        let (_, v) = t.call(M::GET, &format!("/api/accounts/{a}/plan"), Some(&owner.key), None).await;
        assert_eq!(v["user_limit"], 50, "refused changes left the plan as it was");
    })
    .await;
}

#[tokio::test]
async fn the_configuration_file_can_change_a_plan_for_every_account_on_it() {
    let t = TestApp::new(Db::Sqlite)
        .await
        .reconfigured(|c| {
            c.default_plan = PlanType::Team;
            c.plans.insert(
                PlanType::Team,
                EntitlementsPatch {
                    workspace_limit: Some(Some(5)),
                    ..Default::default()
                },
            );
        })
        .await;
    let owner = t.user("owner@x.test").await;
    let a = t.account(&owner, "acme").await;
    let (_, v) = t
        .call(
            M::GET,
            &format!("/api/accounts/{a}/plan"),
            Some(&owner.key),
            None,
        )
        .await;
    assert_eq!(
        (
            v["plan_type"].clone(),
            v["workspace_limit"].clone(),
            v["user_limit"].clone()
        ),
        (json!("team"), json!(5), json!(8))
    );
}
