//! A workspace's Prefect UI, served by Atrium at `/account/{a}/workspace/{w}/ui/` from the
//! workspace's own upstream Prefect server (nothing of Prefect's UI is in this repository).
//!
//! Prefect bakes its UI's base path into the bundle: its files carry a placeholder that the
//! server replaces with `PREFECT_UI_SERVE_BASE` when it starts. Atrium asks each upstream to run
//! with `PREFECT_UI_SERVE_BASE=/atrium-prefect-ui` ([`UPSTREAM_BASE`]) and replaces that marker
//! in the text files it relays with the workspace's path — Prefect's own mechanism, one step
//! later. Rewriting a bundle built for `/` instead would mean guessing which `"/"` in minified
//! JavaScript is a path; a marker nobody else writes makes the replacement exact.
//!
//! Files (and the upstream's `ui-settings`) are cached per workspace (with a gzip copy of text
//! files), revalidated against the upstream after [`FRESH`] — except hashed bundle files under
//! `assets/`, which never change — and served with an `ETag`, so a reload costs the browser a
//! 304 and Atrium no upstream call.

use crate::app::App;
use crate::domain::{AccountId, WorkspaceId};
use crate::services::upstreams::Upstream;
use crate::services::{Error, Result};
use axum::http::{header, HeaderValue, Method, StatusCode};
use bytes::Bytes;
use rustc_hash::FxHashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `PREFECT_UI_SERVE_BASE` an upstream must run with for Atrium to serve its UI.
pub const UPSTREAM_BASE: &str = "/atrium-prefect-ui";
/// How long a file other than a hashed bundle file is served without asking the upstream again.
const FRESH: Duration = Duration::from_secs(60);
/// The largest file relayed (Prefect's largest bundle file is a few MiB).
const MAX_FILE: usize = 32 << 20;
/// What the cache holds at most, over every workspace; the least recently used files go first.
const MAX_CACHED: usize = 256 << 20;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// The path of a workspace's UI on Atrium, without a trailing slash.
pub fn base(account: AccountId, workspace: WorkspaceId) -> String {
    format!("/account/{account}/workspace/{workspace}/ui")
}

/// One file as Atrium serves it.
pub struct File {
    pub status: StatusCode,
    pub content_type: HeaderValue,
    pub body: Bytes,
    /// The body gzip-compressed, for text files worth compressing.
    pub gzip: Option<Bytes>,
    /// A strong validator of the served body.
    pub etag: String,
    /// Hashed bundle files: cacheable by the browser for a year.
    pub immutable: bool,
}

struct Cached {
    file: Arc<File>,
    fetched: Instant,
    used: Instant,
}

/// Files of every workspace's UI (see the module documentation).
#[derive(Default)]
pub struct UiCache {
    files: Mutex<FxHashMap<(WorkspaceId, String), Cached>>,
}

impl UiCache {
    fn get(&self, key: &(WorkspaceId, String)) -> Option<Arc<File>> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let c = files.get_mut(key)?;
        if !c.file.immutable && c.fetched.elapsed() > FRESH {
            return None;
        }
        c.used = Instant::now();
        Some(c.file.clone())
    }

    fn put(&self, key: (WorkspaceId, String), file: Arc<File>) {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        files.insert(
            key,
            Cached {
                file,
                fetched: now,
                used: now,
            },
        );
        let size = |files: &FxHashMap<_, Cached>| -> usize {
            files
                .values()
                .map(|c| c.file.body.len() + c.file.gzip.as_ref().map_or(0, Bytes::len))
                .sum()
        };
        while size(&files) > MAX_CACHED {
            let Some(oldest) = files
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            files.remove(&oldest);
        }
    }

    /// Forgets a workspace's files (its upstream changed).
    pub fn forget(&self, workspace: WorkspaceId) {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files.retain(|(w, _), _| *w != workspace);
    }
}

/// Which upstream file answers `path` (below the UI's base, no leading slash): the file itself
/// when its last segment has an extension, else the single-page app's `index.html` of its
/// bundle (`v2/` for Prefect's second UI), as Prefect's own server answers.
fn file_of(path: &str) -> String {
    let last = path.rsplit('/').next().unwrap_or("");
    if last.contains('.') {
        return path.to_string();
    }
    if path == "v2" || path.starts_with("v2/") {
        "v2/".to_string()
    } else {
        String::new()
    }
}

/// Whether `path` (below the UI's base) is made only of what a bundle's file names are made of:
/// no dot segments, escapes, queries or empty segments, so the path fetched is a file below the
/// UI's base on the upstream and never anything else there (the fetch carries the auth string).
fn plain(path: &str) -> bool {
    path.is_empty()
        || path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~' | b'@')
                })
        })
}

