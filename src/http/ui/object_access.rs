//! A workspace's object access page: pick a deployment, work pool or block document by name, see
//! its access control list, and (with `manage_acls`) change it — the dashboard side of
//! `…/deployments/{id}/access` and friends.

use super::form::{done, Fields};
use super::session::SignedIn;
use super::shell::{Section, Shell};
use super::{error_page, options};
use crate::app::App;
use crate::domain::object_acl::ObjectKind;
use crate::domain::scope::Scope;
use crate::domain::{AccountId, WorkspaceId};
use crate::services::object_acls::{self, ActorAccess, SetAccess};
use crate::services::Result;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct ObjectQuery {
    pub kind: Option<String>,
    /// `flow/deployment`, a work pool's name, or `block-type-slug/block-name`.
    pub name: Option<String>,
}

fn kind_of(s: &str) -> Option<ObjectKind> {
    ObjectKind::parse(s)
}

fn label(k: ObjectKind) -> &'static str {
    match k {
        ObjectKind::Deployment => "Deployment (flow/deployment)",
        ObjectKind::WorkPool => "Work pool",
        ObjectKind::BlockDocument => "Block (block-type/block-name)",
    }
}

/// One level's accessors as lines of the edit form: `*`, a member's email, a service account's
/// name, `team:NAME`.
fn lines(list: &[ActorAccess]) -> String {
    list.iter()
        .map(|a| match a.kind {
            "*" => "*".to_string(),
            "user" => a.email.clone().unwrap_or_else(|| a.name.clone()),
            "team" => format!("team:{}", a.name),
            _ => a.name.clone(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn listing(list: &[ActorAccess]) -> Markup {
    html! {
        @if list.is_empty() { span.muted { "nobody (only holders of manage_acls)" } }
        @for (i, a) in list.iter().enumerate() {
            @if i > 0 { ", " }
            @match a.kind {
                "*" => { "everyone with a workspace role" }
                "user" => { (a.email.as_deref().unwrap_or(&a.name)) }
                "team" => { "team " (a.name) }
                _ => { "service account " (a.name) }
            }
        }
    }
}

/// `GET /account/{a}/workspace/{w}/object-access?kind=…&name=…`
pub async fn show(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, workspace)): Path<(AccountId, WorkspaceId)>,
    Query(q): Query<ObjectQuery>,
) -> Response {
    let r: Result<Response> = async {
        let shell = Shell::open(&app, &p, account).await?;
        let w = crate::services::workspaces::read_workspace(&app, &p, account, workspace).await?;
        let base = shell.url(&format!("/workspace/{}/object-access", w.id));
        let kind = q.kind.as_deref().and_then(kind_of).unwrap_or(ObjectKind::Deployment);
        let name = q.name.clone().unwrap_or_default();
        let manage = shell.scopes(workspace).contains(Scope::ManageAcls);
        let found = if name.trim().is_empty() {
            None
        } else {
            let key = object_acls::find_by_name(&app, &p, account, workspace, kind, name.trim()).await?;
            let acl = object_acls::read_access(&app, &p, account, workspace, kind, &key).await?;
            Some((key, acl))
        };
        let kinds = ObjectKind::ALL.iter().map(|k| (k.code().to_string(), label(*k)));
        let body = html! {
            p { a href=(shell.url(&format!("/workspace/{}", w.id))) { (w.name) } }
            h1 { "Object access" }
            p.muted {
                "An access control list narrows who may reach a deployment, work pool or block: "
                "with one, a workspace role alone no longer does. Deployments in a work pool with a list follow the pool's."
            }
            form method="get" action=(base) {
                div.row {
                    div { label for="oa-kind" { "Kind" } select #oa-kind name="kind" { (options(kinds, kind.code())) } }
                    div { label for="oa-name" { "Name" } input #oa-name name="name" required maxlength="300" value=(name); }
                }
                button type="submit" { "Show access" }
            }
            @if let Some((key, acl)) = &found {
                h2 { (name) }
                table {
                    caption { "Who may reach it" }
                    thead { tr { th { "Level" } th { "Accessors" } } }
                    tbody {
                        tr { td { "Manage" } td { (listing(&acl.manage_actors)) } }
                        @if let Some(run) = &acl.run_actors { tr { td { "Run" } td { (listing(run)) } } }
                        tr { td { "View" } td { (listing(&acl.view_actors)) } }
                    }
                }
                @if manage {
                    h2 { "Change" }
                    p.muted { "One per line: a member's email, a service account's name, team:NAME, or * for everyone with a workspace role. * on every level removes the list." }
                    form method="post" action=(base) {
                        (shell.csrf_input())
                        input type="hidden" name="kind" value=(kind.code());
                        input type="hidden" name="key" value=(key);
                        input type="hidden" name="name" value=(name);
                        label for="oa-manage" { "Manage" }
                        textarea #oa-manage name="manage" rows="3" { (lines(&acl.manage_actors)) }
                        @if let Some(run) = &acl.run_actors {
                            label for="oa-run" { "Run" }
                            textarea #oa-run name="run" rows="3" { (lines(run)) }
                        }
                        label for="oa-view" { "View" }
                        textarea #oa-view name="view" rows="3" { (lines(&acl.view_actors)) }
                        button type="submit" { "Save access" }
                    }
                }
            }
        };
        Ok(shell.render(Section::Workspaces, "Object access", body))
    }
    .await;
    r.unwrap_or_else(|e| error_page(&e))
}

/// `POST /account/{a}/workspace/{w}/object-access`: replaces the object's ACL from the form.
pub async fn save(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, workspace)): Path<(AccountId, WorkspaceId)>,
    f: Fields,
) -> Response {
    let kind = kind_of(f.get("kind")).unwrap_or(ObjectKind::Deployment);
    let back = format!(
        "/account/{account}/workspace/{workspace}/object-access?kind={}&name={}",
        kind.code(),
        form_urlencoded::byte_serialize(f.get("name").as_bytes()).collect::<String>()
    );
    let r = async {
        let lines = |n: &str| object_acls::accessors_from_lines(&app, account, f.get(n));
        let (manage_actor_ids, manage_team_ids) = lines("manage").await?;
        let (view_actor_ids, view_team_ids) = lines("view").await?;
        let (run_actor_ids, run_team_ids) = if kind.has_run() {
            let (a, t) = lines("run").await?;
            (Some(a), Some(t))
        } else {
            (None, None)
        };
        let set = SetAccess {
            access_control: object_acls::AccessControlSet {
                manage_actor_ids: Some(manage_actor_ids),
                run_actor_ids,
                view_actor_ids: Some(view_actor_ids),
                manage_team_ids: Some(manage_team_ids),
                run_team_ids,
                view_team_ids: Some(view_team_ids),
            },
        };
        object_acls::set_access(&app, &p, account, workspace, kind, f.get("key"), set).await
    }
    .await;
    done(&back, r)
}
