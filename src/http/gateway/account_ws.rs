//! The account-wide event stream, `GET /api/accounts/{account_id}/events/out` (websocket): the
//! transport of `services::account_events`. After the client authenticates (header, or subprotocol
//! `prefect` and an auth frame, as on a workspace's `events/out`), Atrium opens one `events/out`
//! subscription per workspace the caller sees events in, on that workspace's upstream, passes the
//! client's filter frame to each, and merges what they send — every event marked with its
//! `account` and `workspace`, the gate re-asked for each one. Audit events of the account join
//! the stream for callers who may read the log (polled once a second from the database, so every
//! server of a scale-out sees every other's).
//!
//! A workspace whose upstream is unreachable when the client connects is left out (logged and
//! counted); an upstream that drops a subscription ends the client's stream with 1013, so the
//! client reconnects — Prefect's subscriber then asks again from its last event, losing nothing.

use super::ws::{self, Head, UpstreamSocket, POLICY, UNAVAILABLE};
use crate::app::App;
use crate::authz::Principal;
use crate::domain::{AccountId, WorkspaceId};
use crate::http::api::AccountPath;
use crate::http::extract::Path;
use crate::services::account_events::{self, AuditCursor, Sources};
use crate::services::gate::Standing;
use axum::extract::ws::{Message, WebSocket};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SelectAll, SplitSink};
use futures_util::{SinkExt, StreamExt};
use rustc_hash::FxHashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio_tungstenite::tungstenite;

/// How often the audit part of a stream is read.
const AUDIT_POLL: Duration = Duration::from_secs(1);

