//! The adversarial suite: what an attacker with documented APIs tries, kept as tests that grow
//! with the product. Each part is written so that a new route of its kind fails the test until it
//! is listed here (and so covered):
//!
//! - secret-bearing gateway routes × spellings of `include_secrets` × roles — the route list must
//!   equal the gateway table's `Need::Secrets` rules;
//! - every operation that changes a principal × caller role × target role (no escalation) — every
//!   mutating route of the OpenAPI document must be classified as acting on a principal or not;
//! - refusals decided inside a write transaction, many at once, while another account writes;
//! - redirect targets after sign-in; upstream binding targets (SSRF, DNS rebinding);
//! - CSRF tokens and session fixation; security headers; the login throttle; email changes;
//!   secrets in the database files.

use crate::gateway::{recording_upstream, setup};
use crate::support::*;
use atrium::domain::gateway_routes::{Need, TABLE};
use atrium::domain::role::{AccountRole, BuiltinWorkspaceRole};
use serde_json::{json, Value};
use std::collections::BTreeSet;

// ---- secret-bearing gateway routes ----

/// Every gateway route that can return secret block values (`include_secrets`), as a path with
/// `{q}` where the test's query goes. Must equal the table's `Need::Secrets` rules.
const SECRET_ROUTES: &[(&str, &str)] = &[
    (
        "GET",
        "block_documents/3c5c1f36-8d0a-4c56-9f55-8f3c3b2a1d11",
    ),
    ("POST", "block_documents/filter"),
    ("GET", "block_types/slug/secret/block_documents"),
    (
        "GET",
        "block_types/slug/secret/block_documents/name/db-password",
    ),
];

/// Spellings of "include secrets" in a query that Starlette/FastAPI would read as true.
const TRUTHY_QUERIES: &[&str] = &[
    "include_secrets=true",
    "include_secrets=True",
    "include_secrets=1",
    "include_secrets=yes",
    "include_secrets=on",
    "include_secrets=t",
    "include_secrets=y",
    "include_secrets=%74rue",
    "include%5Fsecrets=true",
    "include%5fsecrets=1",
    "include_secrets=false&include_secrets=true",
    "limit=1&include_secrets=true&offset=0",
    "include_secrets=true&include%5fsecrets=on",
];

/// Queries the upstream could read differently from the gateway: refused.
const AMBIGUOUS_QUERIES: &[&str] = &[
    "include_secrets=true;x=1",
    "include%5_secrets=1",
    "x=%zz&include_secrets=true",
    "include_secrets%FF=1",
];

