//! Team pages: the list with create, and one team — edit, members (with the expiry of each
//! membership; add, remove), workspace roles (grant, remove), delete.

use super::form::{done, input, Fields};
use super::session::SignedIn;
use super::shell::{Section, Shell};
use super::{error_page, error_page_back, expiry_cell, options, table};
use crate::app::App;
use crate::domain::role::AccountPermission as P;
use crate::domain::scope::Scope;
use crate::domain::Grantee;
use crate::domain::{AccountId, RoleId, WorkspaceId};
use crate::services::grants;
use crate::services::mail::html_escape;
use crate::services::teams::{self, TeamInput};
use crate::services::{Error, Result};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;
use uuid::Uuid;

/// `GET /account/{a}/teams`
pub async fn list(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
) -> Response {
    let r: Result<Response> = async {
        let shell = Shell::open(&app, &p, account).await?;
        let all = teams::filter_teams(
            &app,
            &p,
            account,
            Default::default(),
        )
        .await?;
        let rows: String = all
            .iter()
            .map(|t| {
                format!(
                    "<tr><td><a href=\"{url}\">{name}</a></td><td>{desc}</td><td>{members}</td><td>{ws}</td></tr>",
                    url = shell.url(&format!("/team/{}", t.id)),
                    name = html_escape(&t.name),
                    desc = html_escape(&t.description),
                    members = t.memberships.len(),
                    ws = t.workspaces.len(),
                )
            })
            .collect();
        let list = table(
            "Teams",
            &["Name", "Description", "Members", "Workspaces"],
            &rows,
            "No teams yet.",
        );
        let create = if shell.can(P::CreateTeam) {
            format!(
                "<h2>New team</h2><form method=\"post\" action=\"{action}\">{csrf}<div class=\"row\">\
                 <div><label for=\"team-name\">Name</label><input id=\"team-name\" name=\"name\" required maxlength=\"100\"></div>\
                 <div><label for=\"team-desc\">Description</label><input id=\"team-desc\" name=\"description\" maxlength=\"1000\"></div>\
                 <div><button type=\"submit\">Create team</button></div></div></form>",
                action = shell.url("/teams"),
                csrf = shell.csrf_input(),
            )
        } else {
            String::new()
        };
        let body = format!(
            "<h1>Teams</h1><p class=\"muted\">Give a group of members and service accounts one role in a workspace.</p>{list}{create}"
        );
        Ok(shell.render(Section::Teams, "Teams", &body))
    }
    .await;
    r.unwrap_or_else(|e| error_page(&e))
}

/// `POST /account/{a}/teams`
pub async fn create(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
    f: Fields,
) -> Response {
    let t = TeamInput {
        name: f.get("name").to_string(),
        description: f.opt("description").map(str::to_string),
        workos_directory_group_id: None,
    };
    match teams::create_team(&app, &p, account, t).await {
        Ok(t) => Redirect::to(&format!("/account/{account}/team/{}", t.id)).into_response(),
        Err(e) => error_page_back(&e, Some(&format!("/account/{account}/teams"))),
    }
}

