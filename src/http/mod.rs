//! HTTP: the router, extractors, error mapping and the OpenAPI document. Handlers hold no SQL
//! and no permission logic.

pub mod api;
pub mod error;
pub mod extract;
pub mod gateway;
pub mod scim;
pub mod server;
pub mod ui;

use crate::app::App;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::{Json, Router};
use tower::util::MapRequest;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Request bodies above this are refused with 413 (as Prefect Cloud does).
pub const MAX_BODY: usize = 5 * 1024 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(title = "Atrium", description = "Accounts, workspaces and RBAC with a Prefect Cloud-compatible API"),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API routes with their OpenAPI description.
pub fn api_router() -> OpenApiRouter<App> {
    use api::*;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(auth::health))
        .routes(routes!(auth::ready))
        .routes(routes!(auth::signup))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(me::read_me))
        .routes(routes!(me::my_workspaces))
        .routes(routes!(me::my_scopes))
        .routes(routes!(me::has_scope))
        .routes(routes!(me::my_accounts))
        .routes(routes!(me::my_permissions))
        .routes(routes!(me::has_permission))
        .routes(routes!(me::leave_account))
        .routes(routes!(me::list_my_api_keys, me::create_my_api_key))
        .routes(routes!(me::filter_my_api_keys))
        .routes(routes!(me::delete_my_api_key))
        .routes(routes!(me::workspace_scopes))
        .routes(routes!(
            users::read_user,
            users::update_user,
            users::delete_user
        ))
        .routes(routes!(users::request_email_change))
        .routes(routes!(users::confirm_email_change))
        .routes(routes!(users::create_api_key, users::list_api_keys))
        .routes(routes!(users::read_api_key, users::delete_api_key))
        .routes(routes!(accounts::create_account))
        .routes(routes!(accounts::list_permissions))
        .routes(routes!(
            accounts::read_account,
            accounts::update_account,
            accounts::delete_account
        ))
        .routes(routes!(accounts::read_settings, accounts::update_settings))
        .routes(routes!(
            accounts::read_ip_allowlist,
            accounts::replace_ip_allowlist
        ))
        .routes(routes!(accounts::my_ip_access))
        .routes(routes!(accounts::filter_account_roles))
        .routes(routes!(accounts::read_account_role))
        .routes(routes!(memberships::filter_memberships))
        .routes(routes!(memberships::count_memberships))
        .routes(routes!(memberships::read_membership_by_user))
        .routes(routes!(
            memberships::read_membership,
            memberships::update_membership,
            memberships::delete_membership
        ))
        .routes(routes!(workspaces::create_workspace))
        .routes(routes!(workspaces::filter_workspaces))
        .routes(routes!(workspaces::count_workspaces))
        .routes(routes!(
            workspaces::read_workspace,
            workspaces::update_workspace,
            workspaces::delete_workspace
        ))
        .routes(routes!(workspaces::read_workspace_by_id))
        .routes(routes!(roles::create_role))
        .routes(routes!(roles::filter_roles))
        .routes(routes!(
            roles::read_role,
            roles::update_role,
            roles::delete_role
        ))
        .routes(routes!(
            object_acls::read_deployment_access,
            object_acls::set_deployment_access
        ))
        .routes(routes!(
            object_acls::read_work_pool_access,
            object_acls::set_work_pool_access
        ))
        .routes(routes!(
            object_acls::read_block_document_access,
            object_acls::set_block_document_access
        ))
        .routes(routes!(access::upsert_user_access))
        .routes(routes!(access::filter_user_access))
        .routes(routes!(
            access::read_user_access,
            access::delete_user_access
        ))
        .routes(routes!(events::filter_events))
        .routes(routes!(events::filter_events_next))
        .routes(routes!(events::count_events))
        .routes(routes!(events::filter_workspace_events))
        .routes(routes!(events::filter_workspace_events_next))
        .routes(routes!(events::count_workspace_events))
        .routes(routes!(events::public_key))
        .routes(routes!(events::checkpoint))
        .routes(routes!(events::verify))
        .routes(routes!(plans::usage_limits))
        .routes(routes!(plans::usage))
        .routes(routes!(plans::read_plan))
        .routes(routes!(plans::set_plan))
        .routes(routes!(invitations::create_invitations))
        .routes(routes!(invitations::filter_invitations))
        .routes(routes!(invitations::count_invitations))
        .routes(routes!(invitations::read_invitation))
        .routes(routes!(invitations::revoke_invitation))
        .routes(routes!(invitations::resend_invitation))
        .routes(routes!(invitations::create_workspace_invitations))
        .routes(routes!(invitations::filter_workspace_invitations))
        .routes(routes!(invitations::read_workspace_invitation))
        .routes(routes!(invitations::revoke_workspace_invitation))
        .routes(routes!(invitations::accept_invitation))
        .routes(routes!(invitations::reject_invitation))
        .routes(routes!(memberships::set_membership_active))
        .routes(routes!(memberships::set_memberships_active))
        .routes(routes!(memberships::download_memberships))
        .routes(routes!(service_accounts::create_bot))
        .routes(routes!(
            service_accounts::read_bot,
            service_accounts::update_bot,
            service_accounts::delete_bot
        ))
        .routes(routes!(service_accounts::filter_bots))
        .routes(routes!(service_accounts::rotate_key))
        .routes(routes!(service_accounts::read_keys))
        .routes(routes!(service_accounts::delete_key))
        .routes(routes!(service_accounts::membership_by_bot))
        .routes(routes!(access::upsert_bot_access))
        .routes(routes!(access::filter_bot_access))
        .routes(routes!(access::read_bot_access, access::delete_bot_access))
        .routes(routes!(teams::create_team))
        .routes(routes!(
            teams::read_team,
            teams::update_team,
            teams::delete_team
        ))
        .routes(routes!(teams::filter_teams))
        .routes(routes!(teams::add_members))
        .routes(routes!(teams::remove_member))
        .routes(routes!(access::upsert_team_access))
        .routes(routes!(access::filter_team_access))
        .routes(routes!(access::delete_team_access))
        .routes(routes!(sso::create_provider, sso::list_providers))
        .routes(routes!(
            sso::read_provider,
            sso::update_provider,
            sso::delete_provider
        ))
        .routes(routes!(sso::set_group_mappings, sso::group_mappings))
        .routes(routes!(sso::add_domain, sso::list_domains))
        .routes(routes!(sso::delete_domain))
        .routes(routes!(sso::verify_domain))
        .routes(routes!(
            scim_tokens::create_scim_token,
            scim_tokens::list_scim_tokens
        ))
        .routes(routes!(scim_tokens::delete_scim_token))
        .routes(routes!(teams::list_access))
        .routes(routes!(teams::explain))
        .routes(routes!(teams::what_if))
        .routes(routes!(
            gateway::set_upstream,
            gateway::read_upstream,
            gateway::delete_upstream
        ))
        .routes(routes!(gateway::rate_limit_status))
        .routes(routes!(webhooks::create_webhook))
        .routes(routes!(webhooks::filter_webhooks))
        .routes(routes!(
            webhooks::read_webhook,
            webhooks::replace_webhook,
            webhooks::patch_webhook,
            webhooks::delete_webhook
        ))
        .routes(routes!(webhooks::rotate_webhook))
        .routes(routes!(csrf::csrf_token))
}