/// The UI's path on the upstream: its API base without `/api`, then [`UPSTREAM_BASE`].
fn upstream_path(u: &Upstream, file: &str) -> String {
    let root = u.path.strip_suffix("/api").unwrap_or(&u.path);
    format!("{root}{UPSTREAM_BASE}/{file}")
}

fn is_text(content_type: &str) -> bool {
    let t = content_type.split(';').next().unwrap_or("").trim();
    t.starts_with("text/")
        || matches!(
            t,
            "application/javascript"
                | "application/json"
                | "application/manifest+json"
                | "image/svg+xml"
        )
}

/// Fetches one file of the UI from the upstream (no query: the files are static).
async fn fetch(app: &App, u: &Upstream, file: &str) -> Result<(StatusCode, HeaderValue, Bytes)> {
    let req = axum::http::Request::builder()
        .method(Method::GET)
        .uri(upstream_path(u, file))
        .header(header::HOST, &u.host)
        .header(header::ACCEPT_ENCODING, "identity");
    let req = match &u.authorization {
        Some(a) => req.header(header::AUTHORIZATION, a.clone()),
        None => req,
    }
    .body(axum::body::Body::empty())
    .map_err(|e| Error::UpstreamFailed(format!("bad upstream request: {e}")))?;
    let timeout = || Error::UpstreamTimeout(format!("{} did not answer in time", u.url));
    let resp = tokio::time::timeout(UPSTREAM_TIMEOUT, super::upstreams::send(app, u, req))
        .await
        .map_err(|_| timeout())??;
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let body = http_body_util::Limited::new(resp.into_body(), MAX_FILE);
    let body = tokio::time::timeout(UPSTREAM_TIMEOUT, http_body_util::BodyExt::collect(body))
        .await
        .map_err(|_| timeout())?
        .map_err(|e| Error::UpstreamFailed(format!("{}: {e}", u.url)))?
        .to_bytes();
    Ok((status, content_type, body))
}

fn not_configured(u: &Upstream) -> Error {
    Error::NoUpstream(format!(
        "the Prefect server of this workspace ({}) does not serve its UI where Atrium looks for it: run it with PREFECT_UI_SERVE_BASE={UPSTREAM_BASE} (docs/gateway.md, \"Prefect UI\")",
        u.url
    ))
}

/// One file of a workspace's UI, from the cache or the upstream. The caller has passed the gate.
pub async fn file(
    app: &App,
    account: AccountId,
    workspace: WorkspaceId,
    path: &str,
) -> Result<Arc<File>> {
    if !plain(path) {
        return Err(Error::NotFound("no such file in the Prefect UI".into()));
    }
    let (_, u) = super::gateway::upstream_of(app, account, workspace)?;
    cached(app, account, workspace, &u, file_of(path)).await
}

/// A file of the upstream's UI (or its `ui-settings`) as Atrium serves it to this workspace:
/// from the cache, else fetched, rewritten, compressed and — when it exists — cached.
async fn cached(
    app: &App,
    account: AccountId,
    workspace: WorkspaceId,
    u: &Upstream,
    file: String,
) -> Result<Arc<File>> {
    let key = (workspace, file);
    if let Some(f) = app.prefect_ui.get(&key) {
        return Ok(f);
    }
    let file = &key.1;
    let (status, content_type, body) = fetch(app, u, file).await?;
    if status == StatusCode::NOT_FOUND && (file.is_empty() || file == "ui-settings") {
        return Err(not_configured(u));
    }
    if status.is_server_error() {
        return Err(Error::UpstreamFailed(format!(
            "{} answered {status} for its UI",
            u.url
        )));
    }
    let text = content_type.to_str().is_ok_and(is_text);
    let body = if text {
        let ours = base(account, workspace);
        match std::str::from_utf8(&body) {
            Ok(s) if s.contains(UPSTREAM_BASE) => Bytes::from(s.replace(UPSTREAM_BASE, &ours)),
            _ => body,
        }
    } else {
        body
    };
    let gzip = (text && body.len() > 1024)
        .then(|| gzip(&body))
        .flatten()
        .map(Bytes::from);
    let etag = {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(&body);
        format!(
            "\"{}\"",
            crate::services::credentials::hex_bytes(&digest[..16])
        )
    };
    let f = Arc::new(File {
        status,
        content_type,
        immutable: status.is_success()
            && (file.starts_with("assets/") || file.starts_with("v2/assets/")),
        body,
        gzip,
        etag,
    });
    // Only files are kept (a miss is not: made-up paths must not fill the cache).
    if status.is_success() {
        app.prefect_ui.put(key, f.clone());
    }
    Ok(f)
}