/// `GET /account/{a}/team/{id}` (account permission `read:team`).
pub async fn show(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, team)): Path<(AccountId, Uuid)>,
) -> Response {
    let r: Result<Response> = async {
        let shell = Shell::open(&app, &p, account).await?;
        let t = teams::read_team(&app, &p, account, crate::domain::TeamId(team)).await?;
        let now = app.now();
        let base = shell.url(&format!("/team/{}", t.id));
        let may_update = shell.can(P::UpdateTeam);
        let member_rows: String = t
            .memberships
            .iter()
            .map(|m| {
                let who = m.email.as_deref().unwrap_or(&m.name);
                let remove = if may_update {
                    shell.button(
                        &format!("{base}/members/{}/remove", m.id),
                        "Remove",
                        &format!("Remove {who} from the team"),
                        Some(&format!("Remove {who} from the team?")),
                    )
                } else {
                    String::new()
                };
                format!(
                    "<tr><td>{name}</td><td>{kind}</td>{exp}<td>{remove}</td></tr>",
                    name = html_escape(who),
                    kind = if m.kind == "user" { "User" } else { "Service account" },
                    exp = expiry_cell(m.expires_at, now),
                )
            })
            .collect();
        let members = table(
            "Members",
            &["Who", "Kind", "Membership expires", "<span class=\"muted\">Actions</span>"],
            &member_rows,
            "No members.",
        );
        let add_member = if may_update {
            let users = shell.members(&app, &p).await?;
            let bots = shell.bots(&app, &p).await?;
            let choices: Vec<(String, String)> = users
                .iter()
                .map(|u| (format!("user:{}", u.user_id), u.email.clone()))
                .chain(bots.iter().map(|b| (format!("service_account:{}", b.id), format!("{} (service account)", b.name))))
                .collect();
            format!(
                "<form method=\"post\" action=\"{base}/members\">{csrf}<div class=\"row\">\
                 <div><label for=\"tm-who\">Add member</label><select id=\"tm-who\" name=\"member\" required>{opts}</select></div>\
                 <div><label for=\"tm-exp\">Membership expires (UTC, optional)</label><input id=\"tm-exp\" name=\"expires_at\" type=\"datetime-local\"></div>\
                 <div><button type=\"submit\">Add</button></div></div></form>",
                csrf = shell.csrf_input(),
                opts = options(choices.iter().map(|(v, l)| (v.clone(), l.as_str())), ""),
            )
        } else {
            String::new()
        };
        let ws_rows: String = t
            .workspaces
            .iter()
            .map(|w| {
                let remove = if shell.may(w.workspace_id, Scope::ManageWorkspaceTeams) {
                    shell.button(
                        &format!("{base}/access/{}/remove", w.workspace_id),
                        "Remove",
                        &format!("Remove the team's role in {}", w.workspace_handle),
                        Some("Remove this team's role in the workspace?"),
                    )
                } else {
                    String::new()
                };
                format!(
                    "<tr><td><a href=\"{url}\">{h}</a></td><td>{r}</td><td>{remove}</td></tr>",
                    url = shell.url(&format!("/workspace/{}/access", w.workspace_id)),
                    h = html_escape(&w.workspace_handle),
                    r = html_escape(&w.workspace_role_name),
                )
            })
            .collect();
        let workspaces_table = table(
            "Workspaces",
            &["Workspace", "Role", "<span class=\"muted\">Actions</span>"],
            &ws_rows,
            "This team has no workspace role yet.",
        );
        let all_ws = shell.workspaces(&app, &p).await?;
        let grantable: Vec<(String, &str)> = all_ws
            .iter()
            .filter(|w| shell.may(w.id, Scope::ManageWorkspaceTeams))
            .map(|w| (w.id.to_string(), w.name.as_str()))
            .collect();
        let grant = if grantable.is_empty() {
            String::new()
        } else {
            let roles = shell.workspace_roles(&app, &p).await?;
            format!(
                "<form method=\"post\" action=\"{base}/access\">{csrf}<div class=\"row\">\
                 <div><label for=\"team-ws\">Workspace</label><select id=\"team-ws\" name=\"workspace\">{ws}</select></div>\
                 <div><label for=\"team-role\">Role</label><select id=\"team-role\" name=\"role\">{roles}</select></div>\
                 <div><button type=\"submit\">Grant to team</button></div></div></form>",
                csrf = shell.csrf_input(),
                ws = options(grantable, ""),
                roles = options(roles.iter().map(|(v, l)| (v.clone(), l.as_str())), &super::shell::least_role()),
            )
        };
        let edit = if may_update {
            format!(
                "<h2>Details</h2><form method=\"post\" action=\"{base}\">{csrf}<div class=\"row\">\
                 <div><label for=\"team-name\">Name</label><input id=\"team-name\" name=\"name\" required maxlength=\"100\" value=\"{name}\"></div>\
                 <div><label for=\"team-desc\">Description</label><input id=\"team-desc\" name=\"description\" maxlength=\"1000\" value=\"{desc}\"></div>\
                 <div><button type=\"submit\">Save</button></div></div></form>",
                csrf = shell.csrf_input(),
                name = html_escape(&t.name),
                desc = html_escape(&t.description),
            )
        } else {
            String::new()
        };
        let delete = if shell.can(P::DeleteTeam) {
            format!(
                "<h2>Danger zone</h2>{}",
                shell.button(&format!("{base}/delete"), "Delete team", &format!("Delete team {}", t.name), Some("Delete this team? Its workspace roles stop counting for its members at once."))
            )
        } else {
            String::new()
        };
        let body = format!(
            "<p><a href=\"{list}\">Teams</a></p><h1>Team {name}</h1><p class=\"muted\">{desc}</p>\
             <h2>Members</h2>{members}{add_member}<h2>Workspaces</h2>{workspaces_table}{grant}{edit}{delete}",
            list = shell.url("/teams"),
            name = html_escape(&t.name),
            desc = html_escape(&t.description),
        );
        Ok(shell.render(Section::Teams, &format!("Team {}", t.name), &body))
    }
    .await;
    r.unwrap_or_else(|e| error_page(&e))
}

