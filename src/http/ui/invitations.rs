//! The page an invitation email links to: join by creating a user or by signing in, or decline.

use super::form::Form;
use super::{error_page, new_csrf, page};
use crate::app::App;
use crate::http::extract::ClientIp;
use crate::services::auth::Signup;
use crate::services::invitations::{self, PageAnswer};
use crate::services::mail::html_escape;
use crate::services::Error;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uuid::Uuid;

#[derive(Deserialize)]
pub struct CodeQuery {
    pub invite_code: String,
}

/// `GET /invitations/{id}?invite_code=…`
pub async fn show(
    State(app): State<App>,
    headers: axum::http::HeaderMap,
    Path(id): Path<Uuid>,
    Query(q): Query<CodeQuery>,
) -> Response {
    let (inv, account_name) = match invitations::find_open(&app, id, &q.invite_code).await {
        Ok(v) => v,
        Err(e) => return error_page(&e),
    };
    let (csrf, cookie) = new_csrf(&app, &headers);
    let email = html_escape(&inv.email);
    let code = html_escape(&q.invite_code);
    let hidden = format!(
        "<input type=\"hidden\" name=\"invite_code\" value=\"{code}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">"
    );
    let body = format!(
        "<h1>Join {account} on Atrium</h1>\
         <p>You are invited as <strong>{role}</strong> with <strong>{email}</strong>.</p>\
         <h2>New to Atrium? Create your user</h2>\
         <form method=\"post\" action=\"/invitations/{id}\">{hidden}<input type=\"hidden\" name=\"action\" value=\"signup\">\
         <input type=\"hidden\" name=\"email\" value=\"{email}\">\
         <label for=\"first_name\">First name</label><input id=\"first_name\" name=\"first_name\" autocomplete=\"given-name\">\
         <label for=\"last_name\">Last name</label><input id=\"last_name\" name=\"last_name\" autocomplete=\"family-name\">\
         <label for=\"new_password\">Password (8 characters or more)</label>\
         <input id=\"new_password\" name=\"password\" type=\"password\" minlength=\"8\" required autocomplete=\"new-password\">\
         <button type=\"submit\">Create user and join</button></form>\
         <h2>Already have a user? Sign in</h2>\
         <form method=\"post\" action=\"/invitations/{id}\">{hidden}<input type=\"hidden\" name=\"action\" value=\"signin\">\
         <input type=\"hidden\" name=\"email\" value=\"{email}\">\
         <label for=\"password\">Password for {email}</label>\
         <input id=\"password\" name=\"password\" type=\"password\" required autocomplete=\"current-password\">\
         <button type=\"submit\">Sign in and join</button></form>\
         <form method=\"post\" action=\"/invitations/{id}\">{hidden}<input type=\"hidden\" name=\"action\" value=\"reject\">\
         <button class=\"secondary\" type=\"submit\">Decline the invitation</button></form>",
        account = html_escape(&account_name),
        role = inv.account_role.name(),
    );
    let mut resp = page(StatusCode::OK, "Invitation", &body);
    if let Some(c) = cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

#[derive(Deserialize)]
pub struct InvitationForm {
    pub invite_code: String,
    pub csrf: String,
    pub action: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub password: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// `POST /invitations/{id}`: sign up or sign in, then accept; or decline.
pub async fn submit(
    State(app): State<App>,
    Path(id): Path<Uuid>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(f): Form<InvitationForm>,
) -> Response {
    if let Some(refused) = super::refuse_forged(&app, &headers, &f.csrf) {
        return refused;
    }
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let answer = match f.action.as_str() {
        "reject" => PageAnswer::Decline,
        "signup" => PageAnswer::SignUp(Signup {
            email: f.email,
            password: f.password,
            handle: None,
            first_name: f.first_name.filter(|s| !s.trim().is_empty()),
            last_name: f.last_name.filter(|s| !s.trim().is_empty()),
        }),
        "signin" => PageAnswer::SignIn {
            email: f.email,
            password: f.password,
        },
        _ => return error_page(&Error::validation("unknown action")),
    };
    let result =
        invitations::answer_on_page(&app, id, &f.invite_code, answer, ip.as_deref(), ua).await;
    match result {
        Ok(None) => page(
            StatusCode::OK,
            "Declined",
            "<h1>Invitation declined</h1><p>Nothing else will happen.</p>",
        ),
        Ok(Some(session)) => {
            let resp = page(
                StatusCode::OK,
                "Welcome",
                "<h1>You are in</h1><p>Your membership is active. <a href=\"/\">Open your accounts</a>, \
                 or use the Prefect CLI with <code>prefect cloud login</code>.</p>",
            );
            super::session::with_session(&app, resp, &session)
        }
        Err(e) => error_page(&e),
    }
    .into_response()
}
