//! Workspace pages: the list (with create), one workspace (edit, default access for all members,
//! delete with confirmation), and who has access to it (add, change, remove, and the explain
//! view: why does X have scope Y here?).

use super::form::{done, Fields};
use super::session::SignedIn;
use super::shell::{Section, Shell};
use super::{error_page, error_page_back, expiry_cell, options, table};
use crate::app::App;
use crate::domain::role::AccountPermission as P;
use crate::domain::scope::Scope;
use crate::domain::{AccountId, RoleId, WorkspaceId};
use crate::services::access::{self, Grantee};
use crate::services::mail::html_escape;
use crate::services::workspaces::{self as ws, CreateWorkspace, UpdateWorkspace};
use crate::services::{Error, Result};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use uuid::Uuid;

fn role_select(
    roles: &[(String, String)],
    id: &str,
    name: &str,
    selected: &str,
    none: Option<&str>,
) -> String {
    let none = none
        .map(|n| format!("<option value=\"\">{}</option>", html_escape(n)))
        .unwrap_or_default();
    format!(
        "<select id=\"{id}\" name=\"{name}\">{none}{}</select>",
        options(roles.iter().map(|(v, l)| (v.clone(), l.as_str())), selected)
    )
}

fn role_id(v: Option<&str>) -> Result<Option<RoleId>> {
    v.map(|v| {
        v.parse::<Uuid>()
            .map(RoleId)
            .map_err(|_| Error::validation("role: not a valid id"))
    })
    .transpose()
}

/// `GET /account/{a}/workspaces`
pub async fn list(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
) -> Response {
    let r: Result<Response> = async {
        let shell = Shell::open(&app, &p, account).await?;
        let all = shell.workspaces(&app, &p).await?;
        let roles = shell.workspace_roles(&app, &p).await?;
        let role_name = |id: Option<RoleId>| {
            id.and_then(|id| roles.iter().find(|(r, _)| *r == id.to_string()))
                .map_or("none (grants only)".to_string(), |(_, n)| n.clone())
        };
        let rows: String = all
            .iter()
            .map(|w| {
                format!(
                    "<tr><td><a href=\"{url}\">{name}</a></td><td>{handle}</td><td>{desc}</td><td>{def}</td></tr>",
                    url = shell.url(&format!("/workspace/{}", w.id)),
                    name = html_escape(&w.name),
                    handle = html_escape(&w.handle),
                    desc = html_escape(&w.description),
                    def = html_escape(&role_name(w.default_workspace_role_id)),
                )
            })
            .collect();
        let list = table(
            "Workspaces you can see",
            &["Name", "Handle", "Description", "Default access"],
            &rows,
            "No workspace you can see yet.",
        );
        let create = if shell.can(P::CreateWorkspace) {
            format!(
                "<h2>New workspace</h2><form method=\"post\" action=\"{action}\">{csrf}<div class=\"row\">\
                 <div><label for=\"ws-name\">Name</label><input id=\"ws-name\" name=\"name\" required maxlength=\"100\"></div>\
                 <div><label for=\"ws-handle\">Handle</label><input id=\"ws-handle\" name=\"handle\" required maxlength=\"100\" pattern=\"[a-z0-9-]+\" title=\"lowercase letters, digits and dashes\"></div></div>\
                 <label for=\"ws-desc\">Description</label><input id=\"ws-desc\" name=\"description\" maxlength=\"1000\">\
                 <label for=\"ws-default\">Default access for all account members</label>{select}\
                 <button type=\"submit\">Create workspace</button></form>",
                action = shell.url("/workspaces"),
                csrf = shell.csrf_input(),
                select = role_select(&roles, "ws-default", "default_workspace_role_id", "", Some("None: only people granted a role")),
            )
        } else {
            String::new()
        };
        let body = format!("<h1>Workspaces</h1>{list}{create}");
        Ok(shell.render(Section::Workspaces, "Workspaces", &body))
    }
    .await;
    r.unwrap_or_else(|e| error_page(&e))
}

/// `POST /account/{a}/workspaces`: creates a workspace and opens it.
pub async fn create(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
    f: Fields,
) -> Response {
    let back = format!("/account/{account}/workspaces");
    let r = async {
        let w = ws::create_workspace(
            &app,
            &p,
            account,
            CreateWorkspace {
                name: f.get("name").to_string(),
                handle: f.get("handle").to_string(),
                description: f.opt("description").map(str::to_string),
                default_workspace_role_id: role_id(f.opt("default_workspace_role_id"))?,
            },
        )
        .await?;
        Ok::<_, Error>(w)
    }
    .await;
    match r {
        Ok(w) => Redirect::to(&format!("/account/{account}/workspace/{}", w.id)).into_response(),
        Err(e) => error_page_back(&e, Some(&back)),
    }
}

