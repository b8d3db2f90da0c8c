//! The workspace gateway's decisions: which calls under `/api/accounts/{a}/workspaces/{w}/…` may
//! reach the workspace's upstream Prefect server (path canonicalization, the route → scope table,
//! the rate limits). The transport (streaming, websockets) is in `http::gateway`.

use crate::app::App;
use crate::authz::Principal;
use crate::domain::canonical::{self, Unreadable};
use crate::domain::gateway_routes::{self, Charge, Need, RouteRule};
use crate::domain::object_acl;
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
        Err(Error::Malformed(format!(
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
            // The upstream matches its routes on the decoded path; our table matches the path as
            // sent. An escaped letter, digit or `-._~` (which no client needs to escape) could
            // make the two differ, so it is refused.
            Some([h, l]) if unreserved_escape(h, l) => return bad(
                "percent-encoded letters, digits and -._~ are not allowed (send them as they are)",
            ),
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

/// True when `%hl` (lower-cased hex digits) encodes an RFC 3986 unreserved character.
fn unreserved_escape(h: u8, l: u8) -> bool {
    let hex = |c: u8| (c as char).to_digit(16);
    match (hex(h), hex(l)) {
        (Some(h), Some(l)) => {
            let c = (h * 16 + l) as u8;
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
        }
        _ => false,
    }
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

/// What the gateway forwards in place of what the client sent, for a call it had to understand
/// to decide on (GUIDE §4: the gateway forwards only what it understood).
#[derive(Default)]
pub struct Rewrite {
    /// `Some(q)`: forward the query `q` instead of the client's (`Some(None)`: no query).
    pub query: Option<Option<String>>,
    /// `Some(b)`: forward this JSON body (`Content-Type: application/json`) instead.
    pub body: Option<Vec<u8>>,
    /// `Some`: the answer must be read whole and changed before the client gets it.
    pub after: Option<After>,
}

/// How a successful answer is changed before the client gets it.
pub enum After {
    /// Filtered by the object ACLs (`object_acls::filter_answer`).
    Acl(crate::services::object_acls::After),
    /// Replaced by `{}` (`Need::Redacted`: the caller lacks the scope to see it).
    Redacted,
}

impl Rewrite {
    /// The query to forward, given the client's.
    pub fn query<'a>(&'a self, sent: Option<&'a str>) -> Option<&'a str> {
        match &self.query {
            Some(q) => q.as_deref(),
            None => sent,
        }
    }
}

fn unreadable(u: Unreadable) -> Error {
    Error::Malformed(format!(
        "the gateway refused this call: it cannot read {} unambiguously",
        u.0
    ))
}

/// The canonical form of a secret-bearing read for a caller without `see_secret_blocks`:
/// `include_secrets` removed from the query in every spelling, and set to `false` in a POST's
/// JSON body (parsed strictly and re-serialized).
fn secrets_off(method: &str, query: Option<&str>, body: Option<&[u8]>) -> Result<Rewrite> {
    let query = match query {
        Some(q) => Some(canonical::strip_query_param(q, "include_secrets").map_err(unreadable)?),
        None => None,
    };
    let body = if method == "POST" {
        Some(
            canonical::with_field(
                body.unwrap_or_default(),
                "include_secrets",
                serde_json::Value::Bool(false),
            )
            .map_err(unreadable)?,
        )
    } else {
        None
    };
    Ok(Rewrite {
        query,
        body,
        after: None,
    })
}

/// The number of items an item-counted call is charged for (its JSON array body, parsed
/// strictly: a body the gateway cannot count is refused, never charged as one item).
pub fn items_of(body: Option<&[u8]>) -> Result<u32> {
    let n = canonical::array_len(body.unwrap_or_default()).map_err(unreadable)?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Decides whether `p` may make a call whose rule is `rule` (from [`rule_of`]; `None`: a route not
/// in the table, allowed to workspace Owners only), and what to forward in its place (`body`: the
/// whole body of a call whose rule needs it). A caller without access to the workspace gets 404;
/// a refusal is audited like every denial.
pub async fn authorize_call(
    app: &App,
    p: &Principal,
    t: &Target<'_>,
    method: &str,
    rule: Option<&'static RouteRule>,
    query: Option<&str>,
    body: Option<&[u8]>,
) -> Result<Rewrite> {
    let (access, held) =
        crate::services::gate::workspace_and_access(app, p, t.account, t.workspace)
            .await
            .map_err(|e| match e {
                Error::NotFound(_) => Error::not_found("workspace"),
                e => e,
            })?;
    let path = t.rest;
    let need = match rule.map(|r| r.need) {
        None => {
            let owner = BuiltinWorkspaceRole::Owner.scopes();
            if held.is_superset(owner) {
                return Ok(Rewrite::default());
            }
            let msg = format!(
                "{method} {path} is not in the gateway's route table; only workspace Owners may call it"
            );
            audit::record_denial(app, p, t.account, &msg, Some(t.workspace));
            return Err(Error::Forbidden(msg));
        }
        Some(Need::Member | Need::Redacted(_)) => None,
        Some(Need::Scope(s)) => Some(s),
        Some(Need::Secrets) => Some(Scope::SeeBlocks),
        Some(Need::AutomationsOwnedBy) => {
            let resource = path.rsplit('/').next().unwrap_or("");
            if resource.starts_with("prefect.deployment.") {
                Some(Scope::WriteDeployments)
            } else {
                Some(Scope::ManageAutomations)
            }
        }
    };
    if let Some(s) = need.filter(|s| !held.contains(*s)) {
        audit::record_denial(app, p, t.account, s.name(), Some(t.workspace));
        return Err(Error::Forbidden(format!(
            "missing workspace scope {}",
            s.name()
        )));
    }
    let acl = rule
        .and_then(|r| object_acl::route(method, r.pattern))
        .and_then(|route| Some((route, access.object_acls(t.workspace, held)?)));
    let after = match acl {
        Some((route, view)) => {
            let (_, up) = upstream(app, t)?;
            crate::services::object_acls::decide(app, p, t, &up, route, view, body)
                .await?
                .map(After::Acl)
        }
        None => match rule.map(|r| r.need) {
            Some(Need::Redacted(s)) if !held.contains(s) => Some(After::Redacted),
            _ => None,
        },
    };
    let mut rewrite = if rule.is_some_and(|r| r.need == Need::Secrets)
        && !held.contains(Scope::SeeSecretBlocks)
    {
        secrets_off(method, query, body)?
    } else {
        Rewrite::default()
    };
    rewrite.after = after;
    Ok(rewrite)
}

/// True when the workspace has an upstream.
pub fn bound(app: &App, account: AccountId, workspace: WorkspaceId) -> bool {
    app.upstreams
        .account(&account.0)
        .is_some_and(|g| g.upstreams.contains_key(&workspace.0))
}

/// The workspace's upstream, or 503 when none is bound.
pub fn upstream(app: &App, t: &Target<'_>) -> Result<(Arc<AccountGateway>, Arc<Upstream>)> {
    upstream_of(app, t.account, t.workspace)
}

/// [`upstream`] for a workspace named by its ids (Atrium's own calls to it: ACL lookups, webhooks).
pub fn upstream_of(
    app: &App,
    account: AccountId,
    workspace: WorkspaceId,
) -> Result<(Arc<AccountGateway>, Arc<Upstream>)> {
    let found = app.upstreams.account(&account.0).and_then(|g| {
        let u = g.upstreams.get(&workspace.0).cloned()?;
        Some((g, u))
    });
    match found {
        Some(both) => Ok(both),
        None => Err(Error::NoUpstream(format!(
            "this workspace has no upstream Prefect server; an account Owner or Admin binds one with PUT /api/accounts/{account}/workspaces/{workspace}/upstream"
        ))),
    }
}

/// Charges a call to the account's buckets: `items` units of logs + events for item-counted
/// routes, one API unit for everything else.
pub async fn charge(
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
    let servers = app.node.live.load(std::sync::atomic::Ordering::Relaxed);
    app.limiter
        .take(
            account.0,
            bucket,
            cost,
            limit,
            app.now().timestamp_micros(),
            servers,
        )
        .await
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
    let servers = app.node.live.load(std::sync::atomic::Ordering::Relaxed);
    let mut buckets: Vec<BucketView> = Vec::with_capacity(Bucket::ALL.len());
    for b in Bucket::ALL {
        let limit = match b {
            Bucket::Api => g.api_per_minute,
            Bucket::LogsAndEvents => g.logs_per_minute,
        };
        let c = app
            .limiter
            .consumption(account.0, b, limit, now, servers)
            .await;
        buckets.push(BucketView {
            key: b.key(),
            limit_per_minute: limit,
            used: c.used,
            exceeded: c.exceeded,
        });
    }
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
            "x/.a",
            "variables/name/caf%C3%A9",
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
            "x/%2e%2e%2e",
            "block_%64ocuments/filter",
            "flows/%41",
            "flows/a%7e",
            "flows/a%2D",
        ] {
            assert!(
                matches!(check_canonical(bad), Err(Error::Malformed(_))),
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