fn back(account: AccountId, team: Uuid) -> String {
    format!("/account/{account}/team/{team}")
}

/// `POST /account/{a}/team/{id}`: name and description.
pub async fn update(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, team)): Path<(AccountId, Uuid)>,
    f: Fields,
) -> Response {
    let t = TeamInput {
        name: f.get("name").to_string(),
        description: Some(f.get("description").to_string()),
        workos_directory_group_id: None,
    };
    done(
        &back(account, team),
        teams::update_team(&app, &p, account, team, t).await,
    )
}

/// `POST /account/{a}/team/{id}/members`: adds a user or service account.
pub async fn add_member(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, team)): Path<(AccountId, Uuid)>,
    f: Fields,
) -> Response {
    let r = async {
        let (kind, id) = f
            .get("member")
            .split_once(':')
            .ok_or_else(|| Error::validation("choose a member"))?;
        let expires_at = f.instant("expires_at")?;
        let a = input(
            json!({"members": [{"member_id": id, "member_type": kind, "expires_at": expires_at}]}),
        )?;
        teams::add_members(&app, &p, account, team, a).await
    }
    .await;
    done(&back(account, team), r)
}

/// `POST /account/{a}/team/{id}/members/{member}/remove`
pub async fn remove_member(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, team, member)): Path<(AccountId, Uuid, Uuid)>,
    _f: Fields,
) -> Response {
    done(
        &back(account, team),
        teams::remove_member(&app, &p, account, team, member).await,
    )
}

/// `POST /account/{a}/team/{id}/access`: a workspace role for the team.
pub async fn grant(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, team)): Path<(AccountId, Uuid)>,
    f: Fields,
) -> Response {
    let r = async {
        let ws = f
            .get("workspace")
            .parse::<Uuid>()
            .map(WorkspaceId)
            .map_err(|_| Error::validation("choose a workspace"))?;
        let role = f
            .get("role")
            .parse::<Uuid>()
            .map(RoleId)
            .map_err(|_| Error::validation("choose a role"))?;
        grants::grant(&app, &p, account, ws, Grantee::Team, team, role, None).await
    }
    .await;
    done(&back(account, team), r)
}

/// `POST /account/{a}/team/{id}/access/{w}/remove`
pub async fn remove_grant(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, team, workspace)): Path<(AccountId, Uuid, WorkspaceId)>,
    _f: Fields,
) -> Response {
    done(
        &back(account, team),
        grants::revoke(&app, &p, account, workspace, Grantee::Team, team).await,
    )
}

/// `POST /account/{a}/team/{id}/delete`
pub async fn delete(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, team)): Path<(AccountId, Uuid)>,
    _f: Fields,
) -> Response {
    match teams::delete_team(&app, &p, account, crate::domain::TeamId(team)).await {
        Ok(()) => Redirect::to(&format!("/account/{account}/teams")).into_response(),
        Err(e) => error_page_back(&e, Some(&back(account, team))),
    }
}
