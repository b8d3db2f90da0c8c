//! The signed-in home (every account the user belongs to) and an account's overview page.

use super::session::SignedIn;
use super::shell::Shell;
use super::{error_page, page, relative, signed_in_header};
use crate::app::App;
use crate::domain::role::AccountPermission as P;
use crate::domain::AccountId;
use crate::services::accounts::overview;
use crate::services::mail::html_escape;
use crate::services::me::my_accounts;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// `GET /`: the account switcher.
pub async fn home(State(app): State<App>, SignedIn(p): SignedIn) -> Response {
    let accounts = match my_accounts(&app, &p).await {
        Ok(a) => a,
        Err(e) => return error_page(&e),
    };
    let items: String = accounts
        .iter()
        .map(|a| {
            format!(
                "<li><a href=\"/account/{id}\">{name}</a> <span class=\"muted\">{handle} · {role}</span></li>",
                id = a.account_id,
                name = html_escape(&a.account_name),
                handle = html_escape(&a.account_handle),
                role = a.account_role_name,
            )
        })
        .collect();
    let list = if items.is_empty() {
        "<p class=\"muted\">You are not a member of any account yet. Ask an account Owner for an invitation.</p>".to_string()
    } else {
        format!("<nav aria-label=\"Accounts\"><ul class=\"plain\">{items}</ul></nav>")
    };
    let (header, csrf) = signed_in_header(&app, &p);
    let create = if crate::services::accounts::may_create_account(&app, &p) {
        format!(
            "<h2>New account</h2><form method=\"post\" action=\"/accounts\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"acct-name\">Name</label><input id=\"acct-name\" name=\"name\" required maxlength=\"100\">\
             <label for=\"acct-handle\">Handle</label><input id=\"acct-handle\" name=\"handle\" required maxlength=\"100\" pattern=\"[a-z0-9-]+\" title=\"lowercase letters, digits and dashes\">\
             <button type=\"submit\">Create account</button></form>"
        )
    } else {
        String::new()
    };
    page(
        StatusCode::OK,
        "Accounts",
        &format!("{header}<p><a href=\"/my/profile\">Profile</a></p><h1>Your accounts</h1>{list}{create}"),
    )
}

/// `POST /accounts`: a new account with the signed-in user as its Owner.
pub async fn create(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    f: super::form::Fields,
) -> Response {
    let a = crate::services::accounts::CreateAccount {
        name: f.get("name").to_string(),
        handle: f.get("handle").to_string(),
        location: None,
        link: None,
        billing_email: None,
    };
    match crate::services::accounts::create_account(&app, &p, a).await {
        Ok(a) => axum::response::Redirect::to(&format!("/account/{}", a.id)).into_response(),
        Err(e) => super::error_page_back(&e, Some("/")),
    }
}

/// `GET /account/{account_id}`: plan, seats, workspaces, members and recent activity.
pub async fn show(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
) -> Response {
    let r: crate::services::Result<Response> = async {
        let shell = Shell::open(&app, &p, account).await?;
        let o = overview(&app, &p, account).await?;
        let limit = |l: Option<i64>| l.map_or_else(|| "no limit".to_string(), |l| l.to_string());
        let meter = match o.seat_limit {
            Some(l) if l > 0 => format!(
                "<meter min=\"0\" max=\"{l}\" value=\"{u}\" aria-label=\"Seats used\">{u} of {l}</meter>",
                u = o.seats_used
            ),
            _ => String::new(),
        };
        let workspaces: String = o
            .workspaces
            .iter()
            .map(|(w, sees_access)| {
                let access = if *sees_access {
                    format!(" · <a href=\"{}\">access</a>", shell.url(&format!("/workspace/{}/access", w.id)))
                } else {
                    String::new()
                };
                format!(
                    "<li><a href=\"{url}\">{name}</a> <span class=\"muted\">{handle}</span>{access}</li>",
                    url = shell.url(&format!("/workspace/{}", w.id)),
                    name = html_escape(&w.name),
                    handle = html_escape(&w.handle),
                )
            })
            .collect();
        let workspaces = if workspaces.is_empty() {
            "<p class=\"muted\">No workspace you can see.</p>".to_string()
        } else {
            format!("<ul class=\"plain\">{workspaces}</ul>")
        };
        let members = if shell.can(P::ReadAccountMembership) {
            format!("<p>Seats used (members and pending invitations): {} · <a href=\"{}\">manage members</a></p>", o.seats_used, shell.url("/members"))
        } else {
            String::new()
        };
        let now = app.now();
        let activity = match &o.recent_activity {
            None => String::new(),
            Some(events) if events.is_empty() => {
                "<h2>Recent activity</h2><p class=\"muted\">Nothing yet.</p>".into()
            }
            Some(events) => {
                let rows: String = events
                    .iter()
                    .map(|e| {
                        format!(
                            "<tr><td><time datetime=\"{iso}\">{rel}</time></td><td>{event}</td><td>{actor}</td></tr>",
                            iso = e.occurred.to_rfc3339(),
                            rel = relative(e.occurred, now),
                            event = html_escape(e.event.trim_start_matches("prefect-cloud.")),
                            actor = html_escape(e.actor["name"].as_str().unwrap_or("system")),
                        )
                    })
                    .collect();
                format!(
                    "<h2>Recent activity</h2><table><thead><tr><th scope=\"col\">When</th><th scope=\"col\">What</th><th scope=\"col\">Who</th></tr></thead><tbody>{rows}</tbody></table>\
                     <p><a href=\"{}\">Full audit log</a></p>",
                    shell.url("/audit-log")
                )
            }
        };
        // An account without workspaces: what to do next, for those who may do it.
        let started = if o.workspaces.is_empty() && shell.can(P::CreateWorkspace) {
            format!(
                "<section class=\"notice\"><h2>Getting started</h2><ol>\
                 <li><a href=\"{ws}\">Create a workspace</a>.</li>\
                 <li>Connect its Prefect server: <code>atrium workspaces set-upstream --account {handle} --workspace …\
                 --url http://…:4200/api</code> (docs/gateway.md).</li>\
                 <li><a href=\"/me/api-keys\">Create an API key</a> and log in with <code>prefect cloud login</code>.</li>\
                 <li><a href=\"{members}\">Invite people</a>.</li></ol></section>",
                ws = shell.url("/workspaces"),
                members = shell.url("/members"),
                handle = html_escape(&o.handle),
            )
        } else {
            String::new()
        };
        let body = format!(
            "<h1>{name}</h1>{started}\
             <p class=\"muted\">{handle} · your role: {role}</p>\
             <h2>Plan</h2><p>{plan} · seats used {used} of {seats} {meter} · workspaces {wcount} of {wlimit}</p>\
             <h2>Workspaces</h2>{workspaces}{members_h}{members}{activity}",
            name = html_escape(&o.name),
            handle = html_escape(&o.handle),
            role = o.role,
            plan = o.plan,
            used = o.seats_used,
            seats = limit(o.seat_limit),
            wcount = o.workspaces.len(),
            wlimit = limit(o.workspace_limit),
            members_h = if members.is_empty() { "" } else { "<h2>Members</h2>" },
        );
        Ok(shell.render(super::shell::Section::Overview, "Overview", &body))
    }
    .await;
    r.unwrap_or_else(|e| error_page(&e))
}
