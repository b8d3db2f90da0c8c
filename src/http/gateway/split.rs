//! The one decision of which paths below a workspace are Atrium's and which are the upstream
//! Prefect server's. Both transports ask it: the fast path hands Atrium's paths to the general
//! server (whose router serves them), and the router's fallback never forwards one of them.

use std::sync::OnceLock;

/// A segment of a workspace route template: literal text, or `{name}` (any one segment).
enum Segment {
    Literal(String),
    Any,
}

/// The routes Atrium serves below `/api/accounts/{account_id}/workspaces/{workspace_id}/`, from
/// the OpenAPI document — the same handlers the router is built from, so the two cannot drift.
fn templates() -> &'static [Vec<Segment>] {
    static TEMPLATES: OnceLock<Vec<Vec<Segment>>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let prefix = "/api/accounts/{account_id}/workspaces/{workspace_id}/";
        crate::http::openapi()
            .paths
            .paths
            .keys()
            .filter_map(|p| p.strip_prefix(prefix))
            .map(|rest| {
                rest.split('/')
                    .map(|s| {
                        if s.starts_with('{') && s.ends_with('}') {
                            Segment::Any
                        } else {
                            Segment::Literal(s.to_string())
                        }
                    })
                    .collect()
            })
            .collect()
    })
}

/// Builds the table before the first connection.
pub fn prepare() {
    templates();
}

/// Whether Atrium serves `rest` — a path below a workspace, without its query — itself: it
/// matches one of Atrium's workspace routes segment for segment (ignoring one trailing slash, as
/// the router does). Everything else below a workspace is the upstream's.
pub fn atrium_serves(rest: &str) -> bool {
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    templates().iter().any(|t| {
        let mut segments = rest.split('/');
        t.iter().all(|want| {
            segments.next().is_some_and(|s| match want {
                Segment::Literal(l) => l == s,
                Segment::Any => !s.is_empty(),
            })
        }) && segments.next().is_none()
    })
}

#[cfg(test)]
mod tests {
    use super::atrium_serves;

    #[test]
    fn atrium_keeps_its_workspace_routes_and_leaves_the_rest_to_the_upstream() {
        for ours in [
            "user_access",
            "user_access/",
            "user_access/filter",
            "bot_access/0b0f7a3e-0000-4000-8000-000000000000",
            "events/filter",
            "events/filter/next",
            "events/count-by/day",
            "upstream",
            "invitations/x/revoke",
            "deployments/x/access",
            "work_pools/my%20pool/access",
            "block_documents/x/access",
        ] {
            assert!(atrium_serves(ours), "{ours}");
        }
        for theirs in [
            "flows/filter",
            "events",
            "events/in",
            "events/out",
            "events/filter/next/more",
            "user_access/filter/x",
            "upstreams",
            "",
            "deployments/x/access/more",
            "flows/x/access",
        ] {
            assert!(!atrium_serves(theirs), "{theirs}");
        }
    }
}
