//! SCIM 2.0 endpoints at `/scim/v2/{account id or handle}/…`: bearer-token authentication, the
//! `application/scim+json` wire format and SCIM error bodies. Each handler calls one service
//! function (`services::scim`); no SQL and no permission logic here.

use crate::app::App;
use crate::authz::Principal;
use crate::domain::AccountId;
use crate::http::extract::ClientIp;
use crate::services::scim::{self, Change, Kind, ListQuery, ScimError};
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use serde_json::Value;

const CONTENT_TYPE: &str = "application/scim+json";

fn answer(status: StatusCode, v: &Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = answer(status, &self.body());
        if self.status == 401 {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"scim\""),
            );
        }
        r
    }
}

type Out = Result<Response, ScimError>;

/// The caller's token, checked against the account the URL names.
async fn caller(
    app: &App,
    account: &str,
    headers: &HeaderMap,
    ip: Option<&str>,
) -> Result<(AccountId, Principal), ScimError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    scim::authenticate(app, account, bearer, ip, ua).await
}

fn json_body(body: &Bytes) -> Result<Value, ScimError> {
    serde_json::from_slice::<Value>(body)
        .map_err(|e| {
            ScimError::new(
                400,
                Some("invalidSyntax"),
                format!("the body is not JSON: {e}"),
            )
        })
        .and_then(|v| {
            if v.is_object() {
                Ok(v)
            } else {
                Err(ScimError::new(
                    400,
                    Some("invalidSyntax"),
                    "the body must be a JSON object",
                ))
            }
        })
}

/// The list query, keys in any case (`startIndex`, `startindex`…).
fn list_query(raw: Option<&str>) -> ListQuery {
    let mut q = ListQuery::default();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let v = Some(v.into_owned());
        match k.to_ascii_lowercase().as_str() {
            "filter" => q.filter = v,
            "startindex" => q.start_index = v,
            "count" => q.count = v,
            "attributes" => q.attributes = v,
            "excludedattributes" => q.excluded_attributes = v,
            "sortby" => q.sort_by = v,
            "sortorder" => q.sort_order = v,
            _ => {}
        }
    }
    q
}

fn projected(v: Value, raw: Option<&str>) -> Value {
    let q = list_query(raw);
    scim::project(v, q.attributes.as_deref(), q.excluded_attributes.as_deref())
}