/// Bodies of `POST block_documents/filter` that Python's `json` + pydantic would read as asking
/// for secrets: (bytes, content type).
fn truthy_bodies() -> Vec<(Vec<u8>, &'static str)> {
    let j = "application/json";
    vec![
        (br#"{"include_secrets": true}"#.to_vec(), j),
        (br#"{"include_secrets": "true"}"#.to_vec(), j),
        (br#"{"include_secrets": 1}"#.to_vec(), j),
        (br#"{"include_secrets": "yes"}"#.to_vec(), j),
        (
            br#"{"include_secrets": false, "include_secrets": true}"#.to_vec(),
            j,
        ),
        (
            br#"{"limit": 5, "include_secrets": true, "offset": 0}"#.to_vec(),
            "application/vnd.x+json",
        ),
        (br#"{"include_secrets": true}"#.to_vec(), "text/plain"),
        (Vec::new(), j),
    ]
}

/// Bodies the gateway cannot read as the upstream would: refused with 400.
fn ambiguous_bodies() -> Vec<Vec<u8>> {
    let mut bom = b"\xEF\xBB\xBF".to_vec();
    bom.extend_from_slice(br#"{"include_secrets": true}"#);
    let utf16: Vec<u8> = "{\"include_secrets\": true}"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut utf16_bom = vec![0xFF, 0xFE];
    utf16_bom.extend_from_slice(&utf16);
    vec![
        bom,
        utf16,
        utf16_bom,
        br#"{"include_secrets": true, "limit": NaN}"#.to_vec(),
        br#"{"limit": Infinity, "include_secrets": true}"#.to_vec(),
        br#"[{"include_secrets": true}]"#.to_vec(),
        br#"{"include_secrets": true} {}"#.to_vec(),
    ]
}

/// How Python's `urllib.parse.parse_qsl` (Starlette's query parser) reads a query: the names it
/// finds, decoded leniently as Python does (`+` is a space, a bad escape stays as it is, bytes
/// that are not UTF-8 become U+FFFD).
fn python_query_names(q: &str) -> Vec<String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let b = p.split('=').next().unwrap_or("").as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < b.len() {
                let escaped = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match (b[i], escaped) {
                    (b'%', Some(v)) => {
                        out.push(v);
                        i += 3;
                    }
                    (b'+', _) => {
                        out.push(b' ');
                        i += 1;
                    }
                    (c, _) => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        })
        .collect()
}

/// True when what the upstream received could make it include secrets: a parameter named
/// `include_secrets` in the query (any value: the gateway forwards none for these callers), or a
/// body whose `include_secrets` is not `false`.
fn upstream_asked_for_secrets(echo: &Value, method: &str) -> bool {
    let q = echo["query"].as_str().unwrap_or("");
    if python_query_names(q).iter().any(|n| n == "include_secrets") {
        return true;
    }
    if method == "POST" {
        let body: Value =
            serde_json::from_str(echo["body"].as_str().unwrap_or("")).unwrap_or(Value::Null);
        return body.get("include_secrets") != Some(&Value::Bool(false));
    }
    false
}

#[test]
fn the_secret_route_list_is_the_gateway_tables() {
    let listed: BTreeSet<(String, String)> = SECRET_ROUTES
        .iter()
        .map(|(m, p)| {
            let rule = atrium::domain::gateway_routes::lookup(m, p).expect("a table route");
            (rule.method.to_string(), rule.pattern.to_string())
        })
        .collect();
    let table: BTreeSet<(String, String)> = TABLE
        .iter()
        .filter(|r| r.need == Need::Secrets)
        .map(|r| (r.method.to_string(), r.pattern.to_string()))
        .collect();
    assert_eq!(
        listed, table,
        "every secret-bearing gateway route is tried by this suite (add new ones to SECRET_ROUTES)"
    );
}

#[tokio::test]
async fn no_spelling_of_include_secrets_reaches_the_upstream_for_a_caller_without_the_scope() {
    each_db_and_transport(|t| async move {
        let port = recording_upstream().await;
        let w = setup(&t, port, "acme").await;
        // A Developer holds see_secret_blocks; the Viewer does not.
        let dev = t.user("dev@acme.test").await;
        let account = atrium::domain::AccountId::parse(&w.account).expect("id");
        t.add_member(account, &w.owner, &dev, AccountRole::Member).await;
        let (s, v) = t
            .call(
                M::POST,
                &format!("/api/accounts/{}/workspaces/{}/user_access/", w.account, w.ws),
                Some(&w.owner.key),
                Some(json!([{"user_id": dev.id, "workspace_role_id": BuiltinWorkspaceRole::Developer.id()}])),
            )
            .await;
        assert_eq!(s, S::OK, "{v}");
        let mut tried = 0;
        for (method, route) in SECRET_ROUTES {
            let m = M::from_bytes(method.as_bytes()).expect("method");
            // Queries: stripped for the Viewer, forwarded as sent for the Developer.
            for q in TRUTHY_QUERIES {
                let path = w.path(&format!("{route}?{q}"));
                let body = (*method == "POST").then(|| b"{}".to_vec());
                let (s, _, bytes) = t.raw(m.clone(), &path, Some(&w.viewer.key), body.clone(), "application/json").await;
                let echo: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                assert_eq!(s, S::OK, "{method} {route}?{q}: {echo}");
                assert!(!upstream_asked_for_secrets(&echo, method), "{:?} viewer {method} {route}?{q}: the upstream received {echo}", t.db);
                let (s, _, bytes) = t.raw(m.clone(), &path, Some(&dev.key), body, "application/json").await;
                let echo: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                assert_eq!((s, echo["query"].as_str()), (S::OK, Some(*q)), "developer {method} {route}?{q}: {echo}");
                tried += 1;
            }
            for q in AMBIGUOUS_QUERIES {
                let path = w.path(&format!("{route}?{q}"));
                let body = (*method == "POST").then(|| b"{}".to_vec());
                let (s, _, bytes) = t.raw(m.clone(), &path, Some(&w.viewer.key), body, "application/json").await;
                let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                assert_eq!(s, S::BAD_REQUEST, "viewer {method} {route}?{q}: {v}");
                assert!(v["detail"].as_str().is_some_and(|d| d.contains("unambiguously")) && v.get("method").is_none(), "{v}");
                tried += 1;
            }
            if *method != "POST" {
                continue;
            }
            for (body, ctype) in truthy_bodies() {
                let (s, _, bytes) = t.raw(m.clone(), &w.path(route), Some(&w.viewer.key), Some(body.clone()), ctype).await;
                let echo: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                assert_eq!(s, S::OK, "{}: {echo}", String::from_utf8_lossy(&body));
                assert!(!upstream_asked_for_secrets(&echo, method), "viewer body {}: the upstream received {echo}", String::from_utf8_lossy(&body));
                assert_eq!(echo["headers"]["content-type"], "application/json", "the rewritten body is JSON");
                tried += 1;
            }
            for body in ambiguous_bodies() {
                let (s, _, bytes) = t.raw(m.clone(), &w.path(route), Some(&w.viewer.key), Some(body.clone()), "application/json").await;
                let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                assert_eq!(s, S::BAD_REQUEST, "{:?}: {v}", String::from_utf8_lossy(&body));
                assert!(v.get("method").is_none(), "refused bodies never reach the upstream: {v}");
                // The Developer may ask for secrets anyway: forwarded as sent.
                let (s, _, bytes) = t.raw(m.clone(), &w.path(route), Some(&dev.key), Some(body.clone()), "application/json").await;
                let echo: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                assert_eq!((s, &echo["method"]), (S::OK, &json!("POST")), "{echo}");
                assert_eq!(echo["body"], String::from_utf8_lossy(&body).as_ref(), "forwarded as sent");
                tried += 1;
            }
        }
        assert!(tried > 60, "only {tried} combinations tried");
    })
    .await;
}

// ---- operations on principals ----

/// Every mutating route that acts on a principal (a member or a service account: their role,
/// name, keys, grants, membership), with the target it names.
const PRINCIPAL_OPS: &[(&str, &str)] = &[
    ("PATCH", "/api/accounts/{}/bots/{}"),
    ("DELETE", "/api/accounts/{}/bots/{}"),
    ("POST", "/api/accounts/{}/bots/{}/rotate_api_key"),
    ("DELETE", "/api/accounts/{}/bots/{}/delete_bot_api_key/{}"),
    ("POST", "/api/accounts/{}/workspaces/{}/bot_access"),
    ("DELETE", "/api/accounts/{}/workspaces/{}/bot_access/{}"),
    ("PATCH", "/api/accounts/{}/account_memberships/{}"),
    ("DELETE", "/api/accounts/{}/account_memberships/{}"),
    ("PATCH", "/api/accounts/{}/account_memberships/{}/active"),
    ("POST", "/api/accounts/{}/account_memberships/set_active"),
    ("POST", "/api/accounts/{}/workspaces/{}/user_access"),
    ("DELETE", "/api/accounts/{}/workspaces/{}/user_access/{}"),
];

/// Every other mutating route, and why it does not act on another principal.
const NOT_PRINCIPAL_OPS: &[(&str, &str, &str)] = &[
    (
        "POST",
        "/api/accounts/{}/sso/providers",
        "account configuration (administrate:sso)",
    ),
    (
        "PATCH",
        "/api/accounts/{}/sso/providers/{}",
        "account configuration (administrate:sso)",
    ),
    (
        "DELETE",
        "/api/accounts/{}/sso/providers/{}",
        "account configuration (administrate:sso)",
    ),
    (
        "PUT",
        "/api/accounts/{}/sso/providers/{}/group_mappings",
        "maps IdP groups to teams; team membership is not an operation on a principal",
    ),
    (
        "POST",
        "/api/accounts/{}/sso/domains",
        "account configuration (administrate:sso)",
    ),
    (
        "DELETE",
        "/api/accounts/{}/sso/domains/{}",
        "account configuration (administrate:sso)",
    ),
    (
        "POST",
        "/api/accounts/{}/sso/domains/{}/verify",
        "account configuration (administrate:sso)",
    ),
    (
        "POST",
        "/api/accounts/{}/scim_tokens",
        "account configuration, Owners only: the token acts on members of every role through SCIM, under the seat, last-owner and domain rules (tests/it/scim.rs checks an Admin is refused)",
    ),
    (
        "DELETE",
        "/api/accounts/{}/scim_tokens/{}",
        "account configuration (administrate:sso)",
    ),
    ("POST", "/api/auth/signup", "creates the caller"),
    ("POST", "/api/auth/login", "the caller's own session"),
    ("POST", "/api/auth/logout", "the caller's own session"),
    (
        "POST",
        "/api/auth/email_change/confirm",
        "proven by a token mailed to the new address",
    ),
    ("PATCH", "/api/users/{}", "the caller's own profile"),
    (
        "DELETE",
        "/api/users/{}",
        "the caller's own user only (anyone else's: 404); the last-Owner rule under concurrency in tests/it/accounts.rs",
    ),
    (
        "POST",
        "/api/users/{}/email_change",
        "the caller's own email, with their password",
    ),
    ("POST", "/api/users/{}/api_keys", "the caller's own keys"),
    (
        "DELETE",
        "/api/users/{}/api_keys/{}",
        "the caller's own keys",
    ),
    ("POST", "/api/me/api_keys", "the caller's own keys"),
    ("DELETE", "/api/me/api_keys/{}", "the caller's own keys"),
    ("DELETE", "/api/me/accounts/{}", "the caller leaves"),
    ("POST", "/api/accounts", "a new account owned by the caller"),
    ("PATCH", "/api/accounts/{}", "account settings"),
    (
        "DELETE",
        "/api/accounts/{}",
        "the whole account (Owners only)",
    ),
    ("PATCH", "/api/accounts/{}/settings", "account settings"),
    ("PUT", "/api/accounts/{}/ip_allowlist", "account settings"),
    ("PUT", "/api/admin/accounts/{}/plan", "site admins only"),
    ("POST", "/api/accounts/{}/workspaces", "workspaces"),
    ("PATCH", "/api/accounts/{}/workspaces/{}", "workspaces"),
    ("DELETE", "/api/accounts/{}/workspaces/{}", "workspaces"),
    (
        "PUT",
        "/api/accounts/{}/workspaces/{}/upstream",
        "workspace binding",
    ),
    (
        "DELETE",
        "/api/accounts/{}/workspaces/{}/upstream",
        "workspace binding",
    ),
    (
        "POST",
        "/api/accounts/{}/workspace_roles",
        "roles (scopes the caller holds)",
    ),
    (
        "PATCH",
        "/api/accounts/{}/workspace_roles/{}",
        "roles (scopes the caller holds)",
    ),
    ("DELETE", "/api/accounts/{}/workspace_roles/{}", "roles"),
    (
        "POST",
        "/api/accounts/{}/invitations",
        "invitations (role never above the inviter's)",
    ),
    (
        "POST",
        "/api/accounts/{}/invitations/{}/revoke",
        "invitations",
    ),
    (
        "POST",
        "/api/accounts/{}/invitations/{}/resend",
        "invitations",
    ),
    (
        "POST",
        "/api/accounts/{}/workspaces/{}/invitations",
        "invitations",
    ),
    (
        "POST",
        "/api/accounts/{}/workspaces/{}/invitations/{}/revoke",
        "invitations",
    ),
    ("POST", "/api/invitations/{}/accept", "the caller joins"),
    ("POST", "/api/invitations/{}/reject", "the invitee declines"),
    (
        "POST",
        "/api/accounts/{}/bots",
        "a new service account (role never above the creator's)",
    ),
    ("POST", "/api/accounts/{}/teams", "teams"),
    ("PUT", "/api/accounts/{}/teams/{}", "teams"),
    ("DELETE", "/api/accounts/{}/teams/{}", "teams"),
    (
        "PUT",
        "/api/accounts/{}/teams/{}/members",
        "a team's members; its grants are bounded by the granter's scopes",
    ),
    (
        "DELETE",
        "/api/accounts/{}/teams/{}/members/{}",
        "a team's members",
    ),
    (
        "PUT",
        "/api/accounts/{}/workspaces/{}/team_access",
        "teams are not principals; scopes the caller holds",
    ),
    (
        "DELETE",
        "/api/accounts/{}/workspaces/{}/team_access/{}",
        "teams are not principals",
    ),
    ("POST", "/api/accounts/{}/access/what_if", "changes nothing"),
    ("POST", "/api/accounts/{}/workspaces/{}/webhooks", "webhooks are not principals"),
    ("PUT", "/api/accounts/{}/workspaces/{}/webhooks/{}", "webhooks are not principals; a service account named must be the account's"),
    ("PATCH", "/api/accounts/{}/workspaces/{}/webhooks/{}", "webhooks are not principals"),
    ("DELETE", "/api/accounts/{}/workspaces/{}/webhooks/{}", "webhooks are not principals"),
    ("POST", "/api/accounts/{}/workspaces/{}/webhooks/{}/rotate", "webhooks are not principals"),
    (
        "PUT",
        "/api/accounts/{}/workspaces/{}/deployments/{}/access",
        "object ACLs only narrow what workspace roles give (manage_acls)",
    ),
    (
        "PUT",
        "/api/accounts/{}/workspaces/{}/work_pools/{}/access",
        "object ACLs only narrow what workspace roles give (manage_acls)",
    ),
    (
        "PUT",
        "/api/accounts/{}/workspaces/{}/block_documents/{}/access",
        "object ACLs only narrow what workspace roles give (manage_acls)",
    ),
    ("POST", "/api/accounts/{}/audit/checkpoint", "the audit log"),
];

/// `{}` for every path parameter, as the tables above write routes.
fn shape(path: &str) -> String {
    path.trim_end_matches('/')
        .split('/')
        .map(|s| if s.starts_with('{') { "{}" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn every_mutating_route_is_classified_as_acting_on_a_principal_or_not() {
    let doc = serde_json::to_value(atrium::http::openapi()).expect("openapi");
    let listed: BTreeSet<(String, String)> = PRINCIPAL_OPS
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .chain(
            NOT_PRINCIPAL_OPS
                .iter()
                .map(|(m, p, _)| (m.to_string(), p.to_string())),
        )
        .collect();
    let mut unclassified = Vec::new();
    let mut mutating = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            let m = method.to_uppercase();
            let reads = m == "GET"
                || path.ends_with("/filter")
                || path.ends_with("/count")
                || path.contains("/count-by/")
                || path.ends_with("/explain");
            if reads {
                continue;
            }
            mutating.insert((m.clone(), shape(path)));
            if !listed.contains(&(m.clone(), shape(path))) {
                unclassified.push(format!("(\"{m}\", \"{}\")", shape(path)));
            }
        }
    }
    let stale: Vec<_> = listed.difference(&mutating).collect();
    assert!(
        stale.is_empty(),
        "listed routes that are not mutating routes of the API: {stale:?}"
    );
    assert!(
        unclassified.is_empty(),
        "mutating routes not classified as acting on a principal or not (add each to PRINCIPAL_OPS \
         with an escalation test, or to NOT_PRINCIPAL_OPS with the reason):\n{}",
        unclassified.join("\n")
    );
}

/// One principal of each kind and role to act on, with what the operations name.
struct Target {
    role: AccountRole,
    user: TestUser,
    membership: String,
    user_access: String,
    bot: String,
    bot_key: String,
    bot_access: String,
}

struct Principals {
    account: String,
    ws: String,
    owner: TestUser,
    admin: TestUser,
    targets: Vec<Target>,
}

async fn principals(t: &TestApp, n: usize) -> Principals {
    let owner = t.user(&format!("owner{n}@esc.test")).await;
    let admin = t.user(&format!("admin{n}@esc.test")).await;
    let account = t.account(&owner, &format!("esc{n}")).await;
    t.add_member(account, &owner, &admin, AccountRole::Admin)
        .await;
    let ws = t.workspace(account, &owner.key, "prod").await;
    let a = account.to_string();
    let viewer = BuiltinWorkspaceRole::Viewer.id();
    let mut targets = Vec::new();
    for role in [AccountRole::Owner, AccountRole::Admin, AccountRole::Member] {
        let user = t
            .user(&format!("{}-{n}@esc.test", role.name().to_lowercase()))
            .await;
        let membership = t.add_member(account, &owner, &user, role).await.to_string();
        let (s, v) = t
            .call(
                M::POST,
                &format!("/api/accounts/{a}/workspaces/{ws}/user_access/"),
                Some(&owner.key),
                Some(json!([{"user_id": user.id, "workspace_role_id": viewer}])),
            )
            .await;
        assert_eq!(s, S::OK, "{v}");
        let user_access = v[0]["id"].as_str().expect("access id").to_string();
        let (s, v) = t
            .call(
                M::POST,
                &format!("/api/accounts/{a}/bots/"),
                Some(&owner.key),
                Some(json!({"name": format!("bot-{}", role.name()), "account_role_id": role.id()})),
            )
            .await;
        assert_eq!(s, S::CREATED, "{v}");
        let bot = v["id"].as_str().expect("bot id").to_string();
        let bot_key = v["api_key"]["id"].as_str().expect("key id").to_string();
        let (s, v) = t
            .call(
                M::POST,
                &format!("/api/accounts/{a}/workspaces/{ws}/bot_access/"),
                Some(&owner.key),
                Some(json!([{"bot_id": bot, "workspace_role_id": viewer}])),
            )
            .await;
        assert_eq!(s, S::OK, "{v}");
        let bot_access = v[0]["id"].as_str().expect("bot access id").to_string();
        targets.push(Target {
            role,
            user,
            membership,
            user_access,
            bot,
            bot_key,
            bot_access,
        });
    }
    Principals {
        account: a,
        ws: ws.to_string(),
        owner,
        admin,
        targets,
    }
}

/// The request of principal operation `op` (an entry of [`PRINCIPAL_OPS`]) against `x`.
fn principal_request(op: (&str, &str), p: &Principals, x: &Target) -> (M, String, Option<Value>) {
    let (a, w) = (&p.account, &p.ws);
    let member_role = AccountRole::Member.id();
    let viewer = BuiltinWorkspaceRole::Viewer.id();
    let (path, body) = match op {
        ("PATCH", "/api/accounts/{}/bots/{}") => (
            format!("/api/accounts/{a}/bots/{}", x.bot),
            Some(json!({"name": "renamed", "account_role_id": member_role})),
        ),
        ("DELETE", "/api/accounts/{}/bots/{}") => {
            (format!("/api/accounts/{a}/bots/{}", x.bot), None)
        }
        ("POST", "/api/accounts/{}/bots/{}/rotate_api_key") => (
            format!("/api/accounts/{a}/bots/{}/rotate_api_key", x.bot),
            Some(json!({})),
        ),
        ("DELETE", "/api/accounts/{}/bots/{}/delete_bot_api_key/{}") => (
            format!(
                "/api/accounts/{a}/bots/{}/delete_bot_api_key/{}",
                x.bot, x.bot_key
            ),
            None,
        ),
        ("POST", "/api/accounts/{}/workspaces/{}/bot_access") => (
            format!("/api/accounts/{a}/workspaces/{w}/bot_access"),
            Some(json!([{"bot_id": x.bot, "workspace_role_id": viewer}])),
        ),
        ("DELETE", "/api/accounts/{}/workspaces/{}/bot_access/{}") => (
            format!(
                "/api/accounts/{a}/workspaces/{w}/bot_access/{}",
                x.bot_access
            ),
            None,
        ),
        ("PATCH", "/api/accounts/{}/account_memberships/{}") => (
            format!("/api/accounts/{a}/account_memberships/{}", x.membership),
            Some(json!({"account_role_id": member_role})),
        ),
        ("DELETE", "/api/accounts/{}/account_memberships/{}") => (
            format!("/api/accounts/{a}/account_memberships/{}", x.membership),
            None,
        ),
        ("PATCH", "/api/accounts/{}/account_memberships/{}/active") => (
            format!(
                "/api/accounts/{a}/account_memberships/{}/active",
                x.membership
            ),
            Some(json!({"active": false})),
        ),
        ("POST", "/api/accounts/{}/account_memberships/set_active") => (
            format!("/api/accounts/{a}/account_memberships/set_active"),
            Some(json!({"membership_ids": [x.membership], "active": false})),
        ),
        ("POST", "/api/accounts/{}/workspaces/{}/user_access") => (
            format!("/api/accounts/{a}/workspaces/{w}/user_access"),
            Some(json!([{"user_id": x.user.id, "workspace_role_id": viewer}])),
        ),
        ("DELETE", "/api/accounts/{}/workspaces/{}/user_access/{}") => (
            format!(
                "/api/accounts/{a}/workspaces/{w}/user_access/{}",
                x.user_access
            ),
            None,
        ),
        other => panic!("no request for principal operation {other:?}: add one"),
    };
    (M::from_bytes(op.0.as_bytes()).expect("method"), path, body)
}

/// Everything an operation on a principal could change, as the Owner reads it.
async fn access_state(t: &TestApp, p: &Principals) -> Value {
    let (a, w, k) = (&p.account, &p.ws, Some(p.owner.key.as_str()));
    let mut out = Vec::new();
    for (m, path) in [
        (
            M::POST,
            format!("/api/accounts/{a}/account_memberships/filter"),
        ),
        (M::POST, format!("/api/accounts/{a}/bots/filter")),
        (
            M::POST,
            format!("/api/accounts/{a}/workspaces/{w}/user_access/filter"),
        ),
        (
            M::POST,
            format!("/api/accounts/{a}/workspaces/{w}/bot_access/filter"),
        ),
    ] {
        let (s, v) = t.call(m, &path, k, Some(json!({"limit": 200}))).await;
        assert_eq!(s, S::OK, "{path}: {v}");
        out.push(v);
    }
    for x in &p.targets {
        let (_, v) = t
            .call(
                M::GET,
                &format!("/api/accounts/{a}/bots/{}/read_bot_api_keys", x.bot),
                k,
                None,
            )
            .await;
        out.push(v);
    }
    Value::Array(out)
}

#[tokio::test]
async fn nobody_acts_on_a_principal_whose_role_is_above_their_own() {
    each_db(|t| async move {
        let mut n = 0;
        let mut refused = 0;
        for op in PRINCIPAL_OPS {
            for caller_is_owner in [false, true] {
                for target in 0..3 {
                    n += 1;
                    let p = principals(&t, n).await;
                    let x = &p.targets[target];
                    let caller = if caller_is_owner { &p.owner } else { &p.admin };
                    let (m, path, body) = principal_request(*op, &p, x);
                    let before = access_state(&t, &p).await;
                    let (s, v) = t.call(m, &path, Some(&caller.key), body).await;
                    let above = !caller_is_owner && x.role == AccountRole::Owner;
                    if above {
                        refused += 1;
                        assert_eq!(s, S::FORBIDDEN, "{:?} Admin {op:?} on an Owner: {v}", t.db);
                        assert!(
                            v["detail"].as_str().is_some_and(|d| d.contains("above")),
                            "{v}"
                        );
                        assert_eq!(
                            access_state(&t, &p).await,
                            before,
                            "{op:?}: a refused operation changed nothing"
                        );
                    } else {
                        assert!(
                            s.is_success(),
                            "{:?} {} {op:?} on a {}: {s} {v}",
                            t.db,
                            if caller_is_owner { "Owner" } else { "Admin" },
                            x.role.name()
                        );
                    }
                }
            }
        }
        assert_eq!(refused, PRINCIPAL_OPS.len());
    })
    .await;
}

#[tokio::test]
async fn an_admin_cannot_take_an_owner_service_accounts_key_or_become_owner() {
    each_db(|t| async move {
        let p = principals(&t, 0).await;
        let a = &p.account;
        let owner_bot = &p.targets[0];
        // The rotation that used to hand an Admin the Owner bot's new key.
        let (s, v) = t
            .call(M::POST, &format!("/api/accounts/{a}/bots/{}/rotate_api_key", owner_bot.bot), Some(&p.admin.key), Some(json!({})))
            .await;
        assert_eq!(s, S::FORBIDDEN, "{v}");
        assert!(!v.to_string().contains("pnb_"), "no key in a refusal: {v}");
        // Nor a role above their own, for themselves or anyone.
        let admin_membership = {
            let (_, v) = t.call(M::GET, &format!("/api/accounts/{a}/account_memberships/by-user/{}", p.admin.id), Some(&p.admin.key), None).await;
            v["id"].as_str().expect("membership").to_string()
        };
        for target in [admin_membership.as_str(), p.targets[2].membership.as_str()] {
            let (s, v) = t
                .call(M::PATCH, &format!("/api/accounts/{a}/account_memberships/{target}"), Some(&p.admin.key), Some(json!({"account_role_id": AccountRole::Owner.id()})))
                .await;
            assert_eq!(s, S::FORBIDDEN, "{v}");
        }
        let (s, v) = t
            .call(M::PATCH, &format!("/api/accounts/{a}/bots/{}", p.targets[1].bot), Some(&p.admin.key), Some(json!({"account_role_id": AccountRole::Owner.id()})))
            .await;
        assert_eq!(s, S::FORBIDDEN, "{v}");
        let (s, v) = t
            .call(M::POST, &format!("/api/accounts/{a}/bots/"), Some(&p.admin.key), Some(json!({"name": "mine", "account_role_id": AccountRole::Owner.id()})))
            .await;
        assert_eq!(s, S::FORBIDDEN, "{v}");
        // Every refusal is in the audit log.
        let (s, v) = t
            .call(M::POST, &format!("/api/accounts/{a}/events/filter"), Some(&p.owner.key),
                Some(json!({"filter": {"event": {"name": ["prefect-cloud.request.access-denied"]}}, "limit": 50})))
            .await;
        assert_eq!(s, S::OK, "{v}");
        assert_eq!(v["events"].as_array().map(Vec::len), Some(5), "{v}");
    })
    .await;
}

// ---- refusals never hold up other requests ----

/// Milliseconds of each request in a batch, summarized for the log (measured, not asserted:
/// BENCHMARKS.md has the numbers).
fn summary(label: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q) as usize];
    eprintln!(
        "{label}: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        ms.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

#[tokio::test]
async fn refusals_decided_inside_a_transaction_answer_at_once_and_never_stall_another_account() {
    use futures_util::future::join_all;
    each_db(|t| async move {
        // Account A: an Admin who will try to demote the Owner, and a Member holding a custom
        // role that may manage users but may not grant what it does not hold.
        let owner = t.user("owner@a.test").await;
        let admin = t.user("admin@a.test").await;
        let granter = t.user("granter@a.test").await;
        let a = t.account(&owner, "tenant-a").await;
        let owner_membership = {
            let (_, v) = t.call(M::GET, &format!("/api/accounts/{a}/account_memberships/by-user/{}", owner.id), Some(&owner.key), None).await;
            v["id"].as_str().expect("membership").to_string()
        };
        t.add_member(a, &owner, &admin, AccountRole::Admin).await;
        t.add_member(a, &owner, &granter, AccountRole::Member).await;
        let ws = t.workspace(a, &owner.key, "prod").await;
        let (s, role) = t
            .call(M::POST, &format!("/api/accounts/{a}/workspace_roles/"), Some(&owner.key),
                Some(json!({"name": "User manager", "scopes": ["manage_workspace_users"]})))
            .await;
        assert_eq!(s, S::CREATED, "{role}");
        let (s, v) = t
            .call(M::POST, &format!("/api/accounts/{a}/workspaces/{ws}/user_access/"), Some(&owner.key),
                Some(json!([{"user_id": granter.id, "workspace_role_id": role["id"]}])))
            .await;
        assert_eq!(s, S::OK, "{v}");
        // Account B writes meanwhile.
        let other = t.user("b-owner@b.test").await;
        let b = t.account(&other, "tenant-b").await;

        const N: usize = 24;
        let demote = |_: usize| async {
            let start = std::time::Instant::now();
            let (s, v) = t
                .call(M::PATCH, &format!("/api/accounts/{a}/account_memberships/{owner_membership}"), Some(&admin.key),
                    Some(json!({"account_role_id": AccountRole::Member.id()})))
                .await;
            (s, v, start.elapsed().as_secs_f64() * 1e3)
        };
        let grant = |_: usize| async {
            let start = std::time::Instant::now();
            let (s, v) = t
                .call(M::POST, &format!("/api/accounts/{a}/workspaces/{ws}/user_access/"), Some(&granter.key),
                    Some(json!([{"user_id": admin.id, "workspace_role_id": BuiltinWorkspaceRole::Owner.id()}])))
                .await;
            (s, v, start.elapsed().as_secs_f64() * 1e3)
        };
        let tr = &t;
        let write = |i: usize| {
            let other = &other;
            async move {
                let start = std::time::Instant::now();
                let (s, v) = tr
                    .call(M::POST, &format!("/api/accounts/{b}/workspaces/"), Some(&other.key),
                        Some(json!({"name": format!("w{i}"), "handle": format!("w{i}")})))
                    .await;
                (s, v, start.elapsed().as_secs_f64() * 1e3)
            }
        };
        // The other account's writes alone first, as the baseline of the figures printed below.
        let alone = join_all((100..100 + N).map(write)).await;
        for (s, v, _) in &alone {
            assert_eq!(*s, S::CREATED, "{v}");
        }
        summary(&format!("{:?} other account's writes alone", t.db), alone.iter().map(|r| r.2).collect());
        let (demotes, grants, writes) = tokio::join!(
            join_all((0..N).map(demote)),
            join_all((0..N).map(grant)),
            join_all((0..N).map(write)),
        );
        for (s, v, _) in demotes.iter().chain(&grants) {
            assert_eq!(*s, S::FORBIDDEN, "{:?}: {v}", t.db);
        }
        for (s, v, _) in &writes {
            assert_eq!(*s, S::CREATED, "{:?}: another account's write: {v}", t.db);
        }
        summary(&format!("{:?} refusals inside a transaction", t.db), demotes.iter().chain(&grants).map(|r| r.2).collect());
        summary(&format!("{:?} other account's writes meanwhile", t.db), writes.iter().map(|r| r.2).collect());
        // Every refusal is audited (outside the transaction that decided it).
        let (s, v) = t
            .call(M::POST, &format!("/api/accounts/{a}/events/filter"), Some(&owner.key),
                Some(json!({"filter": {"event": {"name": ["prefect-cloud.request.access-denied"]}}, "limit": 200})))
            .await;
        assert_eq!(s, S::OK, "{v}");
        assert_eq!(v["events"].as_array().map(Vec::len), Some(2 * N), "{:?}: every refusal audited", t.db);
        // The Owner is still Owner; nothing was granted.
        let (_, v) = t.call(M::GET, &format!("/api/accounts/{a}/account_memberships/{owner_membership}"), Some(&owner.key), None).await;
        assert_eq!(v["account_role_name"], "Owner");
    })
    .await;
}

// ---- redirects after sign-in ----

#[tokio::test]
async fn sign_in_only_ever_redirects_to_this_origin() {
    use crate::dashboard::get_page;
    each_db(|t| async move {
        t.user_with_password("ann@x.test").await;
        // As the browser would send them in the query (percent-encoded) and as a form field.
        let sign_in = |next: &'static str| {
            let t = &t;
            async move {
                let (_, h, html) = get_page(t, "/login", "").await;
                let (s, h, _) = form(
                    t,
                    "/login",
                    &csrf_cookie(&h),
                    &[
                        ("csrf", &hidden(&html, "csrf")),
                        ("email", "ann@x.test"),
                        ("password", "a-long-password"),
                        ("next", next),
                    ],
                )
                .await;
                (s, h)
            }
        };
        for (next, lands) in [
            ("/account/x?tab=1", "/account/x?tab=1"),
            ("/%09/evil.test", "/%09/evil.test"),
            ("/\t/evil.test", "/"),
            ("/\n/evil.test", "/"),
            ("/\r\n/evil.test", "/"),
            ("/\\evil.test", "/"),
            ("\\\\evil.test", "/"),
            ("//evil.test", "/"),
            ("///evil.test", "/"),
            (" //evil.test", "/"),
            ("https://evil.test", "/"),
            ("javascript:alert(1)", "/"),
            ("/caf\u{e9}", "/"),
            ("/%0d%0aSet-Cookie:x=1", "/%0d%0aSet-Cookie:x=1"),
            // Escapes are not decoded in a Location: this path stays on this origin.
            ("/%2F%2Fevil.test", "/%2F%2Fevil.test"),
        ] {
            let (s, h) = sign_in(next).await;
            assert_eq!(s, S::SEE_OTHER, "{next:?}");
            assert_eq!(h["location"], lands, "{next:?}");
        }
        // The sign-in page itself never fails on a hostile `next`.
        for q in ["%0a", "%0d%0a", "/%09/evil.test", "%ff", "%00"] {
            let (s, _, html) = get_page(&t, &format!("/login?next={q}"), "").await;
            assert_eq!(s, S::OK, "{q}: {html}");
            assert!(html.contains("name=\"next\" value=\"/\""), "{q}");
        }
    })
    .await;
}

// ---- where upstreams may point ----

#[tokio::test]
async fn account_owners_bind_upstreams_only_where_the_operator_allows() {
    each_db(|t| async move {
        let port = recording_upstream().await;
        let w = setup(&t, port, "acme").await;
        let own = t.serve_tcp().await;
        let root = t.site_admin("root@x.test").await;
        let up = format!("/api/accounts/{}/workspaces/{}/upstream", w.account, w.ws);
        // The tests' operator lets account Owners bind 127.0.0.0/8 (support.rs).
        for (url, why) in [
            ("http://169.254.169.254/latest/api", "link-local"),
            ("http://[::ffff:169.254.169.254]:80/api", "link-local"),
            ("http://[fe80::1]:4200/api", "link-local"),
            ("http://0.0.0.0:4200/api", "unicast"),
            ("http://[::]:4200/api", "unicast"),
            ("http://10.1.2.3:4200/api", "outside the networks"),
            ("http://[::1]:4200/api", "outside the networks"),
            (&format!("http://127.0.0.1:{own}/api"), "own listener"),
            (&format!("http://127.0.0.2:{own}/api"), "own listener"),
        ] {
            let (s, v) = t.call(M::PUT, &up, Some(&w.owner.key), Some(json!({"url": url}))).await;
            assert_eq!(s, S::FORBIDDEN, "{url}: {v}");
            assert!(v["detail"].as_str().is_some_and(|d| d.contains(why)), "{url}: {v}");
        }
        // A name is checked by what it resolves to.
        let (s, v) = t.call(M::PUT, &up, Some(&w.owner.key), Some(json!({"url": format!("http://localhost:{port}/api")}))).await;
        assert_eq!(s, S::OK, "{v}");
        // A site admin may bind outside the list, but never to the special addresses.
        let (s, v) = t.call(M::PUT, &up, Some(&root.key), Some(json!({"url": "http://10.1.2.3:4200/api"}))).await;
        assert_eq!(s, S::NOT_FOUND, "site admins act inside accounts they belong to only: {v}");
        // Another account's server is not an Owner's to bind.
        let other = setup(&t, recording_upstream().await, "other").await;
        let their_up = format!("/api/accounts/{}/workspaces/{}/upstream", other.account, other.ws);
        let (s, v) = t.call(M::PUT, &their_up, Some(&other.owner.key), Some(json!({"url": format!("http://127.0.0.1:{port}/api")}))).await;
        assert_eq!(s, S::FORBIDDEN, "{v}");
        assert!(v["detail"].as_str().is_some_and(|d| d.contains("another account")), "{v}");
        // Every refusal is audited.
        let (s, v) = t
            .call(M::POST, &format!("/api/accounts/{}/events/filter", w.account), Some(&w.owner.key),
                Some(json!({"filter": {"event": {"name": ["prefect-cloud.request.access-denied"]}}, "limit": 50})))
            .await;
        assert_eq!(s, S::OK, "{v}");
        assert_eq!(v["events"].as_array().map(Vec::len), Some(9), "{v}");
    })
    .await;
}

#[test]
fn the_cli_binds_anywhere_ordinary_but_never_metadata_or_atrium_itself() {
    let dir = tempfile::tempdir().expect("dir");
    let inst = Installation::new(format!("sqlite://{}/atrium.db", dir.path().display()));
    let (account, key) = inst.bootstrap("ann@cli.test", "acme");
    {
        let server = inst.serve();
        create_workspace(server.port, &account, &key, "prod");
    }
    // The CLI is the operator: outside any upstream_networks, but not the special addresses
    // (its own listener is the configured bind address, 127.0.0.1:4300 by default).
    for (url, ok) in [
        ("http://10.1.2.3:4200/api", true),
        ("http://169.254.169.254/api", false),
        ("http://127.0.0.1:4300/api", false),
        ("http://0.0.0.0:4200/api", false),
    ] {
        let out = inst.cli_output(
            &[
                "workspaces",
                "set-upstream",
                "--account",
                "acme",
                "--workspace",
                "prod",
                "--url",
                url,
            ],
            None,
        );
        assert_eq!(
            out.status.success(),
            ok,
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The command's refusals reached the audit log before it exited.
    let log = inst.cli(&["audit", "export", "--account", "acme"], None);
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("prefect-cloud.request.access-denied"))
            .count(),
        3,
        "{log}"
    );
}

#[tokio::test]
async fn a_name_that_rebinds_to_a_forbidden_address_is_refused_at_connection_time() {
    each_db_and_transport(|t| async move {
        let port = recording_upstream().await;
        let w = setup(&t, port, "acme").await;
        let up = format!("/api/accounts/{}/workspaces/{}/upstream", w.account, w.ws);
        let name = format!("prefect.rebind.test:{port}");
        // DNS is faked (it is outside this machine): the name answers loopback when bound…
        let loopback: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        t.app.dns.pin(&name, vec![loopback]);
        let (s, v) = t
            .call(
                M::PUT,
                &up,
                Some(&w.owner.key),
                Some(json!({"url": format!("http://{name}/api")})),
            )
            .await;
        assert_eq!(s, S::OK, "{v}");
        // …and the metadata address when the gateway connects: refused, nothing sent.
        let metadata: std::net::SocketAddr =
            format!("169.254.169.254:{port}").parse().expect("addr");
        t.app.dns.pin(&name, vec![metadata]);
        let (s, v) = t
            .call(
                M::POST,
                &w.path("flows/filter"),
                Some(&w.viewer.key),
                Some(json!({})),
            )
            .await;
        assert_eq!(s, S::BAD_GATEWAY, "{v}");
        assert!(
            v["detail"]
                .as_str()
                .is_some_and(|d| d.contains("upstream policy")),
            "{v}"
        );
        // Answering loopback again, it works, with the upstream's own Host.
        t.app.dns.pin(&name, vec![loopback]);
        let (s, v) = t
            .call(
                M::POST,
                &w.path("flows/filter"),
                Some(&w.viewer.key),
                Some(json!({})),
            )
            .await;
        assert_eq!((s, &v["path"]), (S::OK, &json!("/api/flows/filter")), "{v}");
        assert_eq!(v["headers"]["host"], name);
    })
    .await;
}

// ---- CSRF, session fixation, headers ----

#[tokio::test]
async fn form_tokens_work_only_with_the_session_they_were_made_for() {
    use crate::dashboard::{get_page, sign_in};
    each_db(|t| async move {
        t.user_with_password("ann@x.test").await;
        t.user_with_password("bob@x.test").await;
        let (_, h) = sign_in(&t, "ann@x.test", "a-long-password", "/").await;
        let ann = cookie_of(&h, "atrium_session");
        let (_, h) = sign_in(&t, "bob@x.test", "a-long-password", "/").await;
        let bob = cookie_of(&h, "atrium_session");
        let (s, h, html) = get_page(&t, "/me/api-keys", &ann).await;
        assert_eq!(s, S::OK);
        assert!(
            csrf_cookie(&h).is_empty(),
            "a signed-in page's token needs no cookie"
        );
        let ann_token = hidden(&html, "csrf");
        let create = |cookie: String, token: String| {
            let t = &t;
            async move {
                form(
                    t,
                    "/me/api-keys",
                    &cookie,
                    &[("csrf", &token), ("name", "k"), ("days", "")],
                )
                .await
                .0
            }
        };
        // Bob's session with Ann's token: refused.
        assert_eq!(create(bob.clone(), ann_token.clone()).await, S::FORBIDDEN);
        // A pre-session cookie and token pair the attacker got from the sign-in page, planted
        // next to Ann's session: refused (her forms are bound to her session).
        let (_, h, html) = get_page(&t, "/login", "").await;
        let (planted, planted_token) = (csrf_cookie(&h), hidden(&html, "csrf"));
        assert!(!planted.is_empty());
        assert_eq!(
            create(format!("{ann}; {planted}"), planted_token).await,
            S::FORBIDDEN
        );
        // Tokens are not guessable from one another.
        let mut forged = ann_token.clone();
        forged.pop();
        forged.push(if ann_token.ends_with('0') { '1' } else { '0' });
        assert_eq!(create(ann.clone(), forged).await, S::FORBIDDEN);
        assert_eq!(create(ann.clone(), String::new()).await, S::FORBIDDEN);
        // Ann's own token with her own session: accepted.
        assert_eq!(create(ann.clone(), ann_token).await, S::OK);
    })
    .await;
}

#[tokio::test]
async fn signing_in_over_a_planted_session_starts_a_new_one() {
    use crate::dashboard::get_page;
    each_db(|t| async move {
        t.user_with_password("ann@x.test").await;
        t.user_with_password("mallory@x.test").await;
        let login = |cookie: String, email: &'static str| {
            let t = &t;
            async move {
                let (_, h, html) = get_page(t, "/login", &cookie).await;
                let cookies = format!("{cookie}; {}", csrf_cookie(&h));
                form(
                    t,
                    "/login",
                    &cookies,
                    &[
                        ("csrf", &hidden(&html, "csrf")),
                        ("email", email),
                        ("password", "a-long-password"),
                    ],
                )
                .await
            }
        };
        // Mallory's own session, planted in Ann's browser (a sibling subdomain, plain HTTP).
        let (s, h, _) = login(String::new(), "mallory@x.test").await;
        assert_eq!(s, S::SEE_OTHER);
        let mallory = cookie_of(&h, "atrium_session");
        let (s, h, _) = login(mallory.clone(), "ann@x.test").await;
        assert_eq!(s, S::SEE_OTHER);
        let ann = cookie_of(&h, "atrium_session");
        assert_ne!(ann, mallory, "a new session id at sign-in");
        let me = |cookie: String| {
            let t = &t;
            async move {
                let req = axum::http::Request::builder()
                    .uri("/api/me")
                    .header("cookie", cookie)
                    .body(axum::body::Body::empty())
                    .expect("req");
                let (_, _, b) = t.send(req).await;
                serde_json::from_slice::<Value>(&b).unwrap_or(Value::Null)
            }
        };
        assert_eq!(me(ann).await["email"], "ann@x.test");
        assert_eq!(
            me(mallory).await["email"],
            "mallory@x.test",
            "the planted session never became Ann's"
        );
    })
    .await;
}

#[tokio::test]
async fn every_page_and_api_answer_carries_the_security_headers() {
    use crate::dashboard::{get_page, sign_in};
    each_db(|t| async move {
        t.user_with_password("ann@x.test").await;
        let (_, h) = sign_in(&t, "ann@x.test", "a-long-password", "/").await;
        let ann = cookie_of(&h, "atrium_session");
        for (path, cookie) in [
            ("/login", ""),
            ("/", ann.as_str()),
            ("/me/api-keys", ann.as_str()),
            ("/api/health", ""),
            ("/api/me", ""),
            ("/no/such/page", ""),
        ] {
            let (_, h, _) = get_page(&t, path, cookie).await;
            assert_eq!(h["x-frame-options"], "DENY", "{path}");
            assert!(
                h["content-security-policy"]
                    .to_str()
                    .unwrap_or("")
                    .contains("frame-ancestors 'none'"),
                "{path}"
            );
            assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        }
    })
    .await;
}

// ---- the login throttle ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_are_counted_before_the_password_is_checked_and_never_lock_out_the_owner()
{
    use atrium::services::auth::MAX_FAILURES_PER_ADDRESS_AND_EMAIL as LIMIT;
    each_db(|t| async move {
        let t = t
            .reconfigured(|c| {
                c.trusted_proxies =
                    vec![atrium::domain::ipnet::IpNetwork::parse("127.0.0.1").expect("net")];
            })
            .await
            .over_tcp()
            .await;
        t.user_with_password("ann@x.test").await;
        t.user_with_password("bob@x.test").await;
        let login = |from: &'static str, email: &'static str, password: &'static str| {
            let t = &t;
            async move {
                let body = json!({"email": email, "password": password}).to_string();
                let req = axum::http::Request::builder()
                    .method(M::POST)
                    .uri("/api/auth/login")
                    .header("content-type", "application/json")
                    .header("content-length", body.len())
                    .header("x-forwarded-for", from)
                    .body(axum::body::Body::from(body))
                    .expect("req");
                t.send(req).await.0
            }
        };
        let attacker = "198.51.100.7";
        let guesses = futures_util::future::join_all(
            (0..30).map(|_| login(attacker, "ann@x.test", "guess-guess")),
        )
        .await;
        let unauthorized = guesses.iter().filter(|s| **s == S::UNAUTHORIZED).count();
        let throttled = guesses
            .iter()
            .filter(|s| **s == S::TOO_MANY_REQUESTS)
            .count();
        assert_eq!(
            (unauthorized, throttled),
            (LIMIT as usize, 30 - LIMIT as usize),
            "{:?}: parallel guesses past the limit were refused before their hash ran: {guesses:?}",
            t.db
        );
        // The attacker's address is throttled for Ann, even with the right password …
        assert_eq!(
            login(attacker, "ann@x.test", "a-long-password").await,
            S::TOO_MANY_REQUESTS
        );
        // … but Ann, from an address with no failures, signs in …
        assert_eq!(
            login("203.0.113.9", "ann@x.test", "a-long-password").await,
            S::OK
        );
        // … and other users are not locked out by someone else's guesses.
        assert_eq!(
            login(attacker, "bob@x.test", "a-long-password").await,
            S::OK
        );
    })
    .await;
}

// ---- email changes ----

#[tokio::test]
async fn an_email_change_needs_the_password_and_a_link_followed_from_the_new_address() {
    each_db(|t| async move {
        let ann = t.user_with_password("ann@x.test").await;
        let key = atrium::services::users::issue_api_key(&t.app, None, ann, "k", None)
            .await
            .expect("key")
            .key;
        // A stolen key alone: not through the profile …
        let (s, v) = t
            .call(
                M::PATCH,
                &format!("/api/users/{ann}"),
                Some(&key),
                Some(json!({"email": "mallory@evil.test"})),
            )
            .await;
        assert_eq!(s, S::UNPROCESSABLE_ENTITY, "{v}");
        assert!(
            v["detail"]
                .as_str()
                .is_some_and(|d| d.contains("email_change")),
            "{v}"
        );
        // … nor without the password.
        let change = format!("/api/users/{ann}/email_change");
        let (s, v) = t
            .call(
                M::POST,
                &change,
                Some(&key),
                Some(json!({"email": "mallory@evil.test", "password": "not-it-at-all"})),
            )
            .await;
        assert_eq!(s, S::FORBIDDEN, "{v}");
        // With it, the new address gets a link and the old one a notice; nothing changed yet.
        let (s, v) = t
            .call(
                M::POST,
                &change,
                Some(&key),
                Some(json!({"email": "Ann.New@x.test", "password": "a-long-password"})),
            )
            .await;
        assert_eq!(s, S::ACCEPTED, "{v}");
        let (_, me) = t.call(M::GET, "/api/me", Some(&key), None).await;
        assert_eq!(me["email"], "ann@x.test");
        let token = {
            use sqlx::Row;
            let mut c = t.app.store.reader().await.expect("conn");
            let rows = sqlx::query("SELECT to_addr, body_text FROM outbox ORDER BY created")
                .fetch_all(&mut *c)
                .await
                .expect("outbox");
            let mail: Vec<(String, String)> = rows
                .iter()
                .map(|r| {
                    (
                        r.try_get("to_addr").expect("to"),
                        r.try_get("body_text").expect("body"),
                    )
                })
                .collect();
            assert_eq!(
                mail.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
                ["Ann.New@x.test", "ann@x.test"]
            );
            assert!(
                mail.iter().all(|m| !m.1.contains("token=")),
                "bodies are sealed at rest"
            );
            let body = atrium::services::mail::open_body(&t.app, &mail[0].1).expect("opens");
            let link = body
                .split_whitespace()
                .find(|w| w.contains("/my/email/confirm?token="))
                .expect("link")
                .to_string();
            assert!(
                link.starts_with(&t.app.config.public_url),
                "links use the public URL: {link}"
            );
            link.rsplit('=').next().expect("token").to_string()
        };
        let confirm = "/api/auth/email_change/confirm";
        let (s, _) = t
            .call(
                M::POST,
                confirm,
                None,
                Some(json!({"token": format!("{}x", &token[1..])})),
            )
            .await;
        assert_eq!(s, S::NOT_FOUND);
        let (s, v) = t
            .call(M::POST, confirm, None, Some(json!({"token": token})))
            .await;
        assert_eq!((s, &v["email"]), (S::OK, &json!("Ann.New@x.test")), "{v}");
        let (s, _) = t
            .call(M::POST, confirm, None, Some(json!({"token": token})))
            .await;
        assert_eq!(s, S::NOT_FOUND, "the link works once");
        let (s, _) = t
            .call(
                M::POST,
                "/api/auth/login",
                None,
                Some(json!({"email": "ann.new@x.test", "password": "a-long-password"})),
            )
            .await;
        assert_eq!(s, S::OK);
        // An expired link does nothing.
        let (s, _) = t
            .call(
                M::POST,
                &change,
                Some(&key),
                Some(json!({"email": "later@x.test", "password": "a-long-password"})),
            )
            .await;
        assert_eq!(s, S::ACCEPTED);
        t.clock.advance(chrono::Duration::seconds(
            atrium::services::users::EMAIL_CHANGE_TTL_SECONDS + 1,
        ));
        let stale = {
            use sqlx::Row;
            let mut c = t.app.store.reader().await.expect("conn");
            let r = sqlx::query("SELECT body_text FROM outbox WHERE to_addr = 'later@x.test'")
                .fetch_one(&mut *c)
                .await
                .expect("mail");
            let body = atrium::services::mail::open_body(
                &t.app,
                &r.try_get::<String, _>("body_text").expect("body"),
            )
            .expect("opens");
            body.split("token=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .expect("token")
                .to_string()
        };
        let (s, _) = t
            .call(M::POST, confirm, None, Some(json!({"token": stale})))
            .await;
        assert_eq!(s, S::NOT_FOUND);
    })
    .await;
}

// ---- secrets in the database files ----

#[tokio::test]
async fn invitation_codes_never_sit_in_the_sqlite_files_in_clear() {
    let t = TestApp::new(Db::Sqlite).await;
    let owner = t.user("owner@x.test").await;
    let a = t.account(&owner, "acme").await;
    let (s, v) = t
        .call(
            M::POST,
            &format!("/api/accounts/{a}/invitations/"),
            Some(&owner.key),
            Some(json!([{"email": "new@x.test"}])),
        )
        .await;
    assert_eq!(s, S::CREATED, "{v}");
    let id = v[0]["id"].as_str().expect("id").to_string();
    let code = latest_code(&t, &id).await;
    assert!(code.len() >= 20, "{code}");
    atrium::services::mail::deliver_due(&t.app)
        .await
        .expect("deliver");
    let path = t
        .app
        .config
        .database_url
        .trim_start_matches("sqlite://")
        .to_string();
    for file in [path.clone(), format!("{path}-wal"), format!("{path}-shm")] {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        assert!(
            !bytes.windows(code.len()).any(|w| w == code.as_bytes()),
            "{file} holds the invitation code in clear"
        );
    }
}

// ---- what else the gateway reads ----

#[tokio::test]
async fn the_gateway_refuses_what_it_cannot_count_or_match_the_way_the_upstream_would() {
    each_db_and_transport(|t| async move {
        let port = recording_upstream().await;
        let w = setup(&t, port, "acme").await;
        // Item-counted routes: a body the gateway cannot count is refused, not charged as one.
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(br#"[{"message": "a"}, {"message": "b"}]"#);
        for body in [
            bom,
            br#"[{"message": NaN}]"#.to_vec(),
            b"{}".to_vec(),
            Vec::new(),
        ] {
            let (s, _, b) = t
                .raw(
                    M::POST,
                    &w.path("logs/"),
                    Some(&w.owner.key),
                    Some(body.clone()),
                    "application/json",
                )
                .await;
            assert_eq!(
                s,
                S::BAD_REQUEST,
                "{}: {}",
                String::from_utf8_lossy(&body),
                String::from_utf8_lossy(&b)
            );
        }
        // The route table matches paths as sent; the upstream decodes them first. An escaped
        // letter, digit or -._~ could make the two read different routes: refused.
        for rest in [
            "block_%64ocuments/filter",
            "flows/%66ilter",
            "flow_runs/%2Efoo",
            "variables/name/%7E",
        ] {
            let (s, v) = t
                .call(M::POST, &w.path(rest), Some(&w.owner.key), Some(json!({})))
                .await;
            assert_eq!(s, S::BAD_REQUEST, "{rest}: {v}");
        }
    })
    .await;
}

/// The Prefect UI's calls are authenticated by the session cookie (issue 21): a write with the
/// cookie — to the gateway or to Atrium's own API — must come from our origin and carry a Prefect
/// CSRF token minted for this session and this client, and not yet expired; a websocket opened
/// with the cookie must come from our origin. API keys need none of it.
#[tokio::test]
async fn cookie_writes_need_our_origin_and_an_unexpired_csrf_token_of_this_session() {
    each_db_and_transport(|t| async move {
        let port = recording_upstream().await;
        let w = setup(&t, port, "csrf").await;
        let account =
            atrium::domain::AccountId(uuid::Uuid::parse_str(&w.account).expect("account id"));
        let ada = TestUser {
            id: t.user_with_password("ada@csrf.test").await,
            key: w.owner.key.clone(),
            key_id: w.owner.key_id,
        };
        t.add_member(account, &w.owner, &ada, AccountRole::Owner)
            .await;
        let session = || async {
            let (_, h) =
                crate::dashboard::sign_in(&t, "ada@csrf.test", "a-long-password", "/").await;
            cookie_of(&h, "atrium_session")
        };
        let (cookie, other_session) = (session().await, session().await);
        let origin = t.app.config.public_url.clone();
        let send = |method: M, path: String, cookie: &str, headers: &[(&str, &str)]| {
            let mut req = axum::http::Request::builder()
                .method(method)
                .uri(path)
                .header("cookie", cookie)
                .header("content-type", "application/json")
                .header("content-length", "2");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let req = req.body(axum::body::Body::from("{}")).expect("request");
            let t = &t;
            async move {
                let (s, _, b) = t.send(req).await;
                (s, String::from_utf8_lossy(&b).into_owned())
            }
        };
        let token_for = |cookie: String, client: &'static str| {
            let path = w.path(&format!("csrf-token?client={client}"));
            let send = &send;
            async move {
                let (s, b) = send(M::GET, path, &cookie, &[]).await;
                assert_eq!(s, S::OK, "{b}");
                let v: Value = serde_json::from_str(&b).expect("token json");
                assert_eq!(v["client"], client);
                v["token"].as_str().expect("token").to_string()
            }
        };
        let token = token_for(cookie.clone(), "ui-1").await;
        let foreign = token_for(other_session.clone(), "ui-1").await;
        let flows = w.path("flows/");
        let lookalike = format!("{origin}.evil.test");
        let mut surprises = Vec::new();
        for (why, origin, token, client, want) in [
            (
                "no origin",
                None,
                Some(token.as_str()),
                "ui-1",
                S::FORBIDDEN,
            ),
            (
                "another origin",
                Some("http://127.0.0.1:1"),
                Some(token.as_str()),
                "ui-1",
                S::FORBIDDEN,
            ),
            (
                "a look-alike origin",
                Some(lookalike.as_str()),
                Some(token.as_str()),
                "ui-1",
                S::FORBIDDEN,
            ),
            (
                "no token",
                Some(origin.as_str()),
                None,
                "ui-1",
                S::FORBIDDEN,
            ),
            (
                "another client's token",
                Some(origin.as_str()),
                Some(token.as_str()),
                "ui-2",
                S::FORBIDDEN,
            ),
            (
                "another session's token",
                Some(origin.as_str()),
                Some(foreign.as_str()),
                "ui-1",
                S::FORBIDDEN,
            ),
            (
                "a forged token",
                Some(origin.as_str()),
                Some("99999999999999999.00000000000000000000000000000000"),
                "ui-1",
                S::FORBIDDEN,
            ),
            (
                "our origin and token",
                Some(origin.as_str()),
                Some(token.as_str()),
                "ui-1",
                S::OK,
            ),
        ] {
            let mut h = vec![("prefect-csrf-client", client)];
            if let Some(o) = origin {
                h.push(("origin", o));
            }
            if let Some(tok) = token {
                h.push(("prefect-csrf-token", tok));
            }
            let (s, b) = send(M::POST, flows.clone(), &cookie, &h).await;
            if s != want {
                surprises.push(format!(
                    "POST flows/ with {why}: {s} (want {want}) {b:.200}"
                ));
            }
        }
        // Atrium's own API follows the same rule for a cookie.
        let teams = format!("/api/accounts/{}/teams/", w.account);
        let body_ok = |s: S| s == S::CREATED || s == S::UNPROCESSABLE_ENTITY;
        let (s, b) = send(M::POST, teams.clone(), &cookie, &[("origin", &origin)]).await;
        if s != S::FORBIDDEN {
            surprises.push(format!(
                "POST teams/ with the cookie and no token: {s} {b:.200}"
            ));
        }
        let (s, b) = send(
            M::POST,
            teams,
            &cookie,
            &[
                ("origin", &origin),
                ("prefect-csrf-token", &token),
                ("prefect-csrf-client", "ui-1"),
            ],
        )
        .await;
        if !body_ok(s) {
            surprises.push(format!(
                "POST teams/ with the cookie and a token: {s} {b:.200}"
            ));
        }
        // A websocket handshake with the cookie from another origin never gets to the upgrade.
        let ws = |origin: &str| {
            axum::http::Request::builder()
                .method(M::GET)
                .uri(w.path("events/out"))
                .header("cookie", &cookie)
                .header("origin", origin)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                .body(axum::body::Body::empty())
                .expect("request")
        };
        let (s, _, _) = t.send(ws("http://127.0.0.1:1")).await;
        if s != S::FORBIDDEN {
            surprises.push(format!(
                "websocket with the cookie from another origin: {s}"
            ));
        }
        let (s, _, _) = t.send(ws(&origin)).await;
        if s == S::FORBIDDEN || s == S::UNAUTHORIZED {
            surprises.push(format!("websocket with the cookie from our origin: {s}"));
        }
        // An API key needs neither origin nor token.
        let (s, _) = t
            .call(M::POST, &flows, Some(&w.owner.key), Some(json!({})))
            .await;
        if s != S::OK {
            surprises.push(format!("POST flows/ with an API key: {s}"));
        }
        // A token stops working when it expires (an hour).
        t.clock.advance(chrono::Duration::minutes(61));
        let (s, _) = send(
            M::POST,
            flows,
            &cookie,
            &[
                ("origin", &origin),
                ("prefect-csrf-token", &token),
                ("prefect-csrf-client", "ui-1"),
            ],
        )
        .await;
        if s != S::FORBIDDEN {
            surprises.push(format!("POST flows/ with an expired token: {s}"));
        }
        assert_no_surprises(&t.db, &surprises);
    })
    .await;
}
