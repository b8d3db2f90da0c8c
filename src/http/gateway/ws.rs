//! Gateway websockets (`events/in`, `events/out`, `logs/out`, task and worker subscriptions).
//! Clients authenticate either with an `Authorization: bearer` header (Prefect Cloud's
//! `events/in`) or in band: subprotocol `prefect`, first frame `{"type":"auth","token":<key>}`
//! (`events/out`, `logs/out`, self-hosted-mode clients). Towards the upstream the gateway always
//! speaks subprotocol `prefect` and sends the upstream's auth string itself, so the client's key
//! never leaves Atrium. Frames sent to `events/in` count in the logs + events bucket; when it is
//! empty the relay waits (back-pressure) instead of dropping events.

use crate::app::App;
use crate::authz::Principal;
use crate::domain::gateway_routes::Need;
use crate::http::extract::{client_ip, user_agent};
use crate::services::gate::{self, Standing};
use crate::services::ratelimit::Bucket;
use crate::services::upstreams::Upstream;
use crate::services::{auth, gateway, Error};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use axum::extract::Request;
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Close codes (RFC 6455): policy violation, and "try again later".
pub(super) const POLICY: u16 = 1008;
pub(super) const UNAVAILABLE: u16 = 1013;

struct Owned {
    target_path: String,
    query: Option<String>,
}

pub async fn handle(
    app: App,
    t: gateway::Target<'_>,
    query: Option<String>,
    req: Request,
) -> Response {
    if let Err(e) = gateway::check_canonical(t.rest) {
        return e.into_response();
    }
    let (mut parts, _body) = req.into_parts();
    let head = match Head::of(&app, &parts).await {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    let owned = Owned {
        target_path: t.rest.to_string(),
        query,
    };
    let (account, workspace) = (t.account, t.workspace);
    // With header auth, refuse before the upgrade so the client sees a plain 401/403/404.
    let upstream = match &head.principal {
        Some(p) => match admit(&app, p, &t).await {
            Ok(u) => Some(u),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    let upgrade = match head.upgrade(&mut parts, &app).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    upgrade.on_upgrade(move |socket| async move {
        // A stopping server lets the websocket finish, up to its grace period.
        let _inflight = app.inflight.subscribe();
        app.metrics.websockets_open.fetch_add(1, Relaxed);
        let t = gateway::Target {
            account,
            workspace,
            rest: &owned.target_path,
        };
        if let Err(reason) = relay(&app, socket, &t, owned.query.as_deref(), head, upstream).await {
            tracing::debug!(reason, "gateway websocket ended");
        }
        app.metrics.websockets_open.fetch_sub(1, Relaxed);
    })
}

async fn admit(app: &App, p: &Principal, t: &gateway::Target<'_>) -> Result<Arc<Upstream>, Error> {
    gateway::authorize_call(app, p, t, "WS", gateway::rule_of("WS", t), None, None).await?;
    Ok(gateway::upstream(app, t)?.1)
}

/// What the head of a websocket request says: the principal of a header-authenticated client,
/// whether it speaks subprotocol `prefect` (then it authenticates in band), and its address.
pub(super) struct Head {
    pub principal: Option<Principal>,
    pub prefect: bool,
    ip: Option<String>,
    user_agent: Option<String>,
}

impl Head {
    /// Authenticates the header (401 for a bad key or session); a client with neither a header
    /// nor subprotocol `prefect` is refused (401) before the upgrade.
    pub async fn of(app: &App, parts: &Parts) -> Result<Head, Error> {
        let prefect = parts
            .headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim() == "prefect");
        let principal = super::authenticate(app, parts).await?;
        if principal.is_none() && !prefect {
            return Err(Error::Unauthenticated(
                "not authenticated: send Authorization: bearer <API key>, or use subprotocol prefect and an auth frame".into(),
            ));
        }
        Ok(Head {
            principal,
            prefect,
            ip: client_ip(parts),
            user_agent: user_agent(parts),
        })
    }

    /// The upgrade, answering with subprotocol `prefect` when the client offered it.
    pub async fn upgrade(
        &self,
        parts: &mut Parts,
        app: &App,
    ) -> Result<axum::extract::ws::WebSocketUpgrade, Response> {
        let upgrade = super::ws_upgrade(parts, app).await?;
        Ok(if self.prefect {
            upgrade.protocols(["prefect"])
        } else {
            upgrade
        })
    }

    /// After the upgrade: the caller. A `prefect`-subprotocol client sends its auth frame first
    /// (read even when the header authenticated it); its key authenticates it unless the header
    /// did. On failure the socket is closed with a policy violation and its reason.
    pub async fn principal(
        self,
        app: &App,
        socket: &mut WebSocket,
    ) -> Result<(Principal, bool), &'static str> {
        let authenticated = self.principal.is_some();
        if !self.prefect {
            return self.principal.map(|p| (p, true)).ok_or("no principal");
        }
        let Some(token) = auth_frame(socket).await else {
            close(socket, POLICY, "expected an auth frame").await;
            return Err("no auth frame");
        };
        if let Some(p) = self.principal {
            return Ok((p, authenticated));
        }
        let Some(key) = token else {
            close(socket, POLICY, "Unauthorized: an API key is required").await;
            return Err("no token");
        };
        match auth::authenticate_key(app, &key).await {
            Ok(mut p) => {
                p.ip = self.ip;
                p.user_agent = self.user_agent;
                Ok((p, false))
            }
            Err(_) => {
                close(socket, POLICY, "Unauthorized: invalid API key").await;
                Err("bad key")
            }
        }
    }
}

/// Closes a client socket after a refusal: 1013 (try again later) when no upstream is bound or
/// reachable, 1008 (policy) for anything else.
pub(super) async fn refuse(socket: &mut WebSocket, e: &Error) {
    let code = match e {
        Error::NoUpstream(_) => UNAVAILABLE,
        _ => POLICY,
    };
    close(socket, code, &e.to_string()).await;
}

pub(super) async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.chars().take(120).collect::<String>().into(),
        })))
        .await;
}

