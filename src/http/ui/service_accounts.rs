//! Service-account pages: the list with create (the key shown once), and one service account:
//! rename, account role, keys (rotate with an overlap during which the old key keeps working,
//! revoke a rotating key), workspace access, delete.

use super::form::{done, Fields};
use super::session::SignedIn;
use super::shell::{Section, Shell};
use super::{error_page, error_page_back, expiry_cell, options, table, COPY_SCRIPT};
use crate::app::App;
use crate::authz::Principal;
use crate::domain::role::AccountPermission as P;
use crate::domain::scope::Scope;
use crate::domain::Grantee;
use crate::domain::{AccountId, ApiKeyId, RoleId, WorkspaceId};
use crate::services::grants;
use crate::services::mail::html_escape;
use crate::services::service_accounts::{
    self, CreateServiceAccount, RotateKey, ServiceAccountView, UpdateServiceAccount,
};
use crate::services::{Error, Result};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use uuid::Uuid;

/// The notice showing a new key once.
fn shown_key(what: &str, key: &str) -> String {
    format!(
        "<section class=\"notice\" role=\"status\"><h2>{what}</h2>\
         <p>Copy the key now: it is not shown again.</p><p><code id=\"new-key\">{key}</code> \
         <button type=\"button\" data-copy=\"new-key\" hidden>Copy</button></p>\
         <p class=\"muted\">Use it with <code>prefect cloud login --key …</code> or as <code>PREFECT_API_KEY</code>.</p></section>{COPY_SCRIPT}",
        what = html_escape(what),
        key = html_escape(key),
    )
}

