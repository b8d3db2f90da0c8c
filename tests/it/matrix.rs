//! The authorization matrix: every API route × (no credential, member of another account,
//! Member, workspace Viewer, Admin, Owner, team member, service account, and the Owner calling
//! from outside the account's enforced IP allowlist) → the expected status, each cell on a fresh account so
//! a successful mutation in one cell cannot change another. A route missing from the table fails
//! the test, so new routes must be placed in the matrix.

use crate::support::*;
use atrium::domain::role::{AccountRole, BuiltinWorkspaceRole};
use serde_json::{json, Value};
use std::collections::BTreeSet;

pub(crate) struct World {
    pub(crate) n: usize,
    pub account: String,
    pub(crate) ws: String,
    pub(crate) owner: TestUser,
    pub keys: [Option<String>; 8],
    target_user: String,
    target_membership: String,
    custom_role: String,
    viewer_access: String,
    invitation: String,
    bot: String,
    bot_key: String,
    bot_access: String,
    team: String,
    webhook: String,
}

pub(crate) const WHO: [&str; 8] = [
    "anonymous",
    "outsider",
    "member",
    "viewer",
    "admin",
    "owner",
    "team member",
    "service account",
];

/// A loopback address of its own for world `n` (`127.{net}.x.y`).
fn loopback(net: u8, n: usize) -> String {
    format!("127.{net}.{}.{}", (n / 250) % 250, n % 250 + 1)
}

pub(crate) async fn world(t: &TestApp, n: usize) -> World {
    let owner = t.user(&format!("owner{n}@a.test")).await;
    let admin = t.user(&format!("admin{n}@a.test")).await;
    let member = t.user(&format!("member{n}@a.test")).await;
    let viewer = t.user(&format!("viewer{n}@a.test")).await;
    let target = t.user(&format!("target{n}@a.test")).await;
    let outsider = t.user(&format!("outsider{n}@b.test")).await;
    let teammate = t.user(&format!("teammate{n}@a.test")).await;
    let account = t.account(&owner, &format!("acct-{n}")).await;
    t.account(&outsider, &format!("other-{n}")).await;
    t.add_member(account, &owner, &admin, AccountRole::Admin)
        .await;
    t.add_member(account, &owner, &member, AccountRole::Member)
        .await;
    t.add_member(account, &owner, &viewer, AccountRole::Member)
        .await;
    t.add_member(account, &owner, &teammate, AccountRole::Member)
        .await;
    let target_membership = t
        .add_member(account, &owner, &target, AccountRole::Member)
        .await;
    let ws = t.workspace(account, &owner.key, "prod").await;
    let (s, v) = t
        .call(
            M::POST,
            &format!("/api/accounts/{account}/workspaces/{ws}/user_access/"),
            Some(&owner.key),
            Some(json!([{"user_id": viewer.id, "workspace_role_id": BuiltinWorkspaceRole::Viewer.id()}])),
        )
        .await;
    assert_eq!(s, S::OK, "{v}");
    let viewer_access = v[0]["id"].as_str().expect("access id").to_string();
    let (s, v) = t
        .call(
            M::POST,
            &format!("/api/accounts/{account}/workspace_roles/"),
            Some(&owner.key),
            Some(json!({"name": "Auditor", "scopes": ["see_flows"]})),
        )
        .await;
    assert_eq!(s, S::CREATED, "{v}");
    let custom_role = v["id"].as_str().expect("role id").to_string();
    let (s, v) = t
        .call(
            M::POST,
            &format!("/api/accounts/{account}/workspaces/{ws}/invitations/"),
            Some(&owner.key),
            Some(json!({"email": format!("pending{n}@a.test")})),
        )
        .await;
    assert_eq!(s, S::CREATED, "{v}");
    let invitation = v[0]["id"].as_str().expect("invitation id").to_string();
    let (s, v) = t
        .call(
            M::POST,
            &format!("/api/accounts/{account}/bots/"),
            Some(&owner.key),
            Some(json!({"name": "ci"})),
        )
        .await;
    assert_eq!(s, S::CREATED, "{v}");
    let (bot, bot_key) = (
        v["id"].as_str().expect("bot").to_string(),
        v["api_key"]["id"].as_str().expect("key").to_string(),
    );
    let bot_secret = v["api_key"]["key"].as_str().expect("secret").to_string();
    let (s, v) = t
        .call(
            M::POST,
            &format!("/api/accounts/{account}/workspaces/{ws}/bot_access/"),
            Some(&owner.key),
            Some(json!({"bot_id": bot, "workspace_role_id": BuiltinWorkspaceRole::Runner.id()})),
        )
        .await;
    assert_eq!(s, S::OK, "{v}");
    let bot_access = v[0]["id"].as_str().expect("bot access").to_string();
    let (s, v) = t
        .call(
            M::POST,
            &format!("/api/accounts/{account}/teams/"),
            Some(&owner.key),
            Some(json!({"name": "ops"})),
        )
        .await;
    assert_eq!(s, S::CREATED, "{v}");
    let team = v["id"].as_str().expect("team").to_string();
    let (s, v) = t
        .call(
            M::PUT,
            &format!("/api/accounts/{account}/teams/{team}/members"),
            Some(&owner.key),
            Some(
                json!({"members": [{"member_id": target.id, "member_type": "user"},
                                    {"member_id": teammate.id, "member_type": "user"}]}),
            ),
        )
        .await;
    assert_eq!(s, S::OK, "{v}");
    let (s, v) = t
        .call(
            M::PUT,
            &format!("/api/accounts/{account}/workspaces/{ws}/team_access/"),
            Some(&owner.key),
            Some(
                json!([{"team_id": team, "workspace_role_id": BuiltinWorkspaceRole::Viewer.id()}]),
            ),
        )
        .await;
    assert_eq!(s, S::OK, "{v}");
    // An upstream nobody listens on (port 9, discard): gateway calls that pass authorization
    // answer 502. Each world's on a loopback address of its own (one server is bound by one
    // account only).
    let (s, v) = t
        .call(
            M::PUT,
            &format!("/api/accounts/{account}/workspaces/{ws}/upstream"),
            Some(&owner.key),
            Some(
                json!({"url": format!("http://{}:9/api", loopback(1, n)), "auth_string": "s3cret"}),
            ),
        )
        .await;
    assert_eq!(s, S::OK, "{v}");
    let (s, v) = t
        .call(
            M::POST,
            &format!("/api/accounts/{account}/workspaces/{ws}/webhooks/"),
            Some(&owner.key),
            Some(json!({"name": "hook", "template": "{\"event\": \"e\", \"resource\": {\"prefect.resource.id\": \"r\"}}"})),
        )
        .await;
    assert_eq!(s, S::CREATED, "{v}");
    let webhook = v["id"].as_str().expect("webhook").to_string();
    World {
        webhook,
        n,
        account: account.to_string(),
        ws: ws.to_string(),
        keys: [
            None,
            Some(outsider.key.clone()),
            Some(member.key.clone()),
            Some(viewer.key.clone()),
            Some(admin.key.clone()),
            Some(owner.key.clone()),
            Some(teammate.key.clone()),
            Some(bot_secret),
        ],
        target_user: target.id.to_string(),
        target_membership: target_membership.to_string(),
        custom_role,
        viewer_access,
        invitation,
        bot,
        bot_key,
        bot_access,
        team,
        owner,
    }
}

