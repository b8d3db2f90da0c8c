//! Submitted dashboard forms: the fields of a form whose CSRF token matched, read the way the
//! service layer wants them, and the answer to a state change (a redirect, or the refusal with
//! the API's message).

use super::{error_page_back, refuse_forged};
use crate::app::App;
use crate::services::Error;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Redirect, Response};
use serde::de::DeserializeOwned;

/// Largest form body a page accepts (the biggest forms are the role scope picker and a list of
/// emails to invite).
const MAX_FORM_BYTES: usize = 256 * 1024;

/// The fields of a submitted form, in order; only built when the form's `csrf` field equals the
/// CSRF cookie.
pub struct Fields(Vec<(String, String)>);

impl FromRequest<App> for Fields {
    type Rejection = Response;

    async fn from_request(req: Request, app: &App) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = read_form(body).await?;
        let fields: Vec<(String, String)> = form_urlencoded::parse(&bytes).into_owned().collect();
        let token = fields
            .iter()
            .find(|(k, _)| k == "csrf")
            .map_or("", |(_, v)| v.as_str());
        if let Some(refused) = refuse_forged(app, &parts.headers, token) {
            return Err(refused);
        }
        Ok(Fields(fields))
    }
}

/// True when an urlencoded body holds a NUL character, raw or escaped (PostgreSQL cannot store
/// one; every string input refuses it).
fn has_nul(body: &[u8]) -> bool {
    body.contains(&0) || body.windows(3).any(|w| w == b"%00")
}

/// A form's body (at most [`MAX_FORM_BYTES`], without NUL characters), or the error page.
async fn read_form(body: axum::body::Body) -> Result<axum::body::Bytes, Response> {
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| error_page_back(&Error::validation("the form is too large"), None))?;
    if has_nul(&bytes) {
        return Err(error_page_back(
            &Error::validation("the form holds a NUL character, which no field may contain"),
            None,
        ));
    }
    Ok(bytes)
}

/// `axum::extract::Form` for the forms that are read into a struct (sign-in, setup…), with the
/// same refusal of NUL characters as [`Fields`].
pub struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = read_form(body).await?;
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        axum::extract::Form::<T>::from_request(req, state)
            .await
            .map(|axum::extract::Form(v)| Form(v))
            .map_err(IntoResponse::into_response)
    }
}

impl Fields {
    /// The field's value with surrounding blanks removed ("" when absent).
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.trim())
    }

    /// The field's value when present and not blank.
    pub fn opt(&self, name: &str) -> Option<&str> {
        Some(self.get(name)).filter(|v| !v.is_empty())
    }

    /// Every non-blank value of a repeated field (checkboxes, multi-selects).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim())
            .collect()
    }

    /// True when a checkbox of that name was ticked.
    pub fn checked(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    /// An optional expiry from a `datetime-local` field (read as UTC, as the page says).
    pub fn instant(&self, name: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, Error> {
        match self.opt(name) {
            None => Ok(None),
            Some(v) => chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M")
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S"))
                .map(|t| Some(t.and_utc()))
                .map_err(|_| Error::validation(format!("{name}: expected a date and time"))),
        }
    }
}

/// Builds a service-layer input from a JSON value assembled from form fields, so the page goes
/// through exactly the API's validation (unknown fields, types, ids).
pub fn input<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, Error> {
    serde_json::from_value(v).map_err(|e| Error::validation(e.to_string()))
}

/// The answer to a state change: back to `to` when it worked, or the refusal with the API's
/// message and a link back.
pub fn done<T>(to: &str, r: Result<T, Error>) -> Response {
    match r {
        Ok(_) => Redirect::to(to).into_response(),
        Err(e) => error_page_back(&e, Some(to)),
    }
}
