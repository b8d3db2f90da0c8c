//! The personal profile page: name, handle and email of the signed-in user.

use super::form::{done, Fields};
use super::session::SignedIn;
use super::{error_page, page, signed_in_header};
use crate::app::App;
use crate::services::mail::html_escape;
use crate::services::users::{self, UpdateUser};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::Response;

/// `GET /my/profile`
pub async fn show(State(app): State<App>, SignedIn(p): SignedIn) -> Response {
    let u = match crate::services::me::read_me(&app, &p).await {
        Ok(u) => u,
        Err(e) => return error_page(&e),
    };
    let (header, csrf, cookie) = signed_in_header(&app, &p.name);
    let body = format!(
        "{header}<p><a href=\"/\">All accounts</a> · <a href=\"/me/api-keys\">API keys</a></p><h1>Your profile</h1>\
         <form method=\"post\" action=\"/my/profile\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <label for=\"p-first\">First name</label><input id=\"p-first\" name=\"first_name\" maxlength=\"100\" value=\"{first}\" autocomplete=\"given-name\">\
         <label for=\"p-last\">Last name</label><input id=\"p-last\" name=\"last_name\" maxlength=\"100\" value=\"{last}\" autocomplete=\"family-name\">\
         <label for=\"p-handle\">Handle</label><input id=\"p-handle\" name=\"handle\" required maxlength=\"100\" value=\"{handle}\">\
         <label for=\"p-email\">Email</label><input id=\"p-email\" name=\"email\" type=\"email\" required value=\"{email}\" autocomplete=\"email\">\
         <button type=\"submit\">Save profile</button></form>",
        first = html_escape(&u.first_name),
        last = html_escape(&u.last_name),
        handle = html_escape(&u.handle),
        email = html_escape(&u.email),
    );
    let mut resp = page(StatusCode::OK, "Profile", &body);
    resp.headers_mut().append(header::SET_COOKIE, cookie);
    resp
}

/// `POST /my/profile`
pub async fn update(State(app): State<App>, SignedIn(p): SignedIn, f: Fields) -> Response {
    let u = UpdateUser {
        handle: Some(f.get("handle").to_string()),
        first_name: Some(f.get("first_name").to_string()),
        last_name: Some(f.get("last_name").to_string()),
        email: Some(f.get("email").to_string()),
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