#[derive(Deserialize)]
pub struct ShowQuery {
    /// Set when the visitor followed a link into Prefect's own UI (flow runs, deployments…).
    #[serde(default)]
    pub prefect_link: Option<String>,
}

/// `GET /account/{a}/workspace/{w}/{*rest}`: links the `prefect` client prints into Prefect
/// Cloud's UI (`…/workspace/{w}/flow-runs/flow-run/{id}` and the like) land on the workspace page,
/// which says where those objects are shown.
pub async fn prefect_link(
    Path((account, workspace, _rest)): Path<(AccountId, WorkspaceId, String)>,
) -> Response {
    Redirect::to(&format!(
        "/account/{account}/workspace/{workspace}?prefect_link=1"
    ))
    .into_response()
}

/// `GET /account/{a}/workspace/{w}`: the workspace, its settings and links to its access page.
pub async fn show(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, workspace)): Path<(AccountId, WorkspaceId)>,
    Query(q): Query<ShowQuery>,
) -> Response {
    let r: Result<Response> = async {
        let shell = Shell::open(&app, &p, account).await?;
        let w = ws::read_workspace(&app, &p, account, workspace).await?;
        let roles = shell.workspace_roles(&app, &p).await?;
        let held = shell.scopes(workspace);
        let may_edit = held.contains(Scope::WriteWorkspaceSettings);
        let may_set_default = held.contains(Scope::ManageWorkspaceUsers);
        let sees_access = held.contains(Scope::SeeWorkspaceUsers);
        let base = shell.url(&format!("/workspace/{}", w.id));
        let default = w.default_workspace_role_id.map(|r| r.to_string()).unwrap_or_default();
        let default_name = roles
            .iter()
            .find(|(id, _)| *id == default)
            .map_or("none — only people granted a role", |(_, n)| n.as_str());
        let edit = if may_edit {
            format!(
                "<h2>Details</h2><form method=\"post\" action=\"{base}\">{csrf}<div class=\"row\">\
                 <div><label for=\"ws-name\">Name</label><input id=\"ws-name\" name=\"name\" required maxlength=\"100\" value=\"{name}\"></div>\
                 <div><label for=\"ws-handle\">Handle</label><input id=\"ws-handle\" name=\"handle\" required maxlength=\"100\" value=\"{handle}\"></div></div>\
                 <label for=\"ws-desc\">Description</label><input id=\"ws-desc\" name=\"description\" maxlength=\"1000\" value=\"{desc}\">\
                 <button type=\"submit\">Save details</button></form>",
                csrf = shell.csrf_input(),
                name = html_escape(&w.name),
                handle = html_escape(&w.handle),
                desc = html_escape(&w.description),
            )
        } else {
            String::new()
        };
        let default_form = if may_set_default && may_edit {
            format!(
                "<form method=\"post\" action=\"{base}/default-access\">{csrf}\
                 <label for=\"ws-default\">Default access for all account members</label>{select}\
                 <button type=\"submit\">Save default access</button></form>",
                csrf = shell.csrf_input(),
                select = role_select(&roles, "ws-default", "default_workspace_role_id", &default, Some("None: only people granted a role")),
            )
        } else {
            format!("<p>Default access for all account members: <strong>{}</strong></p>", html_escape(default_name))
        };
        let links = if sees_access {
            format!("<p><a href=\"{base}/access\">Who has access</a></p>")
        } else {
            String::new()
        };
        let delete = if shell.can(P::DeleteWorkspace) {
            format!("<h2>Danger zone</h2><p><a href=\"{base}/delete\">Delete this workspace…</a></p>")
        } else {
            String::new()
        };
        let notice = if q.prefect_link.is_some() {
            "<p class=\"notice\" role=\"status\">That link points into Prefect's own UI (flow runs, deployments, work pools…). \
             Atrium manages who may reach this workspace; its flows and runs are shown by the Prefect server the workspace is bound to.</p>"
        } else {
            ""
        };
        let body = format!(
            "<p><a href=\"{list}\">Workspaces</a></p><h1>{name}</h1><p class=\"muted\">{handle} · {desc}</p>{notice}{links}<h2>Default access</h2>{default_form}{edit}{delete}",
            list = shell.url("/workspaces"),
            name = html_escape(&w.name),
            handle = html_escape(&w.handle),
            desc = html_escape(&w.description),
        );
        Ok(shell.render(Section::Workspaces, &w.name, &body))
    }
    .await;
    r.unwrap_or_else(|e| error_page(&e))
}

