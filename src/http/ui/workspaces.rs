//! Workspace pages: who has access to a workspace, with role and expiry.

use super::expiry_cell;
use super::session::SignedIn;
use super::{error_page, page};
use crate::app::App;
use crate::domain::{AccountId, WorkspaceId};
use crate::services::access::workspace_access_lines;
use crate::services::mail::html_escape;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::Response;

/// `GET /account/{account_id}/workspace/{workspace_id}/access` (needs `see_workspace_users`).
pub async fn access(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, workspace)): Path<(AccountId, WorkspaceId)>,
) -> Response {
    let lines = match workspace_access_lines(&app, &p, account, workspace).await {
        Ok(l) => l,
        Err(e) => return error_page(&e),
    };
    let ws = match crate::services::workspaces::read_workspace(&app, &p, account, workspace).await {
        Ok(w) => w,
        Err(e) => return error_page(&e),
    };
    let now = app.now();
    let kind = |k: &str| match k {
        "user" => "User",
        "service_account" => "Service account",
        _ => "Team",
    };
    let rows: String = lines
        .iter()
        .map(|l| {
            let name = if l.kind == "team" {
                format!(
                    "<a href=\"/account/{account}/team/{id}\">{n}</a>",
                    id = l.id,
                    n = html_escape(&l.name)
                )
            } else {
                html_escape(&l.name)
            };
            format!(
                "<tr><td>{name}</td><td>{kind}</td><td>{role}</td>{exp}</tr>",
                kind = kind(l.kind),
                role = html_escape(&l.role),
                exp = expiry_cell(l.expires_at, now),
            )
        })
        .collect();
    let table = if rows.is_empty() {
        "<p class=\"muted\">Nobody has been granted a role here; account Owners and Admins, and the workspace's default role, still apply.</p>".to_string()
    } else {
        format!(
            "<table><caption>Grants on this workspace</caption><thead><tr><th scope=\"col\">Who</th><th scope=\"col\">Kind</th><th scope=\"col\">Role</th><th scope=\"col\">Expires</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    };
    let (header, _, cookie) = super::signed_in_header(&app, &p.name);
    let body = format!(
        "{header}<h1>Access to {ws}</h1>{table}\
         <p class=\"muted\">Times are UTC. An expired grant stops counting at its instant and is removed within a minute.</p>",
        ws = html_escape(&ws.name),
    );
    let mut resp = page(StatusCode::OK, &format!("Access · {}", ws.name), &body);
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    resp
}
