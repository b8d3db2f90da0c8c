//! The workspace gateway's decisions: which calls under `/api/accounts/{a}/workspaces/{w}/…` may
//! reach the workspace's upstream Prefect server (path canonicalization, the route → scope table,
//! the rate limits). The transport (streaming, websockets) is in `http::gateway`.

use crate::app::App;
use crate::authz::{Denied, Principal};
use crate::domain::gateway_routes::{self, Charge, Need, RouteRule};
use crate::domain::role::BuiltinWorkspaceRole;
use crate::domain::scope::Scope;
use crate::domain::{AccountId, WorkspaceId};
use crate::services::ratelimit::Bucket;
use crate::services::upstreams::{AccountGateway, Upstream};
use crate::services::{audit, Error, Result};
use std::sync::Arc;

/// A gateway call's target, parsed from the request path.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub account: AccountId,
    pub workspace: WorkspaceId,
    /// The path below the workspace prefix, without its leading slash, exactly as sent
    /// (still percent-encoded; a trailing slash kept).
    pub rest: &'a str,
}

/// Splits `/api/accounts/{a}/workspaces/{w}/{rest}`; `None` when the path is not a gateway path.
pub fn target(path: &str) -> Option<Target<'_>> {
    let p = path.strip_prefix("/api/accounts/")?;
    let (a, p) = p.split_once('/')?;
    let p = p.strip_prefix("workspaces/")?;
    let (w, rest) = p.split_once('/')?;
    let id = |s: &str| {
        (s.len() == 36)
            .then(|| uuid::Uuid::try_parse(s).ok())
            .flatten()
    };
    Some(Target {
        account: AccountId(id(a)?),
        workspace: WorkspaceId(id(w)?),
        rest,
    })
}

/// Refuses paths that could mean something else after decoding: encoded slashes or backslashes,
/// encoded or literal dot segments, empty segments (one trailing slash is allowed), NUL bytes.
/// What passes is forwarded byte for byte, so the path authorized is the path the upstream sees.
pub fn check_canonical(rest: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::BadRequest(format!(
            "path refused by the gateway: {why}"
        )))
    };
    if rest.is_empty() {
        return bad("no route below the workspace");
    }
    if rest.contains('\\') {
        return bad("encoded slashes and backslashes are not allowed");
    }
    // Without allocating (this runs on every gateway call): look at each escape once.
    let b = rest.as_bytes();
    for (i, _) in rest.match_indices('%') {
        match b
            .get(i + 1..i + 3)
            .map(|e| [e[0].to_ascii_lowercase(), e[1].to_ascii_lowercase()])
        {
            Some([b'2', b'f']) | Some([b'5', b'c']) => {
                return bad("encoded slashes and backslashes are not allowed")
            }
            Some([b'0', b'0']) => return bad("NUL bytes are not allowed"),
            _ => {}
        }
    }
    let body = rest.strip_suffix('/').unwrap_or(rest);
    for seg in body.split('/') {
        if seg.is_empty() {
            return bad("empty path segments (duplicate slashes) are not allowed");
        }
        if is_dot_segment(seg) {
            return bad("dot segments are not allowed");
        }
    }
    Ok(())
}

/// `.` or `..`, each dot possibly written `%2e` / `%2E`.
fn is_dot_segment(seg: &str) -> bool {
    let mut s = seg.as_bytes();
    let mut dots = 0;
    while !s.is_empty() && dots <= 2 {
        if s[0] == b'.' {
            s = &s[1..];
        } else if s.len() >= 3 && s[0] == b'%' && s[1] == b'2' && s[2].eq_ignore_ascii_case(&b'e') {
            s = &s[3..];
        } else {
            return false;
        }
        dots += 1;
    }
    s.is_empty() && (dots == 1 || dots == 2)
}