pub(crate) struct Cell {
    pub method: M,
    pub template: &'static str,
    pub body: Option<Value>,
    pub expect: [u16; 6],
}

pub(crate) fn fill(template: &str, w: &World) -> String {
    template
        .replace("{account_id}", &w.account)
        .replace("{workspace_id}", &w.ws)
        .replace("{user_id}", &w.owner.id.to_string())
        .replace("{key_id}", &w.owner.key_id.to_string())
        .replace("{membership_id}", &w.target_membership)
        .replace("{target_user_id}", &w.target_user)
        .replace("{role_id}", &w.custom_role)
        .replace("{access_id}", &w.viewer_access)
        .replace("{invitation_id}", &w.invitation)
        .replace("{bot_id}", &w.bot)
        .replace("{bot_key_id}", &w.bot_key)
        .replace("{bot_access_id}", &w.bot_access)
        .replace("{team_id}", &w.team)
        .replace("{spare_upstream}", &loopback(2, w.n))
        // No identity provider or domain exists in the world (a provider needs a live IdP): an
        // authorized caller gets 404, everyone else is refused before the lookup.
        .replace("{provider_id}", "7a1c0c55-0000-4000-8000-00000000e1d0")
        .replace("{domain_id}", "7a1c0c55-0000-4000-8000-00000000d0e1")
        .replace("{token_id}", "7a1c0c55-0000-4000-8000-0000000005c1")
        .replace("{object_id}", "7a1c0c55-0000-4000-8000-00000000ac1d")
        .replace("{webhook_id}", &w.webhook)
        .replace("{work_pool_name}", "pool-a")
}

/// A cell's body with the world's ids filled in.
pub(crate) fn body_of(cell: &Cell, w: &World) -> Option<Value> {
    cell.body
        .as_ref()
        .map(|b| serde_json::from_str(&fill(&b.to_string(), w)).expect("json"))
}

