//! `/account/{a}/workspace/{w}/ui/…`: the workspace's Prefect UI, behind the dashboard's sign-in
//! (signed-out visitors go to `/login` and come back) and the gate (404 outside the workspace,
//! 403 outside the account's IP allowlist). The files come from the workspace's upstream through
//! `services::prefect_ui`; the UI's settings point it at the workspace's gateway URL, where its
//! API calls and websockets carry the session and meet the gate like any other call.

use super::error_page;
use super::session::SignedIn;
use crate::app::App;
use crate::domain::{AccountId, WorkspaceId};
use crate::services::{gate, prefect_ui};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};

/// `GET …/workspace/{w}/ui`: the UI's start page.
pub async fn root(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, workspace)): Path<(AccountId, WorkspaceId)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let req = Asked {
        path: "",
        query,
        headers,
    };
    serve(&app, &p, account, workspace, req).await
}

/// `GET …/workspace/{w}/ui/{*path}`: a file of the UI, a page of it (answered by its
/// `index.html`), or its settings.
pub async fn file(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, workspace, path)): Path<(AccountId, WorkspaceId, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let req = Asked {
        path: &path,
        query,
        headers,
    };
    serve(&app, &p, account, workspace, req).await
}

/// What the browser asked for, below the UI's base.
struct Asked<'a> {
    path: &'a str,
    query: Option<String>,
    headers: HeaderMap,
}

impl Asked<'_> {
    /// A page the browser navigates to (not a script, style or image it loads).
    fn navigation(&self) -> bool {
        self.headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
    }

    /// The visitor's choice between Prefect's two UIs (the cookie Prefect's UI sets).
    fn preferred(&self) -> Option<&str> {
        self.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == "prefect_ui_version")
            .map(|(_, v)| v)
    }
}

async fn serve(
    app: &App,
    p: &crate::authz::Principal,
    account: AccountId,
    workspace: WorkspaceId,
    req: Asked<'_>,
) -> Response {
    let (path, headers) = (req.path, &req.headers);
    if let Err(e) = gate::workspace(app, p, account, workspace).await {
        return error_page(&e);
    }
    if req.navigation() {
        match prefect_ui::redirect(app, account, workspace, path, req.preferred()).await {
            Ok(Some(to)) => {
                let query = req
                    .query
                    .as_deref()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default();
                return Redirect::temporary(&format!("{to}{query}")).into_response();
            }
            Ok(None) => {}
            Err(e) => return error_page(&e),
        }
    }
    if path == "ui-settings" {
        return match prefect_ui::settings(app, account, workspace).await {
            Ok(v) => (
                [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
                axum::Json(v),
            )
                .into_response(),
            Err(e) => e.into_response(),
        };
    }
    match prefect_ui::file(app, account, workspace, path).await {
        Ok(f) => respond(&f, headers),
        Err(e) => error_page(&e),
    }
}

fn respond(f: &prefect_ui::File, headers: &HeaderMap) -> Response {
    let cache = HeaderValue::from_static(if f.immutable {
        "private, max-age=31536000, immutable"
    } else {
        "private, no-cache"
    });
    let etag = HeaderValue::from_str(&f.etag).unwrap_or(HeaderValue::from_static("\"\""));
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim() == f.etag || t.trim() == "*");
    if matches && f.status.is_success() {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    let gzip_ok = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| e.split(';').next().is_some_and(|e| e.trim() == "gzip"));
    let mut resp = match (&f.gzip, gzip_ok) {
        (Some(z), true) => {
            let mut r = z.clone().into_response();
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        _ => f.body.clone().into_response(),
    };
    *resp.status_mut() = f.status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, f.content_type.clone());
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, cache);
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    resp
}

/// `GET /account/{a}/workspace/{w}/{*rest}`: the links the `prefect` client prints into Prefect
/// Cloud's UI (`…/workspace/{w}/flow-runs/flow-run/{id}` and the like) land on the same page of
/// the workspace's Prefect UI. Only ever a path of this site.
pub async fn link(
    Path((account, workspace, _rest)): Path<(AccountId, WorkspaceId, String)>,
    uri: Uri,
) -> Response {
    let prefix = format!("/account/{account}/workspace/{workspace}/");
    let rest = uri
        .path()
        .get(prefix.len()..)
        .filter(|_| uri.path().starts_with(&prefix))
        .unwrap_or("");
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    Redirect::to(&format!(
        "{}/{rest}{query}",
        prefect_ui::base(account, workspace)
    ))
    .into_response()
}
