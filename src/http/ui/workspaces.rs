//! Workspace pages: who has access to a workspace, with role and expiry.

use super::session::SignedIn;
use super::{error_page, new_csrf, page};
use crate::app::App;
use crate::domain::{AccountId, WorkspaceId};
use crate::services::access::{workspace_access_lines, AccessLine};
use crate::services::mail::html_escape;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::Response;

/// "in 3 days", "2 hours ago": how far an instant is from now, roughly.
fn relative(t: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> String {
    let d = t - now;
    let secs = d.num_seconds().abs();
    let amount = match secs {
        s if s < 90 => "a minute".to_string(),
        s if s < 90 * 60 => format!("{} minutes", s / 60),
        s if s < 36 * 3600 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86_400),
    };
    if d.num_seconds() >= 0 {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

fn expiry_cell(l: &AccessLine, now: chrono::DateTime<chrono::Utc>) -> String {
    match l.expires_at {
        None => "<td>never</td>".into(),
        Some(t) if l.expired => format!(
            "<td class=\"expired\"><time datetime=\"{iso}\">{day}</time> — expired {rel}, no longer counts</td>",
            iso = t.to_rfc3339(),
            day = t.format("%Y-%m-%d %H:%M UTC"),
            rel = relative(t, now),
        ),
        Some(t) => format!(
            "<td><time datetime=\"{iso}\">{day}</time> ({rel})</td>",
            iso = t.to_rfc3339(),
            day = t.format("%Y-%m-%d %H:%M UTC"),
            rel = relative(t, now),
        ),
    }
}

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
            format!(
                "<tr><td>{name}</td><td>{kind}</td><td>{role}</td>{exp}</tr>",
                name = html_escape(&l.name),
                kind = kind(l.kind),
                role = html_escape(&l.role),
                exp = expiry_cell(l, now),
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
    let (csrf, cookie) = new_csrf(app.config.secure_cookies());
    let body = format!(
        "<header><span class=\"muted\">Signed in as {who}</span>\
         <form method=\"post\" action=\"/logout\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button class=\"secondary\" type=\"submit\">Sign out</button></form></header>\
         <h1>Access to {ws}</h1>{table}\
         <p class=\"muted\">Times are UTC. An expired grant stops counting at its instant and is removed within a minute.</p>",
        who = html_escape(&p.name),
        ws = html_escape(&ws.name),
    );
    let mut resp = page(StatusCode::OK, &format!("Access · {}", ws.name), &body);
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    resp
}
