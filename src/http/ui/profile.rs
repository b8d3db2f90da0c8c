//! The personal profile page: name and handle of the signed-in user, and the change of their
//! email address (password, then a link to the new address).

use super::form::{done, Fields};
use super::session::SignedIn;
use super::{error_page, page, signed_in_header};
use crate::app::App;
use crate::services::mail::html_escape;
use crate::services::users::{self, UpdateUser};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

/// `GET /my/profile`
pub async fn show(State(app): State<App>, SignedIn(p): SignedIn) -> Response {
    let u = match crate::services::me::read_me(&app, &p).await {
        Ok(u) => u,
        Err(e) => return error_page(&e),
    };
    let (header, csrf) = signed_in_header(&app, &p);
    let body = format!(
        "{header}<p><a href=\"/\">All accounts</a> · <a href=\"/me/api-keys\">API keys</a></p><h1>Your profile</h1>\
         <form method=\"post\" action=\"/my/profile\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"p-first\">First name</label><input id=\"p-first\" name=\"first_name\" maxlength=\"100\" value=\"{first}\" autocomplete=\"given-name\">\
         <label for=\"p-last\">Last name</label><input id=\"p-last\" name=\"last_name\" maxlength=\"100\" value=\"{last}\" autocomplete=\"family-name\">\
         <label for=\"p-handle\">Handle</label><input id=\"p-handle\" name=\"handle\" required maxlength=\"100\" value=\"{handle}\">\
         <button type=\"submit\">Save profile</button></form>\
         <h2>Email address</h2><p>Now <strong>{email}</strong>. A new address takes effect when you follow the link we send to it.</p>\
         <form method=\"post\" action=\"/my/email\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"e-new\">New email</label><input id=\"e-new\" name=\"email\" type=\"email\" required autocomplete=\"email\">\
         <label for=\"e-password\">Current password</label><input id=\"e-password\" name=\"password\" type=\"password\" required autocomplete=\"current-password\">\
         <button type=\"submit\">Send the confirmation link</button></form>",
        first = html_escape(&u.first_name),
        last = html_escape(&u.last_name),
        handle = html_escape(&u.handle),
        email = html_escape(&u.email),
    );
    page(StatusCode::OK, "Profile", &body)
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
            &format!(
                "<h1>Check your inbox</h1><p role=\"status\">We sent a link to <strong>{}</strong>. \
                 Your email address changes when you follow it (within an hour).</p><p><a href=\"/my/profile\">Back to your profile</a></p>",
                html_escape(f.get("email"))
            ),
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
        &format!(
            "<h1>Confirm your new email address</h1>\
             <form method=\"post\" action=\"/my/email/confirm\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"token\" value=\"{token}\">\
             <button type=\"submit\">Use this address</button></form>",
            token = html_escape(&q.token)
        ),
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
            &format!(
                "<h1>Done</h1><p role=\"status\">Your email address is now <strong>{}</strong>; sign in with it from now on.</p><p><a href=\"/\">Continue</a></p>",
                html_escape(&u.email)
            ),
        ),
        Err(e) => error_page(&e),
    }
}
