//! The Roles page: account roles with their permissions; workspace roles — built-ins read-only,
//! custom roles created and edited with a scope picker grouped by feature and an inherited role.

use super::form::{done, Fields};
use super::session::SignedIn;
use super::shell::{Section, Shell};
use super::{error_page, error_page_back, options, table};
use crate::app::App;
use crate::domain::role::AccountPermission as P;
use crate::domain::{AccountId, RoleId, WorkspaceRole};
use crate::services::mail::html_escape;
use crate::services::roles::{self, CreateWorkspaceRole, UpdateWorkspaceRole};
use crate::services::{Error, Result};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
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
        let ws_roles = roles::filter_roles(
            &app,
            &p,
            account,
            Default::default(),
        )
        .await?;
        let arows: String = account_roles
            .iter()
            .map(|r| {
                let perms: String = r
                    .permissions
                    .iter()
                    .map(|p| format!("<code>{p}</code> "))
                    .collect();
                format!(
                    "<tr><td>{name}</td><td><details><summary>{n} permissions</summary><p>{perms}</p></details></td></tr>",
                    name = r.name,
                    n = r.permissions.len(),
                )
            })
            .collect();
        let name_of = |id: Option<RoleId>| {
            id.and_then(|id| ws_roles.iter().find(|r| r.id == id))
                .map_or("—".to_string(), |r| r.name.clone())
        };
        let wrows: String = ws_roles
            .iter()
            .map(|r| {
                format!(
                    "<tr><td><a href=\"{url}\">{name}</a></td><td>{kind}</td><td>{desc}</td><td>{inh}</td><td>{n}</td></tr>",
                    url = shell.url(&format!("/role/{}", r.id)),
                    name = html_escape(&r.name),
                    kind = if r.is_system_role { "built-in" } else { "custom" },
                    desc = html_escape(&r.description),
                    inh = html_escape(&name_of(r.inherited_role_id)),
                    n = r.scopes.len(),
                )
            })
            .collect();
        let new = if shell.can(P::CreateWorkspaceRole) {
            format!("<p><a href=\"{}\">New custom workspace role</a></p>", shell.url("/roles/new"))
        } else {
            String::new()
        };
        let body = format!(
            "<h1>Roles</h1><h2>Account roles</h2>{a}<h2>Workspace roles</h2>{w}{new}",
            a = table("Account roles", &["Role", "Permissions"], &arows, "No account roles."),
            w = table(
                "Workspace roles",
                &["Role", "Kind", "Description", "Inherits", "Scopes"],
                &wrows,
                "No workspace roles."
            ),
        );
        Ok(shell.render(Section::Roles, "Roles", &body))
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
    let disabled = if editable { "" } else { " disabled" };
    let picker: String = groups
        .iter()
        .map(|g| {
            let boxes: String = catalogue
                .iter()
                .filter(|s| s.feature_group == *g)
                .map(|s| {
                    format!(
                        "<span class=\"check\"><input type=\"checkbox\" id=\"scope-{n}\" name=\"scopes\" value=\"{n}\"{c}{disabled}>\
                         <label for=\"scope-{n}\">{t} <code class=\"muted small\">{n}</code></label></span>",
                        n = s.name,
                        t = html_escape(s.title),
                        c = if held.contains(&s.name) { " checked" } else { "" },
                    )
                })
                .collect();
            format!("<fieldset><legend>{}</legend>{boxes}</fieldset>", html_escape(g))
        })
        .collect();
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
    let note = match &current {
        Some(r) if r.is_system_role => "<p class=\"notice\">A built-in role: read-only. Create a custom role that inherits from it to extend it.</p>",
        _ if !editable => "<p class=\"notice\">You may look but not change this role.</p>",
        _ => "",
    };
    let submit = if editable {
        "<button type=\"submit\">Save role</button>"
    } else {
        ""
    };
    let delete = match &current {
        Some(r) if !r.is_system_role && shell.can(P::DeleteWorkspaceRole) => shell.button(
            &shell.url(&format!("/role/{}/delete", r.id)),
            "Delete role",
            &format!("Delete role {}", r.name),
            Some("Delete this role? It cannot be deleted while anyone holds it."),
        ),
        _ => String::new(),
    };
    let body = format!(
        "<p><a href=\"{roles}\">Roles</a></p><h1>{title}</h1>{note}\
         <form method=\"post\" action=\"{action}\">{csrf}<div class=\"row\">\
         <div><label for=\"role-name\">Name</label><input id=\"role-name\" name=\"name\" required maxlength=\"100\" value=\"{name}\"{disabled}></div>\
         <div><label for=\"role-inherits\">Inherits every scope of</label><select id=\"role-inherits\" name=\"inherited_role_id\"{disabled}><option value=\"\">nothing</option>{inh}</select></div></div>\
         <label for=\"role-desc\">Description</label><input id=\"role-desc\" name=\"description\" maxlength=\"1000\" value=\"{desc}\"{disabled}>\
         <h2>Scopes</h2><div class=\"picker\">{picker}</div>{submit}</form>{delete}",
        roles = shell.url("/roles"),
        title = html_escape(&title),
        csrf = shell.csrf_input(),
        name = html_escape(&name),
        desc = html_escape(&desc),
        inh = options(builtins, &inherited),
    );
    Ok(shell.render(Section::Roles, &title, &body))
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
