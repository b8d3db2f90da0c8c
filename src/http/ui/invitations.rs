//! The page an invitation email links to: join by creating a user or by signing in, or decline.

use super::form::Form;
use super::{csrf_field, error_page, new_csrf, page};
use crate::app::App;
use crate::http::extract::ClientIp;
use crate::services::auth::Signup;
use crate::services::invitations::{self, PageAnswer};
use crate::services::Error;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
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
    let action = format!("/invitations/{id}");
    // The fields every form of the page carries: the invitation's code, the CSRF token, which
    // answer the form gives and (for the sign-up and sign-in forms) the invited address.
    let hidden = |answer: &str| {
        html! {
            input type="hidden" name="invite_code" value=(q.invite_code);
            (csrf_field(&csrf))
            input type="hidden" name="action" value=(answer);
            @if answer != "reject" { input type="hidden" name="email" value=(inv.email); }
        }
    };
    let body = html! {
        h1 { "Join " (account_name) " on Atrium" }
        p { "You are invited as " strong { (inv.account_role.name()) } " with " strong { (inv.email) } "." }
        h2 { "New to Atrium? Create your user" }
        form method="post" action=(action) {
            (hidden("signup"))
            label for="first_name" { "First name" }
            input #first_name name="first_name" autocomplete="given-name";
            label for="last_name" { "Last name" }
            input #last_name name="last_name" autocomplete="family-name";
            label for="new_password" { "Password (8 characters or more)" }
            input #new_password name="password" type="password" minlength="8" required autocomplete="new-password";
            button type="submit" { "Create user and join" }
        }
        h2 { "Already have a user? Sign in" }
        form method="post" action=(action) {
            (hidden("signin"))
            label for="password" { "Password for " (inv.email) }
            input #password name="password" type="password" required autocomplete="current-password";
            button type="submit" { "Sign in and join" }
        }
        form method="post" action=(action) {
            (hidden("reject"))
            button.secondary type="submit" { "Decline the invitation" }
        }
    };
    let mut resp = page(StatusCode::OK, "Invitation", body);
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
            html! { h1 { "Invitation declined" } p { "Nothing else will happen." } },
        ),
        Ok(Some(session)) => {
            let resp = page(
                StatusCode::OK,
                "Welcome",
                html! {
                    h1 { "You are in" }
                    p {
                        "Your membership is active. " a href="/" { "Open your accounts" }
                        ", or use the Prefect CLI with " code { "prefect cloud login" } "."
                    }
                },
            );
            super::session::with_session(&app, resp, &session)
        }
        Err(e) => error_page(&e),
    }
    .into_response()
}
