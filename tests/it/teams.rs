//! Teams: a team's grant counts for every member until the grant, the membership or the team goes;
//! time-bound memberships; explanations agree with the engine on random access graphs.

use crate::support::*;
use atrium::authz::{AccountSnapshot, SnapshotRows};
use atrium::domain::plan::{FeatureSet, PlanType};
use atrium::domain::role::{AccountRole, BuiltinWorkspaceRole};
use atrium::domain::scope::Scope;
use atrium::domain::{RoleId, UserId, WorkspaceId};
use serde_json::json;

#[tokio::test]
async fn a_team_grant_reaches_its_members_and_each_removal_revokes_at_once() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let dev = t.user("dev@x.test").await;
        let a = t.account(&owner, "acme").await;
        t.add_member(a, &owner, &dev, AccountRole::Member).await;
        let ws = t.workspace(a, &owner.key, "prod").await;
        let (_, bot) = t.call(M::POST, &format!("/api/accounts/{a}/bots/"), Some(&owner.key), Some(json!({"name": "ci"}))).await;
        let bot_key = bot["api_key"]["key"].as_str().expect("key").to_string();
        let (s, team) = t.call(M::POST, &format!("/api/accounts/{a}/teams/"), Some(&owner.key), Some(json!({"name": "platform", "description": "SRE"}))).await;
        assert_eq!(s, S::CREATED, "{team}");
        let tid = team["id"].as_str().expect("id").to_string();
        let (s, v) = t
            .call(M::PUT, &format!("/api/accounts/{a}/teams/{tid}/members"), Some(&owner.key),
                Some(json!({"members": [{"member_id": dev.id, "member_type": "user"}, {"member_id": bot["id"], "member_type": "service_account"}]})))
            .await;
        assert_eq!(s, S::OK, "{v}");
        assert_eq!(v["memberships"].as_array().expect("members").len(), 2);
        let (s, _) = t
            .call(M::PUT, &format!("/api/accounts/{a}/teams/{tid}/members"), Some(&owner.key),
                Some(json!({"members": [{"member_id": uuid::Uuid::new_v4(), "member_type": "user"}]})))
            .await;
        assert_eq!(s, S::NOT_FOUND, "only account members join teams");
        let probe = format!("/api/me/workspaces/{ws}/has_scope?scope=write_deployments");
        let can = |key: String| {
            let (t, probe) = (&t, probe.clone());
            async move { t.call(M::GET, &probe, Some(&key), None).await }
        };
        assert_eq!(can(dev.key.clone()).await.0, S::NOT_FOUND, "no access before the team grant");
        let (s, v) = t
            .call(M::PUT, &format!("/api/accounts/{a}/workspaces/{ws}/team_access/"), Some(&owner.key),
                Some(json!([{"team_id": tid, "workspace_role_id": BuiltinWorkspaceRole::Developer.id()}])))
            .await;
        assert_eq!(s, S::OK, "{v}");
        assert_eq!(can(dev.key.clone()).await.1, json!(true));
        assert_eq!(can(bot_key.clone()).await.1, json!(true));
        let (_, team_view) = t.call(M::GET, &format!("/api/accounts/{a}/teams/{tid}"), Some(&owner.key), None).await;
        assert_eq!(team_view["workspaces"][0]["workspace_role_name"], "Developer");

        // Explain names the team path.
        let (s, e) = t.call(M::GET, &format!("/api/accounts/{a}/workspaces/{ws}/explain?actor_id={}&scope=write_deployments", dev.id), Some(&owner.key), None).await;
        assert_eq!(s, S::OK, "{e}");
        assert_eq!(e["granted"], true);
        assert_eq!(e["paths"][0]["kind"], "team");
        assert_eq!(e["paths"][0]["team_name"], "platform");
        let (_, access) = t.call(M::GET, &format!("/api/accounts/{a}/workspaces/{ws}/access"), Some(&owner.key), None).await;
        assert!(access.as_array().expect("list").iter().any(|x| x["type"] == "team" && x["name"] == "platform"), "{access}");

        // Removing the member revokes at once; the bot keeps access through the team.
        assert_eq!(t.call(M::DELETE, &format!("/api/accounts/{a}/teams/{tid}/members/{}", dev.id), Some(&owner.key), None).await.0, S::NO_CONTENT);
        assert_eq!(can(dev.key.clone()).await.0, S::NOT_FOUND);
        assert_eq!(can(bot_key.clone()).await.1, json!(true));
        // Removing the grant revokes for the rest.
        assert_eq!(t.call(M::DELETE, &format!("/api/accounts/{a}/workspaces/{ws}/team_access/{tid}"), Some(&owner.key), None).await.0, S::NO_CONTENT);
        assert_eq!(can(bot_key.clone()).await.0, S::NOT_FOUND);
        // And deleting the team: re-grant, then delete the team.
        t.call(M::PUT, &format!("/api/accounts/{a}/workspaces/{ws}/team_access/"), Some(&owner.key),
            Some(json!({"team_id": tid, "workspace_role_id": BuiltinWorkspaceRole::Viewer.id()}))).await;
        assert_eq!(t.call(M::GET, &format!("/api/me/workspaces/{ws}/has_scope?scope=see_flows"), Some(&bot_key), None).await.1, json!(true));
        assert_eq!(t.call(M::DELETE, &format!("/api/accounts/{a}/teams/{tid}"), Some(&owner.key), None).await.0, S::NO_CONTENT);
        assert_eq!(t.call(M::GET, &format!("/api/me/workspaces/{ws}/has_scope?scope=see_flows"), Some(&bot_key), None).await.0, S::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn a_time_bound_team_membership_stops_counting_at_its_instant_and_is_swept_later() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let dev = t.user("dev@x.test").await;
        let a = t.account(&owner, "acme").await;
        t.add_member(a, &owner, &dev, AccountRole::Member).await;
        let ws = t.workspace(a, &owner.key, "prod").await;
        let (_, team) = t.call(M::POST, &format!("/api/accounts/{a}/teams/"), Some(&owner.key), Some(json!({"name": "oncall"}))).await;
        let tid = team["id"].as_str().expect("id").to_string();
        let until = t.app.now() + chrono::Duration::hours(8);
        t.call(M::PUT, &format!("/api/accounts/{a}/teams/{tid}/members"), Some(&owner.key),
            Some(json!({"members": [{"member_id": dev.id, "member_type": "user", "expires_at": until}]}))).await;
        t.call(M::PUT, &format!("/api/accounts/{a}/workspaces/{ws}/team_access/"), Some(&owner.key),
            Some(json!({"team_id": tid, "workspace_role_id": BuiltinWorkspaceRole::Runner.id()}))).await;
        let probe = format!("/api/me/workspaces/{ws}/has_scope?scope=run_deployments");
        assert_eq!(t.call(M::GET, &probe, Some(&dev.key), None).await.1, json!(true));
        let (_, e) = t.call(M::GET, &format!("/api/accounts/{a}/workspaces/{ws}/explain?actor_id={}&scope=run_deployments", dev.id), Some(&owner.key), None).await;
        assert!(e["paths"][0]["expires_at"].is_string(), "the expiry is shown: {e}");
        t.clock.advance(chrono::Duration::hours(8));
        assert_eq!(t.call(M::GET, &probe, Some(&dev.key), None).await.0, S::NOT_FOUND, "no job needed");
        assert_eq!(atrium::services::grants::sweep_expired(&t.app).await.expect("sweep"), 1);
        let (_, team) = t.call(M::GET, &format!("/api/accounts/{a}/teams/{tid}"), Some(&owner.key), None).await;
        assert_eq!(team["memberships"], json!([]));
        assert_eq!(atrium::services::grants::sweep_expired(&t.app).await.expect("sweep"), 0);
    })
    .await;
}