async fn list(
    State(app): State<App>,
    Path((account, kind)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Out {
    let kind = Kind::from_endpoint(&kind)?;
    let (a, p) = caller(&app, &account, &headers, ip.as_deref()).await?;
    let v = scim::list(&app, &p, a, kind, &list_query(raw.as_deref())).await?;
    Ok(answer(StatusCode::OK, &v))
}

/// `POST …/Users/.search`, `POST …/Groups/.search`.
async fn search(
    State(app): State<App>,
    Path((account, kind)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Out {
    let kind = Kind::from_endpoint(&kind)?;
    let (a, p) = caller(&app, &account, &headers, ip.as_deref()).await?;
    let q = ListQuery::from_search(&json_body(&body)?)?;
    let v = scim::list(&app, &p, a, kind, &q).await?;
    Ok(answer(StatusCode::OK, &v))
}

/// `POST …/.search`: Users and Groups together.
async fn search_all(
    State(app): State<App>,
    Path(account): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Out {
    let (a, p) = caller(&app, &account, &headers, ip.as_deref()).await?;
    let q = ListQuery::from_search(&json_body(&body)?)?;
    let v = scim::search_all(&app, &p, a, &q).await?;
    Ok(answer(StatusCode::OK, &v))
}

async fn create(
    State(app): State<App>,
    Path((account, kind)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Out {
    let kind = Kind::from_endpoint(&kind)?;
    let (a, p) = caller(&app, &account, &headers, ip.as_deref()).await?;
    let v = scim::create(&app, &p, a, kind, json_body(&body)?).await?;
    let v = projected(v, raw.as_deref());
    let location = v["meta"]["location"].as_str().map(str::to_string);
    let mut r = answer(StatusCode::CREATED, &v);
    if let Some(l) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        r.headers_mut().insert(header::LOCATION, l);
    }
    Ok(r)
}

async fn read(
    State(app): State<App>,
    Path((account, kind, id)): Path<(String, String, String)>,
    ClientIp(ip): ClientIp,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Out {
    let kind = Kind::from_endpoint(&kind)?;
    let (a, p) = caller(&app, &account, &headers, ip.as_deref()).await?;
    let v = scim::read(&app, &p, a, kind, &id).await?;
    Ok(answer(StatusCode::OK, &projected(v, raw.as_deref())))
}

/// `PUT` and `PATCH` of one resource.
async fn change(
    app: App,
    (account, kind, id): (String, String, String),
    ip: Option<String>,
    raw: Option<String>,
    headers: HeaderMap,
    how: Change,
    body: Bytes,
) -> Out {
    let kind = Kind::from_endpoint(&kind)?;
    let (a, p) = caller(&app, &account, &headers, ip.as_deref()).await?;
    let v = scim::change(&app, &p, a, kind, &id, how, json_body(&body)?).await?;
    Ok(answer(StatusCode::OK, &projected(v, raw.as_deref())))
}

async fn replace(
    State(app): State<App>,
    Path(path): Path<(String, String, String)>,
    ClientIp(ip): ClientIp,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Out {
    change(app, path, ip, raw, headers, Change::Replace, body).await
}

async fn patch(
    State(app): State<App>,
    Path(path): Path<(String, String, String)>,
    ClientIp(ip): ClientIp,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Out {
    change(app, path, ip, raw, headers, Change::Patch, body).await
}

async fn delete(
    State(app): State<App>,
    Path((account, kind, id)): Path<(String, String, String)>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Out {
    let kind = Kind::from_endpoint(&kind)?;
    let (a, p) = caller(&app, &account, &headers, ip.as_deref()).await?;
    scim::delete(&app, &p, a, kind, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn service_provider_config(
    State(app): State<App>,
    Path(account): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Out {
    caller(&app, &account, &headers, ip.as_deref()).await?;
    Ok(answer(StatusCode::OK, &scim::service_provider_config(&app)))
}

async fn resource_types(
    State(app): State<App>,
    Path(account): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Out {
    let (a, _) = caller(&app, &account, &headers, ip.as_deref()).await?;
    Ok(answer(
        StatusCode::OK,
        &scim::discovery_list(scim::resource_types(&app, a)),
    ))
}

async fn resource_type(
    State(app): State<App>,
    Path((account, id)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Out {
    let (a, _) = caller(&app, &account, &headers, ip.as_deref()).await?;
    one_of(scim::resource_types(&app, a), &id, "resource type")
}

async fn schemas(
    State(app): State<App>,
    Path(account): Path<String>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Out {
    let (a, _) = caller(&app, &account, &headers, ip.as_deref()).await?;
    Ok(answer(
        StatusCode::OK,
        &scim::discovery_list(scim::schemas(&app, a)),
    ))
}

async fn schema(
    State(app): State<App>,
    Path((account, id)): Path<(String, String)>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> Out {
    let (a, _) = caller(&app, &account, &headers, ip.as_deref()).await?;
    one_of(scim::schemas(&app, a), &id, "schema")
}

/// The discovery document whose `id` is `id`.
fn one_of(items: Vec<Value>, id: &str, what: &str) -> Out {
    items
        .into_iter()
        .find(|s| s["id"].as_str() == Some(id))
        .map(|s| answer(StatusCode::OK, &s))
        .ok_or_else(|| ScimError::new(404, None, format!("{what} {id:?} not found")))
}

async fn not_allowed() -> ScimError {
    ScimError::new(405, None, "method not allowed on this SCIM endpoint")
}

/// The SCIM routes.
pub fn router() -> Router<App> {
    fn read_only(h: MethodRouter<App>) -> MethodRouter<App> {
        h.post(not_allowed)
            .put(not_allowed)
            .patch(not_allowed)
            .delete(not_allowed)
    }
    Router::new()
        .route(
            "/scim/v2/{account}/ServiceProviderConfig",
            read_only(get(service_provider_config)),
        )
        .route(
            "/scim/v2/{account}/ResourceTypes",
            read_only(get(resource_types)),
        )
        .route(
            "/scim/v2/{account}/ResourceTypes/{id}",
            read_only(get(resource_type)),
        )
        .route("/scim/v2/{account}/Schemas", read_only(get(schemas)))
        .route("/scim/v2/{account}/Schemas/{id}", read_only(get(schema)))
        .route("/scim/v2/{account}/.search", post(search_all))
        .route(
            "/scim/v2/{account}/{kind}",
            get(list)
                .post(create)
                .put(not_allowed)
                .patch(not_allowed)
                .delete(not_allowed),
        )
        .route("/scim/v2/{account}/{kind}/.search", post(search))
        .route(
            "/scim/v2/{account}/{kind}/{id}",
            get(read)
                .put(replace)
                .patch(patch)
                .delete(delete)
                .post(not_allowed),
        )
}
