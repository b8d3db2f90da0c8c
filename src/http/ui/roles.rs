//! The Roles page: account roles with their permissions; workspace roles — built-ins read-only,
//! custom roles created and edited with a scope picker grouped by feature and an inherited role.

use super::form::{done, Fields};
use super::session::SignedIn;
use super::shell::{Section, Shell};
use super::{error_page, error_page_back, options, table};
use crate::app::App;
use crate::domain::role::AccountPermission as P;
use crate::domain::{AccountId, RoleId, WorkspaceRole};
use crate::services::roles::{self, CreateWorkspaceRole, UpdateWorkspaceRole};
use crate::services::{Error, Result};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use uuid::Uuid;

/// `GET /account/{a}/roles`
pub async fn list(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
) -> Response {
    let r: Result<Response> = async {
        let shell = Shell::open(&app, &p, account).await?;
        let account_roles =
            crate::services::accounts::list_account_roles(&app, &p, account, None).await?;
        let ws_roles = roles::filter_roles(&app, &p, account, Default::default()).await?;
        let arows: Vec<Markup> = account_roles
            .iter()
            .map(|r| {
                html! { tr {
                    td { (r.name) }
                    td { details {
                        summary { (r.permissions.len()) " permissions" }
                        p { @for perm in &r.permissions { code { (perm) } " " } }
                    } }
                } }
            })
            .collect();
        let name_of = |id: Option<RoleId>| {
            id.and_then(|id| ws_roles.iter().find(|r| r.id == id))
                .map_or("—".to_string(), |r| r.name.clone())
        };
        let wrows: Vec<Markup> = ws_roles
            .iter()
            .map(|r| {
                html! { tr {
                    td { a href=(shell.url(&format!("/role/{}", r.id))) { (r.name) } }
                    td { (if r.is_system_role { "built-in" } else { "custom" }) }
                    td { (r.description) }
                    td { (name_of(r.inherited_role_id)) }
                    td { (r.scopes.len()) }
                } }
            })
            .collect();
        let body = html! {
            h1 { "Roles" }
            h2 { "Account roles" }
            (table("Account roles", &["Role", "Permissions"], &arows, "No account roles."))
            h2 { "Workspace roles" }
            (table(
                "Workspace roles",
                &["Role", "Kind", "Description", "Inherits", "Scopes"],
                &wrows,
                "No workspace roles."
            ))
            @if shell.can(P::CreateWorkspaceRole) {
                p { a href=(shell.url("/roles/new")) { "New custom workspace role" } }
            }
        };
        Ok(shell.render(Section::Roles, "Roles", body))
    }
    .await;
    r.unwrap_or_else(|e| error_page(&e))
}

