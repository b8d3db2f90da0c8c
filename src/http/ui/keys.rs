//! Personal API keys: create (the key shown once, with a copy button), list with masked key and
//! expiry, delete.

use super::form::Form;
use super::session::SignedIn;
use super::{error_page, expiry_cell, page, signed_in_header, COPY_SCRIPT};
use crate::app::App;
use crate::domain::ApiKeyId;
use crate::services::mail::html_escape;
use crate::services::users::{self, CreateApiKey};
use crate::services::Error;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
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
    let csrf = format!("<input type=\"hidden\" name=\"csrf\" value=\"{token}\">");
    let now = app.now();
    let rows: String = keys
        .iter()
        .map(|k| {
            format!(
                "<tr><td>{name}</td><td><code>{masked}</code></td><td>{created}</td>{exp}\
                 <td><form method=\"post\" action=\"/me/api-keys/{id}/delete\" class=\"inline\">{csrf}\
                 <button class=\"secondary\" type=\"submit\" aria-label=\"Delete key {name}\">Delete</button></form></td></tr>",
                name = html_escape(&k.name),
                masked = html_escape(&k.masked_key),
                created = k.created.format("%Y-%m-%d"),
                exp = expiry_cell(k.expiration, now),
                id = k.id,
            )
        })
        .collect();
    let table = if rows.is_empty() {
        "<p class=\"muted\">No keys yet.</p>".to_string()
    } else {
        format!("<table><caption>Your keys</caption><thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Key</th><th scope=\"col\">Created</th><th scope=\"col\">Expires</th><th scope=\"col\"><span class=\"muted\">Actions</span></th></tr></thead><tbody>{rows}</tbody></table>")
    };
    let shown = match created {
        Some((name, key)) => format!(
            "<section class=\"notice\" role=\"status\"><h2>Key “{name}” created</h2>\
             <p>Copy it now: it is not shown again.</p><p><code id=\"new-key\">{key}</code> \
             <button type=\"button\" data-copy=\"new-key\" hidden>Copy</button></p></section>{COPY_SCRIPT}",
            name = html_escape(&name),
            key = html_escape(&key),
        ),
        None => String::new(),
    };
    let body = format!(
        "{header}<p><a href=\"/\">All accounts</a></p><h1>API keys</h1>{shown}\
         <p class=\"muted\">Use a key with <code>prefect cloud login --key …</code> or as <code>Authorization: Bearer …</code>.</p>{table}\
         <h2>New key</h2><form method=\"post\" action=\"/me/api-keys\">{csrf}\
         <label for=\"key-name\">Name</label><input id=\"key-name\" name=\"name\" required maxlength=\"100\">\
         <label for=\"key-days\">Expires after (days; empty = never)</label><input id=\"key-days\" name=\"days\" type=\"number\" min=\"1\" max=\"3650\">\
         <button type=\"submit\">Create key</button></form>"
    );
    page(StatusCode::OK, "API keys", &body)
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
    let expiration = match days.trim() {
        "" => None,
        d => match d.parse::<i64>() {
            Ok(n) if (1..=3650).contains(&n) => Some(app.now() + chrono::Duration::days(n)),
            _ => {
                return Err(Error::validation(
                    "expiry must be a whole number of days from 1 to 3650",
                ))
            }
        },
    };
    let key = CreateApiKey { name, expiration };
    if signed_in_login {
        users::create_login_key(app, p, key).await
    } else {
        users::create_api_key(app, p, p.user_id, key).await
    }
}
