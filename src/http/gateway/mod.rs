//! The workspace gateway's transport: every request under `/api/accounts/{a}/workspaces/{w}/…`
//! that is not one of Atrium's routes lands here, is authenticated, authorized and charged by
//! `services::gateway`, and is streamed to the workspace's upstream Prefect server over a
//! keep-alive pool (one per upstream authority). Websockets are relayed by [`ws`].

pub mod account_ws;
pub mod fast;
pub mod split;
pub mod ws;

use crate::app::App;
use crate::authz::Principal;
use crate::domain::gateway_routes::{self, Charge, Need};
use crate::domain::object_acl;
use crate::http::error::HttpError;
use crate::http::extract::{bearer, session_cookie};
use crate::metrics::{RouteClass, UpstreamError};
use crate::services::upstreams::{upstream_failed, Upstream};
use crate::services::{gateway, Error};
use crate::upstream::RESPONSE_TIMEOUT;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderName, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Instant;

/// The original request URI, kept before trailing-slash normalization (the gateway forwards
/// paths exactly as sent).
#[derive(Clone)]
pub struct RawUri(pub Uri);

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the identity/forwarding headers a client must not
/// pass to the upstream.
const STRIPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "cookie",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-prefix",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
];

/// Removes hop-by-hop and identity headers in one pass (no per-name hashing or parsing).
fn strip_request_headers(h: &mut HeaderMap) {
    // Headers named by Connection are hop-by-hop too.
    let named: Vec<String> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let dropped = |n: &HeaderName| {
        let n = n.as_str();
        STRIPPED.contains(&n) || n.starts_with("x-atrium-") || named.iter().any(|c| c == n)
    };
    if !h.keys().any(dropped) {
        return;
    }
    let old = std::mem::take(h);
    let mut name: Option<HeaderName> = None;
    for (n, v) in old {
        if n.is_some() {
            name = n;
        }
        if let Some(n) = name.as_ref().filter(|n| !dropped(n)) {
            h.append(n.clone(), v);
        }
    }
}

/// Hop-by-hop response headers: never relayed from the upstream.
const RESPONSE_HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_response_headers(h: &mut HeaderMap) {
    for n in RESPONSE_HOP_BY_HOP {
        h.remove(*n);
    }
}

/// Authenticates a gateway call: bearer key, or a dashboard session (the Prefect UI's calls:
/// see `extract::check_cookie_call` for what a state-changing one must carry).
pub async fn authenticate(app: &App, parts: &Parts) -> Result<Option<Principal>, Error> {
    if bearer(parts).is_none() && session_cookie(parts).is_none() {
        return Ok(None);
    }
    crate::http::extract::caller(parts, app, true)
        .await
        .map(Some)
}

fn unauthenticated() -> Error {
    Error::Unauthenticated("not authenticated: send Authorization: Bearer <API key>".into())
}

/// The router's fallback: gateway calls, or a JSON 404. A path of Atrium's own that no route
/// took (a method it does not serve went to the method fallback already) is never forwarded.
pub async fn handle(State(app): State<App>, req: Request) -> Response {
    let raw = raw_uri(&req);
    match gateway::target(raw.path()) {
        Some(t) if !split::atrium_serves(t.rest) => relay(app, t, &raw, req).await,
        _ => Error::NotFound("not found".into()).into_response(),
    }
}

/// Hands a call that reached one of Atrium's own workspace routes to the upstream: the routes
/// Atrium shares with Prefect (`events/filter`, `events/filter/next`, `events/count-by/…`) serve
/// audit queries themselves and pass Prefect's event queries on through here.
pub async fn hand_over(app: App, req: Request) -> Response {
    let raw = raw_uri(&req);
    match gateway::target(raw.path()) {
        Some(t) => relay(app, t, &raw, req).await,
        None => Error::NotFound("not found".into()).into_response(),
    }
}