/// A tiny deterministic generator for the property test.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn expiry(&mut self) -> Option<i64> {
        match self.below(3) {
            0 => None,
            1 => Some(50),
            _ => Some(500),
        }
    }
}

#[test]
fn explain_agrees_with_the_check_on_random_access_graphs() {
    let roles: Vec<(RoleId, atrium::domain::scope::ScopeSet)> = BuiltinWorkspaceRole::ALL
        .iter()
        .map(|r| (RoleId(r.id()), r.scopes()))
        .collect();
    let mut rng = Rng(0xDEAD_BEEF_CAFE_F00D);
    for round in 0..200 {
        let users: Vec<UserId> = (0..6).map(|_| UserId::new()).collect();
        let wss: Vec<WorkspaceId> = (0..3).map(|_| WorkspaceId::new()).collect();
        let teams: Vec<uuid::Uuid> = (0..3).map(|_| uuid::Uuid::new_v4()).collect();
        let account_roles = [
            AccountRole::Member,
            AccountRole::Member,
            AccountRole::Member,
            AccountRole::Admin,
        ];
        let snap = AccountSnapshot::build(SnapshotRows {
            acls: vec![],
            db_version: 0,
            plan: PlanType::Enterprise,
            features: FeatureSet::all(),
            members: users
                .iter()
                .map(|u| (*u, account_roles[rng.below(4) as usize], rng.below(5) != 0))
                .collect(),
            workspaces: wss
                .iter()
                .map(|w| {
                    (
                        *w,
                        (rng.below(3) == 0).then(|| roles[rng.below(5) as usize]),
                    )
                })
                .collect(),
            grants: (0..6)
                .map(|_| {
                    let (id, s) = roles[rng.below(5) as usize];
                    (
                        wss[rng.below(3) as usize],
                        users[rng.below(6) as usize],
                        id,
                        s,
                        rng.expiry(),
                    )
                })
                .collect(),
            team_members: (0..6)
                .map(|_| {
                    (
                        users[rng.below(6) as usize].0,
                        teams[rng.below(3) as usize],
                        rng.expiry(),
                    )
                })
                .collect(),
            team_grants: (0..4)
                .map(|_| {
                    let (id, s) = roles[rng.below(5) as usize];
                    (
                        wss[rng.below(3) as usize],
                        teams[rng.below(3) as usize],
                        id,
                        s,
                        rng.expiry(),
                    )
                })
                .collect(),
        });
        for now in [0i64, 100, 1000] {
            for u in &users {
                for w in &wss {
                    let checked = snap.workspace_scopes(&u.0, &w.0, now);
                    let explained = snap.explain(&u.0, &w.0, now);
                    assert_eq!(checked.is_some(), explained.is_some(), "round {round}");
                    let (Some(set), Some(paths)) = (checked, explained) else {
                        continue;
                    };
                    for s in Scope::ALL {
                        let by_paths = paths.iter().any(|p| p.scopes.contains(*s));
                        assert_eq!(
                            set.contains(*s),
                            by_paths,
                            "round {round}: {} at {now}",
                            s.name()
                        );
                    }
                }
            }
        }
    }
}