pub(crate) fn table() -> Vec<Cell> {
    let c = |method: M, template: &'static str, body: Option<Value>, expect: [u16; 6]| Cell {
        method,
        template,
        body,
        expect,
    };
    let viewer_role = BuiltinWorkspaceRole::Viewer.id().to_string();
    let admin_role = AccountRole::Admin.id().to_string();
    let owner_role = AccountRole::Owner.id().to_string();
    vec![
        c(M::GET, "/api/health", None, [200; 6]),
        c(M::GET, "/api/ready", None, [200; 6]),
        c(
            M::POST,
            "/api/auth/signup",
            Some(json!({"email": "new@x.test", "password": "long enough"})),
            [403; 6],
        ),
        c(
            M::POST,
            "/api/auth/login",
            Some(json!({"email": "nobody@x.test", "password": "long enough"})),
            [401; 6],
        ),
        c(
            M::POST,
            "/api/auth/logout",
            None,
            [401, 204, 204, 204, 204, 204],
        ),
        c(M::GET, "/api/me", None, [401, 200, 200, 200, 200, 200]),
        c(
            M::GET,
            "/api/me/workspaces",
            None,
            [401, 200, 200, 200, 200, 200],
        ),
        c(
            M::GET,
            "/api/me/workspaces/{workspace_id}/scopes",
            None,
            [401, 404, 404, 200, 200, 200],
        ),
        c(
            M::GET,
            "/api/me/workspaces/{workspace_id}/has_scope?scope=see_flows",
            None,
            [401, 404, 404, 200, 200, 200],
        ),
        c(
            M::GET,
            "/api/me/accounts",
            None,
            [401, 200, 200, 200, 200, 200],
        ),
        c(
            M::GET,
            "/api/me/accounts/{account_id}/permissions",
            None,
            [401, 404, 200, 200, 200, 200],
        ),
        c(
            M::GET,
            "/api/me/accounts/{account_id}/has_permission?permission=read:account",
            None,
            [401, 404, 200, 200, 200, 200],
        ),
        c(
            M::DELETE,
            "/api/me/accounts/{account_id}",
            None,
            [401, 404, 204, 204, 204, 409],
        ),
        c(
            M::GET,
            "/api/me/api_keys",
            None,
            [401, 200, 200, 200, 200, 200],
        ),
        c(
            M::POST,
            "/api/me/api_keys",
            Some(json!({"name": "k"})),
            [401, 201, 201, 201, 201, 201],
        ),
        c(
            M::POST,
            "/api/me/api_keys/filter",
            Some(json!({})),
            [401, 200, 200, 200, 200, 200],
        ),
        c(
            M::DELETE,
            "/api/me/api_keys/{key_id}",
            None,
            [401, 404, 404, 404, 404, 204],
        ),
        c(M::GET, "/api/workspace_scopes", None, [200; 6]),
        c(
            M::GET,
            "/api/users/{user_id}",
            None,
            [401, 404, 404, 404, 404, 200],
        ),
        c(
            M::PATCH,
            "/api/users/{user_id}",
            Some(json!({"first_name": "Ann"})),
            [401, 404, 404, 404, 404, 204],
        ),
        // The Owner is the last Owner of the world's account: they cannot delete themselves.
        c(
            M::DELETE,
            "/api/users/{user_id}",
            None,
            [401, 404, 404, 404, 404, 409],
        ),
        c(
            M::POST,
            "/api/users/{user_id}/api_keys",
            Some(json!({"name": "k"})),
            [401, 404, 404, 404, 404, 201],
        ),
        // The owner has no password to confirm the change with.
        c(
            M::POST,
            "/api/users/{user_id}/email_change",
            Some(json!({"email": "new-ann@x.test", "password": "a-long-password"})),
            [401, 404, 404, 404, 404, 403],
        ),
        c(
            M::POST,
            "/api/auth/email_change/confirm",
            Some(json!({"token": "zz"})),
            [404; 6],
        ),
        c(
            M::GET,
            "/api/users/{user_id}/api_keys",
            None,
            [401, 404, 404, 404, 404, 200],
        ),
        c(
            M::GET,
            "/api/users/{user_id}/api_keys/{key_id}",
            None,
            [401, 404, 404, 404, 404, 200],
        ),
        c(
            M::DELETE,
            "/api/users/{user_id}/api_keys/{key_id}",
            None,
            [401, 404, 404, 404, 404, 204],
        ),
        c(
            M::POST,
            "/api/accounts",
            Some(json!({"name": "N", "handle": "new-acct"})),
            [401, 403, 403, 403, 403, 403],
        ),
        c(M::GET, "/api/accounts/permissions", None, [200; 6]),
        c(
            M::GET,
            "/api/accounts/{account_id}",
            None,
            [401, 404, 200, 200, 200, 200],
        ),
        c(
            M::PATCH,
            "/api/accounts/{account_id}",
            Some(json!({"name": "Renamed"})),
            [401, 404, 403, 403, 204, 204],
        ),
        c(
            M::DELETE,
            "/api/accounts/{account_id}",
            None,
            [401, 404, 403, 403, 403, 204],
        ),
        c(
            M::GET,
            "/api/accounts/{account_id}/settings",
            None,
            [401, 404, 200, 200, 200, 200],
        ),
        c(
            M::PATCH,
            "/api/accounts/{account_id}/settings",
            Some(json!({"ai_log_summaries": false})),
            [401, 404, 403, 403, 204, 204],
        ),
        c(
            M::GET,
            "/api/accounts/{account_id}/ip_allowlist",
            None,
            [401, 404, 403, 403, 200, 200],
        ),
        c(
            M::PUT,
            "/api/accounts/{account_id}/ip_allowlist",
            Some(json!({"entries": [{"ip_network": "10.0.0.0/8", "description": "office"}]})),
            [401, 404, 403, 403, 204, 204],
        ),
        c(
            M::GET,
            "/api/accounts/{account_id}/ip_allowlist/my_access",
            None,
            [401, 404, 403, 403, 200, 200],
        ),
        c(
            M::POST,
            "/api/accounts/{account_id}/account_roles/filter",
            Some(json!({})),
            [401, 404, 200, 200, 200, 200],
        ),
        c(
            M::GET,
            "/api/accounts/{account_id}/account_roles/{owner_role}",
            None,
            [401, 404, 200, 200, 200, 200],
        ),
        c(
            M::POST,
            "/api/accounts/{account_id}/account_memberships/filter",
            Some(json!({})),
            [401, 404, 200, 200, 200, 200],
        ),
        c(
            M::POST,
            "/api/accounts/{account_id}/account_memberships/count",
            Some(json!({})),
            [401, 404, 200, 200, 200, 200],
        ),
        c(
            M::GET,
            "/api/accounts/{account_id}/account_memberships/{membership_id}",
            None,
            [401, 404, 200, 200, 200, 200],
        ),
        c(
            M::GET,
            "/api/accounts/{account_id}/account_memberships/by-user/{target_user_id}",
            None,
            [401, 404, 200, 200, 200, 200],
        ),
        c(
            M::PATCH,
            "/api/accounts/{account_id}/account_memberships/{membership_id}",
            Some(json!({"account_role_id": admin_role})),
            [401, 404, 403, 403, 204, 204],
        ),
        c(
            M::DELETE,
            "/api/accounts/{account_id}/account_memberships/{membership_id}",
            None,
            [401, 404, 403, 403, 204, 204],
        ),
        c(
            M::POST,
            "/api/accounts/{account_id}/workspaces",
            Some(json!({"name": "Dev", "handle": "dev"})),
            [401, 404, 403, 403, 201, 201],
        ),
        c(
            M::POST,
            "/api/accounts/{account_id}/workspaces/filter",
            Some(json!({})),
            [401, 404, 200, 200, 200, 200],
        ),
        c(
            M::POST,
            "/api/accounts/{account_id}/workspaces/count",
            Some(json!({})),
            [401, 404, 200, 200, 200, 200],
        ),
        c(
            M::GET,
            "/api/accounts/{account_id}/workspaces/{workspace_id}",
            None,
            [401, 404, 404, 200, 200, 200],
        ),
        c(
            M::PATCH,
            "/api/accounts/{account_id}/workspaces/{workspace_id}",
            Some(json!({"description": "d"})),
            [401, 404, 404, 403, 204, 204],
        ),
        c(
            M::DELETE,
            "/api/accounts/{account_id}/workspaces/{workspace_id}",
            None,
            [401, 404, 403, 403, 204, 204],
        ),
        c(
            M::GET,
            "/api/workspaces/{workspace_id}",
            None,
            [401, 404, 404, 200, 200, 200],
        ),
        c(
            M::POST,
            "/api/accounts/{account_id}/workspace_roles",
            Some(json!({"name": "R2", "scopes": ["see_flows"]})),
            [401, 404, 403, 403, 201, 201],
        ),
        c(
            M::POST,
            "/api/accounts/{account_id}/workspace_roles/filter",
            Some(json!({})),
            [401, 404, 200, 200, 200, 200],
        ),
        // Single sign-on configuration: read:sso (Admins and Owners), administrate:sso.
        c(M::GET, "/api/accounts/{account_id}/sso/providers", None, [401, 404, 403, 403, 200, 200]),
        c(M::POST, "/api/accounts/{account_id}/sso/providers", Some(json!({"kind": "saml", "name": "x"})), [401, 404, 403, 403, 422, 422]),
        c(M::GET, "/api/accounts/{account_id}/sso/providers/{provider_id}", None, [401, 404, 403, 403, 404, 404]),
        c(M::PATCH, "/api/accounts/{account_id}/sso/providers/{provider_id}", Some(json!({"enabled": false})), [401, 404, 403, 403, 404, 404]),
        c(M::DELETE, "/api/accounts/{account_id}/sso/providers/{provider_id}", None, [401, 404, 403, 403, 404, 404]),
        c(M::GET, "/api/accounts/{account_id}/sso/providers/{provider_id}/group_mappings", None, [401, 404, 403, 403, 404, 404]),
        c(M::PUT, "/api/accounts/{account_id}/sso/providers/{provider_id}/group_mappings", Some(json!([])), [401, 404, 403, 403, 404, 404]),
        c(M::GET, "/api/accounts/{account_id}/sso/domains", None, [401, 404, 403, 403, 200, 200]),
        c(M::POST, "/api/accounts/{account_id}/sso/domains", Some(json!({"domain": "matrix.test"})), [401, 404, 403, 403, 201, 201]),
        c(M::DELETE, "/api/accounts/{account_id}/sso/domains/{domain_id}", None, [401, 404, 403, 403, 404, 404]),
        c(M::POST, "/api/accounts/{account_id}/sso/domains/{domain_id}/verify", None, [401, 404, 403, 403, 404, 404]),
        // SCIM tokens: read:sso to list, administrate:sso to revoke, an Owner to create (a token
        // acts on members of every role).
        c(M::GET, "/api/accounts/{account_id}/scim_tokens", None, [401, 404, 403, 403, 200, 200]),
        c(M::POST, "/api/accounts/{account_id}/scim_tokens", Some(json!({"name": "matrix"})), [401, 404, 403, 403, 403, 201]),
        c(M::DELETE, "/api/accounts/{account_id}/scim_tokens/{token_id}", None, [401, 404, 403, 403, 404, 404]),
        c(
            M::GET,
            "/api/accounts/{account_id}/workspace_roles/{role_id}",
            None,
            [401, 404, 200, 200, 200, 200],
        ),
        c(
            M::PATCH,
            "/api/accounts/{account_id}/workspace_roles/{role_id}",
            Some(json!({"description": "d"})),
            [401, 404, 403, 403, 204, 204],
        ),
        c(
            M::DELETE,
            "/api/accounts/{account_id}/workspace_roles/{role_id}",
            None,
            [401, 404, 403, 403, 204, 204],
        ),
        c(
            M::POST,
            "/api/accounts/{account_id}/workspaces/{workspace_id}/user_access",
            Some(json!([{"user_id": "{target_user_id}", "workspace_role_id": viewer_role}])),
            [401, 404, 404, 403, 200, 200],
        ),
        c(
            M::POST,
            "/api/accounts/{account_id}/workspaces/{workspace_id}/user_access/filter",
            Some(json!({})),
            [401, 404, 404, 403, 200, 200],
        ),
        c(
            M::GET,
            "/api/accounts/{account_id}/workspaces/{workspace_id}/user_access/{access_id}",
            None,
            [401, 404, 404, 403, 200, 200],
        ),
        c(
            M::DELETE,
            "/api/accounts/{account_id}/workspaces/{workspace_id}/user_access/{access_id}",
            None,
            [401, 404, 404, 403, 204, 204],
        ),
        c(
            M::POST,
            "/api/accounts/{account_id}/events/filter",
            Some(json!({})),
            [401, 404, 403, 403, 200, 200],
        ),
        c(
            M::GET,
            "/api/accounts/{account_id}/events/filter/next?page-token=zz",
            None,
            [401, 404, 403, 403, 422, 422],
        ),
        c(
            M::POST,
            "/api/accounts/{account_id}/events/count-by/event",
            Some(json!({})),
            [401, 404, 403, 403, 200, 200],
        ),
        c(
            M::POST,
            "/api/accounts/{account_id}/workspaces/{workspace_id}/events/filter",
            // The workspace has an upstream: only audit-event queries stay with Atrium.
            Some(json!({"filter": {"event": {"prefix": ["prefect-cloud."]}}})),
            [401, 404, 403, 403, 200, 200],
        ),
        c(
            M::GET,
            "/api/accounts/{account_id}/workspaces/{workspace_id}/events/filter/next?page-token=zz",
            None,
            // Not one of Atrium's page tokens: Prefect's events API through the gateway, whose
            // upstream here does not listen (502) — and only callers with `see_events` get there.
            [401, 404, 404, 502, 502, 502],
        ),
        c(
            M::POST,
            "/api/accounts/{account_id}/workspaces/{workspace_id}/events/count-by/time",
            Some(json!({"time_unit": "hour", "filter": {"event": {"prefix": ["prefect-cloud."]}}})),
            [401, 404, 403, 403, 200, 200],
        ),
        c(M::GET, "/api/audit/public_key", None, [200; 6]),
        c(
            M::POST,
            "/api/accounts/{account_id}/audit/checkpoint",
            None,
            [401, 404, 403, 403, 201, 201],
        ),
        c(
            M::GET,
            "/api/accounts/{account_id}/audit/verify",
            None,
            [401, 404, 403, 403, 200, 200],
        ),
        c(
            M::GET,
            "/api/accounts/{account_id}/usage_limits",
            None,
            [401, 404, 200, 200, 200, 200],
        ),
        c(
            M::GET,
            "/api/accounts/{account_id}/usage",
            None,
            [401, 404, 403, 403, 200, 200],
        ),
        c(
            M::GET,
            "/api/accounts/{account_id}/plan",
            None,
            [401, 404, 200, 200, 200, 200],
        ),
        c(
            M::PUT,
            "/api/admin/accounts/{account_id}/plan",
            Some(json!({"plan_type": "pro"})),
            [401, 404, 404, 404, 404, 404],
        ),
        c(M::POST, "/api/accounts/{account_id}/invitations", Some(json!({"email": "new@b.test"})), [401, 404, 403, 403, 201, 201]),
        c(M::POST, "/api/accounts/{account_id}/invitations/filter", Some(json!({})), [401, 404, 403, 403, 200, 200]),
        c(M::POST, "/api/accounts/{account_id}/invitations/count", Some(json!({})), [401, 404, 403, 403, 200, 200]),
        c(M::GET, "/api/accounts/{account_id}/invitations/{invitation_id}", None, [401, 404, 403, 403, 200, 200]),
        c(M::POST, "/api/accounts/{account_id}/invitations/{invitation_id}/revoke", None, [401, 404, 403, 403, 204, 204]),
        c(M::POST, "/api/accounts/{account_id}/invitations/{invitation_id}/resend", None, [401, 404, 403, 403, 200, 200]),
        c(M::POST, "/api/accounts/{account_id}/workspaces/{workspace_id}/invitations", Some(json!({"email": "new@b.test"})), [401, 404, 403, 403, 201, 201]),
        c(M::POST, "/api/accounts/{account_id}/workspaces/{workspace_id}/invitations/filter", Some(json!({})), [401, 404, 403, 403, 200, 200]),
        c(M::GET, "/api/accounts/{account_id}/workspaces/{workspace_id}/invitations/{invitation_id}", None, [401, 404, 403, 403, 200, 200]),
        c(M::POST, "/api/accounts/{account_id}/workspaces/{workspace_id}/invitations/{invitation_id}/revoke", None, [401, 404, 403, 403, 204, 204]),
        c(M::POST, "/api/invitations/{invitation_id}/accept?invite_code=zz", None, [401, 404, 404, 404, 404, 404]),
        c(M::POST, "/api/invitations/{invitation_id}/reject?invite_code=zz", None, [404; 6]),
        c(M::PATCH, "/api/accounts/{account_id}/account_memberships/{membership_id}/active", Some(json!({"active": false})), [401, 404, 403, 403, 204, 204]),
        c(M::POST, "/api/accounts/{account_id}/account_memberships/set_active", Some(json!({"membership_ids": ["{membership_id}"], "active": false})), [401, 404, 403, 403, 204, 204]),
        c(M::GET, "/api/accounts/{account_id}/account_memberships/download", None, [401, 404, 200, 200, 200, 200]),
        c(M::POST, "/api/accounts/{account_id}/bots", Some(json!({"name": "b2"})), [401, 404, 403, 403, 201, 201]),
        c(M::GET, "/api/accounts/{account_id}/bots/{bot_id}", None, [401, 404, 200, 200, 200, 200]),
        c(M::PATCH, "/api/accounts/{account_id}/bots/{bot_id}", Some(json!({"name": "renamed"})), [401, 404, 403, 403, 204, 204]),
        c(M::DELETE, "/api/accounts/{account_id}/bots/{bot_id}", None, [401, 404, 403, 403, 204, 204]),
        c(M::POST, "/api/accounts/{account_id}/bots/filter", Some(json!({})), [401, 404, 200, 200, 200, 200]),
        c(M::POST, "/api/accounts/{account_id}/bots/{bot_id}/rotate_api_key", Some(json!({})), [401, 404, 403, 403, 201, 201]),
        c(M::GET, "/api/accounts/{account_id}/bots/{bot_id}/read_bot_api_keys", None, [401, 404, 200, 200, 200, 200]),
        c(M::DELETE, "/api/accounts/{account_id}/bots/{bot_id}/delete_bot_api_key/{bot_key_id}", None, [401, 404, 403, 403, 204, 204]),
        c(M::GET, "/api/accounts/{account_id}/account_memberships/by-bot/{bot_id}", None, [401, 404, 200, 200, 200, 200]),
        c(M::POST, "/api/accounts/{account_id}/workspaces/{workspace_id}/bot_access", Some(json!([{"bot_id": "{bot_id}", "workspace_role_id": BuiltinWorkspaceRole::Viewer.id()}])), [401, 404, 404, 403, 200, 200]),
        c(M::POST, "/api/accounts/{account_id}/workspaces/{workspace_id}/bot_access/filter", Some(json!({})), [401, 404, 404, 403, 200, 200]),
        c(M::GET, "/api/accounts/{account_id}/workspaces/{workspace_id}/bot_access/{bot_access_id}", None, [401, 404, 404, 403, 200, 200]),
        c(M::DELETE, "/api/accounts/{account_id}/workspaces/{workspace_id}/bot_access/{bot_access_id}", None, [401, 404, 404, 403, 204, 204]),
        c(M::POST, "/api/accounts/{account_id}/teams", Some(json!({"name": "t2"})), [401, 404, 403, 403, 201, 201]),
        c(M::GET, "/api/accounts/{account_id}/teams/{team_id}", None, [401, 404, 200, 200, 200, 200]),
        c(M::PUT, "/api/accounts/{account_id}/teams/{team_id}", Some(json!({"name": "ops2"})), [401, 404, 403, 403, 200, 200]),
        c(M::DELETE, "/api/accounts/{account_id}/teams/{team_id}", None, [401, 404, 403, 403, 204, 204]),
        c(M::POST, "/api/accounts/{account_id}/teams/filter", Some(json!({})), [401, 404, 200, 200, 200, 200]),
        c(M::PUT, "/api/accounts/{account_id}/teams/{team_id}/members", Some(json!({"members": [{"member_id": "{target_user_id}", "member_type": "user"}]})), [401, 404, 403, 403, 200, 200]),
        c(M::DELETE, "/api/accounts/{account_id}/teams/{team_id}/members/{target_user_id}", None, [401, 404, 403, 403, 204, 204]),
        c(M::PUT, "/api/accounts/{account_id}/workspaces/{workspace_id}/team_access", Some(json!([{"team_id": "{team_id}", "workspace_role_id": BuiltinWorkspaceRole::Viewer.id()}])), [401, 404, 404, 403, 200, 200]),
        c(M::POST, "/api/accounts/{account_id}/workspaces/{workspace_id}/team_access/filter", Some(json!({})), [401, 404, 404, 403, 200, 200]),
        c(M::DELETE, "/api/accounts/{account_id}/workspaces/{workspace_id}/team_access/{team_id}", None, [401, 404, 404, 403, 204, 204]),
        c(M::GET, "/api/accounts/{account_id}/workspaces/{workspace_id}/access", None, [401, 404, 404, 403, 200, 200]),
        c(M::GET, "/api/accounts/{account_id}/workspaces/{workspace_id}/explain?actor_id={target_user_id}&scope=see_flows", None, [401, 404, 404, 403, 200, 200]),
        c(M::PUT, "/api/accounts/{account_id}/workspaces/{workspace_id}/upstream", Some(json!({"url": "http://{spare_upstream}:9/api", "auth_string": "other"})), [401, 404, 403, 403, 200, 200]),
        c(M::GET, "/api/accounts/{account_id}/workspaces/{workspace_id}/upstream", None, [401, 404, 403, 403, 200, 200]),
        // Prefect's CSRF tokens are for the UI's session; with an API key the route answers as a
        // Prefect server with CSRF protection off (tests/it/prefect_ui.rs covers sessions).
        c(M::GET, "/api/accounts/{account_id}/workspaces/{workspace_id}/csrf-token?client=matrix", None, [401, 404, 404, 422, 422, 422]),
        c(M::DELETE, "/api/accounts/{account_id}/workspaces/{workspace_id}/upstream", None, [401, 404, 403, 403, 204, 204]),
        c(M::GET, "/api/accounts/{account_id}/rate-limits/status", None, [401, 404, 403, 403, 200, 200]),
        c(M::POST, "/api/accounts/{account_id}/workspaces/{workspace_id}/webhooks", Some(json!({"name": "h2", "template": "{}"})), [401, 404, 404, 403, 201, 201]),
        c(M::POST, "/api/accounts/{account_id}/workspaces/{workspace_id}/webhooks/filter", Some(json!({})), [401, 404, 404, 200, 200, 200]),
        c(M::GET, "/api/accounts/{account_id}/workspaces/{workspace_id}/webhooks/{webhook_id}", None, [401, 404, 404, 200, 200, 200]),
        c(M::PUT, "/api/accounts/{account_id}/workspaces/{workspace_id}/webhooks/{webhook_id}", Some(json!({"name": "h3", "template": "{}"})), [401, 404, 404, 403, 204, 204]),
        c(M::PATCH, "/api/accounts/{account_id}/workspaces/{workspace_id}/webhooks/{webhook_id}", Some(json!({"enabled": false})), [401, 404, 404, 403, 204, 204]),
        c(M::DELETE, "/api/accounts/{account_id}/workspaces/{workspace_id}/webhooks/{webhook_id}", None, [401, 404, 404, 403, 204, 204]),
        c(M::POST, "/api/accounts/{account_id}/workspaces/{workspace_id}/webhooks/{webhook_id}/rotate", None, [401, 404, 404, 403, 200, 200]),
        // Object ACLs: the object is looked up on the workspace's upstream, which in the world
        // cannot be reached — an authorized caller gets 502, everyone else is refused first.
        c(M::GET, "/api/accounts/{account_id}/workspaces/{workspace_id}/deployments/{object_id}/access", None, [401, 404, 404, 502, 502, 502]),
        c(M::PUT, "/api/accounts/{account_id}/workspaces/{workspace_id}/deployments/{object_id}/access", Some(json!({"access_control": {}})), [401, 404, 404, 403, 502, 502]),
        c(M::GET, "/api/accounts/{account_id}/workspaces/{workspace_id}/work_pools/{work_pool_name}/access", None, [401, 404, 404, 502, 502, 502]),
        c(M::PUT, "/api/accounts/{account_id}/workspaces/{workspace_id}/work_pools/{work_pool_name}/access", Some(json!({"access_control": {}})), [401, 404, 404, 403, 502, 502]),
        c(M::GET, "/api/accounts/{account_id}/workspaces/{workspace_id}/block_documents/{object_id}/access", None, [401, 404, 404, 502, 502, 502]),
        c(M::PUT, "/api/accounts/{account_id}/workspaces/{workspace_id}/block_documents/{object_id}/access", Some(json!({"access_control": {}})), [401, 404, 404, 403, 502, 502]),
        c(M::POST, "/api/accounts/{account_id}/access/what_if", Some(json!({"change": "deactivate_member", "member_id": "{target_user_id}"})), [401, 404, 403, 403, 200, 200]),
    ]
    .into_iter()
    .map(|mut cell| {
        if let Some(b) = cell.body.take() {
            cell.body = Some(
                serde_json::from_str(&b.to_string().replace("{owner_role}", &owner_role))
                    .expect("json"),
            );
        }
        if cell.template.contains("{owner_role}") {
            cell.template = Box::leak(
                cell.template
                    .replace("{owner_role}", &owner_role)
                    .into_boxed_str(),
            );
        }
        cell
    })
    .collect()
}