/// The URI as the client sent it (before the router's trailing-slash normalization).
fn raw_uri(req: &Request) -> Uri {
    req.extensions()
        .get::<RawUri>()
        .map_or_else(|| req.uri().clone(), |r| r.0.clone())
}

/// Forwards a gateway call (HTTP or websocket) on the general server.
async fn relay(app: App, t: gateway::Target<'_>, raw: &Uri, req: Request) -> Response {
    let is_ws = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let (class, resp) = if is_ws {
        (
            RouteClass::GatewayWs,
            ws::handle(app.clone(), t.clone(), raw.query().map(str::to_owned), req).await,
        )
    } else {
        (
            RouteClass::Gateway,
            forward(&app, &t, raw, req)
                .await
                .unwrap_or_else(IntoResponse::into_response),
        )
    };
    let mut resp = resp;
    resp.extensions_mut().insert(class);
    resp
}

/// A gateway call that passed the checks its head alone decides.
struct Call {
    pub principal: Principal,
    pub rule: Option<&'static gateway_routes::RouteRule>,
    /// The body must be read whole before authorizing: item-counted routes (charged per item),
    /// secret-bearing reads with a body, which may be rewritten, and the routes object ACLs
    /// decide on by their body (bounded by the 5 MiB limit).
    pub needs_body: bool,
}

/// The checks of a gateway call that need only its head, in the order clients see them:
/// canonical path (400), authentication (401), Content-Length rules (411, 413). Shared by both
/// transports (this module's `forward` and the [`fast`] path).
async fn begin(app: &App, t: &gateway::Target<'_>, parts: &Parts) -> Result<Call, HttpError> {
    gateway::check_canonical(t.rest)?;
    let principal = authenticate(app, parts)
        .await?
        .ok_or_else(unauthenticated)?;
    let has_body = matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
    let length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if has_body && length.is_none() {
        return Err(HttpError::LengthRequired);
    }
    if length.unwrap_or(0) > crate::http::MAX_BODY as u64 {
        return Err(HttpError::PayloadTooLarge);
    }
    let rule = gateway::rule_of(parts.method.as_str(), t);
    let needs_body = has_body
        && rule.is_some_and(|r| {
            r.charge == Charge::Items
                || r.need == Need::Secrets
                || object_acl::route(parts.method.as_str(), r.pattern)
                    .is_some_and(object_acl::AclRoute::needs_body)
        });
    Ok(Call {
        principal,
        rule,
        needs_body,
    })
}

/// Authorizes the call and charges it to the account's rate limits (`body`: the whole body when
/// [`Call::needs_body`]); answers the upstream to send it to and what to forward in place of
/// what the client sent.
async fn admit(
    app: &App,
    t: &gateway::Target<'_>,
    call: &Call,
    method: &Method,
    query: Option<&str>,
    body: Option<&[u8]>,
) -> Result<(Arc<Upstream>, gateway::Rewrite), Error> {
    let rewrite = gateway::authorize_call(
        app,
        &call.principal,
        t,
        method.as_str(),
        call.rule,
        query,
        body,
    )
    .await?;
    let (g, upstream) = gateway::upstream(app, t)?;
    let (charge, items) = match call.rule.map(|r| r.charge) {
        Some(Charge::Items) if call.needs_body => (Charge::Items, gateway::items_of(body)?),
        _ => (Charge::Api, 1),
    };
    gateway::charge(app, t.account, &g, charge, items).await?;
    Ok((upstream, rewrite))
}

/// Replaces the body headers of a call whose body the gateway rewrote.
fn set_json_body_headers(h: &mut HeaderMap, len: usize) {
    h.remove(header::CONTENT_ENCODING);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
}