#[tokio::test]
async fn what_if_reports_who_would_gain_or_lose_what_and_changes_nothing() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let dev = t.user("dev@x.test").await;
        let ops = t.user("ops@x.test").await;
        let a = t.account(&owner, "acme").await;
        t.add_member(a, &owner, &dev, AccountRole::Member).await;
        t.add_member(a, &owner, &ops, AccountRole::Member).await;
        let ws = t.workspace(a, &owner.key, "prod").await;
        let (_, team) = t.call(M::POST, &format!("/api/accounts/{a}/teams/"), Some(&owner.key), Some(json!({"name": "platform"}))).await;
        let tid = team["id"].as_str().expect("id").to_string();
        t.call(M::PUT, &format!("/api/accounts/{a}/teams/{tid}/members"), Some(&owner.key),
            Some(json!({"members": [{"member_id": dev.id, "member_type": "user"}, {"member_id": ops.id, "member_type": "user"}]}))).await;
        t.call(M::PUT, &format!("/api/accounts/{a}/workspaces/{ws}/team_access/"), Some(&owner.key),
            Some(json!({"team_id": tid, "workspace_role_id": BuiltinWorkspaceRole::Developer.id()}))).await;
        t.call(M::POST, &format!("/api/accounts/{a}/workspaces/{ws}/user_access/"), Some(&owner.key),
            Some(json!({"user_id": ops.id, "workspace_role_id": BuiltinWorkspaceRole::Viewer.id()}))).await;
        let path = format!("/api/accounts/{a}/access/what_if");

        let (s, v) = t.call(M::POST, &path, Some(&owner.key), Some(json!({"change": "remove_team_member", "team_id": tid, "member_id": dev.id}))).await;
        assert_eq!(s, S::OK, "{v}");
        let changes = v["changes"].as_array().expect("changes");
        assert_eq!(changes.len(), 1, "{v}");
        assert_eq!(changes[0]["principal_id"], json!(dev.id));
        let lost: Vec<&str> = changes[0]["lost"].as_array().expect("lost").iter().filter_map(|x| x.as_str()).collect();
        assert!(lost.contains(&"see_flows") && lost.contains(&"manage_deployments"), "{lost:?}");

        let (_, v) = t.call(M::POST, &path, Some(&owner.key),
            Some(json!({"change": "change_grant_role", "workspace_id": ws, "subject_id": tid, "workspace_role_id": BuiltinWorkspaceRole::Runner.id()}))).await;
        let changes = v["changes"].as_array().expect("changes");
        assert_eq!(changes.len(), 2, "both team members lose Developer-only scopes: {v}");
        for c in changes {
            let lost: Vec<&str> = c["lost"].as_array().expect("lost").iter().filter_map(|x| x.as_str()).collect();
            assert!(lost.contains(&"manage_deployments") && !lost.contains(&"run_deployments"), "{lost:?}");
        }

        let (_, v) = t.call(M::POST, &path, Some(&owner.key), Some(json!({"change": "deactivate_member", "member_id": ops.id}))).await;
        assert_eq!(v["changes"][0]["principal_id"], json!(ops.id));
        assert_eq!(v["changes"][0]["gained"], json!([]));

        let (s, _) = t.call(M::POST, &path, Some(&owner.key), Some(json!({"change": "delete_role", "role_id": uuid::Uuid::new_v4()}))).await;
        assert_eq!(s, S::OK, "deleting an unused role changes nothing");
        let (s, _) = t.call(M::POST, &path, Some(&owner.key), Some(json!({"change": "teleport"}))).await;
        assert_eq!(s, S::UNPROCESSABLE_ENTITY);
        // Nothing was applied.
        assert_eq!(t.call(M::GET, &format!("/api/me/workspaces/{ws}/has_scope?scope=write_deployments"), Some(&dev.key), None).await.1, json!(true));
        assert_eq!(t.call(M::GET, &format!("/api/accounts/{a}"), Some(&ops.key), None).await.0, S::OK);
    })
    .await;
}

