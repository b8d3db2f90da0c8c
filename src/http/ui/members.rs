//! The Members page: invite several emails at once, pending invitations (resend, revoke), and
//! members with role, last login and status (change role, deactivate/reactivate, remove).

use super::form::{done, input, Fields};
use super::session::SignedIn;
use super::shell::{Section, Shell};
use super::{error_page, options, relative, table};
use crate::app::App;
use crate::domain::role::AccountPermission as P;
use crate::domain::{AccountId, MembershipId, RoleId};
use crate::services::invitations::{self, FilterInvitations, InviteBody};
use crate::services::memberships::{self, FilterMemberships, UpdateMembership};
use crate::services::{Error, Result};
use axum::extract::{Path, State};
use axum::response::Response;
use maud::{html, Markup};
use serde_json::json;
use uuid::Uuid;

/// `GET /account/{a}/members`
pub async fn list(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
) -> Response {
    let r: Result<Response> = async {
        let shell = Shell::open(&app, &p, account).await?;
        let roles = crate::services::accounts::list_account_roles(&app, &p, account, None).await?;
        let members = memberships::filter_memberships(
            &app,
            &p,
            account,
            FilterMemberships {
                only_users: true,
                ..Default::default()
            },
        )
        .await?;
        let now = app.now();
        let may_role = shell.can(P::UpdateAccountMembership);
        let may_remove = shell.can(P::DeleteAccountMembership);
        let rows: Vec<Markup> = members
            .iter()
            .map(|m| {
                let base = shell.url(&format!("/members/{}", m.id));
                let name = format!("{} {}", m.first_name, m.last_name);
                let other = m.user_id != p.user_id;
                html! { tr {
                    td { (name.trim()) br; span.muted.small { (m.email) } }
                    td {
                        @if may_role && other {
                            @let id = format!("role-{}", m.id);
                            form.inline method="post" action={ (base) "/role" } {
                                (shell.csrf_input())
                                label.sr-only for=(id) { "Role of " (m.email) }
                                select id=(id) name="account_role_id" {
                                    (options(roles.iter().map(|r| (r.id.to_string(), r.name)), &m.account_role_id.to_string()))
                                }
                                " "
                                button.secondary type="submit" { "Change" }
                            }
                        } @else {
                            (m.account_role_name)
                        }
                    }
                    td { (m.last_login.map_or("never".to_string(), |t| relative(t, now))) }
                    td {
                        @if m.active { span.badge { "active" } } @else { span.badge.off { "deactivated" } }
                        @if let Some(synced) = m.idp_synced {
                            " " span.badge title={ "Provisioned by your identity provider (SCIM); last synced " (synced.format("%Y-%m-%d %H:%M UTC")) } {
                                "IdP · " (relative(synced, now))
                            }
                        }
                    }
                    td {
                        @if may_role && other {
                            @if m.active {
                                (shell.button(
                                    &format!("{base}/deactivate"),
                                    "Deactivate",
                                    &format!("Deactivate {}", m.email),
                                    Some(&format!("Deactivate {}? They keep their seat but cannot sign in to this account.", m.email)),
                                ))
                            } @else {
                                (shell.button(&format!("{base}/reactivate"), "Reactivate", &format!("Reactivate {}", m.email), None))
                            }
                        }
                        @if may_remove && other {
                            (shell.button(
                                &format!("{base}/remove"),
                                "Remove",
                                &format!("Remove {}", m.email),
                                Some(&format!("Remove {} from the account?", m.email)),
                            ))
                        }
                    }
                } }
            })
            .collect();
        let members_table = table(
            "Members",
            &["Member", "Role", "Last login", "Status", "Actions"],
            &rows,
            "No members.",
        );
        let pending = if shell.can(P::ReadInvitation) {
            let open = invitations::filter_invitations(
                &app,
                &p,
                account,
                None,
                input::<FilterInvitations>(json!({"limit": 200, "invitations": {"status": {"any_": ["pending", "expired"]}}}))?,
            )
            .await?;
            let may_update = shell.can(P::UpdateInvitation);
            let rows: Vec<Markup> = open
                .iter()
                .map(|i| {
                    let delivery = i
                        .delivery
                        .as_ref()
                        .and_then(|d| d["state"].as_str().or(d["status"].as_str()).map(str::to_string))
                        .unwrap_or_default();
                    let base = shell.url(&format!("/invitations/{}", i.id));
                    html! { tr {
                        td { (i.email) }
                        td { (i.account_role_name) }
                        td { (i.status) }
                        td { (relative(i.expiration, now)) }
                        td { (delivery) }
                        td {
                            @if may_update {
                                (shell.button(&format!("{base}/resend"), "Resend", &format!("Resend the invitation to {}", i.email), None))
                                (shell.button(
                                    &format!("{base}/revoke"),
                                    "Revoke",
                                    &format!("Revoke the invitation to {}", i.email),
                                    Some(&format!("Revoke the invitation to {}?", i.email)),
                                ))
                            }
                        }
                    } }
                })
                .collect();
            html! {
                h2 { "Pending invitations" }
                (table(
                    "Invitations not yet answered",
                    &["Email", "Role", "Status", "Expires", "Email delivery", "Actions"],
                    &rows,
                    "No pending invitations.",
                ))
            }
        } else {
            html! {}
        };
        let invite = if shell.can(P::CreateInvitation) {
            let choices: Vec<(String, &str)> = roles
                .iter()
                .filter(|r| r.name == "Admin" || r.name == "Member")
                .map(|r| (r.id.to_string(), r.name))
                .collect();
            let member = roles.iter().find(|r| r.name == "Member").map(|r| r.id.to_string()).unwrap_or_default();
            let workspaces = shell.workspaces(&app, &p).await?;
            let ws_roles = shell.workspace_roles(&app, &p).await?;
            html! {
                h2 { "Invite people" }
                form method="post" action=(shell.url("/members/invite")) {
                    (shell.csrf_input())
                    label for="invite-emails" { "Email addresses (one per line, or separated by commas)" }
                    textarea #invite-emails name="emails" rows="3" required {}
                    div.row {
                        div {
                            label for="invite-role" { "Account role" }
                            select #invite-role name="account_role_id" { (options(choices, &member)) }
                        }
                        div {
                            label for="invite-ws" { "And a role in workspace (optional)" }
                            select #invite-ws name="workspace_id" {
                                option value="" { "none" }
                                (options(workspaces.iter().map(|w| (w.id.to_string(), w.name.as_str())), ""))
                            }
                        }
                        div {
                            label for="invite-ws-role" { "Workspace role" }
                            select #invite-ws-role name="workspace_role_id" {
                                (options(ws_roles.iter().map(|(v, l)| (v.clone(), l.as_str())), &super::shell::least_role()))
                            }
                        }
                    }
                    button type="submit" { "Send invitations" }
                }
            }
        } else {
            html! {}
        };
        let body = html! {
            h1 { "Members" }
            (invite)
            (pending)
            h2 { "Members" }
            (members_table)
            p { a href={ "/api/accounts/" (account) "/account_memberships/download" } download { "Export members as CSV" } }
        };
        Ok(shell.render(Section::Members, "Members", body))
    }
    .await;
    r.unwrap_or_else(|e| error_page(&e))
}