/// "Expires after N days" (empty = never) as an instant.
fn days_from_now(app: &App, v: Option<&str>) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
    match v {
        None => Ok(None),
        Some(d) => match d.parse::<i64>() {
            Ok(n) if (1..=3650).contains(&n) => Ok(Some(app.now() + chrono::Duration::days(n))),
            _ => Err(Error::validation(
                "key expiry must be a whole number of days from 1 to 3650",
            )),
        },
    }
}

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
        let rows: String = all
            .iter()
            .map(|b| {
                format!(
                    "<tr><td><a href=\"{url}\">{name}</a></td><td>{role}</td>{exp}<td>{created}</td></tr>",
                    url = shell.url(&format!("/service-account/{}", b.id)),
                    name = html_escape(&b.name),
                    role = b.account_role_name,
                    exp = expiry_cell(b.api_key.as_ref().and_then(|k| k.expiration), now),
                    created = b.created.format("%Y-%m-%d"),
                )
            })
            .collect();
        let list = table(
            "Service accounts",
            &["Name", "Account role", "Key expires", "Created"],
            &rows,
            "No service accounts yet.",
        );
        let create = if shell.can(P::CreateBot) {
            format!(
                "<h2>New service account</h2><form method=\"post\" action=\"{action}\">{csrf}<div class=\"row\">\
                 <div><label for=\"sa-name\">Name</label><input id=\"sa-name\" name=\"name\" required maxlength=\"100\"></div>\
                 <div><label for=\"sa-days\">Key expires after (days; empty = never)</label><input id=\"sa-days\" name=\"days\" type=\"number\" min=\"1\" max=\"3650\"></div>\
                 <div><button type=\"submit\">Create service account</button></div></div></form>",
                action = shell.url("/service-accounts"),
                csrf = shell.csrf_input(),
            )
        } else {
            String::new()
        };
        let body = format!(
            "<h1>Service accounts</h1><p class=\"muted\">Keys for workers, CI and deployments that act without a person. \
             A service account is a Member of the account; give it a role in the workspaces it works in.</p>{list}{create}"
        );
        Ok(shell.render(Section::ServiceAccounts, "Service accounts", &body))
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
    notice: Option<String>,
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
    let key_rows: String = keys
        .active_key
        .iter()
        .map(|k| (k, "active"))
        .chain(keys.rotating_keys.iter().map(|k| (k, "rotating out")))
        .map(|(k, state)| {
            let revoke = if state != "active" && may_update {
                shell.button(
                    &format!("{base}/keys/{}/revoke", k.id),
                    "Revoke now",
                    &format!("Revoke key {}", k.name),
                    Some("Revoke this key now? Anything still using it stops working."),
                )
            } else {
                String::new()
            };
            format!(
                "<tr><td>{name}</td><td><code>{masked}</code></td><td>{state}</td>{exp}<td>{revoke}</td></tr>",
                name = html_escape(&k.name),
                masked = html_escape(k.masked_key.as_deref().unwrap_or("")),
                exp = expiry_cell(k.expiration, now),
            )
        })
        .collect();
    let keys_table = table(
        "Keys",
        &[
            "Name",
            "Key",
            "State",
            "Expires",
            "<span class=\"muted\">Actions</span>",
        ],
        &key_rows,
        "No usable key: rotate to issue one.",
    );
    let rotate = if may_update {
        format!(
            "<h2>Rotate key</h2><form method=\"post\" action=\"{base}/rotate\">{csrf}<div class=\"row\">\
             <div><label for=\"rot-days\">New key expires after (days; empty = never)</label><input id=\"rot-days\" name=\"days\" type=\"number\" min=\"1\" max=\"3650\"></div>\
             <div><label for=\"rot-overlap\">The current key keeps working for</label><select id=\"rot-overlap\" name=\"overlap\">\
             <option value=\"0\">no time: it stops now</option><option value=\"3600\">1 hour</option><option value=\"86400\" selected>24 hours</option><option value=\"172800\">48 hours</option></select></div>\
             <div><button type=\"submit\">Rotate key</button></div></div></form>",
            csrf = shell.csrf_input(),
        )
    } else {
        String::new()
    };
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
    let grant_rows: String = grants
        .iter()
        .map(|g| {
            let remove = if shell.may(g.workspace_id, Scope::ManageWorkspaceServiceAccounts) {
                shell.button(
                    &format!("{base}/access/{}/remove?id={}", g.workspace_id, g.id),
                    "Remove",
                    &format!("Remove access to {}", ws_name(g.workspace_id)),
                    Some("Remove this service account's access to the workspace?"),
                )
            } else {
                String::new()
            };
            format!(
                "<tr><td><a href=\"{url}\">{ws}</a></td><td>{role}</td>{exp}<td>{remove}</td></tr>",
                url = shell.url(&format!("/workspace/{}/access", g.workspace_id)),
                ws = html_escape(&ws_name(g.workspace_id)),
                role = html_escape(&role_name(g.workspace_role_id)),
                exp = expiry_cell(g.expires_at, now),
            )
        })
        .collect();
    let grants_table = table(
        "Workspace access",
        &[
            "Workspace",
            "Role",
            "Expires",
            "<span class=\"muted\">Actions</span>",
        ],
        &grant_rows,
        "No workspace role yet.",
    );
    let grantable: Vec<(String, &str)> = workspaces
        .iter()
        .filter(|w| shell.may(w.id, Scope::ManageWorkspaceServiceAccounts))
        .map(|w| (w.id.to_string(), w.name.as_str()))
        .collect();
    let grant = if grantable.is_empty() {
        String::new()
    } else {
        format!(
            "<form method=\"post\" action=\"{base}/access\">{csrf}<div class=\"row\">\
             <div><label for=\"sa-ws\">Workspace</label><select id=\"sa-ws\" name=\"workspace\">{ws}</select></div>\
             <div><label for=\"sa-role\">Role</label><select id=\"sa-role\" name=\"role\">{roles}</select></div>\
             <div><label for=\"sa-exp\">Expires (UTC, optional)</label><input id=\"sa-exp\" name=\"expires_at\" type=\"datetime-local\"></div>\
             <div><button type=\"submit\">Grant</button></div></div></form>",
            csrf = shell.csrf_input(),
            ws = options(grantable, ""),
            roles = options(roles.iter().map(|(v, l)| (v.clone(), l.as_str())), &super::shell::least_role()),
        )
    };
    let details = if may_update {
        let account_roles =
            crate::services::accounts::list_account_roles(app, p, account, None).await?;
        format!(
            "<h2>Details</h2><form method=\"post\" action=\"{base}\">{csrf}<div class=\"row\">\
             <div><label for=\"sa-name\">Name</label><input id=\"sa-name\" name=\"name\" required maxlength=\"100\" value=\"{name}\"></div>\
             <div><label for=\"sa-arole\">Account role</label><select id=\"sa-arole\" name=\"account_role_id\">{opts}</select></div>\
             <div><button type=\"submit\">Save</button></div></div></form>",
            csrf = shell.csrf_input(),
            name = html_escape(&b.name),
            opts = options(
                account_roles.iter().map(|r| (r.id.to_string(), r.name)),
                &b.account_role_id.to_string()
            ),
        )
    } else {
        format!("<p>Account role: {}</p>", b.account_role_name)
    };
    let delete = if shell.can(P::DeleteBot) {
        format!(
            "<h2>Danger zone</h2>{}",
            shell.button(
                &format!("{base}/delete"),
                "Delete service account",
                &format!("Delete service account {}", b.name),
                Some("Delete this service account? Its keys stop working at once."),
            )
        )
    } else {
        String::new()
    };
    let body = format!(
        "<p><a href=\"{list}\">Service accounts</a></p><h1>{name}</h1>{notice}{keys_table}{rotate}\
         <h2>Workspace access</h2>{grants_table}{grant}{details}{delete}",
        list = shell.url("/service-accounts"),
        name = html_escape(&b.name),
        notice = notice.unwrap_or_default(),
    );
    Ok(shell.render(Section::ServiceAccounts, &b.name, &body))
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
