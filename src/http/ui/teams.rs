//! Team pages: a team's members (with the expiry of each membership) and its workspace roles.

use super::session::SignedIn;
use super::{error_page, expiry_cell, page, signed_in_header};
use crate::app::App;
use crate::domain::AccountId;
use crate::services::mail::html_escape;
use crate::services::teams::read_team;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use uuid::Uuid;

/// `GET /account/{account_id}/team/{team_id}` (account permission `read:team`).
pub async fn show(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, team)): Path<(AccountId, Uuid)>,
) -> Response {
    let t = match read_team(&app, &p, account, team).await {
        Ok(t) => t,
        Err(e) => return error_page(&e),
    };
    let now = app.now();
    let members: String = t
        .memberships
        .iter()
        .map(|m| {
            format!(
                "<tr><td>{name}</td><td>{kind}</td>{exp}</tr>",
                name = html_escape(m.email.as_deref().unwrap_or(&m.name)),
                kind = if m.kind == "user" {
                    "User"
                } else {
                    "Service account"
                },
                exp = expiry_cell(m.expires_at, now),
            )
        })
        .collect();
    let workspaces: String = t
        .workspaces
        .iter()
        .map(|w| {
            format!(
                "<tr><td><a href=\"/account/{account}/workspace/{id}/access\">{h}</a></td><td>{r}</td></tr>",
                id = w.workspace_id,
                h = html_escape(&w.workspace_handle),
                r = html_escape(&w.workspace_role_name),
            )
        })
        .collect();
    let members = if members.is_empty() {
        "<p class=\"muted\">No members.</p>".to_string()
    } else {
        format!("<table><caption>Members</caption><thead><tr><th scope=\"col\">Who</th><th scope=\"col\">Kind</th><th scope=\"col\">Membership expires</th></tr></thead><tbody>{members}</tbody></table>")
    };
    let workspaces = if workspaces.is_empty() {
        "<p class=\"muted\">This team has no workspace role yet.</p>".to_string()
    } else {
        format!("<table><caption>Workspaces</caption><thead><tr><th scope=\"col\">Workspace</th><th scope=\"col\">Role</th></tr></thead><tbody>{workspaces}</tbody></table>")
    };
    let (header, _, cookie) = signed_in_header(&app, &p.name);
    let body = format!(
        "{header}<h1>Team {name}</h1><p class=\"muted\">{desc}</p>{members}{workspaces}",
        name = html_escape(&t.name),
        desc = html_escape(&t.description),
    );
    let mut resp = page(StatusCode::OK, &format!("Team · {}", t.name), &body);
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    resp
}
