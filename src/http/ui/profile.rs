//! The personal profile page: name and handle of the signed-in user, and the change of their
//! email address (password, then a link to the new address).

use super::form::{done, Fields};
use super::session::SignedIn;
use super::{csrf_field, error_page, page, signed_in_header};
use crate::app::App;
use crate::services::users::{self, UpdateUser};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

/// `GET /my/profile`
pub async fn show(State(app): State<App>, SignedIn(p): SignedIn) -> Response {
    let u = match crate::services::me::read_me(&app, &p).await {
        Ok(u) => u,
        Err(e) => return error_page(&e),
    };
    let (header, csrf) = signed_in_header(&app, &p);
    let body = html! {
        (header)
        p { a href="/" { "All accounts" } " · " a href="/me/api-keys" { "API keys" } }
        h1 { "Your profile" }
        form method="post" action="/my/profile" {
            (csrf_field(&csrf))
            label for="p-first" { "First name" }
            input #p-first name="first_name" maxlength="100" value=(u.first_name) autocomplete="given-name";
            label for="p-last" { "Last name" }
            input #p-last name="last_name" maxlength="100" value=(u.last_name) autocomplete="family-name";
            label for="p-handle" { "Handle" }
            input #p-handle name="handle" required maxlength="100" value=(u.handle);
            button type="submit" { "Save profile" }
        }
        h2 { "Email address" }
        p { "Now " strong { (u.email) } ". A new address takes effect when you follow the link we send to it." }
        form method="post" action="/my/email" {
            (csrf_field(&csrf))
            label for="e-new" { "New email" }
            input #e-new name="email" type="email" required autocomplete="email";
            label for="e-password" { "Current password" }
            input #e-password name="password" type="password" required autocomplete="current-password";
            button type="submit" { "Send the confirmation link" }
        }
    };
    page(StatusCode::OK, "Profile", body)
}

/// `POST /my/profile`
pub async fn update(State(app): State<App>, SignedIn(p): SignedIn, f: Fields) -> Response {
    let u = UpdateUser {
        handle: Some(f.get("handle").to_string()),
        first_name: Some(f.get("first_name").to_string()),
        last_name: Some(f.get("last_name").to_string()),
        email: None,
        location: None,
        title: None,
        image_location: None,
        settings: None,
        last_login: None,
    };
    done(
        "/my/profile",
        users::update_user(&app, &p, p.user_id, u).await,
    )
}

/// `POST /my/email`: asks for the change (password checked), then says where the link went.
pub async fn request_email(State(app): State<App>, SignedIn(p): SignedIn, f: Fields) -> Response {
    let r = users::RequestEmailChange {
        email: f.get("email").to_string(),
        password: f.get("password").to_string(),
    };
    match users::request_email_change(&app, &p, p.user_id, r).await {
        Ok(()) => page(
            StatusCode::OK,
            "Check your inbox",
            html! {
                h1 { "Check your inbox" }
                p role="status" {
                    "We sent a link to " strong { (f.get("email")) }
                    ". Your email address changes when you follow it (within an hour)."
                }
                p { a href="/my/profile" { "Back to your profile" } }
            },
        ),
        Err(e) => super::error_page_back(&e, Some("/my/profile")),
    }
}

#[derive(serde::Deserialize)]
pub struct TokenQuery {
    pub token: String,
}

/// `GET /my/email/confirm?token=…`: a button, not the change itself (mail scanners and link
/// previews open links; only a person presses the button).
pub async fn confirm_email_page(
    State(app): State<App>,
    headers: axum::http::HeaderMap,
    axum::extract::Query(q): axum::extract::Query<TokenQuery>,
) -> Response {
    let (csrf, cookie) = super::new_csrf(&app, &headers);
    let mut resp = page(
        StatusCode::OK,
        "Confirm your email address",
        html! {
            h1 { "Confirm your new email address" }
            form method="post" action="/my/email/confirm" {
                (csrf_field(&csrf))
                input type="hidden" name="token" value=(q.token);
                button type="submit" { "Use this address" }
            }
        },
    );
    if let Some(c) = cookie {
        resp.headers_mut().append(axum::http::header::SET_COOKIE, c);
    }
    resp
}

/// `POST /my/email/confirm`
pub async fn confirm_email(State(app): State<App>, f: Fields) -> Response {
    let c = users::ConfirmEmailChange {
        token: f.get("token").to_string(),
    };
    match users::confirm_email_change(&app, c).await {
        Ok(u) => page(
            StatusCode::OK,
            "Email address changed",
            html! {
                h1 { "Done" }
                p role="status" { "Your email address is now " strong { (u.email) } "; sign in with it from now on." }
                p { a href="/" { "Continue" } }
            },
        ),
        Err(e) => error_page(&e),
    }
}