/// The expectations of the 8 callers: the table's six, then a team member (a Member whose only
/// workspace access is the team's Viewer grant — it must answer as the direct Viewer does) and a
/// service account (a Member with a direct Runner grant, and no user profile).
pub(crate) fn expected_for_all(cell: &Cell) -> [u16; 8] {
    let e = cell.expect;
    let bot = bot_expectation(cell.method.as_str(), cell.template).unwrap_or(e[3]);
    [e[0], e[1], e[2], e[3], e[4], e[5], e[3], bot]
}

/// The ninth caller: the account's Owner — the right role for everything — calling from an
/// address outside the account's enforced IP allowlist (see [`walled_world`]).
pub(crate) const OUTSIDE_IP: &str = "127.0.0.2";

/// [`world`], with an IP allowlist of 127.0.0.1 enforced on its account.
pub(crate) async fn walled_world(t: &TestApp, n: usize) -> World {
    let w = world(t, n).await;
    let owner = w.keys[5].as_deref();
    let (s, v) = t
        .call_from(
            "127.0.0.1",
            M::PUT,
            &format!("/api/accounts/{}/ip_allowlist", w.account),
            owner,
            Some(json!({"entries": [{"ip_network": "127.0.0.1"}]})),
        )
        .await;
    assert_eq!(s, S::NO_CONTENT, "{v}");
    let (s, v) = t
        .call_from(
            "127.0.0.1",
            M::PATCH,
            &format!("/api/accounts/{}/settings", w.account),
            owner,
            Some(json!({"enforce_ip_allowlist": true})),
        )
        .await;
    assert_eq!(s, S::NO_CONTENT, "{v}");
    w
}