/// The OpenAPI document (3.1), completed with the answers every route can give.
pub fn openapi() -> utoipa::openapi::OpenApi {
    complete_openapi(api_router().split_for_parts().1)
}

/// Adds to each operation the error answers the shared extractors and the gate give, so the
/// document says what the server does (Schemathesis checks it in CI): 401 on authenticated
/// routes; 403 and 404 on every account route (permissions, plan features, the IP allowlist;
/// other tenants' objects); 404 and 422 where a path names an object (a malformed id is 422);
/// 422 where there is a query or a body; 413 for bodies over 5 MiB. Primitive JSON answers
/// (`true`, a count) are declared as `application/json`, which is what `Json` sends.
fn complete_openapi(doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use serde_json::{json, Value};
    let Ok(mut v) = serde_json::to_value(&doc) else {
        return doc;
    };
    let error = |what: &str| json!({"description": what, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}});
    if let Some(paths) = v.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for op in item.values_mut() {
                let Some(op) = op.as_object_mut() else {
                    continue;
                };
                let secured = op
                    .get("security")
                    .and_then(Value::as_array)
                    .is_some_and(|s| !s.is_empty());
                let params = op
                    .get("parameters")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let in_path = params.iter().any(|p| p["in"] == "path");
                let in_query = params.iter().any(|p| p["in"] == "query");
                let body = op.contains_key("requestBody");
                // Any route naming an account or a workspace: its allowlist applies.
                let account_route =
                    path.contains("{account_id}") || path.contains("{workspace_id}");
                let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                    continue;
                };
                for r in responses.values_mut() {
                    if let Some(c) = r.get_mut("content").and_then(Value::as_object_mut) {
                        let primitive = c.get("text/plain").is_some_and(|t| {
                            matches!(
                                t["schema"]["type"].as_str(),
                                Some("boolean" | "integer" | "number")
                            )
                        });
                        if primitive {
                            if let Some(t) = c.remove("text/plain") {
                                c.insert("application/json".into(), t);
                            }
                        }
                    }
                }
                let mut add = |code: &str, what: &str, when: bool| {
                    if when && !responses.contains_key(code) {
                        responses.insert(code.into(), error(what));
                    }
                };
                add(
                    "401",
                    "Not authenticated: no key or session, or an expired one",
                    secured,
                );
                add("403", "Refused: a missing account permission, workspace scope or plan feature, or an address outside the account's IP allowlist", secured && account_route);
                add(
                    "404",
                    "Not found (objects of accounts the caller is not in are not found either)",
                    in_path || (secured && account_route),
                );
                add("413", "The body is over 5 MiB", body);
                add("422", "Invalid input: a malformed id, an unknown field, a wrong type or a value out of range", in_path || in_query || body);
            }
        }
    }
    close_request_objects(&mut v);
    serde_json::from_value(v).unwrap_or(doc)
}

