//! The first-run page (`/setup?token=…`).

use super::form::Form;
use super::{csrf_field, error_page, new_csrf, page};
use crate::app::App;
use crate::services::setup::{self, FirstRun};
use crate::services::Error;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct TokenQuery {
    pub token: String,
}

/// `GET /setup?token=…`
pub async fn show(
    State(app): State<App>,
    headers: axum::http::HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    match setup::is_open(&app, &q.token).await {
        Ok(true) => {}
        Ok(false) => {
            return error_page(&Error::NotFound(
                "this setup link was already used or is not valid".into(),
            ))
        }
        Err(e) => return error_page(&e),
    }
    let (csrf, cookie) = new_csrf(&app, &headers);
    let body = html! {
        h1 { "Set up Atrium" }
        p { "Create the first user (a site admin) and your first account." }
        form method="post" action="/setup" {
            input type="hidden" name="token" value=(q.token);
            (csrf_field(&csrf))
            label for="email" { "Your email" }
            input #email name="email" type="email" required autocomplete="email";
            label for="password" { "Password (8 characters or more)" }
            input #password name="password" type="password" minlength="8" required autocomplete="new-password";
            label for="account_name" { "Account name" }
            input #account_name name="account_name" required placeholder="Acme";
            label for="account_handle" { "Account handle" }
            input #account_handle name="account_handle" required pattern="[a-z0-9-]+" placeholder="acme";
            p.muted {
                "Lowercase letters, digits and dashes; it appears in "
                code { "prefect cloud login --workspace handle/workspace" } "."
            }
            button type="submit" { "Create" }
        }
    };
    let mut resp = page(StatusCode::OK, "Set up", body);
    if let Some(c) = cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

#[derive(Deserialize)]
pub struct SetupForm {
    pub token: String,
    pub csrf: String,
    pub email: String,
    pub password: String,
    pub account_name: String,
    pub account_handle: String,
}

/// `POST /setup`
pub async fn submit(
    State(app): State<App>,
    headers: HeaderMap,
    Form(f): Form<SetupForm>,
) -> Response {
    if let Some(refused) = super::refuse_forged(&app, &headers, &f.csrf) {
        return refused;
    }
    let run = FirstRun {
        email: f.email,
        password: f.password,
        account_name: f.account_name,
        account_handle: f.account_handle,
    };
    match setup::first_run(&app, &f.token, run).await {
        // Signed in, on the new account's page, whose "Getting started" lists the next steps.
        Ok((session, account)) => {
            let resp = Redirect::to(&format!("/account/{account}")).into_response();
            super::session::with_session(&app, resp, &session)
        }
        Err(e) => error_page(&e),
    }
}
