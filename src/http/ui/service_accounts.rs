//! Service-account pages: the list with create (the key shown once), and one service account:
//! rename, account role, keys (rotate with an overlap during which the old key keeps working,
//! revoke a rotating key), workspace access, delete.

use super::form::{done, Fields};
use super::session::SignedIn;
use super::shell::{Section, Shell};
use super::{
    days_from_now, days_input, error_page, error_page_back, expiry_cell, name_input, options,
    shown_key, table,
};
use crate::app::App;
use crate::authz::Principal;
use crate::domain::role::AccountPermission as P;
use crate::domain::scope::Scope;
use crate::domain::Grantee;
use crate::domain::{AccountId, ApiKeyId, RoleId, WorkspaceId};
use crate::services::grants;
use crate::services::service_accounts::{
    self, CreateServiceAccount, RotateKey, ServiceAccountView, UpdateServiceAccount,
};
use crate::services::{Error, Result};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use uuid::Uuid;

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `GET /account/{a}/service-accounts`
pub async fn list(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
) -> Response {
    let r: Result<Response> = async {
        let shell = Shell::open(&app, &p, account).await?;
        let all = service_accounts::filter_bots(
            &app,
            &p,
            account,
            Default::default(),
        )
        .await?;
        let now = app.now();
        let rows: Vec<Markup> = all
            .iter()
            .map(|b| {
                html! { tr {
                    td { a href=(shell.url(&format!("/service-account/{}", b.id))) { (b.name) } }
                    td { (b.account_role_name) }
                    (expiry_cell(b.api_key.as_ref().and_then(|k| k.expiration), now))
                    td { (b.created.format("%Y-%m-%d")) }
                } }
            })
            .collect();
        let body = html! {
            h1 { "Service accounts" }
            p.muted {
                "Keys for workers, CI and deployments that act without a person. "
                "A service account is a Member of the account; give it a role in the workspaces it works in."
            }
            (table("Service accounts", &["Name", "Account role", "Key expires", "Created"], &rows, "No service accounts yet."))
            @if shell.can(P::CreateBot) {
                h2 { "New service account" }
                form method="post" action=(shell.url("/service-accounts")) {
                    (shell.csrf_input())
                    div.row {
                        div { (name_input("sa-name", None)) }
                        div { (days_input("sa-days", "Key expires after (days; empty = never)", None)) }
                        div { button type="submit" { "Create service account" } }
                    }
                }
            }
        };
        Ok(shell.render(Section::ServiceAccounts, "Service accounts", body))
    }
    .await;
    r.unwrap_or_else(|e| error_page(&e))
}

/// `POST /account/{a}/service-accounts`: creates one and shows its key once.
pub async fn create(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
    f: Fields,
) -> Response {
    let r = async {
        let b = service_accounts::create_bot(
            &app,
            &p,
            account,
            CreateServiceAccount {
                name: f.get("name").to_string(),
                api_key_expiration: days_from_now(&app, f.opt("days"))?,
                account_role_id: None,
            },
        )
        .await?;
        let key = b
            .api_key
            .as_ref()
            .and_then(|k| k.key.clone())
            .unwrap_or_default();
        render(
            &app,
            &p,
            account,
            b.id,
            Some(shown_key(
                &format!("Service account “{}” created", b.name),
                &key,
            )),
        )
        .await
    }
    .await;
    match r {
        Ok(resp) => no_store(resp),
        Err(e) => error_page_back(&e, Some(&format!("/account/{account}/service-accounts"))),
    }
}

