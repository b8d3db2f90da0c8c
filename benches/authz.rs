//! The workspace-scope check on 10k users / 1k workspaces / 100k grants / 20 custom roles / 1,000
//! teams of 5 with 2,000 team grants (a fifth of all grants time-bound), with ids as strings (as a
//! request carries them), side by side in one run with:
//! - casbin-rs (RBAC with domains, default `Enforcer`), same users, roles, grants and scopes;
//! - a bare string-keyed hash index (user → workspace → scope bits), the floor for any engine.
//!
//! Run: `cargo bench --bench authz`. Results go in BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed step here should fail loudly
#![allow(clippy::disallowed_types)] // it measures the permission index itself

use atrium::authz::{custom_role_scopes, AccountSnapshot, Index, SnapshotRows};
use atrium::domain::role::{AccountRole, BuiltinWorkspaceRole};
use atrium::domain::scope::{Scope, ScopeSet};
use atrium::domain::{AccountId, RoleId, UserId, WorkspaceId};
use casbin::prelude::*;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::collections::HashMap;

const USERS: usize = 10_000;
const WORKSPACES: usize = 1_000;
const GRANTS: usize = 100_000;
const CUSTOM_ROLES: usize = 20;
const TEAMS: usize = 1_000;
const TEAM_GRANTS: usize = 2_000;
const FAR_FUTURE_US: i64 = i64::MAX / 2;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Data {
    account: AccountId,
    users: Vec<UserId>,
    workspaces: Vec<WorkspaceId>,
    roles: Vec<(RoleId, ScopeSet)>,
    /// (user index, workspace index, role index)
    grants: Vec<(usize, usize, usize)>,
    /// Team members (team index, user index) and team grants (team, workspace, role); every
    /// fifth direct and team grant carries a (far-future) expiry, so expiry is checked.
    team_members: Vec<(usize, usize)>,
    team_grants: Vec<(usize, usize, usize)>,
    /// (account, user, workspace, scope) strings for the checks
    queries: Vec<(String, String, String, Scope)>,
}