/// What the Owner gets from outside the allowlist: 403 on every route that concerns the account
/// (it names the account or one of its workspaces, API and gateway alike); elsewhere what the
/// Owner gets from inside — including the site administration routes, which belong to the
/// installation rather than to an account.
pub(crate) fn expected_outside(cell: &Cell) -> u16 {
    let names_account =
        cell.template.contains("{account_id}") || cell.template.contains("{workspace_id}");
    if names_account && !cell.template.starts_with("/api/admin/") {
        403
    } else {
        cell.expect[5]
    }
}

/// Where the service account answers differently from the Viewer.
fn bot_expectation(method: &str, template: &str) -> Option<u16> {
    Some(match (method, template) {
        // Bots have no user profile, personal keys or account to leave.
        ("GET", "/api/me") => 404,
        ("GET" | "POST", "/api/me/api_keys") | ("POST", "/api/me/api_keys/filter") => 404,
        ("DELETE", "/api/me/api_keys/{key_id}") => 404,
        ("DELETE", "/api/me/accounts/{account_id}") => 404,
        _ => return None,
    })
}

/// Cells that change nothing when they succeed (they may share one world).
pub(crate) fn is_read_only(cell: &Cell) -> bool {
    cell.method == M::GET
        || cell.template.ends_with("/filter")
        || cell.template.ends_with("/count")
        || cell.template.contains("/count-by/")
        || cell.template.starts_with("/api/auth/")
}