#[tokio::test]
async fn teams_are_found_by_name_member_workspace_role_user_email_and_bot_name() {
    each_db(|t| async move {
        let owner = t.user("owner@x.test").await;
        let dev = t.user("dev@x.test").await;
        let a = t.account(&owner, "acme").await;
        t.add_member(a, &owner, &dev, AccountRole::Member).await;
        let ws = t.workspace(a, &owner.key, "prod").await;
        let (_, bot) = t.call(M::POST, &format!("/api/accounts/{a}/bots/"), Some(&owner.key), Some(json!({"name": "ci"}))).await;
        let mut ids = Vec::new();
        for name in ["alpha", "beta", "gamma"] {
            let (_, team) = t.call(M::POST, &format!("/api/accounts/{a}/teams/"), Some(&owner.key), Some(json!({"name": name}))).await;
            ids.push(team["id"].as_str().expect("id").to_string());
        }
        t.call(M::PUT, &format!("/api/accounts/{a}/teams/{}/members", ids[0]), Some(&owner.key), Some(json!({"members": [{"member_id": dev.id, "member_type": "user"}]}))).await;
        t.call(M::PUT, &format!("/api/accounts/{a}/teams/{}/members", ids[1]), Some(&owner.key), Some(json!({"members": [{"member_id": bot["id"], "member_type": "service_account"}]}))).await;
        t.call(M::PUT, &format!("/api/accounts/{a}/workspaces/{ws}/team_access/"), Some(&owner.key),
            Some(json!({"team_id": ids[2], "workspace_role_id": BuiltinWorkspaceRole::Runner.id()}))).await;
        let path = format!("/api/accounts/{a}/teams/filter");
        let key = owner.key.clone();
        assert_eq!(team_names(&t, &path, &key, json!({})).await, ["alpha", "beta", "gamma"]);
        assert_eq!(team_names(&t, &path, &key, json!({"teams": {"name": {"any_": ["beta"]}}})).await, ["beta"]);
        assert_eq!(team_names(&t, &path, &key, json!({"users": {"email": {"any_": ["DEV@x.test"]}}})).await, ["alpha"]);
        assert_eq!(team_names(&t, &path, &key, json!({"bots": {"name": {"any_": ["ci"]}}})).await, ["beta"]);
        assert_eq!(team_names(&t, &path, &key, json!({"teams": {"workspace_id": {"any_": [ws]}}})).await, ["gamma"]);
        assert_eq!(team_names(&t, &path, &key, json!({"teams": {"workspace_role_id": {"any_": [BuiltinWorkspaceRole::Viewer.id()]}}})).await, Vec::<String>::new());
        assert_eq!(team_names(&t, &path, &key, json!({"teams": {"member_id": {"any_": [dev.id]}}, "bots": {"name": {"any_": ["ci"]}}})).await, Vec::<String>::new(), "filters combine");
    })
    .await;
}

async fn team_names(t: &TestApp, path: &str, key: &str, body: serde_json::Value) -> Vec<String> {
    let (s, v) = t.call(M::POST, path, Some(key), Some(body)).await;
    assert_eq!(s, S::OK, "{v}");
    v.as_array()
        .expect("list")
        .iter()
        .map(|x| x["name"].as_str().expect("name").to_string())
        .collect()
}