/// The editor (or, for a built-in or without permission, the read-only view) of a role.
async fn editor(
    app: &App,
    p: &crate::authz::Principal,
    account: AccountId,
    role: Option<RoleId>,
) -> Result<Response> {
    let shell = Shell::open(app, p, account).await?;
    let current: Option<WorkspaceRole> = match role {
        Some(id) => Some(roles::read_role(app, p, account, id).await?),
        None => None,
    };
    let editable = match &current {
        None => shell.can(P::CreateWorkspaceRole),
        Some(r) => !r.is_system_role && shell.can(P::UpdateWorkspaceRole),
    };
    let held: Vec<&str> = current
        .as_ref()
        .map(|r| r.scopes.clone())
        .unwrap_or_default();
    let catalogue = roles::workspace_scopes();
    let mut groups: Vec<&str> = Vec::new();
    for s in &catalogue {
        if !groups.contains(&s.feature_group) {
            groups.push(s.feature_group);
        }
    }
    let disabled = !editable;
    let builtins: Vec<(String, &str)> = crate::domain::role::BuiltinWorkspaceRole::ALL
        .iter()
        .map(|b| (RoleId(b.id()).to_string(), b.name()))
        .collect();
    let inherited = current
        .as_ref()
        .and_then(|r| r.inherited_role_id)
        .map(|r| r.to_string())
        .unwrap_or_default();
    let (title, action) = match &current {
        None => ("New workspace role".to_string(), shell.url("/roles")),
        Some(r) => (
            format!("Workspace role {}", r.name),
            shell.url(&format!("/role/{}", r.id)),
        ),
    };
    let name = current.as_ref().map(|r| r.name.clone()).unwrap_or_default();
    let desc = current
        .as_ref()
        .map(|r| r.description.clone())
        .unwrap_or_default();
    let builtin = current.as_ref().is_some_and(|r| r.is_system_role);
    let body = html! {
        p { a href=(shell.url("/roles")) { "Roles" } }
        h1 { (title) }
        @if builtin {
            p.notice { "A built-in role: read-only. Create a custom role that inherits from it to extend it." }
        } @else if !editable {
            p.notice { "You may look but not change this role." }
        }
        form method="post" action=(action) {
            (shell.csrf_input())
            div.row {
                div {
                    label for="role-name" { "Name" }
                    input #role-name name="name" required maxlength="100" value=(name) disabled[disabled];
                }
                div {
                    label for="role-inherits" { "Inherits every scope of" }
                    select #role-inherits name="inherited_role_id" disabled[disabled] {
                        option value="" { "nothing" }
                        (options(builtins, &inherited))
                    }
                }
            }
            label for="role-desc" { "Description" }
            input #role-desc name="description" maxlength="1000" value=(desc) disabled[disabled];
            h2 { "Scopes" }
            div.picker { @for g in &groups {
                fieldset {
                    legend { (g) }
                    @for s in catalogue.iter().filter(|s| s.feature_group == *g) {
                        @let id = format!("scope-{}", s.name);
                        span.check {
                            input type="checkbox" id=(id) name="scopes" value=(s.name) checked[held.contains(&s.name)] disabled[disabled];
                            label for=(id) { (s.title) " " code.muted.small { (s.name) } }
                        }
                    }
                }
            } }
            @if editable { button type="submit" { "Save role" } }
        }
        @if let Some(r) = current.as_ref().filter(|r| !r.is_system_role && shell.can(P::DeleteWorkspaceRole)) {
            (shell.button(
                &shell.url(&format!("/role/{}/delete", r.id)),
                "Delete role",
                &format!("Delete role {}", r.name),
                Some("Delete this role? It cannot be deleted while anyone holds it."),
            ))
        }
    };
    Ok(shell.render(Section::Roles, &title, body))
}

/// `GET /account/{a}/roles/new`
pub async fn new(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
) -> Response {
    editor(&app, &p, account, None)
        .await
        .unwrap_or_else(|e| error_page(&e))
}

/// `GET /account/{a}/role/{id}`
pub async fn show(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id)): Path<(AccountId, RoleId)>,
) -> Response {
    editor(&app, &p, account, Some(id))
        .await
        .unwrap_or_else(|e| error_page(&e))
}

fn inherited(f: &Fields) -> Result<Option<RoleId>> {
    f.opt("inherited_role_id")
        .map(|v| v.parse::<Uuid>().map(RoleId))
        .transpose()
        .map_err(|_| Error::validation("inherited_role_id: not a valid id"))
}

/// `POST /account/{a}/roles`
pub async fn create(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
    f: Fields,
) -> Response {
    let r = async {
        let c = CreateWorkspaceRole {
            name: f.get("name").to_string(),
            description: f.get("description").to_string(),
            scopes: f.all("scopes").into_iter().map(str::to_string).collect(),
            inherited_role_id: inherited(&f)?,
        };
        roles::create_role(&app, &p, account, c).await
    }
    .await;
    match r {
        Ok(_) => Redirect::to(&format!("/account/{account}/roles")).into_response(),
        Err(e) => error_page_back(&e, Some(&format!("/account/{account}/roles/new"))),
    }
}

/// `POST /account/{a}/role/{id}`
pub async fn update(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id)): Path<(AccountId, RoleId)>,
    f: Fields,
) -> Response {
    let r = async {
        let u = UpdateWorkspaceRole {
            name: Some(f.get("name").to_string()),
            description: Some(f.get("description").to_string()),
            scopes: Some(f.all("scopes").into_iter().map(str::to_string).collect()),
            inherited_role_id: Some(inherited(&f)?),
        };
        roles::update_role(&app, &p, account, id, u).await
    }
    .await;
    done(&format!("/account/{account}/role/{id}"), r)
}

/// `POST /account/{a}/role/{id}/delete`
pub async fn delete(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id)): Path<(AccountId, RoleId)>,
    _f: Fields,
) -> Response {
    match roles::delete_role(&app, &p, account, id).await {
        Ok(()) => Redirect::to(&format!("/account/{account}/roles")).into_response(),
        Err(e) => error_page_back(&e, Some(&format!("/account/{account}/role/{id}"))),
    }
}