async fn render(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: Uuid,
    notice: Option<Markup>,
) -> Result<Response> {
    let shell = Shell::open(app, p, account).await?;
    let b: ServiceAccountView =
        service_accounts::read_bot(app, p, account, crate::domain::ServiceAccountId(id)).await?;
    let keys =
        service_accounts::read_keys(app, p, account, crate::domain::ServiceAccountId(id)).await?;
    let grants = crate::services::grants::bot_access_of(app, p, account, id).await?;
    let roles = shell.workspace_roles(app, p).await?;
    let now = app.now();
    let base = shell.url(&format!("/service-account/{id}"));
    let may_update = shell.can(P::UpdateBot);
    let key_rows: Vec<Markup> = keys
        .active_key
        .iter()
        .map(|k| (k, "active"))
        .chain(keys.rotating_keys.iter().map(|k| (k, "rotating out")))
        .map(|(k, state)| {
            html! { tr {
                td { (k.name) }
                td { code { (k.masked_key.as_deref().unwrap_or("")) } }
                td { (state) }
                (expiry_cell(k.expiration, now))
                td {
                    @if state != "active" && may_update {
                        (shell.button(
                            &format!("{base}/keys/{}/revoke", k.id),
                            "Revoke now",
                            &format!("Revoke key {}", k.name),
                            Some("Revoke this key now? Anything still using it stops working."),
                        ))
                    }
                }
            } }
        })
        .collect();
    let workspaces = shell.workspaces(app, p).await?;
    let ws_name = |w: WorkspaceId| {
        workspaces
            .iter()
            .find(|x| x.id == w)
            .map_or_else(|| w.to_string(), |x| x.name.clone())
    };
    let role_name = |r: RoleId| {
        roles
            .iter()
            .find(|(id, _)| *id == r.to_string())
            .map_or("unknown role", |(_, n)| n.as_str())
            .to_string()
    };
    let grant_rows: Vec<Markup> = grants
        .iter()
        .map(|g| {
            html! { tr {
                td { a href=(shell.url(&format!("/workspace/{}/access", g.workspace_id))) { (ws_name(g.workspace_id)) } }
                td { (role_name(g.workspace_role_id)) }
                (expiry_cell(g.expires_at, now))
                td {
                    @if shell.may(g.workspace_id, Scope::ManageWorkspaceServiceAccounts) {
                        (shell.button(
                            &format!("{base}/access/{}/remove?id={}", g.workspace_id, g.id),
                            "Remove",
                            &format!("Remove access to {}", ws_name(g.workspace_id)),
                            Some("Remove this service account's access to the workspace?"),
                        ))
                    }
                }
            } }
        })
        .collect();
    let grantable: Vec<(String, &str)> = workspaces
        .iter()
        .filter(|w| shell.may(w.id, Scope::ManageWorkspaceServiceAccounts))
        .map(|w| (w.id.to_string(), w.name.as_str()))
        .collect();
    let account_roles = if may_update {
        crate::services::accounts::list_account_roles(app, p, account, None).await?
    } else {
        Vec::new()
    };
    let body = html! {
        p { a href=(shell.url("/service-accounts")) { "Service accounts" } }
        h1 { (b.name) }
        @if let Some(n) = notice { (n) }
        (table("Keys", &["Name", "Key", "State", "Expires", "Actions"], &key_rows, "No usable key: rotate to issue one."))
        @if may_update {
            h2 { "Rotate key" }
            form method="post" action={ (base) "/rotate" } {
                (shell.csrf_input())
                div.row {
                    div { (days_input("rot-days", "New key expires after (days; empty = never)", None)) }
                    div {
                        label for="rot-overlap" { "The current key keeps working for" }
                        select #rot-overlap name="overlap" {
                            option value="0" { "no time: it stops now" }
                            option value="3600" { "1 hour" }
                            option value="86400" selected { "24 hours" }
                            option value="172800" { "48 hours" }
                        }
                    }
                    div { button type="submit" { "Rotate key" } }
                }
            }
        }
        h2 { "Workspace access" }
        (table("Workspace access", &["Workspace", "Role", "Expires", "Actions"], &grant_rows, "No workspace role yet."))
        @if !grantable.is_empty() {
            form method="post" action={ (base) "/access" } {
                (shell.csrf_input())
                div.row {
                    div { label for="sa-ws" { "Workspace" } select #sa-ws name="workspace" { (options(grantable, "")) } }
                    div {
                        label for="sa-role" { "Role" }
                        select #sa-role name="role" { (options(roles.iter().map(|(v, l)| (v.clone(), l.as_str())), &super::shell::least_role())) }
                    }
                    div { label for="sa-exp" { "Expires (UTC, optional)" } input #sa-exp name="expires_at" type="datetime-local"; }
                    div { button type="submit" { "Grant" } }
                }
            }
        }
        @if may_update {
            h2 { "Details" }
            form method="post" action=(base) {
                (shell.csrf_input())
                div.row {
                    div { (name_input("sa-name", Some(&b.name))) }
                    div {
                        label for="sa-arole" { "Account role" }
                        select #sa-arole name="account_role_id" {
                            (options(account_roles.iter().map(|r| (r.id.to_string(), r.name)), &b.account_role_id.to_string()))
                        }
                    }
                    div { button type="submit" { "Save" } }
                }
            }
        } @else {
            p { "Account role: " (b.account_role_name) }
        }
        @if shell.can(P::DeleteBot) {
            h2 { "Danger zone" }
            (shell.button(
                &format!("{base}/delete"),
                "Delete service account",
                &format!("Delete service account {}", b.name),
                Some("Delete this service account? Its keys stop working at once."),
            ))
        }
    };
    Ok(shell.render(Section::ServiceAccounts, &b.name, body))
}