pub(crate) fn normalize(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let mut out: Vec<String> = Vec::new();
    for seg in path.split('/') {
        let after_count_by = out.last().is_some_and(|p| p == "count-by");
        if seg.starts_with('{') || uuid::Uuid::try_parse(seg).is_ok() || after_count_by {
            out.push("{}".to_string());
        } else {
            out.push(seg.to_string());
        }
    }
    out.join("/")
}

#[tokio::test]
async fn every_route_answers_every_kind_of_caller_as_the_matrix_says() {
    // Coverage: every (method, path) of the OpenAPI document is in the table.
    let doc = serde_json::to_value(atrium::http::openapi()).expect("openapi json");
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            routes.insert((method.to_uppercase(), normalize(path)));
        }
    }
    let cells = table();
    let covered: BTreeSet<_> = cells
        .iter()
        .map(|c| (c.method.to_string(), normalize(c.template)))
        .collect();
    let missing: Vec<_> = routes.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the authorization matrix: {missing:?}"
    );

    each_db(|t| {
        let cells = table();
        async move {
            let mut surprises = Vec::new();
            let mut n = 0;
            // Reads share one world; each mutation gets a fresh one per caller.
            let shared = world(&t, 0).await;
            let walled = walled_world(&t, 62_499).await;
            for cell in &cells {
                let read_only = is_read_only(cell);
                for (who, expected) in expected_for_all(cell).iter().enumerate() {
                    n += 1;
                    let fresh;
                    let w = if read_only {
                        &shared
                    } else {
                        fresh = world(&t, n).await;
                        &fresh
                    };
                    let path = fill(cell.template, w);
                    let (status, v) = t
                        .call(cell.method.clone(), &path, w.keys[who].as_deref(), body_of(cell, w))
                        .await;
                    if status.as_u16() != *expected {
                        surprises.push(format!(
                            "{} {} as {}: expected {expected}, got {status} {v}",
                            cell.method, cell.template, WHO[who]
                        ));
                    }
                    if status.is_client_error() {
                        assert!(
                            v["detail"].is_string(),
                            "{} {}: error without detail: {v}",
                            cell.method,
                            cell.template
                        );
                    }
                }
                // The Owner from outside the allowlist.
                n += 1;
                let fresh;
                let w = if read_only {
                    &walled
                } else {
                    fresh = walled_world(&t, n).await;
                    &fresh
                };
                let expected = expected_outside(cell);
                let (status, v) = t
                    .call_from(
                        OUTSIDE_IP,
                        cell.method.clone(),
                        &fill(cell.template, w),
                        w.keys[5].as_deref(),
                        body_of(cell, w),
                    )
                    .await;
                if status.as_u16() != expected {
                    surprises.push(format!(
                        "{} {} as the owner outside the IP allowlist: expected {expected}, got {status} {v}",
                        cell.method, cell.template
                    ));
                }
                // Their own lists leave the account out.
                if cell.method == M::GET
                    && matches!(cell.template, "/api/me/accounts" | "/api/me/workspaces")
                    && v.to_string().contains(&w.account)
                {
                    surprises.push(format!(
                        "GET {} from outside the IP allowlist lists the account: {v}",
                        cell.template
                    ));
                }
            }
            assert_no_surprises(&t.db, &surprises);
        }
    })
    .await;
}
