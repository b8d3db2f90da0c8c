//! Invariants under many concurrent writers, on both databases.

use crate::support::*;
use atrium::domain::role::AccountRole;
use serde_json::json;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_demotions_and_removals_never_leave_an_account_without_an_owner() {
    each_db(|t| async move {
        let t = Arc::new(t);
        for round in 0..3 {
            let o1 = t.user(&format!("o1-{round}@x.test")).await;
            let o2 = t.user(&format!("o2-{round}@x.test")).await;
            let a = t.account(&o1, &format!("acme-{round}")).await;
            let m2 = t.add_member(a, &o1, &o2, AccountRole::Owner).await;
            let (_, v) = t
                .call(
                    M::GET,
                    &format!("/api/accounts/{a}/account_memberships/by-user/{}", o1.id),
                    Some(&o1.key),
                    None,
                )
                .await;
            let m1 = v["id"].as_str().expect("id").to_string();
            let targets = [m1, m2.to_string()];
            let barrier = Arc::new(tokio::sync::Barrier::new(32));
            let mut tasks = Vec::new();
            for i in 0..32 {
                let t = t.clone();
                let barrier = barrier.clone();
                // Each Owner attacks the other Owner's membership and their own, by demotion or removal.
                let key = if i % 2 == 0 {
                    o1.key.clone()
                } else {
                    o2.key.clone()
                };
                let target = targets[(i / 2) % 2].clone();
                let demote = i % 4 < 2;
                tasks.push(tokio::spawn(async move {
                    barrier.wait().await;
                    let path = format!("/api/accounts/{a}/account_memberships/{target}");
                    if demote {
                        t.call(
                            M::PATCH,
                            &path,
                            Some(&key),
                            Some(json!({"account_role_id": AccountRole::Member.id()})),
                        )
                        .await
                        .0
                    } else {
                        t.call(M::DELETE, &path, Some(&key), None).await.0
                    }
                }));
            }
            let mut statuses = Vec::new();
            for task in tasks {
                statuses.push(task.await.expect("task").as_u16());
            }
            assert!(
                statuses.iter().all(|s| [204, 403, 404, 409].contains(s)),
                "{:?} unexpected statuses: {statuses:?}",
                t.db
            );
            assert!(
                statuses.contains(&409),
                "{:?}: some attempt must have hit the last-owner rule: {statuses:?}",
                t.db
            );
            let mut c = t.app.store.reader().await.expect("conn");
            let owners = atrium::store::memberships::count_active_owners(&mut c, a)
                .await
                .expect("count");
            assert!(
                owners >= 1,
                "{:?} round {round}: the account was left with {owners} owners ({statuses:?})",
                t.db
            );
        }
    })
    .await;
}
