//! Extractors: the authenticated principal (bearer key or session cookie), JSON bodies and path
//! parameters whose rejections become `{"detail": …}` errors with the right status.

use crate::app::App;
use crate::authz::Principal;
use crate::services::{auth, Error};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use serde::de::DeserializeOwned;

pub const SESSION_COOKIE: &str = "atrium_session";
pub const SECURE_SESSION_COOKIE: &str = "__Host-atrium_session";

/// The caller. Missing or bad credentials → 401.
pub struct Auth(pub Principal);

/// The bearer token of the Authorization header, if any.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The session id from the cookie header, if any.
pub fn session_cookie(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE || *k == SECURE_SESSION_COOKIE)
        .map(|(_, v)| v)
}

/// A state-changing call (or a websocket handshake) authenticated by a session cookie — the
/// Prefect UI's calls — must come from our own origin and carry Prefect's CSRF headers with a
/// token Atrium minted for this session and client (`GET …/csrf-token`). API keys need neither.
pub fn check_cookie_call(app: &App, parts: &Parts, p: &Principal) -> Result<(), Error> {
    let upgrade = parts.headers.contains_key(header::UPGRADE);
    if matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) && !upgrade {
        return Ok(());
    }
    let origin_ok = parts
        .headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| {
            app.config
                .public_url
                .strip_prefix(o)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        });
    if !origin_ok {
        return Err(Error::Forbidden(
            "a call with a session cookie that changes something must come from this site's own pages".into(),
        ));
    }
    // Browsers cannot add headers to a websocket handshake; its origin is what protects it.
    if upgrade {
        return Ok(());
    }
    let crate::authz::Credential::Session { id_hash } = &p.credential else {
        return Ok(());
    };
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok());
    match (header("prefect-csrf-token"), header("prefect-csrf-client")) {
        (Some(token), Some(client))
            if crate::http::ui::prefect_csrf_ok(app, id_hash, client, token) =>
        {
            Ok(())
        }
        _ => Err(Error::Forbidden(
            "Invalid CSRF token or client identifier: a write with a session cookie needs the Prefect-Csrf-Token and Prefect-Csrf-Client headers (GET …/csrf-token?client=…)".into(),
        )),
    }
}

/// The caller of an API call: an API key, or a session (whose writes pass [`check_cookie_call`]
/// when `guard_writes`).
pub(crate) async fn caller(
    parts: &Parts,
    app: &App,
    guard_writes: bool,
) -> Result<Principal, Error> {
    let mut p = if let Some(key) = bearer(parts) {
        auth::authenticate_key(app, key).await?
    } else if let Some(sid) = session_cookie(parts) {
        let p = auth::authenticate_session(app, sid).await?;
        if guard_writes {
            check_cookie_call(app, parts, &p)?;
        }
        p
    } else {
        return Err(Error::Unauthenticated(
            "not authenticated: send Authorization: Bearer <API key> or sign in".into(),
        ));
    };
    p.ip = client_ip(parts);
    p.user_agent = user_agent(parts);
    Ok(p)
}

impl FromRequestParts<App> for Auth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        caller(parts, app, true).await.map(Auth)
    }
}

/// The caller of `POST /api/auth/logout`: ending one's own session changes nothing an attacker
/// could want, so a session cookie needs no CSRF token for it.
pub struct Leaving(pub Principal);

impl FromRequestParts<App> for Leaving {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        caller(parts, app, false).await.map(Leaving)
    }
}

/// The caller when credentials are given (and valid), else `None`.
pub struct MaybeAuth(pub Option<Principal>);

impl FromRequestParts<App> for MaybeAuth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        if bearer(parts).is_none() && session_cookie(parts).is_none() {
            return Ok(MaybeAuth(None));
        }
        Auth::from_request_parts(parts, app)
            .await
            .map(|Auth(p)| MaybeAuth(Some(p)))
    }
}

/// JSON body with our error mapping (bad JSON or unknown fields → 422, too large → 413).
pub struct Json<T>(pub T);

/// Normalizes a request body before it is deserialized: a JSON number is a number (`5.0` is the
/// integer 5 — JSON Schema's `integer` admits it, and so do Prefect's pydantic models), and no
/// string or key may hold a NUL character (PostgreSQL cannot store one; refused on both engines).
fn normalize_body(v: &mut serde_json::Value) -> Result<(), Error> {
    let nul =
        || Error::Validation("invalid request body: strings may not contain NUL characters".into());
    match v {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                // Below 2^53 every integral float is exactly its integer.
                if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
                    *n = serde_json::Number::from(f as i64);
                }
            }
        }
        serde_json::Value::String(s) if s.contains('\0') => return Err(nul()),
        serde_json::Value::Array(a) => {
            for x in a {
                normalize_body(x)?;
            }
        }
        serde_json::Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                if k.contains('\0') {
                    return Err(nul());
                }
                normalize_body(x)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A JSON body that may be absent (`POST …/filter` without a body, as the `prefect` CLI sends
/// some): an empty body or `null` is `T::default()`, anything else is read as [`Json`] reads it.
pub async fn optional_json<T: DeserializeOwned + Default, S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<T, crate::http::error::HttpError> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, crate::http::MAX_BODY)
        .await
        .map_err(|_| crate::http::error::HttpError::PayloadTooLarge)?;
    if bytes.trim_ascii().is_empty() || bytes.trim_ascii() == b"null" {
        return Ok(T::default());
    }
    let req = Request::from_parts(parts, axum::body::Body::from(bytes));
    Json::<T>::from_request(req, state).await.map(|Json(t)| t)
}

