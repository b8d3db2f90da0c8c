//! Team pages: the list with create, and one team — edit, members (with the expiry of each
//! membership; add, remove), workspace roles (grant, remove), delete.

use super::form::{done, input, Fields};
use super::session::SignedIn;
use super::shell::{Section, Shell};
use super::{error_page, error_page_back, expiry_cell, name_input, options, table};
use crate::app::App;
use crate::domain::role::AccountPermission as P;
use crate::domain::scope::Scope;
use crate::domain::Grantee;
use crate::domain::{AccountId, RoleId, WorkspaceId};
use crate::services::grants;
use crate::services::teams::{self, TeamInput};
use crate::services::{Error, Result};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
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
        let rows: Vec<Markup> = all
            .iter()
            .map(|t| {
                html! { tr {
                    td {
                        a href=(shell.url(&format!("/team/{}", t.id))) { (t.name) }
                        @if t.managed_by_idp { " " span.muted { "(IdP)" } }
                    }
                    td { (t.description) }
                    td { (t.memberships.len()) }
                    td { (t.workspaces.len()) }
                } }
            })
            .collect();
        let body = html! {
            h1 { "Teams" }
            p.muted { "Give a group of members and service accounts one role in a workspace." }
            (table("Teams", &["Name", "Description", "Members", "Workspaces"], &rows, "No teams yet."))
            @if shell.can(P::CreateTeam) {
                h2 { "New team" }
                form method="post" action=(shell.url("/teams")) {
                    (shell.csrf_input())
                    div.row {
                        div { (name_input("team-name", None)) }
                        div { label for="team-desc" { "Description" } input #team-desc name="description" maxlength="1000"; }
                        div { button type="submit" { "Create team" } }
                    }
                }
            }
        };
        Ok(shell.render(Section::Teams, "Teams", body))
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
        // Members of a team the IdP manages (SCIM) change only at the IdP.
        let may_update = shell.can(P::UpdateTeam);
        let may_edit_members = may_update && !t.managed_by_idp;
        let member_rows: Vec<Markup> = t
            .memberships
            .iter()
            .map(|m| {
                let who = m.email.as_deref().unwrap_or(&m.name);
                html! { tr {
                    td { (who) }
                    td { (if m.kind == "user" { "User" } else { "Service account" }) }
                    (expiry_cell(m.expires_at, now))
                    td {
                        @if may_edit_members {
                            (shell.button(
                                &format!("{base}/members/{}/remove", m.id),
                                "Remove",
                                &format!("Remove {who} from the team"),
                                Some(&format!("Remove {who} from the team?")),
                            ))
                        }
                    }
                } }
            })
            .collect();
        let add_member = if may_edit_members {
            let users = shell.members(&app, &p).await?;
            let bots = shell.bots(&app, &p).await?;
            let choices: Vec<(String, String)> = users
                .iter()
                .map(|u| (format!("user:{}", u.user_id), u.email.clone()))
                .chain(bots.iter().map(|b| (format!("service_account:{}", b.id), format!("{} (service account)", b.name))))
                .collect();
            html! {
                form method="post" action={ (base) "/members" } {
                    (shell.csrf_input())
                    div.row {
                        div {
                            label for="tm-who" { "Add member" }
                            select #tm-who name="member" required { (options(choices.iter().map(|(v, l)| (v.clone(), l.as_str())), "")) }
                        }
                        div { label for="tm-exp" { "Membership expires (UTC, optional)" } input #tm-exp name="expires_at" type="datetime-local"; }
                        div { button type="submit" { "Add" } }
                    }
                }
            }
        } else {
            html! {}
        };
        let ws_rows: Vec<Markup> = t
            .workspaces
            .iter()
            .map(|w| {
                html! { tr {
                    td { a href=(shell.url(&format!("/workspace/{}/access", w.workspace_id))) { (w.workspace_handle) } }
                    td { (w.workspace_role_name) }
                    td {
                        @if shell.may(w.workspace_id, Scope::ManageWorkspaceTeams) {
                            (shell.button(
                                &format!("{base}/access/{}/remove", w.workspace_id),
                                "Remove",
                                &format!("Remove the team's role in {}", w.workspace_handle),
                                Some("Remove this team's role in the workspace?"),
                            ))
                        }
                    }
                } }
            })
            .collect();
        let all_ws = shell.workspaces(&app, &p).await?;
        let grantable: Vec<(String, &str)> = all_ws
            .iter()
            .filter(|w| shell.may(w.id, Scope::ManageWorkspaceTeams))
            .map(|w| (w.id.to_string(), w.name.as_str()))
            .collect();
        let grant = if grantable.is_empty() {
            html! {}
        } else {
            let roles = shell.workspace_roles(&app, &p).await?;
            html! {
                form method="post" action={ (base) "/access" } {
                    (shell.csrf_input())
                    div.row {
                        div { label for="team-ws" { "Workspace" } select #team-ws name="workspace" { (options(grantable, "")) } }
                        div {
                            label for="team-role" { "Role" }
                            select #team-role name="role" { (options(roles.iter().map(|(v, l)| (v.clone(), l.as_str())), &super::shell::least_role())) }
                        }
                        div { button type="submit" { "Grant to team" } }
                    }
                }
            }
        };
        let body = html! {
            p { a href=(shell.url("/teams")) { "Teams" } }
            h1 { "Team " (t.name) }
            p.muted { (t.description) }
            @if let Some(synced) = t.idp_synced {
                p.notice {
                    "Managed by your identity provider through SCIM (last synced "
                    (synced.format("%Y-%m-%d %H:%M UTC")) "): its members change at the IdP, not here."
                }
            }
            h2 { "Members" }
            (table("Members", &["Who", "Kind", "Membership expires", "Actions"], &member_rows, "No members."))
            (add_member)
            h2 { "Workspaces" }
            (table("Workspaces", &["Workspace", "Role", "Actions"], &ws_rows, "This team has no workspace role yet."))
            (grant)
            @if may_update {
                h2 { "Details" }
                form method="post" action=(base) {
                    (shell.csrf_input())
                    div.row {
                        div { (name_input("team-name", Some(&t.name))) }
                        div { label for="team-desc" { "Description" } input #team-desc name="description" maxlength="1000" value=(t.description); }
                        div { button type="submit" { "Save" } }
                    }
                }
            }
            @if shell.can(P::DeleteTeam) {
                h2 { "Danger zone" }
                (shell.button(&format!("{base}/delete"), "Delete team", &format!("Delete team {}", t.name), Some("Delete this team? Its workspace roles stop counting for its members at once.")))
            }
        };
        Ok(shell.render(Section::Teams, &format!("Team {}", t.name), body))
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
