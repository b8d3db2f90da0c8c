//! Personal API keys: create (the key shown once, with a copy button), list with masked key and
//! expiry, delete.

use super::form::Form;
use super::session::SignedIn;
use super::{
    csrf_field, days_from_now, days_input, error_page, expiry_cell, name_input, page, shown_key,
    signed_in_header, table,
};
use crate::app::App;
use crate::domain::ApiKeyId;
use crate::services::users::{self, CreateApiKey};
use crate::services::Error;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;

async fn render(
    app: &App,
    p: &crate::authz::Principal,
    created: Option<(String, String)>,
) -> Response {
    if p.is_bot() {
        return error_page(&Error::NotFound(
            "service accounts have no personal keys".into(),
        ));
    }
    let keys = match users::list_api_keys(app, p, p.user_id, None, Some(200), None).await {
        Ok(k) => k,
        Err(e) => return error_page(&e),
    };
    let (header, token) = signed_in_header(app, p);
    let now = app.now();
    let rows: Vec<Markup> = keys
        .iter()
        .map(|k| {
            html! { tr {
                td { (k.name) }
                td { code { (k.masked_key) } }
                td { (k.created.format("%Y-%m-%d")) }
                (expiry_cell(k.expiration, now))
                td {
                    form.inline method="post" action={ "/me/api-keys/" (k.id) "/delete" } {
                        (csrf_field(&token))
                        button.secondary type="submit" aria-label={ "Delete key " (k.name) } { "Delete" }
                    }
                }
            } }
        })
        .collect();
    let body = html! {
        (header)
        p { a href="/" { "All accounts" } }
        h1 { "API keys" }
        @if let Some((name, key)) = &created {
            (shown_key(&format!("Key “{name}” created"), key))
        }
        p.muted {
            "Use a key with " code { "prefect cloud login --key …" } " or as " code { "Authorization: Bearer …" } "."
        }
        (table("Your keys", &["Name", "Key", "Created", "Expires", "Actions"], &rows, "No keys yet."))
        h2 { "New key" }
        form method="post" action="/me/api-keys" {
            (csrf_field(&token))
            (name_input("key-name", None))
            (days_input("key-days", "Expires after (days; empty = never)", None))
            button type="submit" { "Create key" }
        }
    };
    page(StatusCode::OK, "API keys", body)
}

/// `GET /me/api-keys`
pub async fn list(State(app): State<App>, SignedIn(p): SignedIn) -> Response {
    render(&app, &p, None).await
}

#[derive(Deserialize)]
pub struct CreateForm {
    pub csrf: String,
    pub name: String,
    #[serde(default)]
    pub days: String,
}

/// `POST /me/api-keys`: creates a key and shows it once.
pub async fn create(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    headers: HeaderMap,
    Form(f): Form<CreateForm>,
) -> Response {
    if let Some(refused) = super::refuse_forged(&app, &headers, &f.csrf) {
        return refused;
    }
    match create_from_form(&app, &p, f.name, &f.days, false).await {
        Ok(k) => {
            let mut resp = render(&app, &p, Some((k.name, k.key))).await;
            // The page holds a secret: never cache it.
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            resp
        }
        Err(e) => error_page(&e),
    }
}

#[derive(Deserialize)]
pub struct DeleteForm {
    pub csrf: String,
}

/// `POST /me/api-keys/{id}/delete`
pub async fn delete(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(id): Path<ApiKeyId>,
    headers: HeaderMap,
    Form(f): Form<DeleteForm>,
) -> Response {
    if let Some(refused) = super::refuse_forged(&app, &headers, &f.csrf) {
        return refused;
    }
    match users::delete_api_key(&app, &p, p.user_id, id).await {
        Ok(()) => Redirect::to("/me/api-keys").into_response(),
        Err(e) => error_page(&e),
    }
}

/// Creates a personal key from a form's name and "expires after N days" field (empty = never,
/// else 1 to 3650 days from now).
pub async fn create_from_form(
    app: &App,
    p: &crate::authz::Principal,
    name: String,
    days: &str,
    signed_in_login: bool,
) -> Result<crate::domain::ApiKeyCreated, Error> {
    let expiration = days_from_now(app, Some(days))?;
    let key = CreateApiKey { name, expiration };
    if signed_in_login {
        users::create_login_key(app, p, key).await
    } else {
        users::create_api_key(app, p, p.user_id, key).await
    }
}