fn back(account: AccountId) -> String {
    format!("/account/{account}/members")
}

/// `POST /account/{a}/members/invite`: one invitation per address, all with the chosen account
/// role and, when a workspace is chosen, that workspace role too.
pub async fn invite(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
    f: Fields,
) -> Response {
    let r = async {
        let emails: Vec<&str> = f
            .get("emails")
            .split([',', '\n', ';', ' ', '\r', '\t'])
            .filter(|e| !e.is_empty())
            .collect();
        if emails.is_empty() {
            return Err(Error::validation("enter at least one email address"));
        }
        let workspace = f.opt("workspace_id");
        let body: InviteBody = input(json!({
            "emails": emails,
            "account_role_id": f.opt("account_role_id"),
            "workspace_id": workspace,
            "workspace_role_id": workspace.and(f.opt("workspace_role_id")),
        }))?;
        invitations::invite(&app, &p, account, None, body).await
    }
    .await;
    done(&back(account), r)
}

/// `POST /account/{a}/invitations/{id}/resend`
pub async fn resend(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id)): Path<(AccountId, Uuid)>,
    _f: Fields,
) -> Response {
    done(
        &back(account),
        invitations::resend(&app, &p, account, id).await,
    )
}

/// `POST /account/{a}/invitations/{id}/revoke`
pub async fn revoke(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id)): Path<(AccountId, Uuid)>,
    _f: Fields,
) -> Response {
    done(
        &back(account),
        invitations::revoke(&app, &p, account, None, id).await,
    )
}

/// `POST /account/{a}/members/{membership}/role`
pub async fn set_role(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id)): Path<(AccountId, MembershipId)>,
    f: Fields,
) -> Response {
    let r = async {
        let role = f
            .get("account_role_id")
            .parse::<Uuid>()
            .map_err(|_| Error::validation("account_role_id: not a valid id"))?;
        memberships::update_membership(
            &app,
            &p,
            account,
            id,
            UpdateMembership {
                account_role_id: RoleId(role),
            },
        )
        .await
    }
    .await;
    done(&back(account), r)
}

/// `POST /account/{a}/members/{membership}/deactivate`
pub async fn deactivate(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id)): Path<(AccountId, MembershipId)>,
    _f: Fields,
) -> Response {
    done(
        &back(account),
        memberships::set_active(&app, &p, account, &[id], false).await,
    )
}

/// `POST /account/{a}/members/{membership}/reactivate`
pub async fn reactivate(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id)): Path<(AccountId, MembershipId)>,
    _f: Fields,
) -> Response {
    done(
        &back(account),
        memberships::set_active(&app, &p, account, &[id], true).await,
    )
}

/// `POST /account/{a}/members/{membership}/remove`
pub async fn remove(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id)): Path<(AccountId, MembershipId)>,
    _f: Fields,
) -> Response {
    done(
        &back(account),
        memberships::delete_membership(&app, &p, account, id).await,
    )
}
