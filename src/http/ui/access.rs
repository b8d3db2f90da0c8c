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
use crate::services::workspaces as ws;
use crate::services::{Error, Result};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{html, Markup};
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
        let rows: Vec<Markup> = lines
            .iter()
            .map(|l| {
                let manage = may_manage(l.kind);
                let sel_id = format!("role-{}", l.grant_id);
                html! { tr {
                    td {
                        @if l.kind == "team" {
                            a href=(shell.url(&format!("/team/{}", l.id))) { (l.name) }
                        } @else {
                            (l.name)
                        }
                    }
                    td { (kind_label(l.kind)) }
                    td {
                        @if manage {
                            form.inline method="post" action=(base) {
                                (shell.csrf_input())
                                input type="hidden" name="subject" value={ (l.kind) ":" (l.id) };
                                label.sr-only for=(sel_id) { "Role of " (l.name) }
                                (role_select(&roles, &sel_id, "role", &l.role_id.to_string(), None))
                                button.secondary type="submit" { "Change" }
                            }
                        } @else {
                            (l.role)
                        }
                    }
                    (expiry_cell(l.expires_at, now))
                    td {
                        @if manage {
                            (shell.button(
                                &format!("{base}/remove?kind={}&id={}", l.kind, if l.kind == "team" { l.id } else { l.grant_id.0 }),
                                "Remove",
                                &format!("Remove {}", l.name),
                                Some(&format!("Remove {}'s access to this workspace?", l.name)),
                            ))
                        }
                    }
                } }
            })
            .collect();
        let grants = table(
            "Grants on this workspace",
            &["Who", "Kind", "Role", "Expires", "Actions"],
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
        let mut groups: Vec<(&str, Vec<(String, String)>)> = Vec::new();
        if manage_users {
            groups.push(("Members", members.iter().map(|m| (format!("user:{}", m.user_id), format!("{} ({})", m.email, m.account_role_name))).collect()));
        }
        if manage_bots {
            groups.push(("Service accounts", bots.iter().map(|b| (format!("service_account:{}", b.id), b.name.clone())).collect()));
        }
        if manage_teams {
            groups.push(("Teams", teams.iter().map(|t| (format!("team:{}", t.id), t.name.clone())).collect()));
        }
        groups.retain(|(_, items)| !items.is_empty());
        let add = html! {
            @if !groups.is_empty() {
                h2 { "Grant access" }
                form method="post" action=(base) {
                    (shell.csrf_input())
                    div.row {
                        div {
                            label for="grant-subject" { "Who" }
                            select #grant-subject name="subject" required {
                                @for (label, items) in &groups {
                                    optgroup label=(label) { (options(items.iter().map(|(v, l)| (v.clone(), l.as_str())), "")) }
                                }
                            }
                        }
                        div { label for="grant-role" { "Role" } (role_select(&roles, "grant-role", "role", &super::shell::least_role(), None)) }
                        div { label for="grant-expires" { "Expires (UTC, optional)" } input #grant-expires name="expires_at" type="datetime-local"; }
                        div { button type="submit" { "Grant" } }
                    }
                }
            }
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
                        html! {
                            section.notice role="status" #explanation {
                                p { strong { (name) } " " (verdict) " " code { (x.scope) } " here." }
                                @if x.paths.is_empty() {
                                    p { "No role reaches them in this workspace." }
                                } @else {
                                    ul { @for path in &x.paths {
                                        li {
                                            @match path.kind {
                                                "account_role" => { "account role " (path.role_name) " (implicit workspace Owner)" }
                                                "default_role" => { "the workspace's default role " (path.role_name) }
                                                "direct" => { "a direct grant of " (path.role_name) }
                                                _ => { "team " (path.team_name.as_deref().unwrap_or("?")) " with role " (path.role_name) }
                                            }
                                            @if let Some(t) = path.expires_at {
                                                " until " (t.format("%Y-%m-%d %H:%M UTC"))
                                            }
                                            (if path.grants_scope { " — gives it" } else { " — does not give it" })
                                        }
                                    } }
                                }
                            }
                        }
                    }
                    Err(e) => html! { p.error role="alert" #explanation { (e.to_string()) } },
                }
            }
            _ => html! {},
        };
        let body = html! {
            p { a href=(shell.url(&format!("/workspace/{}", w.id))) { (w.name) } }
            h1 { "Access to " (w.name) }
            (grants)
            p.muted { "Times are UTC. An expired grant stops counting at its instant and is removed within a minute." }
            (add)
            @if !who_items.is_empty() {
                h2 { "Why does someone have access?" }
                form method="get" action=(base) { div.row {
                    div {
                        label for="explain-who" { "Who" }
                        select #explain-who name="who" { (options(who_items.iter().map(|(v, l)| (v.clone(), l.as_str())), &picked_who)) }
                    }
                    div { label for="explain-scope" { "Permission" } select #explain-scope name="scope" { (scope_options) } }
                    div { button type="submit" { "Explain" } }
                } }
                (answer)
            }
        };
        Ok(shell.render(Section::Workspaces, &format!("Access · {}", w.name), body))
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
