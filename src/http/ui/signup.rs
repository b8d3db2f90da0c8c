//! Open sign-up (`signup_policy = "open"`): a user without an invitation. On an invite-only server
//! the page says so; invitees sign up through their invitation link instead.

use super::form::Fields;
use super::{csrf_field, error_page_back, new_csrf, page};
use crate::app::App;
use crate::config::SignupPolicy;
use crate::http::extract::ClientIp;
use crate::services::auth::{self, Signup};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

/// `GET /signup`
pub async fn show(State(app): State<App>, headers: axum::http::HeaderMap) -> Response {
    if app.config.signup_policy != SignupPolicy::Open {
        return page(
            StatusCode::OK,
            "Sign up",
            html! {
                h1 { "Sign-up is by invitation" }
                p {
                    "This server admits new users through invitations. "
                    "Ask an account Owner or Admin to invite you; the email holds your link."
                }
                p { a href="/login" { "Sign in" } }
            },
        );
    }
    let (csrf, cookie) = new_csrf(&app, &headers);
    let body = html! {
        h1 { "Create your Atrium user" }
        form method="post" action="/signup" {
            (csrf_field(&csrf))
            label for="su-email" { "Email" }
            input #su-email name="email" type="email" required autocomplete="email";
            label for="su-first" { "First name" }
            input #su-first name="first_name" autocomplete="given-name";
            label for="su-last" { "Last name" }
            input #su-last name="last_name" autocomplete="family-name";
            label for="su-password" { "Password (8 characters or more)" }
            input #su-password name="password" type="password" minlength="8" required autocomplete="new-password";
            button type="submit" { "Create user" }
        }
        p.muted { "Already registered? " a href="/login" { "Sign in" } }
    };
    let mut resp = page(StatusCode::OK, "Sign up", body);
    if let Some(c) = cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// `POST /signup`: creates the user and signs them in (a fresh session).
pub async fn submit(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    f: Fields,
) -> Response {
    let s = Signup {
        email: f.get("email").to_string(),
        password: f.get("password").to_string(),
        handle: None,
        first_name: f.opt("first_name").map(str::to_string),
        last_name: f.opt("last_name").map(str::to_string),
    };
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let r = async {
        let user = auth::signup(&app, s, None).await?;
        auth::login(
            &app,
            &user.email,
            f.get("password").to_string(),
            ip.as_deref(),
            ua,
        )
        .await
    }
    .await;
    match r {
        Ok(session) => {
            let resp = Redirect::to("/").into_response();
            super::session::with_session(&app, resp, &session)
        }
        Err(e) => error_page_back(&e, Some("/signup")),
    }
}