/// Request bodies deny unknown fields (`#[serde(deny_unknown_fields)]`, the house rule), which
/// the derived schemas say for structs but not for the variants of tagged enums: every object
/// with properties reachable from a request body gets `additionalProperties: false` unless it
/// says otherwise.
fn close_request_objects(v: &mut serde_json::Value) {
    use serde_json::Value;
    fn refs(s: &Value, out: &mut Vec<String>) {
        match s {
            Value::Object(o) => {
                if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                    if let Some(name) = r.strip_prefix("#/components/schemas/") {
                        out.push(name.to_string());
                    }
                }
                o.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    fn close(s: &mut Value) {
        match s {
            Value::Object(o) => {
                if o.contains_key("properties") && !o.contains_key("additionalProperties") {
                    o.insert("additionalProperties".into(), Value::Bool(false));
                }
                for (k, x) in o.iter_mut() {
                    // A property's own schema is closed only if it is reached as a schema.
                    if k != "properties" {
                        close(x);
                    } else if let Some(props) = x.as_object_mut() {
                        props.values_mut().for_each(close);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(close),
            _ => {}
        }
    }
    let mut pending = Vec::new();
    if let Some(paths) = v.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            for op in item
                .as_object_mut()
                .into_iter()
                .flat_map(|o| o.values_mut())
            {
                if let Some(body) = op.get_mut("requestBody") {
                    close(body);
                    refs(body, &mut pending);
                }
            }
        }
    }
    let Some(schemas) = v
        .get_mut("components")
        .and_then(|c| c.get_mut("schemas"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let mut seen = std::collections::BTreeSet::new();
    while let Some(name) = pending.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(s) = schemas.get_mut(&name) {
            close(s);
            refs(s, &mut pending);
        }
    }
}

/// Records every response in the metrics by route class (the gateway marks its responses), and
/// attributes requests from trusted reverse proxies to the client they forwarded for.
async fn track(
    axum::extract::State(app): axum::extract::State<App>,
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let start = std::time::Instant::now();
    let default = if req.uri().path().starts_with("/api/") {
        crate::metrics::RouteClass::Api
    } else {
        crate::metrics::RouteClass::Ui
    };
    let mut req = req;
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = peer.and_then(|peer| extract::resolve_client(&app, peer, req.headers())) {
        req.extensions_mut()
            .insert(extract::ClientAddr(ip.to_string()));
    }
    let mut resp = next.run(req).await;
    let class = resp
        .extensions()
        .get::<crate::metrics::RouteClass>()
        .copied()
        .unwrap_or(default);
    app.metrics
        .request(class, resp.status().as_u16(), start.elapsed());
    if !matches!(
        class,
        crate::metrics::RouteClass::Gateway | crate::metrics::RouteClass::GatewayWs
    ) {
        security_headers(resp.headers_mut());
    }
    resp
}

/// Headers on every response of Atrium's own (the gateway relays the upstream's as they are):
/// no framing by other sites (clickjacking), no content sniffing, no `Referer` (invitation and
/// setup links carry secrets in their query), no plugins or `<base>` injection.
fn security_headers(h: &mut axum::http::HeaderMap) {
    use axum::http::{header, HeaderValue};
    for (name, value) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ),
    ] {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(axum::extract::State(app): axum::extract::State<App>) -> impl IntoResponse {
    use std::sync::atomic::Ordering::Relaxed;
    let (index_accounts, index_grants) = crate::services::gate::size(&app);
    let text = app.metrics.render(&crate::metrics::Gauges {
        index_accounts,
        index_grants,
        rate_limit_shared: app.limiter.is_shared(),
        rate_limit_fallbacks: app.limiter.fallbacks.load(Relaxed),
        jobs_leader: app.node.leading.load(Relaxed),
        nodes_live: app.node.live.load(Relaxed),
    });
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// The full router with state applied.
pub fn router(app: App) -> Router {
    let (router, doc) = api_router().split_for_parts();
    let doc = std::sync::Arc::new(complete_openapi(doc));
    router
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .merge(ui::routes::router(&app))
        .merge(scim::router())
        .route("/metrics", axum::routing::get(metrics))
        .route("/hooks/{slug}", axum::routing::any(api::webhooks::receive))
        .route(
            "/api/accounts/{account_id}/events/out",
            axum::routing::get(gateway::account_ws::handle),
        )
        .fallback(gateway::handle)
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(serde_json::json!({"detail": "method not allowed"})),
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(app.clone(), track))
        .with_state(app)
}

/// Strips one trailing slash from the path so `/workspaces/` and `/workspaces` reach the same
/// route (the reference uses both forms).
fn strip_trailing_slash(mut req: Request) -> Request {
    let raw = gateway::RawUri(req.uri().clone());
    req.extensions_mut().insert(raw);
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let new = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        if let Ok(uri) = new.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// The service to serve: the router behind path normalization.
pub type AppService = MapRequest<Router, fn(Request) -> Request>;

pub fn service(app: App) -> AppService {
    MapRequest::new(router(app), strip_trailing_slash as fn(Request) -> Request)
}