fn data() -> Data {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let users: Vec<UserId> = (0..USERS).map(|_| UserId::new()).collect();
    let workspaces: Vec<WorkspaceId> = (0..WORKSPACES).map(|_| WorkspaceId::new()).collect();
    let mut roles: Vec<(RoleId, ScopeSet)> = BuiltinWorkspaceRole::ALL
        .iter()
        .map(|r| (RoleId(r.id()), r.scopes()))
        .collect();
    for _ in 0..CUSTOM_ROLES {
        let own: ScopeSet = (0..6)
            .map(|_| Scope::ALL[rng.below(Scope::ALL.len())])
            .collect();
        let inherit = BuiltinWorkspaceRole::ALL[rng.below(5)];
        roles.push((
            RoleId::new(),
            custom_role_scopes(own, Some(RoleId(inherit.id()))),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    let mut grants = Vec::with_capacity(GRANTS);
    while grants.len() < GRANTS {
        let (u, w) = (rng.below(USERS), rng.below(WORKSPACES));
        if seen.insert((u, w)) {
            grants.push((u, w, rng.below(roles.len())));
        }
    }
    let team_members: Vec<(usize, usize)> = (0..TEAMS)
        .flat_map(|t| (0..5).map(move |i| (t, i)))
        .map(|(t, _)| (t, rng.below(USERS)))
        .collect();
    let team_grants: Vec<(usize, usize, usize)> = (0..TEAM_GRANTS)
        .map(|_| {
            (
                rng.below(TEAMS),
                rng.below(WORKSPACES),
                rng.below(roles.len()),
            )
        })
        .collect();
    let account = AccountId::new();
    let queries = (0..4096)
        .map(|i| {
            // Half the queries hit a granted (user, workspace) pair, half a random one.
            let (u, w) = if i % 2 == 0 {
                let g = grants[rng.below(grants.len())];
                (g.0, g.1)
            } else {
                (rng.below(USERS), rng.below(WORKSPACES))
            };
            let s = Scope::ALL[rng.below(Scope::ALL.len())];
            (
                account.to_string(),
                users[u].to_string(),
                workspaces[w].to_string(),
                s,
            )
        })
        .collect();
    Data {
        account,
        users,
        workspaces,
        roles,
        grants,
        team_members,
        team_grants,
        queries,
    }
}

fn team_id(t: usize) -> uuid::Uuid {
    uuid::Uuid::from_u128(0xABCD_0000_0000_4000_8000_0000_0000_0000 | t as u128)
}

/// Every (user, workspace, role) a team gives, flattened for the peers that have no teams.
fn team_expanded(d: &Data) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    for (t, w, r) in &d.team_grants {
        for (mt, u) in &d.team_members {
            if mt == t {
                out.push((*u, *w, *r));
            }
        }
    }
    out
}

fn atrium_index(d: &Data) -> Index {
    let index = Index::new();
    let rows = SnapshotRows {
        acls: vec![],
        db_version: 0,
        plan: atrium::domain::plan::PlanType::Enterprise,
        features: atrium::domain::plan::FeatureSet::all(),
        members: d
            .users
            .iter()
            .map(|u| (*u, AccountRole::Member, true))
            .collect(),
        workspaces: d.workspaces.iter().map(|w| (*w, None)).collect(),
        grants: d
            .grants
            .iter()
            .enumerate()
            .map(|(i, (u, w, r))| {
                (
                    d.workspaces[*w],
                    d.users[*u],
                    d.roles[*r].0,
                    d.roles[*r].1,
                    (i % 5 == 0).then_some(FAR_FUTURE_US),
                )
            })
            .collect(),
        team_members: d
            .team_members
            .iter()
            .map(|(t, u)| (d.users[*u].0, team_id(*t), None))
            .collect(),
        team_grants: d
            .team_grants
            .iter()
            .enumerate()
            .map(|(i, (t, w, r))| {
                (
                    d.workspaces[*w],
                    team_id(*t),
                    d.roles[*r].0,
                    d.roles[*r].1,
                    (i % 5 == 0).then_some(FAR_FUTURE_US),
                )
            })
            .collect(),
    };
    index.put(d.account, AccountSnapshot::build(rows));
    index
}

fn bare_index(d: &Data) -> HashMap<String, HashMap<String, u64>> {
    let mut m: HashMap<String, HashMap<String, u64>> = HashMap::new();
    for (u, w, r) in d.grants.iter().chain(team_expanded(d).iter()) {
        let e = m.entry(d.users[*u].to_string()).or_default();
        *e.entry(d.workspaces[*w].to_string()).or_default() |= d.roles[*r].1.bits();
    }
    m
}

async fn casbin_enforcer(d: &Data) -> Enforcer {
    let model = DefaultModel::from_str(
        "[request_definition]\nr = sub, dom, obj\n\
         [policy_definition]\np = sub, obj\n\
         [role_definition]\ng = _, _, _\n\
         [policy_effect]\ne = some(where (p.eft == allow))\n\
         [matchers]\nm = g(r.sub, p.sub, r.dom) && r.obj == p.obj\n",
    )
    .await
    .expect("model");
    let mut e = Enforcer::new(model, MemoryAdapter::default())
        .await
        .expect("enforcer");
    let policies: Vec<Vec<String>> = d
        .roles
        .iter()
        .flat_map(|(id, scopes)| {
            scopes
                .iter()
                .map(move |s| vec![id.to_string(), s.name().to_string()])
        })
        .collect();
    e.add_policies(policies).await.expect("policies");
    let groupings: Vec<Vec<String>> = d
        .grants
        .iter()
        .chain(team_expanded(d).iter())
        .map(|(u, w, r)| {
            vec![
                d.users[*u].to_string(),
                d.roles[*r].0.to_string(),
                d.workspaces[*w].to_string(),
            ]
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    e.add_grouping_policies(groupings).await.expect("groupings");
    e
}

fn bench(c: &mut Criterion) {
    let d = data();
    let index = atrium_index(&d);
    let bare = bare_index(&d);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let enforcer = rt.block_on(casbin_enforcer(&d));

    // The engines must agree before their speed means anything.
    for (a, u, w, s) in d.queries.iter().take(500) {
        let ours = index.check_str(a, u, w, *s, 0);
        let theirs = enforcer
            .enforce((u.as_str(), w.as_str(), s.name()))
            .expect("enforce");
        assert_eq!(
            ours,
            theirs,
            "atrium and casbin disagree on {u} {w} {}",
            s.name()
        );
    }

    let mut g = c.benchmark_group("workspace_scope_check");
    let n = d.queries.len();
    let mut i = 0usize;
    g.bench_function("atrium_index", |b| {
        b.iter(|| {
            let (a, u, w, s) = &d.queries[i % n];
            i += 1;
            black_box(index.check_str(a, u, w, *s, 0))
        })
    });
    let mut i = 0usize;
    g.bench_function("bare_string_hash_index", |b| {
        b.iter(|| {
            let (_, u, w, s) = &d.queries[i % n];
            i += 1;
            let bits = bare
                .get(u.as_str())
                .and_then(|m| m.get(w.as_str()))
                .copied()
                .unwrap_or(0);
            black_box(bits & (1u64 << (*s as u8)) != 0)
        })
    });
    let mut i = 0usize;
    g.bench_function("casbin_rbac_with_domains", |b| {
        b.iter(|| {
            let (_, u, w, s) = &d.queries[i % n];
            i += 1;
            black_box(
                enforcer
                    .enforce((u.as_str(), w.as_str(), s.name()))
                    .unwrap_or(false),
            )
        })
    });
    g.finish();

    // What-if on the same 10k-member account: the pure evaluation (authorization and loading the
    // snapshot are a hash lookup each).
    use atrium::services::whatif::{evaluate, ProposedChange};
    let snap = index.snapshot(&d.account.0).expect("snapshot");
    let custom = rustc_hash::FxHashMap::default();
    let mut g = c.benchmark_group("what_if_10k_members");
    g.sample_size(20);
    let member = d.users[d.team_members[0].1].0;
    g.bench_function("deactivate_member", |b| {
        b.iter(|| {
            black_box(
                evaluate(
                    &snap,
                    ProposedChange::DeactivateMember { member_id: member },
                    &custom,
                    0,
                )
                .expect("ok"),
            )
        })
    });
    let (t, w, _) = d.team_grants[0];
    g.bench_function("change_team_grant_role", |b| {
        b.iter(|| {
            black_box(
                evaluate(
                    &snap,
                    ProposedChange::ChangeGrantRole {
                        workspace_id: d.workspaces[w],
                        subject_id: team_id(t),
                        workspace_role_id: RoleId(BuiltinWorkspaceRole::Viewer.id()),
                    },
                    &custom,
                    0,
                )
                .expect("ok"),
            )
        })
    });
    let busiest = d.roles[5].0; // a custom role held by ≈1/25 of all grants
    g.bench_function("delete_role_with_thousands_of_grants", |b| {
        b.iter(|| {
            black_box(
                evaluate(
                    &snap,
                    ProposedChange::DeleteRole { role_id: busiest },
                    &custom,
                    0,
                )
                .expect("ok"),
            )
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
