//! Browser login for the Prefect CLI (`prefect cloud login` → "Log in with a web browser"): the
//! CLI opens `/auth/client?callback=http://localhost:PORT`; the signed-in user creates a personal
//! API key here and the page posts `{"api_key": …}` to `{callback}/success` (reference §1.5). Only
//! loopback callbacks are accepted, so a key can never be sent to another machine.

use super::form::Form;
use super::session::SignedIn;
use super::{csrf_field, days_input, error_page, name_input, page, signed_in_header};
use crate::app::App;
use crate::services::Error;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use maud::{html, PreEscaped};
use serde::Deserialize;

/// `http://localhost:PORT` or `http://127.0.0.1:PORT`, nothing else (no path, query or user).
pub fn loopback_callback(callback: &str) -> Result<String, Error> {
    let bad = || {
        Error::Malformed(
            "the callback must be http://localhost:PORT or http://127.0.0.1:PORT".into(),
        )
    };
    let uri: Uri = callback.parse().map_err(|_| bad())?;
    let authority = uri.authority().ok_or_else(bad)?;
    let host_ok = matches!(authority.host(), "localhost" | "127.0.0.1");
    let path_ok = matches!(uri.path(), "" | "/");
    if uri.scheme_str() != Some("http")
        || !host_ok
        || authority.port_u16().is_none()
        || authority.as_str().contains('@')
        || !path_ok
        || uri.query().is_some()
    {
        return Err(bad());
    }
    Ok(format!("http://{authority}"))
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    pub callback: String,
}

/// `GET /auth/client?callback=…`
pub async fn show(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let callback = match loopback_callback(&q.callback) {
        Ok(c) => c,
        Err(e) => return error_page(&e),
    };
    if p.is_bot() {
        return error_page(&Error::NotFound(
            "service accounts have no personal keys".into(),
        ));
    }
    let (header, token) = signed_in_header(&app, &p);
    let default_name = format!("prefect-cli-{}", app.now().format("%Y-%m-%d"));
    let body = html! {
        (header)
        h1 { "Log in the Prefect CLI" }
        p {
            "The " code { "prefect" } " command on this computer asks for an API key for " strong { (p.name) } ". "
            "A new personal key is created and handed to it (existing keys cannot be sent: Atrium keeps only their hashes)."
        }
        form method="post" action="/auth/client" {
            (csrf_field(&token))
            input type="hidden" name="callback" value=(callback);
            (name_input("key-name", Some(&default_name)))
            (days_input("key-days", "Expires after (days; empty = never)", Some("90")))
            button type="submit" { "Create key and log in" }
        }
    };
    page(StatusCode::OK, "Log in the Prefect CLI", body)
}

#[derive(Deserialize)]
pub struct CliLoginForm {
    pub csrf: String,
    pub callback: String,
    pub name: String,
    #[serde(default)]
    pub days: String,
}

/// `POST /auth/client`: creates the key and hands it to the CLI from the browser.
pub async fn submit(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    headers: HeaderMap,
    Form(f): Form<CliLoginForm>,
) -> Response {
    if let Some(refused) = super::refuse_forged(&app, &headers, &f.csrf) {
        return refused;
    }
    let callback = match loopback_callback(&f.callback) {
        Ok(c) => c,
        Err(e) => return error_page(&e),
    };
    let key = match super::keys::create_from_form(&app, &p, f.name, &f.days, true).await {
        Ok(k) => k,
        Err(e) => return error_page(&e),
    };
    // Both values are JSON strings inside a script: serialize them, and keep `</` out.
    let js = |s: &str| {
        serde_json::to_string(s)
            .unwrap_or_default()
            .replace("</", "<\\/")
    };
    // The script is ours; the only values in it are JSON-serialized above.
    let script = format!(
        "fetch({cb} + '/success', {{method: 'POST', headers: {{'Content-Type': 'application/json'}}, body: JSON.stringify({{api_key: {k}}})}})\
         .then(function(r) {{ if (!r.ok) throw new Error(r.status); document.getElementById('status').textContent = 'You are logged in. You can close this tab.'; document.getElementById('detail').textContent = 'The Prefect CLI received its key.'; }})\
         .catch(function() {{ document.getElementById('status').textContent = 'The Prefect CLI did not answer'; }});",
        cb = js(&callback),
        k = js(&key.key),
    );
    let body = html! {
        h1 #status { "Handing the key to the Prefect CLI…" }
        p #detail { "If nothing happens, run " code { "prefect cloud login --key " (key.key) } "." }
        script { (PreEscaped(script)) }
    };
    let mut resp = page(StatusCode::OK, "Prefect CLI login", body);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::loopback_callback;

    #[test]
    fn only_loopback_http_callbacks_with_a_port_are_accepted() {
        assert_eq!(
            loopback_callback("http://localhost:54321").ok().as_deref(),
            Some("http://localhost:54321")
        );
        assert_eq!(
            loopback_callback("http://127.0.0.1:8/").ok().as_deref(),
            Some("http://127.0.0.1:8")
        );
        for bad in [
            "https://localhost:5",
            "http://evil.test:80",
            "http://localhost",
            "http://localhost:5/steal",
            "http://localhost:5?x=1",
            "http://user@localhost:5",
            "http://localhost.evil.test:5",
            "javascript:alert(1)",
            "",
        ] {
            assert!(loopback_callback(bad).is_err(), "{bad}");
        }
    }
}
