//! Workspace pages: the list (with create), one workspace (edit, default access for all members,
//! delete with confirmation), and who has access to it (add, change, remove, and the explain
//! view: why does X have scope Y here?).

use super::form::{done, Fields};
use super::session::SignedIn;
use super::shell::{Section, Shell};
use super::{error_page, error_page_back, handle_input, name_input, options, table};
use crate::app::App;
use crate::domain::role::AccountPermission as P;
use crate::domain::scope::Scope;
use crate::domain::{AccountId, RoleId, WorkspaceId};
use crate::services::workspaces::{self as ws, CreateWorkspace, UpdateWorkspace};
use crate::services::{Error, Result};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use uuid::Uuid;

pub(super) fn role_select(
    roles: &[(String, String)],
    id: &str,
    name: &str,
    selected: &str,
    none: Option<&str>,
) -> Markup {
    html! {
        select id=(id) name=(name) {
            @if let Some(n) = none { option value="" { (n) } }
            (options(roles.iter().map(|(v, l)| (v.clone(), l.as_str())), selected))
        }
    }
}

pub(super) fn role_id(v: Option<&str>) -> Result<Option<RoleId>> {
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
        let rows: Vec<Markup> = all
            .iter()
            .map(|w| {
                html! { tr {
                    td { a href=(shell.url(&format!("/workspace/{}", w.id))) { (w.name) } }
                    td { (w.handle) }
                    td { (w.description) }
                    td { (role_name(w.default_workspace_role_id)) }
                } }
            })
            .collect();
        let body = html! {
            h1 { "Workspaces" }
            (table(
                "Workspaces you can see",
                &["Name", "Handle", "Description", "Default access"],
                &rows,
                "No workspace you can see yet.",
            ))
            @if shell.can(P::CreateWorkspace) {
                h2 { "New workspace" }
                form method="post" action=(shell.url("/workspaces")) {
                    (shell.csrf_input())
                    div.row {
                        div { (name_input("ws-name", None)) }
                        div { (handle_input("ws-handle")) }
                    }
                    label for="ws-desc" { "Description" }
                    input #ws-desc name="description" maxlength="1000";
                    label for="ws-default" { "Default access for all account members" }
                    (role_select(&roles, "ws-default", "default_workspace_role_id", "", Some("None: only people granted a role")))
                    button type="submit" { "Create workspace" }
                }
            }
        };
        Ok(shell.render(Section::Workspaces, "Workspaces", body))
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

/// `GET /account/{a}/workspace/{w}`: the workspace, its settings and links to its access page.
pub async fn show(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, workspace)): Path<(AccountId, WorkspaceId)>,
) -> Response {
    let r: Result<Response> = async {
        let shell = Shell::open(&app, &p, account).await?;
        let w = ws::read_workspace(&app, &p, account, workspace).await?;
        let roles = shell.workspace_roles(&app, &p).await?;
        let held = shell.scopes(workspace);
        let may_edit = held.contains(Scope::WriteWorkspaceSettings);
        let may_set_default = held.contains(Scope::ManageWorkspaceUsers);
        let sees_access = held.contains(Scope::SeeWorkspaceUsers);
        let acls = shell.has_feature(crate::domain::plan::Feature::ObjectAcls)
            && [Scope::SeeDeployments, Scope::SeeWorkPools, Scope::SeeBlocks]
                .iter()
                .any(|s| held.contains(*s));
        let hooks = if held.contains(Scope::SeeWebhooks) {
            let f = crate::services::webhooks::FilterWebhooks::default();
            Some(crate::services::webhooks::filter(&app, &p, account, workspace, f).await?)
        } else {
            None
        };
        let base = shell.url(&format!("/workspace/{}", w.id));
        let bound = crate::services::gateway::bound(&app, account, workspace);
        let default = w.default_workspace_role_id.map(|r| r.to_string()).unwrap_or_default();
        let default_name = roles
            .iter()
            .find(|(id, _)| *id == default)
            .map_or("none — only people granted a role", |(_, n)| n.as_str());
        let body = html! {
            p { a href=(shell.url("/workspaces")) { "Workspaces" } }
            h1 { (w.name) }
            p.muted { (w.handle) " · " (w.description) }
            @if bound {
                p.notice { a href={ (base) "/ui/" } { strong { "Open the Prefect UI" } } " — flow runs, deployments, work pools and automations, with your role in this workspace." }
            }
            @if sees_access { p { a href={ (base) "/access" } { "Who has access" } } }
            @if acls { p { a href={ (base) "/object-access" } { "Object access (deployments, work pools, blocks)" } } }
            @if let Some(hooks) = &hooks {
                h2 { "Webhooks" }
                (table("Webhooks of this workspace", &["Name", "Enabled", "URL", "Template"], &hooks.iter().map(|h| html! {
                    tr {
                        td { (h.name) }
                        td { @if h.enabled { "yes" } @else { "no" } }
                        td { code { (h.url) } }
                        td { code { (h.template.chars().take(80).collect::<String>()) } }
                    }
                }).collect::<Vec<_>>(), "No webhooks yet: create one with prefect cloud webhook create."))
            }
            h2 { "Default access" }
            @if may_set_default && may_edit {
                form method="post" action={ (base) "/default-access" } {
                    (shell.csrf_input())
                    label for="ws-default" { "Default access for all account members" }
                    (role_select(&roles, "ws-default", "default_workspace_role_id", &default, Some("None: only people granted a role")))
                    button type="submit" { "Save default access" }
                }
            } @else {
                p { "Default access for all account members: " strong { (default_name) } }
            }
            @if may_edit {
                h2 { "Details" }
                form method="post" action=(base) {
                    (shell.csrf_input())
                    div.row {
                        div { label for="ws-name" { "Name" } input #ws-name name="name" required maxlength="100" value=(w.name); }
                        div { label for="ws-handle" { "Handle" } input #ws-handle name="handle" required maxlength="100" value=(w.handle); }
                    }
                    label for="ws-desc" { "Description" }
                    input #ws-desc name="description" maxlength="1000" value=(w.description);
                    button type="submit" { "Save details" }
                }
            }
            @if shell.can(P::DeleteWorkspace) {
                h2 { "Danger zone" }
                p { a href={ (base) "/delete" } { "Delete this workspace…" } }
            }
        };
        Ok(shell.render(Section::Workspaces, &w.name, body))
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
        let body = html! {
            h1 { "Delete " (w.name) "?" }
            p.error {
                "This removes the workspace, every grant on it and its binding to a Prefect server. "
                "The Prefect server's own data is not touched. This cannot be undone."
            }
            form method="post" action=(shell.url(&format!("/workspace/{}/delete", w.id))) {
                (shell.csrf_input())
                label for="confirm" { "Type the workspace handle " code { (w.handle) } " to confirm" }
                input #confirm name="confirm" required autocomplete="off";
                button type="submit" { "Delete workspace" }
            }
            p { a href=(shell.url(&format!("/workspace/{}", w.id))) { "Cancel" } }
        };
        Ok(shell.render(Section::Workspaces, &format!("Delete {}", w.name), body))
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
