//! A workspace's access page: everyone granted a role (users, service accounts, teams) with role
//! and expiry, granting, changing and removing grants, and "why does X have scope Y".

use super::form::{done, Fields};
use super::session::SignedIn;
use super::shell::{Section, Shell};
use super::workspaces::{role_id, role_select};
use super::{error_page, expiry_cell, options, table};
use crate::app::App;
use crate::domain::scope::Scope;
use crate::domain::Grantee;
use crate::domain::{AccountId, WorkspaceId};
use crate::services::grants;
use crate::services::mail::html_escape;
use crate::services::workspaces as ws;
use crate::services::{Error, Result};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

#[derive(Deserialize)]
pub struct ExplainQuery {
    /// A user's or service account's id.
    /// Read as text so a mangled link gets the page with an explanation, not a bare 400.
    pub who: Option<String>,
    pub scope: Option<String>,
}

/// `GET /account/{a}/workspace/{w}/access` (needs `see_workspace_users`): grants with role and
/// expiry, forms to add, change and remove them, and the explain view.
pub async fn access(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, workspace)): Path<(AccountId, WorkspaceId)>,
    Query(q): Query<ExplainQuery>,
) -> Response {
    let r: Result<Response> = async {
        let shell = Shell::open(&app, &p, account).await?;
        let w = ws::read_workspace(&app, &p, account, workspace).await?;
        let lines = grants::workspace_access_lines(&app, &p, account, workspace).await?;
        let roles = shell.workspace_roles(&app, &p).await?;
        let held = shell.scopes(workspace);
        let manage_users = held.contains(Scope::ManageWorkspaceUsers);
        let manage_bots = held.contains(Scope::ManageWorkspaceServiceAccounts);
        let manage_teams = held.contains(Scope::ManageWorkspaceTeams);
        let base = shell.url(&format!("/workspace/{}/access", w.id));
        let now = app.now();
        let kind_label = |k: &str| match k {
            "user" => "User",
            "service_account" => "Service account",
            _ => "Team",
        };
        let may_manage = |k: &str| match k {
            "user" => manage_users,
            "service_account" => manage_bots,
            _ => manage_teams,
        };
        let rows: String = lines
            .iter()
            .map(|l| {
                let name = if l.kind == "team" {
                    format!(
                        "<a href=\"{}\">{}</a>",
                        shell.url(&format!("/team/{}", l.id)),
                        html_escape(&l.name)
                    )
                } else {
                    html_escape(&l.name)
                };
                let (role, actions) = if may_manage(l.kind) {
                    let sel_id = format!("role-{}", l.grant_id);
                    (
                        format!(
                            "<form method=\"post\" action=\"{base}\" class=\"inline\">{csrf}\
                             <input type=\"hidden\" name=\"subject\" value=\"{kind}:{id}\">\
                             <label for=\"{sel_id}\" class=\"sr-only\">Role of {n}</label>{select}\
                             <button class=\"secondary\" type=\"submit\">Change</button></form>",
                            csrf = shell.csrf_input(),
                            kind = l.kind,
                            id = l.id,
                            n = html_escape(&l.name),
                            select = role_select(&roles, &sel_id, "role", &l.role_id.to_string(), None),
                        ),
                        shell.button(
                            &format!("{base}/remove?kind={}&id={}", l.kind, if l.kind == "team" { l.id } else { l.grant_id.0 }),
                            "Remove",
                            &format!("Remove {}", l.name),
                            Some(&format!("Remove {}'s access to this workspace?", l.name)),
                        ),
                    )
                } else {
                    (html_escape(&l.role), String::new())
                };
                format!(
                    "<tr><td>{name}</td><td>{kind}</td><td>{role}</td>{exp}<td>{actions}</td></tr>",
                    kind = kind_label(l.kind),
                    exp = expiry_cell(l.expires_at, now),
                )
            })
            .collect();
        let grants = table(
            "Grants on this workspace",
            &["Who", "Kind", "Role", "Expires", "<span class=\"muted\">Actions</span>"],
            &rows,
            "Nobody has been granted a role here; account Owners and Admins, and the workspace's default role, still apply.",
        );
        // Who could be granted or explained: members, service accounts, teams (each list only
        // when the caller may read it).
        let members = shell.members(&app, &p).await?;
        let bots = if held.contains(Scope::SeeWorkspaceServiceAccounts) {
            shell.bots(&app, &p).await?
        } else {
            Vec::new()
        };
        let teams = shell.teams(&app, &p).await?;
        let group = |label: &str, items: Vec<(String, String)>| {
            if items.is_empty() {
                String::new()
            } else {
                format!(
                    "<optgroup label=\"{label}\">{}</optgroup>",
                    options(items.iter().map(|(v, l)| (v.clone(), l.as_str())), "")
                )
            }
        };
        let mut add_choices = String::new();
        if manage_users {
            add_choices += &group("Members", members.iter().map(|m| (format!("user:{}", m.user_id), format!("{} ({})", m.email, m.account_role_name))).collect());
        }
        if manage_bots {
            add_choices += &group("Service accounts", bots.iter().map(|b| (format!("service_account:{}", b.id), b.name.clone())).collect());
        }
        if manage_teams {
            add_choices += &group("Teams", teams.iter().map(|t| (format!("team:{}", t.id), t.name.clone())).collect());
        }
        let add = if add_choices.is_empty() {
            String::new()
        } else {
            format!(
                "<h2>Grant access</h2><form method=\"post\" action=\"{base}\">{csrf}<div class=\"row\">\
                 <div><label for=\"grant-subject\">Who</label><select id=\"grant-subject\" name=\"subject\" required>{add_choices}</select></div>\
                 <div><label for=\"grant-role\">Role</label>{select}</div>\
                 <div><label for=\"grant-expires\">Expires (UTC, optional)</label><input id=\"grant-expires\" name=\"expires_at\" type=\"datetime-local\"></div>\
                 <div><button type=\"submit\">Grant</button></div></div></form>",
                csrf = shell.csrf_input(),
                select = role_select(&roles, "grant-role", "role", &super::shell::least_role(), None),
            )
        };
        // The explain view.
        let who_items: Vec<(String, String)> = members
            .iter()
            .map(|m| (m.user_id.to_string(), m.email.clone()))
            .chain(bots.iter().map(|b| (b.id.to_string(), format!("{} (service account)", b.name))))
            .collect();
        let picked_who = q.who.clone().unwrap_or_default();
        let picked_scope = q.scope.clone().unwrap_or_else(|| "see_flows".into());
        let scopes = crate::services::roles::workspace_scopes();
        let scope_options = options(
            scopes.iter().map(|s| (s.name.to_string(), s.title)),
            &picked_scope,
        );
        let answer = match (q.who.as_deref(), q.scope.as_deref()) {
            (Some(who), Some(scope)) => {
                let explained = match who.parse::<Uuid>() {
                    Ok(who) => crate::services::grants::explain(&app, &p, account, workspace, who, scope).await,
                    Err(_) => Err(Error::validation("who: not a member or service account id")),
                };
                match explained {
                    Ok(x) => {
                        let verdict = if x.granted { "has" } else { "does not have" };
                        let name = who_items
                            .iter()
                            .find(|(id, _)| id == who)
                            .map_or("This member", |(_, n)| n.as_str());
                        let paths: String = x
                            .paths
                            .iter()
                            .map(|path| {
                                let how = match path.kind {
                                    "account_role" => format!("account role {} (implicit workspace Owner)", path.role_name),
                                    "default_role" => format!("the workspace's default role {}", path.role_name),
                                    "direct" => format!("a direct grant of {}", path.role_name),
                                    _ => format!(
                                        "team {} with role {}",
                                        path.team_name.as_deref().unwrap_or("?"),
                                        path.role_name
                                    ),
                                };
                                let until = path
                                    .expires_at
                                    .map(|t| format!(" until {}", t.format("%Y-%m-%d %H:%M UTC")))
                                    .unwrap_or_default();
                                format!(
                                    "<li>{}{until} {}</li>",
                                    html_escape(&how),
                                    if path.grants_scope { "— gives it" } else { "— does not give it" }
                                )
                            })
                            .collect();
                        let paths = if paths.is_empty() {
                            "<p>No role reaches them in this workspace.</p>".to_string()
                        } else {
                            format!("<ul>{paths}</ul>")
                        };
                        format!(
                            "<section class=\"notice\" role=\"status\" id=\"explanation\"><p><strong>{n}</strong> {verdict} <code>{scope}</code> here.</p>{paths}</section>",
                            n = html_escape(name),
                            scope = x.scope,
                        )
                    }
                    Err(e) => format!("<p class=\"error\" role=\"alert\" id=\"explanation\">{}</p>", html_escape(&e.to_string())),
                }
            }
            _ => String::new(),
        };
        let explain = if who_items.is_empty() {
            String::new()
        } else {
            format!(
                "<h2>Why does someone have access?</h2><form method=\"get\" action=\"{base}\"><div class=\"row\">\
                 <div><label for=\"explain-who\">Who</label><select id=\"explain-who\" name=\"who\">{who}</select></div>\
                 <div><label for=\"explain-scope\">Permission</label><select id=\"explain-scope\" name=\"scope\">{scope_options}</select></div>\
                 <div><button type=\"submit\">Explain</button></div></div></form>{answer}",
                who = options(who_items.iter().map(|(v, l)| (v.clone(), l.as_str())), &picked_who),
            )
        };
        let body = format!(
            "<p><a href=\"{ws_url}\">{name}</a></p><h1>Access to {name}</h1>{grants}\
             <p class=\"muted\">Times are UTC. An expired grant stops counting at its instant and is removed within a minute.</p>{add}{explain}",
            ws_url = shell.url(&format!("/workspace/{}", w.id)),
            name = html_escape(&w.name),
        );
        Ok(shell.render(Section::Workspaces, &format!("Access · {}", w.name), &body))
    }
    .await;
    r.unwrap_or_else(|e| error_page(&e))
}