fn gzip(b: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).ok()?;
    e.finish().ok()
}

/// Prefect's `ui-settings` for a workspace's UI on Atrium: the API is the workspace's gateway URL
/// (same origin, so the UI's calls carry the Atrium session), CSRF protection on (Atrium answers
/// `csrf-token` and checks the headers), no Prefect password prompt, and the bundles the
/// upstream offers at Atrium's paths.
pub async fn settings(
    app: &App,
    account: AccountId,
    workspace: WorkspaceId,
) -> Result<serde_json::Value> {
    // Through the cache: every page load asks for them, and a visit to the start page too.
    let (_, u) = super::gateway::upstream_of(app, account, workspace)?;
    let f = cached(app, account, workspace, &u, "ui-settings".into()).await?;
    if !f.status.is_success() {
        return Err(Error::UpstreamFailed(format!(
            "{} answered {} for its UI settings",
            u.url, f.status
        )));
    }
    let theirs: serde_json::Value = serde_json::from_slice(&f.body).unwrap_or_default();
    let ours = base(account, workspace);
    let available: Vec<String> = theirs["available_uis"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str())
                .filter(|v| matches!(*v, "v1" | "v2"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_else(|| vec!["v1".to_string()]);
    let has = |v: &str| available.iter().any(|a| a == v);
    Ok(serde_json::json!({
        "api_url": format!("{}/api/accounts/{account}/workspaces/{workspace}", app.config.public_url),
        "csrf_enabled": true,
        "auth": null,
        "flags": [],
        "default_ui": theirs["default_ui"].as_str().filter(|d| has(d)).unwrap_or("v1"),
        "available_uis": available,
        "v1_base_url": has("v1").then(|| ours.clone()),
        "v2_base_url": has("v2").then(|| format!("{ours}/v2")),
    }))
}

/// Where Prefect's own server sends a browser that opens a page of its UI (its rule, kept): the
/// start page of the first UI leads to the second when the visitor prefers it (their
/// `prefect_ui_version` cookie, which the UI's "Switch to V1/V2 UI" sets, else the upstream's
/// default), and a page of the second UI leads to the same page of the first when the upstream
/// has no second UI. `Some(path)` to redirect to; `None` to serve `path`.
pub async fn redirect(
    app: &App,
    account: AccountId,
    workspace: WorkspaceId,
    path: &str,
    preferred: Option<&str>,
) -> Result<Option<String>> {
    let v2_page = path
        .strip_prefix("v2")
        .filter(|r| r.is_empty() || r.starts_with('/'));
    if !path.is_empty() && v2_page.is_none() {
        return Ok(None);
    }
    let s = settings(app, account, workspace).await?;
    let has = |v: &str| {
        s["available_uis"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == v))
    };
    let ours = base(account, workspace);
    Ok(match v2_page {
        Some(rest) => (!has("v2")).then(|| format!("{ours}/{}", rest.trim_start_matches('/'))),
        None => {
            let default = s["default_ui"].as_str().unwrap_or("v1");
            let wants = preferred.filter(|p| has(p)).unwrap_or(default);
            (wants == "v2" && has("v2")).then(|| format!("{ours}/v2/"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_leave_the_ui_are_refused_before_the_upstream_is_asked() {
        for bad in [
            "../api/admin/settings.json",
            "assets/../../api/flows/filter.js",
            "assets//x.js",
            "assets/%2e%2e/x.js",
            "a\\b.js",
            "x.js?y=1",
            "/etc/passwd",
            "assets/./x.js",
        ] {
            assert!(!plain(bad), "{bad}");
        }
        for good in [
            "",
            "assets/index-1a2b.js",
            "runs/flow-run/0b7c0a8e-4a4e",
            "v2",
            "ico/site.webmanifest",
        ] {
            assert!(plain(good), "{good}");
        }
    }

    #[test]
    fn single_page_routes_are_answered_by_their_bundles_index() {
        assert_eq!(file_of(""), "");
        assert_eq!(file_of("flow-runs/flow-run/abc"), "");
        assert_eq!(file_of("assets/index-1a2b.js"), "assets/index-1a2b.js");
        assert_eq!(file_of("ico/favicon-16x16.png"), "ico/favicon-16x16.png");
        assert_eq!(file_of("v2"), "v2/");
        assert_eq!(file_of("v2/runs"), "v2/");
        assert_eq!(file_of("v2/assets/x.css"), "v2/assets/x.css");
        assert!(is_text("application/javascript; charset=utf-8"));
        assert!(is_text("text/html; charset=utf-8"));
        assert!(!is_text("image/png"));
    }
}