/// `POST /account/{a}/workspace/{w}`: name, handle, description.
pub async fn update(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, workspace)): Path<(AccountId, WorkspaceId)>,
    f: Fields,
) -> Response {
    let u = UpdateWorkspace {
        name: Some(f.get("name").to_string()),
        handle: Some(f.get("handle").to_string()),
        description: Some(f.get("description").to_string()),
        default_workspace_role_id: None,
    };
    done(
        &format!("/account/{account}/workspace/{workspace}"),
        ws::update_workspace(&app, &p, account, workspace, u).await,
    )
}

/// `POST /account/{a}/workspace/{w}/default-access`
pub async fn default_access(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, workspace)): Path<(AccountId, WorkspaceId)>,
    f: Fields,
) -> Response {
    let r = async {
        let u = UpdateWorkspace {
            name: None,
            handle: None,
            description: None,
            default_workspace_role_id: Some(role_id(f.opt("default_workspace_role_id"))?),
        };
        ws::update_workspace(&app, &p, account, workspace, u).await
    }
    .await;
    done(&format!("/account/{account}/workspace/{workspace}"), r)
}

/// `GET /account/{a}/workspace/{w}/delete`: asks for the handle before deleting.
pub async fn confirm_delete(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, workspace)): Path<(AccountId, WorkspaceId)>,
) -> Response {
    let r: Result<Response> = async {
        let shell = Shell::open(&app, &p, account).await?;
        let w = ws::read_workspace(&app, &p, account, workspace).await?;
        let body = format!(
            "<h1>Delete {name}?</h1><p class=\"error\">This removes the workspace, every grant on it and its binding to a Prefect server. \
             The Prefect server's own data is not touched. This cannot be undone.</p>\
             <form method=\"post\" action=\"{action}\">{csrf}\
             <label for=\"confirm\">Type the workspace handle <code>{handle}</code> to confirm</label>\
             <input id=\"confirm\" name=\"confirm\" required autocomplete=\"off\">\
             <button type=\"submit\">Delete workspace</button></form><p><a href=\"{back}\">Cancel</a></p>",
            name = html_escape(&w.name),
            handle = html_escape(&w.handle),
            action = shell.url(&format!("/workspace/{}/delete", w.id)),
            back = shell.url(&format!("/workspace/{}", w.id)),
            csrf = shell.csrf_input(),
        );
        Ok(shell.render(Section::Workspaces, &format!("Delete {}", w.name), &body))
    }
    .await;
    r.unwrap_or_else(|e| error_page(&e))
}

/// `POST /account/{a}/workspace/{w}/delete`: deletes when the typed handle matches.
pub async fn delete(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, workspace)): Path<(AccountId, WorkspaceId)>,
    f: Fields,
) -> Response {
    let r = async {
        let w = ws::read_workspace(&app, &p, account, workspace).await?;
        if f.get("confirm") != w.handle {
            return Err(Error::validation(
                "the typed handle does not match the workspace's; nothing was deleted",
            ));
        }
        ws::delete_workspace(&app, &p, account, workspace).await
    }
    .await;
    match r {
        Ok(()) => Redirect::to(&format!("/account/{account}/workspaces")).into_response(),
        Err(e) => error_page_back(
            &e,
            Some(&format!("/account/{account}/workspace/{workspace}/delete")),
        ),
    }
}

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
        let lines = access::workspace_access_lines(&app, &p, account, workspace).await?;
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
                    Ok(who) => crate::services::teams::explain(&app, &p, account, workspace, who, scope).await,
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
    Ok((Grantee::parse(kind)?, id))
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
            access::grant(&app, &p, account, workspace, who, id, role, expires_at).await
        } else {
            access::change_role(&app, &p, account, workspace, who, id, role).await
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
        let who = Grantee::parse(&q.kind)?;
        access::revoke(&app, &p, account, workspace, who, q.id).await
    }
    .await;
    done(
        &format!("/account/{account}/workspace/{workspace}/access"),
        r,
    )
}
