//! The signed-in home (every account the user belongs to) and an account's overview page.

use super::session::SignedIn;
use super::shell::Shell;
use super::{csrf_field, error_page, handle_input, name_input, page, relative, signed_in_header};
use crate::app::App;
use crate::domain::role::AccountPermission as P;
use crate::domain::AccountId;
use crate::services::accounts::overview;
use crate::services::me::my_accounts;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

/// `GET /`: the account switcher.
pub async fn home(State(app): State<App>, SignedIn(p): SignedIn) -> Response {
    let accounts = match my_accounts(&app, &p).await {
        Ok(a) => a,
        Err(e) => return error_page(&e),
    };
    let (header, csrf) = signed_in_header(&app, &p);
    let may_create = crate::services::accounts::may_create_account(&app, &p);
    page(
        StatusCode::OK,
        "Accounts",
        html! {
            (header)
            p { a href="/my/profile" { "Profile" } }
            h1 { "Your accounts" }
            @if accounts.is_empty() {
                p.muted { "You are not a member of any account yet. Ask an account Owner for an invitation." }
            } @else {
                nav aria-label="Accounts" { ul.plain { @for a in &accounts {
                    li {
                        a href={ "/account/" (a.account_id) } { (a.account_name) }
                        " "
                        span.muted { (a.account_handle) " · " (a.account_role_name) }
                    }
                } } }
            }
            @if may_create {
                h2 { "New account" }
                form method="post" action="/accounts" {
                    (csrf_field(&csrf))
                    (name_input("acct-name", None))
                    (handle_input("acct-handle"))
                    button type="submit" { "Create account" }
                }
            }
        },
    )
}

/// `POST /accounts`: a new account with the signed-in user as its Owner.
pub async fn create(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    f: super::form::Fields,
) -> Response {
    let a = crate::services::accounts::CreateAccount {
        name: f.get("name").to_string(),
        handle: f.get("handle").to_string(),
        location: None,
        link: None,
        billing_email: None,
    };
    match crate::services::accounts::create_account(&app, &p, a).await {
        Ok(a) => axum::response::Redirect::to(&format!("/account/{}", a.id)).into_response(),
        Err(e) => super::error_page_back(&e, Some("/")),
    }
}

/// `GET /account/{account_id}`: plan, seats, workspaces, members and recent activity.
pub async fn show(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
) -> Response {
    let r: crate::services::Result<Response> = async {
        let shell = Shell::open(&app, &p, account).await?;
        let o = overview(&app, &p, account).await?;
        let limit = |l: Option<i64>| l.map_or_else(|| "no limit".to_string(), |l| l.to_string());
        let now = app.now();
        let body = html! {
            h1 { (o.name) }
            // An account without workspaces: what to do next, for those who may do it.
            @if o.workspaces.is_empty() && shell.can(P::CreateWorkspace) {
                section.notice {
                    h2 { "Getting started" }
                    ol {
                        li { a href=(shell.url("/workspaces")) { "Create a workspace" } "." }
                        li {
                            "Connect its Prefect server: "
                            code { "atrium workspaces set-upstream --account " (o.handle) " --workspace … --url http://…:4200/api" }
                            " (docs/gateway.md)."
                        }
                        li { a href="/me/api-keys" { "Create an API key" } " and log in with " code { "prefect cloud login" } "." }
                        li { a href=(shell.url("/members")) { "Invite people" } "." }
                    }
                }
            }
            p.muted { (o.handle) " · your role: " (o.role) }
            h2 { "Plan" }
            p {
                (o.plan) " · seats used " (o.seats_used) " of " (limit(o.seat_limit)) " "
                @if let Some(l) = o.seat_limit.filter(|l| *l > 0) {
                    meter min="0" max=(l) value=(o.seats_used) aria-label="Seats used" { (o.seats_used) " of " (l) }
                }
                " · workspaces " (o.workspaces.len()) " of " (limit(o.workspace_limit))
            }
            h2 { "Workspaces" }
            @if o.workspaces.is_empty() {
                p.muted { "No workspace you can see." }
            } @else {
                ul.plain { @for (w, sees_access) in &o.workspaces {
                    li {
                        a href=(shell.url(&format!("/workspace/{}", w.id))) { (w.name) }
                        " "
                        span.muted { (w.handle) }
                        @if *sees_access {
                            " · " a href=(shell.url(&format!("/workspace/{}/access", w.id))) { "access" }
                        }
                    }
                } }
            }
            @if shell.can(P::ReadAccountMembership) {
                h2 { "Members" }
                p {
                    "Seats used (members and pending invitations): " (o.seats_used) " · "
                    a href=(shell.url("/members")) { "manage members" }
                }
            }
            @if let Some(events) = &o.recent_activity {
                h2 { "Recent activity" }
                @if events.is_empty() {
                    p.muted { "Nothing yet." }
                } @else {
                    table {
                        thead { tr { th scope="col" { "When" } th scope="col" { "What" } th scope="col" { "Who" } } }
                        tbody { @for e in events {
                            tr {
                                td { time datetime=(e.occurred.to_rfc3339()) { (relative(e.occurred, now)) } }
                                td { (e.event.trim_start_matches("prefect-cloud.")) }
                                td { (e.actor["name"].as_str().unwrap_or("system")) }
                            }
                        } }
                    }
                    p { a href=(shell.url("/audit-log")) { "Full audit log" } }
                }
            }
        };
        Ok(shell.render(super::shell::Section::Overview, "Overview", body))
    }
    .await;
    r.unwrap_or_else(|e| error_page(&e))
}