/// The route-table rule of a call (`method` is `WS` for a websocket upgrade); `None` for a route
/// not in the table.
pub fn rule_of(method: &str, t: &Target<'_>) -> Option<&'static RouteRule> {
    gateway_routes::lookup(method, t.rest)
}

/// Decides whether `p` may make a call whose rule is `rule` (from [`rule_of`]; `None`: a route not
/// in the table, allowed to workspace Owners only). A caller without access to the workspace gets
/// 404; a refusal is audited like every denial.
pub async fn authorize_call(
    app: &App,
    p: &Principal,
    t: &Target<'_>,
    method: &str,
    rule: Option<&'static RouteRule>,
    query: Option<&str>,
    body_asks_secrets: bool,
) -> Result<()> {
    let now = app.now().timestamp_micros();
    let held = app
        .index
        .workspace_scopes(p, t.account, t.workspace, now)
        .map_err(|d| match d {
            Denied::NotFound => Error::not_found("workspace"),
            Denied::Forbidden(m) => Error::Forbidden(m),
        })?;
    crate::services::ip_allowlist::check(app, p, t.account).await?;
    let path = t.rest;
    // At most two scopes: an array, not a Vec (this runs on every gateway call).
    let needed: [Option<Scope>; 2] = match rule.map(|r| r.need) {
        None => {
            let owner = BuiltinWorkspaceRole::Owner.scopes();
            if held.is_superset(owner) {
                return Ok(());
            }
            let msg = format!(
                "{method} {path} is not in the gateway's route table; only workspace Owners may call it"
            );
            audit::record_denial(app, p, t.account, &msg, Some(t.workspace)).await;
            return Err(Error::Forbidden(msg));
        }
        Some(Need::Member) => [None, None],
        Some(Need::Scope(s)) => [Some(s), None],
        Some(Need::Blocks) => {
            let q = query.unwrap_or("");
            let secrets = body_asks_secrets
                || q.split('&')
                    .any(|kv| kv.eq_ignore_ascii_case("include_secrets=true"));
            if secrets {
                [Some(Scope::SeeBlocks), Some(Scope::SeeSecretBlocks)]
            } else {
                [Some(Scope::SeeBlocks), None]
            }
        }
        Some(Need::AutomationsOwnedBy) => {
            let resource = path.rsplit('/').next().unwrap_or("");
            if resource.starts_with("prefect.deployment.") {
                [Some(Scope::WriteDeployments), None]
            } else {
                [Some(Scope::ManageAutomations), None]
            }
        }
    };
    for s in needed.into_iter().flatten() {
        if !held.contains(s) {
            audit::record_denial(app, p, t.account, s.name(), Some(t.workspace)).await;
            return Err(Error::Forbidden(format!(
                "missing workspace scope {}",
                s.name()
            )));
        }
    }
    Ok(())
}

/// True when the workspace has an upstream.
pub fn bound(app: &App, account: AccountId, workspace: WorkspaceId) -> bool {
    app.upstreams
        .account(&account.0)
        .is_some_and(|g| g.upstreams.contains_key(&workspace.0))
}

/// The workspace's upstream, or 503 when none is bound.
pub fn upstream(app: &App, t: &Target<'_>) -> Result<(Arc<AccountGateway>, Arc<Upstream>)> {
    let found = app.upstreams.account(&t.account.0).and_then(|g| {
        let u = g.upstreams.get(&t.workspace.0).cloned()?;
        Some((g, u))
    });
    match found {
        Some(both) => Ok(both),
        None => Err(Error::ServiceUnavailable(format!(
            "this workspace has no upstream Prefect server; an account Owner or Admin binds one with PUT /api/accounts/{}/workspaces/{}/upstream",
            t.account, t.workspace
        ))),
    }
}

/// Charges a call to the account's buckets: `items` units of logs + events for item-counted
/// routes, one API unit for everything else.
pub fn charge(
    app: &App,
    account: AccountId,
    g: &AccountGateway,
    charge: Charge,
    items: u32,
) -> Result<()> {
    let (bucket, cost, limit) = match charge {
        Charge::Api => (Bucket::Api, 1, g.api_per_minute),
        Charge::Items => (Bucket::LogsAndEvents, items, g.logs_per_minute),
    };
    app.limiter
        .take(account.0, bucket, cost, limit, app.now().timestamp_micros())
        .map_err(|r| {
            app.metrics.rate_limited[bucket as usize]
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Error::RateLimited {
                retry_after_secs: r.0,
            }
        })
}

/// One rate-limit bucket as account admins see it.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BucketView {
    /// `orchestration-api` or `logs-and-events`.
    pub key: &'static str,
    pub limit_per_minute: u32,
    /// Units used in the current rolling minute.
    pub used: u64,
    pub exceeded: bool,
}

/// `GET /api/accounts/{a}/rate-limits/status`: Prefect Cloud's `exceeded_buckets`, plus the
/// current consumption of each bucket on this node.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RateLimitStatus {
    pub exceeded_buckets: Vec<&'static str>,
    pub buckets: Vec<BucketView>,
}

/// The account's rate-limit consumption (account permission `update:account`: Owners and Admins).
pub async fn rate_limit_status(
    app: &App,
    p: &Principal,
    account: AccountId,
) -> Result<RateLimitStatus> {
    crate::services::authorize(
        app,
        p,
        account,
        crate::domain::role::AccountPermission::UpdateAccount,
    )
    .await?;
    let g = app.upstreams.account(&account.0).unwrap_or_default();
    let now = app.now().timestamp_micros();
    let buckets: Vec<BucketView> = Bucket::ALL
        .iter()
        .map(|b| {
            let limit = match b {
                Bucket::Api => g.api_per_minute,
                Bucket::LogsAndEvents => g.logs_per_minute,
            };
            let c = app.limiter.consumption(account.0, *b, limit, now);
            BucketView {
                key: b.key(),
                limit_per_minute: limit,
                used: c.used,
                exceeded: c.exceeded,
            }
        })
        .collect();
    Ok(RateLimitStatus {
        exceeded_buckets: buckets
            .iter()
            .filter(|b| b.exceeded)
            .map(|b| b.key)
            .collect(),
        buckets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_pass_and_ambiguous_ones_are_refused() {
        for ok in [
            "flows/",
            "flow_runs/filter",
            "variables/name/my%20var",
            "deployments/name/f/d",
            "a.b/c..d",
            "variables/name/100%25",
            "x/.../y",
            "x/%2e%2e%2e",
            "x/.a",
        ] {
            assert!(check_canonical(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "flows//x",
            "flows/../admin",
            "./flows",
            "flows/%2e%2E/x",
            "flows%2Fx",
            "flows/%5cx",
            "flows\\x",
            "flows/%00",
            "flows//",
            "flows/%2E",
            "flows/.%2e/x",
            "flows/x%5C",
            "%2F",
        ] {
            assert!(
                matches!(check_canonical(bad), Err(Error::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn targets_need_uuid_ids() {
        let a = "11111111-1111-4111-8111-111111111111";
        let w = "22222222-2222-4222-8222-222222222222";
        let path = format!("/api/accounts/{a}/workspaces/{w}/flows/");
        let t = target(&path).expect("target");
        assert_eq!(t.rest, "flows/");
        assert_eq!(t.account.0.to_string(), a);
        assert!(target(&format!("/api/accounts/acme/workspaces/{w}/flows")).is_none());
        assert!(target(&format!("/api/accounts/{a}/workspaces/{w}")).is_none());
        assert!(target("/api/me").is_none());
    }
}