fn subject(v: &str) -> Result<(Grantee, Uuid)> {
    let (kind, id) = v
        .split_once(':')
        .ok_or_else(|| Error::validation("choose who to grant"))?;
    let id = id
        .parse::<Uuid>()
        .map_err(|_| Error::validation("subject: not a valid id"))?;
    Ok((crate::services::grants::parse_grantee(kind)?, id))
}

/// `POST /account/{a}/workspace/{w}/access`: grants or changes a role.
pub async fn grant(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, workspace)): Path<(AccountId, WorkspaceId)>,
    f: Fields,
) -> Response {
    let r = async {
        let (who, id) = subject(f.get("subject"))?;
        let role = role_id(f.opt("role"))?.ok_or_else(|| Error::validation("choose a role"))?;
        // The grant form has an expiry field; the per-row "change role" form has none, and
        // keeps the grant's expiry.
        if f.checked("expires_at") {
            let expires_at = f.instant("expires_at")?;
            grants::grant(&app, &p, account, workspace, who, id, role, expires_at).await
        } else {
            grants::change_role(&app, &p, account, workspace, who, id, role).await
        }
    }
    .await;
    done(
        &format!("/account/{account}/workspace/{workspace}/access"),
        r,
    )
}

#[derive(Deserialize)]
pub struct RemoveQuery {
    pub kind: String,
    pub id: Uuid,
}

/// `POST /account/{a}/workspace/{w}/access/remove?kind=…&id=…`
pub async fn remove(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, workspace)): Path<(AccountId, WorkspaceId)>,
    Query(q): Query<RemoveQuery>,
    _f: Fields,
) -> Response {
    let r = async {
        let who = crate::services::grants::parse_grantee(&q.kind)?;
        grants::revoke(&app, &p, account, workspace, who, q.id).await
    }
    .await;
    done(
        &format!("/account/{account}/workspace/{workspace}/access"),
        r,
    )
}
