//! Server-rendered pages. Handlers call services and render; every form carries a CSRF token: a
//! nonce and its MAC over the caller's session (or, before sign-in, over a pre-session cookie),
//! verified in constant time.

pub mod access;
pub mod accounts;
pub mod audit;
pub mod billing;
pub mod cli_login;
pub mod form;
pub mod invitations;
pub mod keys;
pub mod members;
pub mod object_access;
pub mod prefect_ui;
pub mod profile;
pub mod roles;
pub mod routes;
pub mod service_accounts;
pub mod session;
pub mod settings;
pub mod setup;
pub mod shell;
pub mod signup;
pub mod sso;
pub mod sso_page;
pub mod teams;
pub mod workspaces;

use crate::services::credentials::random_base62;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};

pub const CSRF_COOKIE: &str = "atrium_csrf";

/// Copies a newly shown key to the clipboard; pages work without it (the key is selectable text).
pub const COPY_SCRIPT: PreEscaped<&str> = PreEscaped("<script>document.querySelectorAll('[data-copy]').forEach(function(b){b.hidden=false;b.addEventListener('click',function(){navigator.clipboard.writeText(document.getElementById(b.dataset.copy).textContent).then(function(){b.textContent='Copied';});});});</script>");

const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:#f5f6f8;color:#1d2330;margin:0}\
main{max-width:32rem;margin:3rem auto;background:#fff;border-radius:12px;padding:2rem 2.25rem;box-shadow:0 1px 3px rgba(0,0,0,.08)}\
h1{font-size:1.4rem;margin:0 0 1rem}h2{font-size:1.05rem;margin:1.75rem 0 .5rem}\
label{display:block;margin:.75rem 0 .25rem;font-weight:600;font-size:.9rem}\
input{width:100%;box-sizing:border-box;padding:.55rem .7rem;border:1px solid #c5cad3;border-radius:8px;font-size:1rem}\
input:focus,button:focus{outline:3px solid #7aa7ff;outline-offset:1px}\
button{margin-top:1rem;padding:.6rem 1.1rem;border:0;border-radius:8px;background:#2752d8;color:#fff;font-size:1rem;cursor:pointer}\
button.secondary{background:#e7e9ee;color:#1d2330}.error{background:#fdecec;color:#8a1c1c;padding:.75rem 1rem;border-radius:8px}\
.muted{color:#5b6475;font-size:.9rem}\
main:has(table){max-width:60rem}table{width:100%;border-collapse:collapse;margin:1rem 0}caption{text-align:left;font-weight:600;padding:.25rem 0}\
th,td{text-align:left;padding:.5rem .6rem;border-bottom:1px solid #e3e6eb;font-size:.95rem}td.expired{color:#8a1c1c}\
header{display:flex;justify-content:space-between;align-items:center;gap:1rem;margin-bottom:1rem}form.inline button{margin-top:0}ul.plain{list-style:none;padding:0}ul.plain li{padding:.35rem 0}\
.notice{background:#eef4ff;border-radius:8px;padding:.5rem 1rem;margin:1rem 0}code{word-break:break-all}\
a{color:#2046b8}select,textarea{width:100%;box-sizing:border-box;padding:.5rem .6rem;border:1px solid #c5cad3;border-radius:8px;font-size:1rem;background:#fff}\
select:focus,textarea:focus,a:focus,summary:focus{outline:3px solid #7aa7ff;outline-offset:1px}\
.shell{display:grid;grid-template-columns:14rem 1fr;gap:1.5rem;max-width:78rem;margin:1.5rem auto;padding:0 1rem}\
.shell aside{position:sticky;top:1rem;align-self:start}.shell main.wide{max-width:none;margin:0}\
.side a{display:block;padding:.4rem .7rem;border-radius:8px;color:#1d2330;text-decoration:none}.side a:hover{background:#e9edf5}\
.side a[aria-current=page],.switcher a[aria-current=page]{background:#dfe7ff;font-weight:600}\
.switcher{background:#fff;border-radius:10px;padding:.6rem .8rem;margin-bottom:1rem;box-shadow:0 1px 3px rgba(0,0,0,.08)}.switcher summary{cursor:pointer;font-weight:600}\
.small{font-size:.8rem}.row{display:flex;flex-wrap:wrap;gap:.75rem;align-items:end}.row>div{flex:1 1 10rem}.row button{margin-top:0}\
form.inline{display:inline}td form.inline+form.inline{margin-left:.35rem}fieldset{border:1px solid #e3e6eb;border-radius:8px;margin:.75rem 0;padding:.5rem 1rem}\
fieldset label{display:inline;font-weight:400;margin:0}.check{display:block;padding:.15rem 0}.check input{width:auto;margin-right:.4rem}.check label{display:inline;font-weight:400;margin:0}\
.bar{background:#e7e9ee;border-radius:6px;height:.75rem;overflow:hidden;max-width:24rem}.bar>span{display:block;height:100%;background:#2752d8}.bar>span.full{background:#b42318}\
.chart{display:flex;align-items:flex-end;gap:2px;height:8rem;border-bottom:1px solid #c5cad3;margin:1rem 0}.chart>span{flex:1;background:#2752d8;min-height:1px}\
.badge{display:inline-block;padding:.1rem .5rem;border-radius:99px;background:#e7e9ee;font-size:.8rem}.badge.off{background:#fdecec;color:#8a1c1c}\
.sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}td select{width:auto;min-width:9rem}\
.picker{display:grid;grid-template-columns:repeat(auto-fill,minmax(21rem,1fr));gap:0 1rem}.chart-axis{display:flex;justify-content:space-between}\
@media (max-width:48rem){.shell{grid-template-columns:1fr}.shell aside{position:static}}";

/// A whole HTML document around `body`.
pub fn document(status: StatusCode, title: &str, body: Markup) -> Response {
    let html = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { (title) " · Atrium" }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    };
    (status, Html(html.into_string())).into_response()
}

/// A whole page with one centred card.
pub fn page(status: StatusCode, title: &str, body: Markup) -> Response {
    document(status, title, html! { main { (body) } })
}

/// An error page with the same message the API would give.
pub fn error_page(e: &crate::services::Error) -> Response {
    error_page_back(e, None)
}

/// An error page with the API's message and, when given, a link back to where the user was.
pub fn error_page_back(e: &crate::services::Error, back: Option<&str>) -> Response {
    page(
        e.status(),
        "Something went wrong",
        html! {
            h1 { "That did not work" }
            p.error role="alert" { (e.to_string()) }
            @if let Some(b) = back {
                p { a href=(b) { "Back" } }
            }
        },
    )
}

/// The pre-session CSRF cookie: `__Host-` prefixed (so neither a sibling subdomain nor plain HTTP
/// can plant it) when users reach us over https.
fn csrf_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-atrium_csrf"
    } else {
        CSRF_COOKIE
    }
}

/// The MAC of a CSRF token: HMAC-SHA256 under a key derived from the installation's signing seed
/// (every process sharing the database derives the same), over what the token is bound to and
/// its nonce; 128 bits in hex.
fn csrf_mac(app: &crate::app::App, binding: &str, nonce: &str) -> String {
    use hmac::Mac;
    use sha2::Digest;
    let mut k = sha2::Sha256::new();
    k.update(b"atrium/csrf/v1");
    k.update(app.audit_key.to_bytes());
    // HMAC accepts a key of any length; a 32-byte key cannot fail.
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&k.finalize()) else {
        return String::new();
    };
    mac.update(binding.as_bytes());
    mac.update(b"\n");
    mac.update(nonce.as_bytes());
    crate::services::credentials::hex_bytes(&mac.finalize().into_bytes()[..16])
}

/// Prefect's CSRF protocol, for the Prefect UI Atrium serves (`…/csrf-token?client=C`, then the
/// `Prefect-Csrf-Token` and `Prefect-Csrf-Client` headers on every write): a token bound to the
/// session (by its id's hash), the UI's client id and its expiry (µs), as `{expiry}.{mac}` — any
/// server sharing the database verifies it, nothing is stored.
pub(crate) fn prefect_csrf_token(
    app: &crate::app::App,
    session_hash: &str,
    client: &str,
    expires_us: i64,
) -> String {
    let nonce = expires_us.to_string();
    let mac = csrf_mac(app, &format!("prefect-ui:{session_hash}:{client}"), &nonce);
    format!("{nonce}.{mac}")
}

/// True when `token` is a [`prefect_csrf_token`] of this session and client that has not expired.
/// Compared in constant time.
pub(crate) fn prefect_csrf_ok(
    app: &crate::app::App,
    session_hash: &str,
    client: &str,
    token: &str,
) -> bool {
    let Some(expires) = token
        .split_once('.')
        .and_then(|(e, _)| e.parse::<i64>().ok())
    else {
        return false;
    };
    let want = prefect_csrf_token(app, session_hash, client, expires);
    expires > app.now().timestamp_micros()
        && want.len() == token.len()
        && subtle::ConstantTimeEq::ct_eq(want.as_bytes(), token.as_bytes()).into()
}

fn csrf_token(app: &crate::app::App, binding: &str) -> String {
    let nonce = random_base62(22);
    let mac = csrf_mac(app, binding, &nonce);
    format!("{nonce}.{mac}")
}

/// What a request's forms are bound to: its session when it carries a session cookie (signed in,
/// or a stale session), else its pre-session CSRF cookie.
fn csrf_binding(app: &crate::app::App, headers: &HeaderMap) -> Option<String> {
    let cookies = || {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
    };
    if let Some((_, sid)) = cookies().find(|(k, _)| {
        *k == crate::http::extract::SESSION_COOKIE
            || *k == crate::http::extract::SECURE_SESSION_COOKIE
    }) {
        return Some(format!(
            "s:{}",
            crate::services::credentials::sha256_hex(sid)
        ));
    }
    let name = csrf_cookie_name(app.config.secure_cookies());
    cookies()
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| format!("c:{v}"))
}

/// The CSRF token for the forms of a signed-in page: bound to the caller's session, so a token
/// is worthless with any other session and no cookie can stand in for it.
pub fn session_csrf(app: &crate::app::App, p: &crate::authz::Principal) -> String {
    match &p.credential {
        crate::authz::Credential::Session { id_hash } => csrf_token(app, &format!("s:{id_hash}")),
        // Pages are only rendered for sessions; a token bound to nothing verifies never.
        _ => csrf_token(app, "none"),
    }
}

/// The CSRF token for the forms of a page answering a request that may have no session (sign-in,
/// sign-up, setup, invitations), and the cookie to set with it: bound to the request's session if
/// it has one, else to a fresh pre-session cookie.
pub fn new_csrf(app: &crate::app::App, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    if let Some(b) = csrf_binding(app, headers).filter(|b| b.starts_with("s:")) {
        return (csrf_token(app, &b), None);
    }
    let value = random_base62(32);
    let secure = app.config.secure_cookies();
    let cookie = format!(
        "{}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        csrf_cookie_name(secure),
        if secure { "; Secure" } else { "" }
    );
    (
        csrf_token(app, &format!("c:{value}")),
        HeaderValue::from_str(&cookie).ok(),
    )
}

/// The refusal of a form whose CSRF token does not verify (one message everywhere), or `None`
/// when it does.
pub fn refuse_forged(
    app: &crate::app::App,
    headers: &HeaderMap,
    form_token: &str,
) -> Option<Response> {
    (!csrf_ok(app, headers, form_token)).then(|| {
        error_page(&crate::services::Error::Forbidden(
            "the form expired or came from another site; reload the page and try again".into(),
        ))
    })
}

/// True when the form's token was minted for what this request is bound to (its session, else
/// its pre-session cookie). Compared in constant time.
pub fn csrf_ok(app: &crate::app::App, headers: &HeaderMap, form_token: &str) -> bool {
    let Some(binding) = csrf_binding(app, headers) else {
        return false;
    };
    let Some((nonce, mac)) = form_token.split_once('.') else {
        return false;
    };
    let want = csrf_mac(app, &binding, nonce);
    !nonce.is_empty()
        && want.len() == mac.len()
        && subtle::ConstantTimeEq::ct_eq(want.as_bytes(), mac.as_bytes()).into()
}

/// "in 3 days", "2 hours ago": how far an instant is from now, roughly.
pub fn relative(t: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> String {
    let d = t - now;
    let secs = d.num_seconds().abs();
    if secs < 45 {
        return "just now".into();
    }
    let amount = match secs {
        s if s < 90 => "a minute".to_string(),
        s if s < 90 * 60 => format!("{} minutes", s / 60),
        s if s < 36 * 3600 => format!("{} hours", s / 3600),
        s => format!("{} days", s / 86_400),
    };
    if d.num_seconds() >= 0 {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

/// A table cell for an expiry: "never", the instant with how far it is, or that it has passed
/// (an expired grant or membership no longer counts even before the sweeper removes it).
pub fn expiry_cell(
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
) -> Markup {
    match expires_at {
        None => html! { td { "never" } },
        Some(t) if t <= now => html! {
            td.expired {
                time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M UTC")) }
                " — expired " (relative(t, now)) ", no longer counts"
            }
        },
        Some(t) => html! {
            td {
                time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M UTC")) }
                " (" (relative(t, now)) ")"
            }
        },
    }
}

/// The notice showing a newly made key once, with a copy button (script-free pages show the key
/// as selectable text).
pub fn shown_key(title: &str, key: &str) -> Markup {
    html! {
        section.notice role="status" {
            h2 { (title) }
            p { "Copy the key now: it is not shown again." }
            p { code #new-key { (key) } " " button type="button" data-copy="new-key" hidden { "Copy" } }
            p.muted { "Use it with " code { "prefect cloud login --key …" } " or as " code { "PREFECT_API_KEY" } "." }
        }
        (COPY_SCRIPT)
    }
}

/// "Expires after N days" from a form (empty = never) as an instant: 1 to 3650 days from now.
pub fn days_from_now(
    app: &crate::app::App,
    v: Option<&str>,
) -> crate::services::Result<Option<chrono::DateTime<chrono::Utc>>> {
    match v.map(str::trim).filter(|d| !d.is_empty()) {
        None => Ok(None),
        Some(d) => match d.parse::<i64>() {
            Ok(n) if (1..=3650).contains(&n) => Ok(Some(app.now() + chrono::Duration::days(n))),
            _ => Err(crate::services::Error::validation(
                "key expiry must be a whole number of days from 1 to 3650",
            )),
        },
    }
}

/// A labelled, required name field (`name`, 1–100 characters), empty or holding `value`.
pub fn name_input(id: &str, value: Option<&str>) -> Markup {
    html! {
        label for=(id) { "Name" }
        input id=(id) name="name" required maxlength="100" value=[value];
    }
}

/// A labelled, required handle field with the handle rules as the browser's pattern.
pub fn handle_input(id: &str) -> Markup {
    html! {
        label for=(id) { "Handle" }
        input id=(id) name="handle" required maxlength="100" pattern="[a-z0-9-]+" title="lowercase letters, digits and dashes";
    }
}

/// A labelled "expires after N days" field (`days`; empty = never), read by [`days_from_now`].
pub fn days_input(id: &str, label: &str, value: Option<&str>) -> Markup {
    html! {
        label for=(id) { (label) }
        input id=(id) name="days" type="number" min="1" max="3650" value=[value];
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// The bar at the top of signed-in pages (who is signed in, and the sign-out form), with the
/// page's CSRF token (for its other forms).
pub fn signed_in_header(app: &crate::app::App, p: &crate::authz::Principal) -> (Markup, String) {
    let csrf = session_csrf(app, p);
    (
        html! {
            header {
                span.muted { "Signed in as " (p.name) " · " a href="/me/api-keys" { "API keys" } }
                form.inline method="post" action="/logout" {
                    (csrf_field(&csrf))
                    button.secondary type="submit" { "Sign out" }
                }
            }
        },
        csrf,
    )
}

/// `<option>`s from (value, label) pairs, with `selected` chosen.
pub fn options<'a>(items: impl IntoIterator<Item = (String, &'a str)>, selected: &str) -> Markup {
    html! {
        @for (v, l) in items {
            option value=(v) selected[v == selected] { (l) }
        }
    }
}

/// A table with a caption and column headings, or `empty` (a muted line) when there are no rows.
/// An "Actions" column heading is muted (the column holds buttons, not data).
pub fn table(caption: &str, headings: &[&str], rows: &[Markup], empty: &str) -> Markup {
    html! {
        @if rows.is_empty() {
            p.muted { (empty) }
        } @else {
            table {
                caption { (caption) }
                thead { tr { @for h in headings {
                    th scope="col" { @if *h == "Actions" { span.muted { (h) } } @else { (h) } }
                } } }
                tbody { @for r in rows { (r) } }
            }
        }
    }
}
