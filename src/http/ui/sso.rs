//! Browser sign-in through an account's identity provider: `GET /auth/sso?email=…` (or
//! `?account=HANDLE`) sends the browser to the IdP; the IdP sends it back to
//! `GET /auth/oidc/callback`, which ends signed in (a new session) on the page asked for.

use super::session::{safe_next, with_session};
use super::{error_page, page};
use crate::app::App;
use crate::http::extract::ClientIp;
use crate::services::sso::{self, Callback, Realm};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct StartQuery {
    pub email: Option<String>,
    pub account: Option<String>,
    pub next: Option<String>,
}

/// `GET /auth/sso`: with an email or an account handle, 302 to the IdP; without, the form asking
/// for one.
pub async fn start(State(app): State<App>, Query(q): Query<StartQuery>) -> Response {
    let next = safe_next(q.next.as_deref()).to_string();
    let realm = match (q.email.as_deref(), q.account.as_deref()) {
        (Some(e), _) if !e.trim().is_empty() => Realm::Email(e.trim()),
        (_, Some(a)) if !a.trim().is_empty() => Realm::Account(a.trim()),
        _ => return ask(&next),
    };
    match sso::begin_login(&app, realm, &next).await {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => super::error_page_back(&e, Some("/auth/sso")),
    }
}

/// The page asking where to sign in: a work email (its domain finds the account) or the
/// account's handle.
fn ask(next: &str) -> Response {
    page(
        StatusCode::OK,
        "Single sign-on",
        html! {
            h1 { "Sign in with single sign-on" }
            form method="get" action="/auth/sso" {
                input type="hidden" name="next" value=(next);
                label for="sso-email" { "Work email" }
                input #sso-email name="email" type="email" autocomplete="username";
                p.muted { "or" }
                label for="sso-account" { "Account handle" }
                input #sso-account name="account" pattern="[a-z0-9-]+";
                button type="submit" { "Continue to your identity provider" }
            }
            p.muted { a href="/login" { "Sign in with a password" } }
        },
    )
}

/// `GET /auth/oidc/callback`: the IdP's answer.
pub async fn oidc_callback(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Query(cb): Query<Callback>,
) -> Response {
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    match sso::finish_login(&app, cb, ip.as_deref(), ua).await {
        Ok((session, next)) => {
            let resp = Redirect::to(safe_next(Some(&next))).into_response();
            with_session(&app, resp, &session)
        }
        Err(e) => error_page(&e),
    }
}

/// `GET /auth/saml/{account_id}/metadata`: Atrium's SAML service-provider metadata for the
/// account (its entity id is this URL; the ACS is `…/acs`).
pub async fn saml_metadata(
    State(app): State<App>,
    axum::extract::Path(account): axum::extract::Path<crate::domain::AccountId>,
) -> Response {
    match sso::sp_metadata(&app, account) {
        Ok(xml) => (
            [(header::CONTENT_TYPE, "application/samlmetadata+xml")],
            xml,
        )
            .into_response(),
        Err(e) => error_page(&e),
    }
}

/// `POST /auth/saml/{account_id}/acs`: the IdP's answer (HTTP-POST binding). Cross-site by design:
/// what protects it is the signature, the single-use RelayState and InResponseTo, not a CSRF
/// token.
pub async fn saml_acs(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    axum::extract::Path(account): axum::extract::Path<crate::domain::AccountId>,
    super::form::Form(post): super::form::Form<sso::AcsPost>,
) -> Response {
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    match sso::finish_saml(&app, account, post, ip.as_deref(), ua).await {
        Ok((session, next)) => {
            let resp = Redirect::to(safe_next(Some(&next))).into_response();
            with_session(&app, resp, &session)
        }
        Err(e) => error_page(&e),
    }
}