/// Refuses an escaped NUL in a path or query (PostgreSQL cannot store one).
fn refuse_nul(raw: Option<&str>, what: &str) -> Result<(), Error> {
    if raw.is_some_and(|r| r.contains("%00")) {
        return Err(Error::Validation(format!(
            "invalid {what}: NUL characters are not allowed"
        )));
    }
    Ok(())
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = crate::http::error::HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<serde_json::Value>::from_request(req, state).await {
            Ok(axum::Json(mut v)) => {
                normalize_body(&mut v)?;
                serde_path_to_error::deserialize::<_, T>(strict::Strict(v))
                    .map(Json)
                    .map_err(|e| {
                        let path = e.path().to_string();
                        let inner = e.into_inner();
                        Error::Validation(if path == "." {
                            format!("invalid request body: {inner}")
                        } else {
                            format!("invalid request body: {path}: {inner}")
                        })
                        .into()
                    })
            }
            Err(JsonRejection::BytesRejection(b))
                if b.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(crate::http::error::HttpError::PayloadTooLarge)
            }
            Err(JsonRejection::JsonDataError(e)) => Err(Error::Validation(format!(
                "invalid request body: {}",
                std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string())
            ))
            .into()),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(Error::Validation(format!(
                "request body is not valid JSON: {}",
                std::error::Error::source(&e).map_or_else(|| e.body_text(), |s| s.to_string())
            ))
            .into()),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(Error::Validation(
                "expected a JSON body with Content-Type: application/json".into(),
            )
            .into()),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(crate::http::error::HttpError::PayloadTooLarge)
            }
            Err(e) => Err(Error::Validation(e.body_text()).into()),
        }
    }
}

/// Path parameters; a malformed id → 422.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        refuse_nul(Some(parts.uri.path()), "path")?;
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e: PathRejection| {
                Error::Validation(format!("invalid path: {}", e.body_text()))
            })
    }
}

/// Query string; bad values → 422.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        refuse_nul(parts.uri.query(), "query")?;
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e: QueryRejection| {
                Error::Validation(format!("invalid query: {}", e.body_text()))
            })
    }
}