/// `GET /account/{a}/service-account/{id}`
pub async fn show(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id)): Path<(AccountId, Uuid)>,
) -> Response {
    render(&app, &p, account, id, None)
        .await
        .unwrap_or_else(|e| error_page(&e))
}

fn back(account: AccountId, id: Uuid) -> String {
    format!("/account/{account}/service-account/{id}")
}

/// `POST /account/{a}/service-account/{id}`: name and account role.
pub async fn update(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id)): Path<(AccountId, Uuid)>,
    f: Fields,
) -> Response {
    let r = async {
        let role = f
            .opt("account_role_id")
            .map(|r| r.parse::<Uuid>().map(RoleId))
            .transpose()
            .map_err(|_| Error::validation("account_role_id: not a valid id"))?;
        service_accounts::update_bot(
            &app,
            &p,
            account,
            id,
            UpdateServiceAccount {
                name: Some(f.get("name").to_string()),
                account_role_id: role,
            },
        )
        .await
    }
    .await;
    done(&back(account, id), r)
}

/// `POST /account/{a}/service-account/{id}/rotate`: issues a new key, shown once.
pub async fn rotate(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id)): Path<(AccountId, Uuid)>,
    f: Fields,
) -> Response {
    let r = async {
        let overlap = match f.get("overlap") {
            "" => None,
            v => Some(
                v.parse::<i64>()
                    .map_err(|_| Error::validation("overlap must be a number of seconds"))?,
            ),
        };
        let b = service_accounts::rotate_key(
            &app,
            &p,
            account,
            id,
            RotateKey {
                api_key_expiration: days_from_now(&app, f.opt("days"))?,
                old_key_expires_in_seconds: overlap,
            },
        )
        .await?;
        let key = b
            .api_key
            .as_ref()
            .and_then(|k| k.key.clone())
            .unwrap_or_default();
        render(
            &app,
            &p,
            account,
            id,
            Some(shown_key("New key issued", &key)),
        )
        .await
    }
    .await;
    match r {
        Ok(resp) => no_store(resp),
        Err(e) => error_page_back(&e, Some(&back(account, id))),
    }
}

/// `POST /account/{a}/service-account/{id}/keys/{key}/revoke`
pub async fn revoke_key(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id, key)): Path<(AccountId, Uuid, ApiKeyId)>,
    _f: Fields,
) -> Response {
    done(
        &back(account, id),
        service_accounts::delete_key(&app, &p, account, id, key).await,
    )
}

/// `POST /account/{a}/service-account/{id}/delete`
pub async fn delete(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id)): Path<(AccountId, Uuid)>,
    _f: Fields,
) -> Response {
    match service_accounts::delete_bot(&app, &p, account, crate::domain::ServiceAccountId(id)).await
    {
        Ok(()) => Redirect::to(&format!("/account/{account}/service-accounts")).into_response(),
        Err(e) => error_page_back(&e, Some(&back(account, id))),
    }
}

/// `POST /account/{a}/service-account/{id}/access`: a workspace role for the service account.
pub async fn grant(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id)): Path<(AccountId, Uuid)>,
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
        let expires_at = f.instant("expires_at")?;
        grants::grant(
            &app,
            &p,
            account,
            ws,
            Grantee::ServiceAccount,
            id,
            role,
            expires_at,
        )
        .await
    }
    .await;
    done(&back(account, id), r)
}

#[derive(serde::Deserialize)]
pub struct GrantQuery {
    pub id: Uuid,
}

/// `POST /account/{a}/service-account/{id}/access/{w}/remove?id={grant}`
pub async fn remove_grant(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id, workspace)): Path<(AccountId, Uuid, WorkspaceId)>,
    axum::extract::Query(q): axum::extract::Query<GrantQuery>,
    _f: Fields,
) -> Response {
    done(
        &back(account, id),
        grants::revoke(&app, &p, account, workspace, Grantee::ServiceAccount, q.id).await,
    )
}