/// Reads the in-band auth frame: `{"type":"auth","token":…}`.
/// Clients ping before they authenticate (to make sure the socket is up); pings are answered by
/// the websocket layer and skipped here.
async fn auth_frame(socket: &mut WebSocket) -> Option<Option<String>> {
    let deadline = tokio::time::Instant::now() + AUTH_TIMEOUT;
    let text = loop {
        let msg = tokio::time::timeout_at(deadline, socket.recv())
            .await
            .ok()??
            .ok()?;
        match msg {
            Message::Text(text) => break text,
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Binary(_) | Message::Close(_) => return None,
        }
    };
    let v: serde_json::Value = serde_json::from_str(text.as_str()).ok()?;
    if v.get("type")?.as_str()? != "auth" {
        return None;
    }
    Some(v.get("token").and_then(|t| t.as_str()).map(str::to_owned))
}

async fn relay(
    app: &App,
    mut socket: WebSocket,
    t: &gateway::Target<'_>,
    query: Option<&str>,
    head: Head,
    upstream: Option<Arc<Upstream>>,
) -> Result<(), &'static str> {
    let prefect_protocol = head.prefect;
    let (principal, admitted) = head.principal(app, &mut socket).await?;
    let upstream = match upstream.filter(|_| admitted) {
        Some(u) => u,
        None => match admit(app, &principal, t).await {
            Ok(u) => u,
            Err(e) => {
                refuse(&mut socket, &e).await;
                return Err("refused");
            }
        },
    };
    // What the route needs, re-asked of the gate for each message the upstream sends: a member
    // removed or stripped of the scope stops receiving on the next message.
    let need = match gateway::rule_of("WS", t).map(|r| r.need) {
        Some(Need::Scope(s)) => Some(s),
        _ => None,
    };

    let mut up = match connect_upstream(app, &upstream, t.rest, query).await {
        Ok(s) => s,
        Err(e) => {
            app.metrics
                .upstream_error(crate::metrics::UpstreamError::Connect);
            tracing::warn!(upstream = %upstream.url, error = %e, "gateway websocket: upstream failed");
            close(
                &mut socket,
                UNAVAILABLE,
                "the workspace's upstream Prefect server is unreachable",
            )
            .await;
            return Err("upstream unreachable");
        }
    };
    if prefect_protocol
        && socket
            .send(Message::Text(r#"{"type":"auth_success"}"#.into()))
            .await
            .is_err()
    {
        return Err("client gone");
    }

    let counts_events = t.rest.trim_end_matches('/') == "events/in";
    loop {
        tokio::select! {
            from_client = socket.recv() => {
                let Some(Ok(msg)) = from_client else { break };
                let out = match msg {
                    Message::Text(s) => {
                        if counts_events {
                            wait_for_budget(app, t).await;
                        }
                        tungstenite::Message::Text(s.as_str().into())
                    }
                    Message::Binary(b) => tungstenite::Message::Binary(b),
                    Message::Ping(b) => tungstenite::Message::Ping(b),
                    Message::Pong(b) => tungstenite::Message::Pong(b),
                    Message::Close(_) => break,
                };
                if up.send(out).await.is_err() {
                    break;
                }
            }
            from_upstream = up.next() => {
                let Some(Ok(msg)) = from_upstream else { break };
                if gate::standing_in(app, &principal, t.account, t.workspace, need) != Standing::Holds {
                    close(&mut socket, POLICY, "your access to this workspace changed").await;
                    break;
                }
                let out = match msg {
                    tungstenite::Message::Text(s) => Message::Text(s.as_str().into()),
                    tungstenite::Message::Binary(b) => Message::Binary(b),
                    tungstenite::Message::Ping(b) => Message::Ping(b),
                    tungstenite::Message::Pong(b) => Message::Pong(b),
                    tungstenite::Message::Close(f) => {
                        let code = f.as_ref().map_or(1000, |f| u16::from(f.code));
                        let reason = f.as_ref().map_or(String::new(), |f| f.reason.to_string());
                        close(&mut socket, code, &reason).await;
                        return Ok(());
                    }
                    tungstenite::Message::Frame(_) => continue,
                };
                if socket.send(out).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = up.close(None).await;
    let _ = socket.send(Message::Close(None)).await;
    Ok(())
}

/// One event from the account's logs + events budget, waiting while it is empty.
async fn wait_for_budget(app: &App, t: &gateway::Target<'_>) {
    loop {
        let Some(g) = app.upstreams.account(&t.account.0) else {
            return;
        };
        match app
            .limiter
            .take(
                t.account.0,
                Bucket::LogsAndEvents,
                1,
                g.logs_per_minute,
                app.now().timestamp_micros(),
                app.node.live.load(Relaxed),
            )
            .await
        {
            Ok(()) => return,
            Err(r) => {
                app.metrics.rate_limited[Bucket::LogsAndEvents as usize].fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_secs(r.0.min(5))).await;
            }
        }
    }
}

pub(super) type UpstreamSocket =
    tokio_tungstenite::WebSocketStream<crate::upstream::tls::UpstreamStream>;

/// Opens the upstream websocket with subprotocol `prefect` and does the auth handshake with the
/// upstream's auth string (or `null` when it has none).
pub(super) async fn connect_upstream(
    app: &App,
    u: &Upstream,
    rest: &str,
    query: Option<&str>,
) -> anyhow::Result<UpstreamSocket> {
    // The stream is already TLS when the upstream is https: the URL gives the request its path
    // and Host only.
    let host = &u.host;
    let url = match query {
        Some(q) => format!("ws://{host}{}/{rest}?{q}", u.path),
        None => format!("ws://{host}{}/{rest}", u.path),
    };
    let mut req = url.into_client_request()?;
    req.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        axum::http::HeaderValue::from_static("prefect"),
    );
    if let Some(a) = &u.authorization {
        req.headers_mut().insert(header::AUTHORIZATION, a.clone());
    }
    let stream = crate::services::upstreams::connect_upstream(app, u).await?;
    let (mut ws, _) =
        tokio::time::timeout(AUTH_TIMEOUT, tokio_tungstenite::client_async(req, stream))
            .await
            .map_err(|_| anyhow::anyhow!("connect timed out"))??;
    let auth = serde_json::json!({"type": "auth", "token": u.auth_string});
    ws.send(tungstenite::Message::Text(auth.to_string().into()))
        .await?;
    let answer = tokio::time::timeout(AUTH_TIMEOUT, ws.next())
        .await
        .map_err(|_| anyhow::anyhow!("no auth answer"))?
        .ok_or_else(|| anyhow::anyhow!("closed during auth"))??;
    match answer {
        tungstenite::Message::Text(s) if s.as_str().contains("auth_success") => Ok(ws),
        other => anyhow::bail!("upstream refused the auth string: {other:?}"),
    }
}