/// The client's address: the one a trusted reverse proxy forwarded for (see
/// [`forwarded_client`]), else the socket's peer when served over TCP.
pub(crate) fn client_ip(parts: &Parts) -> Option<String> {
    if let Some(ClientAddr(ip)) = parts.extensions.get::<ClientAddr>() {
        return Some(ip.clone());
    }
    parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

/// The client address resolved from a trusted proxy's `X-Forwarded-For`.
#[derive(Clone)]
pub struct ClientAddr(pub String);

/// The client address of a request from `peer` with `headers`: the peer itself, or — when the
/// installation has trusted proxies — [`forwarded_client`]. `None` when there is nothing to
/// resolve (no trusted proxies: the peer address stands). Both transports use this one function.
pub fn resolve_client(
    app: &crate::app::App,
    peer: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
) -> Option<std::net::IpAddr> {
    (!app.config.trusted_proxies.is_empty())
        .then(|| forwarded_client(peer, headers, &app.config.trusted_proxies))
}

/// The client behind trusted proxies: `X-Forwarded-For` is read from the right (the entry the
/// nearest proxy appended), skipping addresses of trusted proxies; the first address that is not
/// a trusted proxy is the client. A peer that is not a trusted proxy is the client itself, and
/// anything unparsable stops the walk (a client can only prepend entries, never replace what
/// the proxies appended).
pub fn forwarded_client(
    peer: std::net::IpAddr,
    headers: &axum::http::HeaderMap,
    trusted: &[crate::domain::ipnet::IpNetwork],
) -> std::net::IpAddr {
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    let entries = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    for entry in entries.rsplit(',') {
        let Ok(ip) = entry.trim().parse::<std::net::IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// The request's User-Agent, cut to 256 characters.
pub fn user_agent(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect())
}

/// The client's socket address when served over TCP (absent in in-process tests). Forwarded-for
/// headers are not trusted.
pub struct ClientIp(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

/// A `serde_json::Value` deserializer that only builds a struct from a JSON object. serde's
/// derived structs also accept a sequence (`[1, null]` read field by field), which no client
/// means and the OpenAPI document does not allow; Prefect's pydantic models refuse it too.
mod strict {
    use serde::de::{
        self, DeserializeSeed, Deserializer, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
        VariantAccess, Visitor,
    };
    use serde_json::{Error, Map, Value};

    pub struct Strict(pub Value);

    struct Seq(std::vec::IntoIter<Value>);
    impl<'de> SeqAccess<'de> for Seq {
        type Error = Error;
        fn next_element_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<Option<T::Value>, Error> {
            self.0
                .next()
                .map(|v| seed.deserialize(Strict(v)))
                .transpose()
        }
        fn size_hint(&self) -> Option<usize> {
            Some(self.0.len())
        }
    }

    struct Obj(serde_json::map::IntoIter, Option<Value>);
    impl<'de> MapAccess<'de> for Obj {
        type Error = Error;
        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, Error> {
            match self.0.next() {
                Some((k, v)) => {
                    self.1 = Some(v);
                    seed.deserialize(k.into_deserializer()).map(Some)
                }
                None => Ok(None),
            }
        }
        fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
            let v = self
                .1
                .take()
                .ok_or_else(|| de::Error::custom("a value without its key"))?;
            seed.deserialize(Strict(v))
        }
    }

    struct Enum(String, Option<Value>);
    impl<'de> EnumAccess<'de> for Enum {
        type Error = Error;
        type Variant = Variant;
        fn variant_seed<V: DeserializeSeed<'de>>(
            self,
            seed: V,
        ) -> Result<(V::Value, Variant), Error> {
            let tag = seed.deserialize(self.0.into_deserializer())?;
            Ok((tag, Variant(self.1)))
        }
    }
    struct Variant(Option<Value>);
    impl<'de> VariantAccess<'de> for Variant {
        type Error = Error;
        fn unit_variant(self) -> Result<(), Error> {
            match self.0 {
                None | Some(Value::Null) => Ok(()),
                Some(other) => Err(de::Error::invalid_type(
                    unexpected(&other),
                    &"a unit variant",
                )),
            }
        }
        fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
            seed.deserialize(Strict(self.0.unwrap_or(Value::Null)))
        }
        fn tuple_variant<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, Error> {
            Strict(self.0.unwrap_or(Value::Null)).deserialize_seq(v)
        }
        fn struct_variant<V: Visitor<'de>>(
            self,
            _fields: &'static [&'static str],
            v: V,
        ) -> Result<V::Value, Error> {
            Strict(self.0.unwrap_or(Value::Null)).deserialize_struct("", &[], v)
        }
    }

    fn unexpected(v: &Value) -> de::Unexpected<'_> {
        match v {
            Value::Null => de::Unexpected::Unit,
            Value::Bool(b) => de::Unexpected::Bool(*b),
            Value::Number(_) => de::Unexpected::Other("a number"),
            Value::String(s) => de::Unexpected::Str(s),
            Value::Array(_) => de::Unexpected::Seq,
            Value::Object(_) => de::Unexpected::Map,
        }
    }

    fn visit_map<'de, V: Visitor<'de>>(m: Map<String, Value>, v: V) -> Result<V::Value, Error> {
        v.visit_map(Obj(m.into_iter(), None))
    }

    impl<'de> Deserializer<'de> for Strict {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
            match self.0 {
                Value::Array(a) => v.visit_seq(Seq(a.into_iter())),
                Value::Object(m) => visit_map(m, v),
                other => other.deserialize_any(v),
            }
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _fields: &'static [&'static str],
            v: V,
        ) -> Result<V::Value, Error> {
            match self.0 {
                Value::Object(m) => visit_map(m, v),
                other => Err(de::Error::invalid_type(unexpected(&other), &"an object")),
            }
        }

        fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
            match self.0 {
                Value::Null => v.visit_none(),
                other => v.visit_some(Strict(other)),
            }
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            v: V,
        ) -> Result<V::Value, Error> {
            v.visit_newtype_struct(self)
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _variants: &'static [&'static str],
            v: V,
        ) -> Result<V::Value, Error> {
            match self.0 {
                Value::String(s) => v.visit_enum(Enum(s, None)),
                Value::Object(m) if m.len() == 1 => {
                    let Some((k, val)) = m.into_iter().next() else {
                        return Err(de::Error::custom("an empty enum object"));
                    };
                    v.visit_enum(Enum(k, Some(val)))
                }
                other => Err(de::Error::invalid_type(
                    unexpected(&other),
                    &"a string or an object with one key",
                )),
            }
        }

        fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
            match self.0 {
                Value::Array(a) => v.visit_seq(Seq(a.into_iter())),
                other => Err(de::Error::invalid_type(unexpected(&other), &"an array")),
            }
        }

        fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
            match self.0 {
                Value::Object(m) => visit_map(m, v),
                other => Err(de::Error::invalid_type(unexpected(&other), &"an object")),
            }
        }

        fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, Error> {
            self.deserialize_seq(v)
        }

        fn deserialize_tuple_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _len: usize,
            v: V,
        ) -> Result<V::Value, Error> {
            self.deserialize_seq(v)
        }

        fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
            v.visit_unit()
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf unit unit_struct identifier
        }
    }
}