/// Appends the request target on the upstream: its base path, the path below the workspace
/// exactly as sent, and the query (written in place: the fast path builds its request head in
/// one buffer).
fn write_upstream_target(
    out: &mut Vec<u8>,
    up: &Upstream,
    t: &gateway::Target<'_>,
    rule: Option<&crate::domain::gateway_routes::RouteRule>,
    query: Option<&str>,
) {
    out.extend_from_slice(up.path.as_bytes());
    out.push(b'/');
    let rest = rule.and_then(|r| r.upstream_path).unwrap_or(t.rest);
    out.extend_from_slice(rest.as_bytes());
    if let Some(q) = query {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
}

async fn forward(
    app: &App,
    t: &gateway::Target<'_>,
    raw: &Uri,
    req: Request,
) -> Result<Response, HttpError> {
    let (mut parts, body) = req.into_parts();
    let call = begin(app, t, &parts).await?;
    let (body, buffered) = if call.needs_body {
        let bytes = axum::body::to_bytes(body, crate::http::MAX_BODY)
            .await
            .map_err(|_| HttpError::PayloadTooLarge)?;
        (Body::from(bytes.clone()), Some(bytes))
    } else {
        (body, None)
    };
    let (upstream, mut rewrite) = admit(
        app,
        t,
        &call,
        &parts.method,
        raw.query(),
        buffered.as_deref(),
    )
    .await?;
    let body = match rewrite.body.take() {
        Some(b) => {
            set_json_body_headers(&mut parts.headers, b.len());
            Body::from(b)
        }
        None => body,
    };
    upstream_head(
        &mut parts,
        &upstream,
        t,
        call.rule,
        rewrite.query(raw.query()),
    )?;
    if let Some(after) = rewrite.after.take() {
        let body = axum::body::to_bytes(body, crate::http::MAX_BODY)
            .await
            .map_err(|_| HttpError::PayloadTooLarge)?;
        return filtered(app, t, &upstream, parts, body, &after).await;
    }
    let resp = send_timed(app, &upstream, Request::from_parts(parts, body)).await?;
    let (mut rparts, rbody) = resp.into_parts();
    strip_response_headers(&mut rparts.headers);
    rewrite_location(
        app,
        t,
        &upstream.authority,
        &upstream.path,
        &mut rparts.headers,
    );
    let body = Body::new(rbody.map_err(axum::Error::new));
    Ok(Response::from_parts(rparts, body))
}

/// Sends a request to the upstream, waiting at most [`RESPONSE_TIMEOUT`] for the response head
/// (then it fails as [`upstream_failed`] says) and recording the wait in the upstream latency
/// histogram. Both the streamed and the filtered path send through here.
async fn send_timed(
    app: &App,
    upstream: &Upstream,
    req: Request,
) -> Result<axum::http::Response<hyper::body::Incoming>, HttpError> {
    let started = Instant::now();
    let sent = tokio::time::timeout(
        RESPONSE_TIMEOUT,
        crate::services::upstreams::send(app, upstream, req),
    )
    .await;
    app.metrics.upstream_latency.observe(started.elapsed());
    match sent {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(upstream_failed(app, upstream, UpstreamError::Timeout, &e).into()),
    }
}

/// Turns a client's request head into the upstream's: the upstream target, then Host, the
/// upstream's credentials and the client's headers (hop-by-hop and identity headers stripped) —
/// the same bytes the fast path writes (tests/it/gateway_differential.rs compares them).
fn upstream_head(
    parts: &mut Parts,
    upstream: &Upstream,
    t: &gateway::Target<'_>,
    rule: Option<&gateway_routes::RouteRule>,
    query: Option<&str>,
) -> Result<(), Error> {
    let mut uri = Vec::with_capacity(256);
    write_upstream_target(&mut uri, upstream, t, rule, query);
    parts.uri = Uri::try_from(uri)
        .map_err(|_| Error::Malformed("path refused by the gateway: not a valid URI".into()))?;
    parts.version = axum::http::Version::HTTP_11;
    strip_request_headers(&mut parts.headers);
    let client_headers = std::mem::take(&mut parts.headers);
    if let Ok(h) = HeaderValue::from_str(&upstream.host) {
        parts.headers.insert(header::HOST, h);
    }
    if let Some(a) = &upstream.authorization {
        parts.headers.insert(header::AUTHORIZATION, a.clone());
    }
    for (name, value) in &client_headers {
        parts.headers.append(name, value.clone());
    }
    parts.extensions = Default::default();
    Ok(())
}

/// The largest upstream answer the object ACLs read whole to filter.
const MAX_FILTERED_ANSWER: usize = 64 * 1024 * 1024;

/// Sends a call whose answer the object ACLs must read (`parts`: the upstream's request head),
/// reads the answer whole and filters it (`object_acls::filter_answer`). Other answers than 200
/// are relayed as they are. Both transports end here for such calls.
async fn filtered(
    app: &App,
    t: &gateway::Target<'_>,
    upstream: &Upstream,
    mut parts: Parts,
    body: bytes::Bytes,
    after: &gateway::After,
) -> Result<Response, HttpError> {
    // The answer is parsed: ask for it uncompressed.
    parts.headers.remove(header::ACCEPT_ENCODING);
    let resp = send_timed(app, upstream, Request::from_parts(parts, Body::from(body))).await?;
    let (mut rparts, rbody) = resp.into_parts();
    strip_response_headers(&mut rparts.headers);
    rewrite_location(
        app,
        t,
        &upstream.authority,
        &upstream.path,
        &mut rparts.headers,
    );
    let read = http_body_util::Limited::new(rbody, MAX_FILTERED_ANSWER);
    let bytes = match tokio::time::timeout(RESPONSE_TIMEOUT, read.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => return Err(upstream_failed(app, upstream, UpstreamError::Other, &e).into()),
        Err(e) => return Err(upstream_failed(app, upstream, UpstreamError::Timeout, &e).into()),
    };
    if rparts.status != axum::http::StatusCode::OK {
        return Ok(Response::from_parts(rparts, Body::from(bytes)));
    }
    let out = match after {
        gateway::After::Acl(after) => {
            crate::services::object_acls::filter_answer(app, t, upstream, after, &bytes).await?
        }
        gateway::After::Redacted => b"{}".to_vec(),
    };
    rparts.headers.remove(header::CONTENT_ENCODING);
    rparts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
    Ok(Response::from_parts(rparts, Body::from(out)))
}

/// Redirects from the upstream (FastAPI adds or removes trailing slashes) point back at the
/// gateway, built from the configured public URL.
fn rewrite_location(
    app: &App,
    t: &gateway::Target<'_>,
    authority: &str,
    base: &str,
    h: &mut HeaderMap,
) {
    let Some(loc) = h.get(header::LOCATION).and_then(|v| v.to_str().ok()) else {
        return;
    };
    let Some(new) = gateway_location(app, t, authority, base, loc) else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(&new) {
        h.insert(header::LOCATION, v);
    }
}

/// The gateway URL of an upstream `Location` under the upstream's base path (`None`: it points
/// elsewhere and is relayed as it is).
fn gateway_location(
    app: &App,
    t: &gateway::Target<'_>,
    authority: &str,
    base: &str,
    loc: &str,
) -> Option<String> {
    let rest = loc
        .strip_prefix(authority)
        .unwrap_or(loc)
        .strip_prefix(base)
        .filter(|r| r.starts_with('/'))?;
    Some(format!(
        "{}/api/accounts/{}/workspaces/{}{}",
        app.config.public_url.trim_end_matches('/'),
        t.account,
        t.workspace,
        rest
    ))
}

/// Axum's extractor plumbing for the websocket path needs `Parts`; re-exported for `ws`.
pub(crate) async fn ws_upgrade(
    parts: &mut Parts,
    app: &App,
) -> Result<axum::extract::ws::WebSocketUpgrade, Response> {
    axum::extract::ws::WebSocketUpgrade::from_request_parts(parts, app)
        .await
        .map_err(IntoResponse::into_response)
}
