//! The dashboard's route table: every page and form, with its method. The router is built from
//! this one table, and the tests walk the same table, so a page cannot be added without being
//! covered.
//!
//! Every route under `/account/{account_id}` passes the gate before its handler runs
//! ([`account_gate`]): a signed-in user who is not a member of the account gets 404, a member
//! calling from outside the account's enforced IP allowlist gets 403 — before any form is read.

use super::*;
use crate::app::App;
use crate::domain::AccountId;
use axum::extract::{RawPathParams, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;

type Handler = MethodRouter<App>;

/// (method, path, handler) of every dashboard route outside the account pages.
fn site() -> Vec<(&'static str, &'static str, Handler)> {
    vec![
        ("GET", "/", get(accounts::home)),
        ("GET", "/setup", get(setup::show)),
        ("POST", "/setup", post(setup::submit)),
        ("GET", "/login", get(session::show)),
        ("POST", "/login", post(session::submit)),
        ("POST", "/logout", post(session::logout)),
        ("GET", "/signup", get(signup::show)),
        ("POST", "/signup", post(signup::submit)),
        ("GET", "/auth/sso", get(sso::start)),
        ("GET", "/auth/oidc/callback", get(sso::oidc_callback)),
        (
            "GET",
            "/auth/saml/{account_id}/metadata",
            get(sso::saml_metadata),
        ),
        ("POST", "/auth/saml/{account_id}/acs", post(sso::saml_acs)),
        ("GET", "/auth/client", get(cli_login::show)),
        ("POST", "/auth/client", post(cli_login::submit)),
        ("GET", "/me/api-keys", get(keys::list)),
        ("POST", "/me/api-keys", post(keys::create)),
        ("POST", "/me/api-keys/{id}/delete", post(keys::delete)),
        // Prefect Cloud's URL for personal API keys.
        (
            "GET",
            "/my/api-keys",
            get(|| async { axum::response::Redirect::permanent("/me/api-keys") }),
        ),
        ("GET", "/my/profile", get(profile::show)),
        ("POST", "/my/profile", post(profile::update)),
        ("POST", "/my/email", post(profile::request_email)),
        ("GET", "/my/email/confirm", get(profile::confirm_email_page)),
        ("POST", "/my/email/confirm", post(profile::confirm_email)),
        ("POST", "/accounts", post(accounts::create)),
        ("GET", "/invitations/{id}", get(invitations::show)),
        ("POST", "/invitations/{id}", post(invitations::submit)),
    ]
}

/// (method, path below `/account/{account_id}`, handler) of every account page and form.
fn account() -> Vec<(&'static str, &'static str, Handler)> {
    vec![
        ("GET", "", get(accounts::show)),
        ("GET", "/workspaces", get(workspaces::list)),
        ("POST", "/workspaces", post(workspaces::create)),
        ("GET", "/workspace/{workspace_id}", get(workspaces::show)),
        (
            "POST",
            "/workspace/{workspace_id}",
            post(workspaces::update),
        ),
        (
            "POST",
            "/workspace/{workspace_id}/default-access",
            post(workspaces::default_access),
        ),
        (
            "GET",
            "/workspace/{workspace_id}/delete",
            get(workspaces::confirm_delete),
        ),
        (
            "POST",
            "/workspace/{workspace_id}/delete",
            post(workspaces::delete),
        ),
        (
            "GET",
            "/workspace/{workspace_id}/access",
            get(access::access),
        ),
        (
            "POST",
            "/workspace/{workspace_id}/access",
            post(access::grant),
        ),
        (
            "POST",
            "/workspace/{workspace_id}/access/remove",
            post(access::remove),
        ),
        (
            "GET",
            "/workspace/{workspace_id}/object-access",
            get(object_access::show),
        ),
        (
            "POST",
            "/workspace/{workspace_id}/object-access",
            post(object_access::save),
        ),
        ("GET", "/workspace/{workspace_id}/ui", get(prefect_ui::root)),
        (
            "GET",
            "/workspace/{workspace_id}/ui/{*path}",
            get(prefect_ui::file),
        ),
        (
            "GET",
            "/workspace/{workspace_id}/{*rest}",
            get(prefect_ui::link),
        ),
        ("GET", "/members", get(members::list)),
        ("POST", "/members/invite", post(members::invite)),
        (
            "POST",
            "/members/{membership_id}/role",
            post(members::set_role),
        ),
        (
            "POST",
            "/members/{membership_id}/deactivate",
            post(members::deactivate),
        ),
        (
            "POST",
            "/members/{membership_id}/reactivate",
            post(members::reactivate),
        ),
        (
            "POST",
            "/members/{membership_id}/remove",
            post(members::remove),
        ),
        (
            "POST",
            "/invitations/{invitation_id}/resend",
            post(members::resend),
        ),
        (
            "POST",
            "/invitations/{invitation_id}/revoke",
            post(members::revoke),
        ),
        ("GET", "/service-accounts", get(service_accounts::list)),
        ("POST", "/service-accounts", post(service_accounts::create)),
        (
            "GET",
            "/service-account/{bot_id}",
            get(service_accounts::show),
        ),
        (
            "POST",
            "/service-account/{bot_id}",
            post(service_accounts::update),
        ),
        (
            "POST",
            "/service-account/{bot_id}/rotate",
            post(service_accounts::rotate),
        ),
        (
            "POST",
            "/service-account/{bot_id}/delete",
            post(service_accounts::delete),
        ),
        (
            "POST",
            "/service-account/{bot_id}/keys/{key_id}/revoke",
            post(service_accounts::revoke_key),
        ),
        (
            "POST",
            "/service-account/{bot_id}/access",
            post(service_accounts::grant),
        ),
        (
            "POST",
            "/service-account/{bot_id}/access/{workspace_id}/remove",
            post(service_accounts::remove_grant),
        ),
        ("GET", "/teams", get(teams::list)),
        ("POST", "/teams", post(teams::create)),
        ("GET", "/team/{team_id}", get(teams::show)),
        ("POST", "/team/{team_id}", post(teams::update)),
        ("POST", "/team/{team_id}/delete", post(teams::delete)),
        ("POST", "/team/{team_id}/members", post(teams::add_member)),
        (
            "POST",
            "/team/{team_id}/members/{member_id}/remove",
            post(teams::remove_member),
        ),
        ("POST", "/team/{team_id}/access", post(teams::grant)),
        (
            "POST",
            "/team/{team_id}/access/{workspace_id}/remove",
            post(teams::remove_grant),
        ),
        ("GET", "/roles", get(roles::list)),
        ("POST", "/roles", post(roles::create)),
        ("GET", "/roles/new", get(roles::new)),
        ("GET", "/role/{role_id}", get(roles::show)),
        ("POST", "/role/{role_id}", post(roles::update)),
        ("POST", "/role/{role_id}/delete", post(roles::delete)),
        ("GET", "/audit-log", get(audit::list)),
        ("GET", "/audit-log/export", get(audit::export)),
        ("GET", "/billing", get(billing::show)),
        ("GET", "/settings", get(settings::show)),
        ("POST", "/settings", post(settings::update)),
        ("GET", "/sso", get(sso_page::show)),
        ("POST", "/sso/providers", post(sso_page::add_provider)),
        (
            "POST",
            "/sso/providers/{provider_id}/enabled",
            post(sso_page::set_enabled),
        ),
        (
            "POST",
            "/sso/providers/{provider_id}/delete",
            post(sso_page::delete_provider),
        ),
        ("POST", "/sso/domains", post(sso_page::add_domain)),
        (
            "POST",
            "/sso/domains/{domain_id}/verify",
            post(sso_page::verify_domain),
        ),
        (
            "POST",
            "/sso/domains/{domain_id}/delete",
            post(sso_page::delete_domain),
        ),
        ("POST", "/sso/settings", post(sso_page::save_settings)),
        (
            "POST",
            "/sso/scim_tokens",
            post(sso_page::create_scim_token),
        ),
        (
            "POST",
            "/sso/scim_tokens/{token_id}/delete",
            post(sso_page::delete_scim_token),
        ),
        (
            "POST",
            "/settings/ip-allowlist",
            post(settings::save_ip_allowlist),
        ),
    ]
}

/// The prefix of the account pages.
pub const ACCOUNT: &str = "/account/{account_id}";

/// Every dashboard route as (method, path template).
pub fn list() -> Vec<(&'static str, String)> {
    site()
        .into_iter()
        .map(|(m, p, _)| (m, p.to_string()))
        .chain(
            account()
                .into_iter()
                .map(|(m, p, _)| (m, format!("{ACCOUNT}{p}"))),
        )
        .collect()
}

/// The dashboard's router: the site routes, and the account pages behind [`account_gate`].
pub fn router(app: &App) -> Router<App> {
    let pages = account()
        .into_iter()
        .fold(Router::new(), |r, (_, p, h)| {
            r.route(&format!("{ACCOUNT}{p}"), h)
        })
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            account_gate,
        ));
    site()
        .into_iter()
        .fold(Router::new(), |r, (_, p, h)| r.route(p, h))
        .merge(pages)
}

/// The signed-in user of a request that already passed [`account_gate`] (so the page's
/// `SignedIn` does not look the session up again).
#[derive(Clone)]
pub(crate) struct Gated(pub crate::authz::Principal);

/// Runs the gate for the account an account page names (its `{account_id}` route parameter)
/// before the handler: tenant (404), IP allowlist (403). A request without a valid session goes
/// on to the page, whose `SignedIn` sends it to the sign-in page.
async fn account_gate(
    State(app): State<App>,
    params: RawPathParams,
    mut req: Request,
    next: Next,
) -> Response {
    let account = params
        .iter()
        .find(|(k, _)| *k == "account_id")
        .and_then(|(_, v)| uuid::Uuid::try_parse(v).ok())
        .map(AccountId);
    let (parts, body) = req.into_parts();
    let p = session::signed_in(&app, &parts).await;
    req = Request::from_parts(parts, body);
    if let (Some(account), Some(p)) = (account, p) {
        if let Err(e) = crate::services::gate::member(&app, &p, account).await {
            return error_page(&e);
        }
        req.extensions_mut().insert(Gated(p));
    }
    next.run(req).await.into_response()
}