pub async fn handle(
    State(app): State<App>,
    Path(AccountPath {
        account_id: account,
    }): Path<AccountPath>,
    req: Request,
) -> Response {
    let (mut parts, _body) = req.into_parts();
    let head = match Head::of(&app, &parts).await {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    // With header auth, refuse before the upgrade so the client sees a plain 401/403/404.
    let sources = match &head.principal {
        Some(p) => match account_events::sources(&app, p, account).await {
            Ok(s) => Some(s),
            Err(e) => return e.into_response(),
        },
        None => None,
    };
    let upgrade = match head.upgrade(&mut parts, &app).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let mut resp = upgrade.on_upgrade(move |socket| async move {
        let _inflight = app.inflight.subscribe();
        app.metrics.websockets_open.fetch_add(1, Relaxed);
        if let Err(reason) = stream(&app, socket, account, head, sources).await {
            tracing::debug!(reason, "account event stream ended");
        }
        app.metrics.websockets_open.fetch_sub(1, Relaxed);
    });
    resp.extensions_mut()
        .insert(crate::metrics::RouteClass::GatewayWs);
    resp
}

type Sink = SplitSink<UpstreamSocket, tungstenite::Message>;

/// Opens the subscriptions of the caller's workspaces, concurrently; unreachable ones are left out.
async fn subscribe(
    app: &App,
    sources: &Sources,
) -> (
    FxHashMap<WorkspaceId, Sink>,
    SelectAll<
        futures_util::stream::BoxStream<'static, (WorkspaceId, Option<tungstenite::Message>)>,
    >,
) {
    let opened =
        futures_util::future::join_all(sources.workspaces.iter().map(|(w, u)| async move {
            (*w, ws::connect_upstream(app, u, "events/out", None).await)
        }))
        .await;
    let mut sinks = FxHashMap::default();
    let mut streams = SelectAll::new();
    for (w, opened) in opened {
        match opened {
            Ok(socket) => {
                let (sink, rx) = socket.split();
                sinks.insert(w, sink);
                // Each stream ends with `None` once, so a dropped subscription is noticed.
                let rx = rx
                    .map(move |m| (w, m.ok()))
                    .chain(futures_util::stream::once(async move { (w, None) }));
                streams.push(rx.boxed());
            }
            Err(e) => {
                app.metrics
                    .upstream_error(crate::metrics::UpstreamError::Connect);
                tracing::warn!(workspace = %w, error = %e, "account event stream: a workspace's upstream is unreachable; left out");
            }
        }
    }
    (sinks, streams)
}

async fn stream(
    app: &App,
    mut socket: WebSocket,
    account: AccountId,
    head: Head,
    sources: Option<Sources>,
) -> Result<(), &'static str> {
    let prefect = head.prefect;
    let (p, admitted) = head.principal(app, &mut socket).await?;
    let sources = match sources.filter(|_| admitted) {
        Some(s) => s,
        None => match account_events::sources(app, &p, account).await {
            Ok(s) => s,
            Err(e) => {
                ws::refuse(&mut socket, &e).await;
                return Err("refused");
            }
        },
    };
    let (mut sinks, mut streams) = subscribe(app, &sources).await;
    if prefect
        && socket
            .send(Message::Text(r#"{"type":"auth_success"}"#.into()))
            .await
            .is_err()
    {
        return Err("client gone");
    }
    let mut audit: Option<AuditCursor> = None;
    let mut reads_audit = sources.audit;
    let mut poll = tokio::time::interval(AUDIT_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ended = loop {
        tokio::select! {
            from_client = socket.recv() => {
                let Some(Ok(msg)) = from_client else { break "client gone" };
                let Message::Text(text) = msg else {
                    if matches!(msg, Message::Close(_)) { break "client closed" }
                    continue;
                };
                if reads_audit {
                    if let Some(c) = AuditCursor::from_frame(text.as_str(), app.now().timestamp_micros()) {
                        audit = Some(c);
                    }
                }
                for sink in sinks.values_mut() {
                    let _ = sink.send(tungstenite::Message::Text(text.as_str().into())).await;
                }
            }
            Some((w, msg)) = streams.next(), if !streams.is_empty() => {
                if !sinks.contains_key(&w) {
                    continue; // a workspace the caller lost: its subscription is closing
                }
                let text = match msg {
                    Some(tungstenite::Message::Text(s)) => s,
                    Some(tungstenite::Message::Close(_)) | None => {
                        ws::close(&mut socket, UNAVAILABLE, "a workspace's upstream ended its event stream; reconnect").await;
                        break "upstream closed";
                    }
                    Some(_) => continue,
                };
                match account_events::sees_workspace(app, &p, account, w) {
                    Standing::Holds => {}
                    Standing::Lacks => {
                        if let Some(mut sink) = sinks.remove(&w) {
                            let _ = sink.close().await;
                        }
                        continue;
                    }
                    Standing::Gone => {
                        ws::close(&mut socket, POLICY, "you are no longer a member of this account").await;
                        break "no longer a member";
                    }
                }
                let out = account_events::mark(text.as_str(), account, w).unwrap_or_else(|| text.to_string());
                if socket.send(Message::Text(out.into())).await.is_err() {
                    break "client gone";
                }
            }
            _ = poll.tick(), if audit.is_some() => {
                match send_audit(app, &mut socket, &p, account, &mut audit).await {
                    Ok(still) => reads_audit = still,
                    Err(reason) => break reason,
                }
            }
        }
    };
    for (_, mut sink) in sinks {
        let _ = sink.close().await;
    }
    let _ = socket.send(Message::Close(None)).await;
    Err(ended)
}

/// Sends the audit events the subscription has not had yet; `Ok(false)` when the caller may no
/// longer read the log (the audit part stops, the rest goes on).
async fn send_audit(
    app: &App,
    socket: &mut WebSocket,
    p: &Principal,
    account: AccountId,
    audit: &mut Option<AuditCursor>,
) -> Result<bool, &'static str> {
    match account_events::reads_audit(app, p, account) {
        Standing::Holds => {}
        Standing::Lacks => {
            *audit = None;
            return Ok(false);
        }
        Standing::Gone => {
            ws::close(socket, POLICY, "you are no longer a member of this account").await;
            return Err("no longer a member");
        }
    }
    let Some(cursor) = audit.as_mut() else {
        return Ok(true);
    };
    match cursor.poll(app, account).await {
        Ok(frames) => {
            for f in frames {
                socket
                    .send(Message::Text(f.into()))
                    .await
                    .map_err(|_| "client gone")?;
            }
        }
        Err(e) => tracing::warn!(error = %e, "account event stream: reading the audit log failed"),
    }
    Ok(true)
}
