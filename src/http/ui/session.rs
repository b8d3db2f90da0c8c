//! Sign-in and sign-out pages, and the signed-in user of a dashboard page.

use super::form::Form;
use super::{csrf_field, csrf_ok, error_page, new_csrf, page};
use crate::app::App;
use crate::authz::Principal;
use crate::http::extract::{session_cookie, ClientIp};
use crate::services::{auth, Error};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::{header, request::Parts, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

/// A signed-in dashboard user; pages without a session redirect to the sign-in page and come
/// back afterwards.
pub struct SignedIn(pub Principal);

impl FromRequestParts<App> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        if let Some(super::routes::Gated(p)) = parts.extensions.get() {
            return Ok(SignedIn(p.clone()));
        }
        let back = || {
            let next = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            Redirect::to(&format!("/login?next={}", encode(next))).into_response()
        };
        let Some(sid) = session_cookie(parts) else {
            return Err(back());
        };
        match auth::authenticate_session(app, sid).await {
            Ok(mut p) => {
                p.user_agent = crate::http::extract::user_agent(parts);
                p.ip = crate::http::extract::client_ip(parts);
                Ok(SignedIn(p))
            }
            Err(Error::Unauthenticated(_)) => Err(back()),
            Err(e) => Err(error_page(&e)),
        }
    }
}

/// The user a request's session cookie signs in, with the request's address and user agent;
/// `None` without a valid session.
pub(crate) async fn signed_in(app: &App, parts: &Parts) -> Option<Principal> {
    let mut p = auth::authenticate_session(app, session_cookie(parts)?)
        .await
        .ok()?;
    p.user_agent = crate::http::extract::user_agent(parts);
    p.ip = crate::http::extract::client_ip(parts);
    Some(p)
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Only paths on this origin are followed after sign-in (no open redirect); anything else goes
/// to the default page. Browsers parse a `Location` leniently — they drop tabs and newlines,
/// read `\\` as `/`, trim control characters and spaces — so `/\t/evil.test` or `/\\evil.test`
/// would leave the origin. Rather than imitate that parser, a target is accepted only when it has
/// nothing for it to reinterpret: printable ASCII without spaces or backslashes, one leading `/`
/// not followed by another. Such a value is also always a valid header value.
pub(crate) fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n[1..].starts_with('/')
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            n
        }
        _ => "/",
    }
}

#[derive(Deserialize)]
pub struct NextQuery {
    pub next: Option<String>,
}

fn form(app: &App, headers: &HeaderMap, next: &str, email: &str, error: Option<&str>) -> Response {
    let (csrf, cookie) = new_csrf(app, headers);
    let body = html! {
        h1 { "Sign in to Atrium" }
        @if let Some(e) = error { p.error role="alert" { (e) } }
        form method="post" action="/login" {
            (csrf_field(&csrf))
            input type="hidden" name="next" value=(next);
            label for="email" { "Email" }
            input #email name="email" type="email" required autocomplete="username" value=(email);
            label for="password" { "Password" }
            input #password name="password" type="password" autocomplete="current-password";
            p.muted.small { "Your organization uses single sign-on? Leave the password empty." }
            button type="submit" { "Sign in" }
        }
        p.muted { a href={ "/auth/sso?next=" (encode(next)) } { "Sign in with single sign-on" } }
        @if app.config.signup_policy == crate::config::SignupPolicy::Open {
            p.muted { "New here? " a href="/signup" { "Create a user" } }
        }
    };
    let status = if error.is_none() {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    };
    let mut resp = page(status, "Sign in", body);
    if let Some(c) = cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// `resp` with the cookie of a session just started (sign-in, sign-up, first run, invitation).
pub fn with_session(app: &App, mut resp: Response, session: &auth::NewSession) -> Response {
    let max_age = (session.expires_at - app.now()).num_seconds();
    if let Ok(v) = crate::http::api::auth::session_cookie_header(app, &session.id, max_age) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// `GET /login`
pub async fn show(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    form(&app, &headers, safe_next(q.next.as_deref()), "", None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    pub csrf: String,
    pub email: String,
    pub password: String,
    pub next: Option<String>,
}

/// `POST /login`: a new session (rotated at every sign-in), then back to where the user was going.
pub async fn submit(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(f.next.as_deref()).to_string();
    if !csrf_ok(&app, &headers, &f.csrf) {
        return form(
            &app,
            &headers,
            &next,
            &f.email,
            Some("The form expired; please sign in again."),
        );
    }
    // Email first: without a password, a user of a domain that signs in with single sign-on is
    // sent to their account's identity provider.
    if f.password.is_empty() {
        let sso = format!(
            "/auth/sso?email={}&next={}",
            encode(f.email.trim()),
            encode(&next)
        );
        return match crate::services::sso::begin_login(
            &app,
            crate::services::sso::Realm::Email(f.email.trim()),
            &next,
        )
        .await
        {
            Ok(url) => Redirect::to(&url).into_response(),
            Err(Error::NotFound(_)) => form(
                &app,
                &headers,
                &next,
                &f.email,
                Some("Enter your password (no single sign-on is set up for this address)."),
            ),
            Err(e) => super::error_page_back(&e, Some(&sso)),
        };
    }
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    match auth::login(&app, &f.email, f.password, ip.as_deref(), ua).await {
        Ok(session) => {
            let resp = Redirect::to(&next).into_response();
            with_session(&app, resp, &session)
        }
        Err(e @ (Error::Unauthenticated(_) | Error::RateLimited { .. })) => {
            form(&app, &headers, &next, &f.email, Some(&e.to_string()))
        }
        Err(e) => error_page(&e),
    }
}

#[derive(Deserialize)]
pub struct LogoutForm {
    pub csrf: String,
}

/// `POST /logout`: ends the session.
pub async fn logout(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    headers: HeaderMap,
    Form(f): Form<LogoutForm>,
) -> Response {
    if let Some(refused) = super::refuse_forged(&app, &headers, &f.csrf) {
        return refused;
    }
    if let Err(e) = auth::logout(&app, &p).await {
        return error_page(&e);
    }
    let mut resp = Redirect::to("/login").into_response();
    if let Ok(v) = crate::http::api::auth::session_cookie_header(&app, "", 0) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(super::safe_next(Some("/account/x")), "/account/x");
        for bad in [
            "https://evil.test/",
            "//evil.test",
            "/\\evil.test",
            "evil",
            "/\t/evil.test",
            "/\n/evil.test",
            "/\r\n/evil.test",
            " //evil.test",
            "/ /evil.test",
            "\t//evil.test",
            "/\u{0}/evil.test",
            "/\u{7f}/x",
            "/caf\u{e9}",
            "",
        ] {
            assert_eq!(super::safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(super::encode("/a b?c=d&e"), "/a%20b%3Fc%3Dd%26e");
    }
}
