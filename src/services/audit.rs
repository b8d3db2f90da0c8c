//! The audit log: recording events inside the transaction of the change they describe,
//! checkpoints, verification, export, queries and retention.

use crate::app::App;
use crate::authz::Principal;
use crate::domain::audit::{
    sign_checkpoint, AuditActor, AuditRecord, ChainError, ChainVerifier, Checkpoint, SYSTEM_CHAIN,
};
use crate::domain::role::AccountPermission as P;
use crate::domain::{AccountId, WorkspaceId};
use crate::services::{Error, Result};
use crate::store::{self, audit::EventQuery};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// What a service tells the audit log about a change.
pub struct NewEvent {
    /// Resource type, e.g. `workspace`, `account-membership`.
    pub resource: &'static str,
    /// Action, e.g. `created`, `updated`, `deleted`.
    pub action: &'static str,
    pub resource_uuid: Uuid,
    pub resource_name: Option<String>,
    pub workspace: Option<WorkspaceId>,
    pub payload: Value,
    /// When it happened (µs since the epoch); `None`: now.
    pub at: Option<i64>,
}

impl NewEvent {
    pub fn new(resource: &'static str, action: &'static str, id: Uuid) -> NewEvent {
        NewEvent {
            resource,
            action,
            resource_uuid: id,
            resource_name: None,
            workspace: None,
            payload: json!({}),
            at: None,
        }
    }
    pub fn name(mut self, name: impl Into<String>) -> NewEvent {
        self.resource_name = Some(name.into());
        self
    }
    pub fn workspace(mut self, w: WorkspaceId) -> NewEvent {
        self.workspace = Some(w);
        self
    }
    pub fn payload(mut self, p: Value) -> NewEvent {
        self.payload = p;
        self
    }
}

/// `{"before": {...}, "after": {...}}` with only the fields that differ (`updated` ignored).
/// Callers pass structures without secrets.
pub fn changes<T: Serialize>(before: &T, after: &T) -> Value {
    let (Ok(Value::Object(b)), Ok(Value::Object(a))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return json!({});
    };
    let mut before_out = Map::new();
    let mut after_out = Map::new();
    for (k, av) in &a {
        if k == "updated" {
            continue;
        }
        let bv = b.get(k).unwrap_or(&Value::Null);
        if bv != av {
            before_out.insert(k.clone(), bv.clone());
            after_out.insert(k.clone(), av.clone());
        }
    }
    json!({"before": before_out, "after": after_out})
}

fn actor_of(p: Option<&Principal>) -> AuditActor {
    match p {
        Some(p) => AuditActor {
            kind: if p.is_bot() {
                "service_account"
            } else if matches!(p.credential, crate::authz::Credential::Scim { .. }) {
                "scim_token"
            } else {
                "user"
            }
            .into(),
            id: Some(p.user_id.0),
            name: p.name.clone(),
        },
        None => AuditActor {
            kind: "system".into(),
            id: None,
            name: "atrium".into(),
        },
    }
}

/// Appends an event to `chain` (an account id, or the system chain) inside `tx`.
pub async fn record(
    app: &App,
    tx: &mut store::Conn,
    p: Option<&Principal>,
    chain: Uuid,
    e: NewEvent,
) -> Result<()> {
    let actor = actor_of(p);
    let mut related = Vec::new();
    if let Some(id) = actor.id {
        related.push(json!({
            "prefect.resource.id": format!("prefect-cloud.user.{id}"),
            "prefect.resource.role": "actor",
            "prefect.resource.name": actor.name,
        }));
    }
    if chain != SYSTEM_CHAIN {
        related.push(json!({
            "prefect.resource.id": format!("prefect-cloud.account.{chain}"),
            "prefect.resource.role": "account",
        }));
    }
    if let Some(w) = e.workspace {
        related.push(json!({
            "prefect.resource.id": format!("prefect-cloud.workspace.{w}"),
            "prefect.resource.role": "workspace",
        }));
    }
    let rec = AuditRecord {
        account: chain,
        seq: 0,
        id: Uuid::new_v4(),
        occurred: e.at.unwrap_or_else(|| app.now().timestamp_micros()),
        event: format!("prefect-cloud.{}.{}", e.resource, e.action),
        workspace: e.workspace.map(|w| w.0),
        actor,
        resource_id: format!("prefect-cloud.{}.{}", e.resource, e.resource_uuid),
        resource_name: e.resource_name,
        related: Value::Array(related),
        payload: e.payload,
        ip: p.and_then(|p| p.ip.clone()),
        user_agent: p.and_then(|p| p.user_agent.clone()),
        prev_hash: String::new(),
        hash: String::new(),
    };
    store::audit::append(&app.store, tx, rec).await?;
    Ok(())
}

/// Records that `p` was refused `what` in `account` (queued for the refusal writer: see
/// [`Refusals`]).
pub fn record_denial(
    app: &App,
    p: &Principal,
    account: AccountId,
    what: &str,
    workspace: Option<WorkspaceId>,
) {
    let mut e =
        NewEvent::new("request", "access-denied", p.user_id.0).payload(json!({"missing": what}));
    e.workspace = workspace;
    record_refusal(app, p, account.0, e);
}

/// Queues the audit event of a refusal (denials, failed logins, IP-allowlist refusals) for the
/// refusal writer and returns at once. The event keeps the instant of the refusal.
pub fn record_refusal(app: &App, p: &Principal, chain: Uuid, mut e: NewEvent) {
    e.at.get_or_insert_with(|| app.now().timestamp_micros());
    app.refusals.push(Refused {
        principal: p.clone(),
        chain,
        event: e,
    });
}

/// A refusal waiting for the writer.
struct Refused {
    principal: Principal,
    chain: Uuid,
    event: NewEvent,
}

/// Longest queue of unwritten refusals; beyond it refusals are counted per chain and recorded
/// as one summary event.
const REFUSAL_QUEUE: usize = 16_384;
/// Most refusals appended in one write transaction.
const REFUSAL_BATCH: usize = 512;

/// The queue between refused requests and the refusal writer (GUIDE §4: a refusal is answered at
/// once and audited outside the transaction it was decided in). A refusal may be decided while
/// the request holds the write connection (SQLite has one), so writing its event from the
/// request would wait for itself; and a flood of refusals written one transaction each would
/// queue every other account's writes behind them. The writer task appends them in batches of
/// up to [`REFUSAL_BATCH`], one transaction per batch, in order.
pub struct Refusals {
    tx: tokio::sync::mpsc::Sender<Refused>,
    rx: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<Refused>>>,
    queued: std::sync::atomic::AtomicU64,
    written: std::sync::atomic::AtomicU64,
    progress: tokio::sync::Notify,
    overflow: std::sync::Mutex<rustc_hash::FxHashMap<Uuid, u64>>,
}

impl Default for Refusals {
    fn default() -> Refusals {
        let (tx, rx) = tokio::sync::mpsc::channel(REFUSAL_QUEUE);
        Refusals {
            tx,
            rx: std::sync::Mutex::new(Some(rx)),
            queued: Default::default(),
            written: Default::default(),
            progress: Default::default(),
            overflow: Default::default(),
        }
    }
}

impl Refusals {
    fn push(&self, r: Refused) {
        use std::sync::atomic::Ordering::SeqCst;
        let chain = r.chain;
        match self.tx.try_send(r) {
            Ok(()) => {
                self.queued.fetch_add(1, SeqCst);
            }
            Err(_) => {
                *self
                    .overflow
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(chain)
                    .or_default() += 1;
            }
        }
    }
}

/// Starts the refusal writer of `app` (once; `App::new` calls it). The writer holds the app
/// weakly and ends when the app is dropped.
pub fn start_refusal_writer(app: &App) {
    let Some(mut rx) = app
        .refusals
        .rx
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    else {
        return;
    };
    let weak = app.downgrade();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(REFUSAL_BATCH);
        while rx.recv_many(&mut batch, REFUSAL_BATCH).await > 0 {
            let Some(app) = crate::app::App::upgrade(&weak) else {
                return;
            };
            let n = batch.len() as u64;
            if let Err(err) = write_refusals(&app, &mut batch).await {
                tracing::warn!(error = %err, refusals = n, "recording refusals in the audit log failed");
            }
            batch.clear();
            app.refusals
                .written
                .fetch_add(n, std::sync::atomic::Ordering::SeqCst);
            app.refusals.progress.notify_waiters();
        }
    });
}

async fn write_refusals(app: &App, batch: &mut Vec<Refused>) -> Result<()> {
    let overflow = std::mem::take(
        &mut *app
            .refusals
            .overflow
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    );
    // One order of audit heads across writers (several servers share PostgreSQL): by chain,
    // keeping each chain's refusals in their order.
    batch.sort_by_key(|r| r.chain);
    let mut tx = crate::services::unit::Unit::begin(app).await?;
    for r in batch.drain(..) {
        record(app, &mut tx, Some(&r.principal), r.chain, r.event).await?;
    }
    for (chain, n) in overflow {
        tracing::warn!(chain = %chain, refusals = n, "refusal queue full: refusals recorded as a count");
        let e = NewEvent::new("request", "access-denied.uncounted", chain)
            .payload(json!({"refusals": n, "why": "more refusals than the audit log's queue holds; recorded as a count"}));
        record(app, &mut tx, None, chain, e).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Waits (at most 5 s) until every refusal queued before the call is in the audit log. Readers of
/// the audit log call it first, so a refusal is visible to the next read of the same server.
/// Never call it while holding a write transaction.
pub async fn flush_refusals(app: &App) {
    use std::sync::atomic::Ordering::SeqCst;
    let target = app.refusals.queued.load(SeqCst);
    let wait = async {
        loop {
            let next = app.refusals.progress.notified();
            if app.refusals.written.load(SeqCst) >= target {
                return;
            }
            next.await;
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), wait).await;
}

// ---- checkpoints, verification, export ----

/// Signs the chain's current head (no-op when the chain is empty or already checkpointed there).
pub async fn checkpoint(app: &App, chain: Uuid) -> Result<Option<Checkpoint>> {
    let mut tx = crate::services::unit::Unit::begin(app).await?;
    let Some((seq, hash)) = store::audit::find_head(&mut tx, chain).await? else {
        return Ok(None);
    };
    if seq == 0 {
        return Ok(None);
    }
    let cp = sign_checkpoint(
        &app.audit_key,
        chain,
        seq,
        hash,
        app.now().timestamp_micros(),
    );
    store::audit::insert_checkpoint(&mut tx, &cp).await?;
    tx.commit().await?;
    Ok(Some(cp))
}

/// Checkpoints every chain whose head moved since its last checkpoint.
pub async fn checkpoint_all(app: &App) -> Result<usize> {
    let heads = {
        let mut c = app.store.reader().await?;
        store::audit::find_heads(&mut c).await?
    };
    let mut n = 0;
    for (chain, seq, _) in heads {
        let last = {
            let mut c = app.store.reader().await?;
            store::audit::find_checkpoints(&mut c, chain)
                .await?
                .last()
                .map(|cp| cp.seq)
        };
        if seq > 0 && last != Some(seq) && checkpoint(app, chain).await?.is_some() {
            n += 1;
        }
    }
    Ok(n)
}

/// The result of verifying one chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChainReport {
    pub account: Uuid,
    pub events: usize,
    pub checkpoints: usize,
    /// The first problem found, if any.
    pub error: Option<String>,
}

const BATCH: i64 = 5_000;

/// Recomputes one chain and checks its checkpoints, in batches.
pub async fn verify_chain(app: &App, chain: Uuid) -> Result<ChainReport> {
    let mut c = app.store.reader().await?;
    let checkpoints = store::audit::find_checkpoints(&mut c, chain).await?;
    let n_cp = checkpoints.len();
    let mut v = ChainVerifier::new(checkpoints, &app.audit_key.verifying_key());
    let mut after = 0;
    let mut error: Option<ChainError> = None;
    'outer: loop {
        let batch = store::audit::find_chain(&mut c, chain, after, BATCH).await?;
        if batch.is_empty() {
            break;
        }
        for e in &batch {
            if let Err(err) = v.feed(e) {
                error = Some(err);
                break 'outer;
            }
        }
        after = batch.last().map_or(after, |e| e.seq);
    }
    let events = v.seen();
    if error.is_none() {
        error = v.finish().err();
    }
    Ok(ChainReport {
        account: chain,
        events,
        checkpoints: n_cp,
        error: error.map(|e| e.to_string()),
    })
}

/// Verifies every chain (or one account's).
pub async fn verify_all(app: &App, only: Option<Uuid>) -> Result<Vec<ChainReport>> {
    let chains: Vec<Uuid> = match only {
        Some(a) => vec![a],
        None => {
            let mut c = app.store.reader().await?;
            store::audit::find_heads(&mut c)
                .await?
                .into_iter()
                .map(|h| h.0)
                .collect()
        }
    };
    let mut out = Vec::new();
    for chain in chains {
        out.push(verify_chain(app, chain).await?);
    }
    Ok(out)
}

/// One line of an export file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    Event(Box<AuditRecord>),
    Checkpoint(Checkpoint),
}

/// Writes a chain as JSON Lines: every checkpoint, then the events (from `since`, µs, if given —
/// a partial export verifies only when a checkpoint vouches for its first event).
pub async fn export(
    app: &App,
    chain: Uuid,
    since: Option<i64>,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<usize> {
    let mut c = app.store.reader().await?;
    let mut checkpoints = store::audit::find_checkpoints(&mut c, chain).await?;
    let mut n = 0;
    let mut after = 0;
    let mut wrote_first = false;
    loop {
        let batch = store::audit::find_chain(&mut c, chain, after, BATCH).await?;
        if batch.is_empty() {
            break;
        }
        for e in &batch {
            if since.is_some_and(|s| e.occurred < s) {
                continue;
            }
            if !wrote_first {
                // A checkpoint just before the first exported event lets the export verify alone.
                if e.seq > 1 && !checkpoints.iter().any(|cp| cp.seq == e.seq - 1) {
                    let cp = sign_checkpoint(
                        &app.audit_key,
                        chain,
                        e.seq - 1,
                        e.prev_hash.clone(),
                        app.now().timestamp_micros(),
                    );
                    let mut tx = crate::services::unit::Unit::begin(app).await?;
                    store::audit::insert_checkpoint(&mut tx, &cp).await?;
                    tx.commit().await?;
                    checkpoints.push(cp);
                }
                for cp in &checkpoints {
                    serde_json::to_writer(&mut *out, &ExportLine::Checkpoint(cp.clone()))?;
                    out.write_all(b"\n")?;
                }
                wrote_first = true;
            }
            serde_json::to_writer(&mut *out, &ExportLine::Event(Box::new(e.clone())))?;
            out.write_all(b"\n")?;
            n += 1;
        }
        after = batch.last().map_or(after, |e| e.seq);
    }
    if !wrote_first {
        for cp in &checkpoints {
            serde_json::to_writer(&mut *out, &ExportLine::Checkpoint(cp.clone()))?;
            out.write_all(b"\n")?;
        }
    }
    Ok(n)
}

/// Verifies an export file offline with a public key: (chains, events) or the first problem.
pub fn verify_export(
    text: &str,
    key: &ed25519_dalek::VerifyingKey,
) -> std::result::Result<(usize, usize), String> {
    let mut events: std::collections::BTreeMap<Uuid, Vec<AuditRecord>> = Default::default();
    let mut cps: std::collections::BTreeMap<Uuid, Vec<Checkpoint>> = Default::default();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        match serde_json::from_str::<ExportLine>(line)
            .map_err(|e| format!("line {}: {e}", i + 1))?
        {
            ExportLine::Event(e) => events.entry(e.account).or_default().push(*e),
            ExportLine::Checkpoint(cp) => cps.entry(cp.account).or_default().push(cp),
        }
    }
    let mut total = 0;
    let chains: std::collections::BTreeSet<Uuid> =
        events.keys().chain(cps.keys()).copied().collect();
    for chain in &chains {
        let evs = events.remove(chain).unwrap_or_default();
        let checkpoints = cps.remove(chain).unwrap_or_default();
        let mut v = ChainVerifier::new(checkpoints, key);
        for e in &evs {
            v.feed(e).map_err(|err| format!("account {chain}: {err}"))?;
        }
        v.finish()
            .map_err(|err| format!("account {chain}: {err}"))?;
        total += evs.len();
    }
    Ok((chains.len(), total))
}

/// Deletes events older than `days` in every chain, after a signed checkpoint at the cut so what
/// remains still verifies. Returns events deleted.
pub async fn prune(app: &App, chain: Uuid, days: i64) -> Result<u64> {
    let cutoff = (app.now() - chrono::Duration::days(days)).timestamp_micros();
    let mut tx = crate::services::unit::Unit::begin(app).await?;
    let Some((seq, hash)) = store::audit::find_last_before(&mut tx, chain, cutoff).await? else {
        return Ok(0);
    };
    let cp = sign_checkpoint(
        &app.audit_key,
        chain,
        seq,
        hash,
        app.now().timestamp_micros(),
    );
    store::audit::insert_checkpoint(&mut tx, &cp).await?;
    let n = store::audit::delete_through(&mut tx, chain, seq).await?;
    tx.commit().await?;
    Ok(n)
}

/// Applies every chain's retention: accounts keep `audit_log_retention_days` of their plan; the
/// system chain keeps the longest of them.
pub async fn prune_all(app: &App) -> Result<u64> {
    let heads = {
        let mut c = app.store.reader().await?;
        store::audit::find_heads(&mut c).await?
    };
    let mut days = std::collections::HashMap::new();
    {
        let mut c = app.store.reader().await?;
        for (chain, _, _) in &heads {
            if let Some(row) = store::accounts::find_account(&mut c, AccountId(*chain)).await? {
                days.insert(
                    *chain,
                    crate::services::plans::entitlements(app, &row).audit_log_retention_days,
                );
            }
        }
    }
    let longest = days.values().copied().max().unwrap_or(365).max(365);
    let mut n = 0;
    for (chain, _, _) in heads {
        // Chains of deleted accounts and the system chain keep the longest retention.
        let keep = days.get(&chain).copied().unwrap_or(longest);
        n += prune(app, chain, keep).await?;
    }
    Ok(n)
}

// ---- queries ----

/// `{since, until}` in the OSS EventFilter shape.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OccurredFilter {
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventNameFilter {
    #[serde(default)]
    pub prefix: Vec<String>,
    #[serde(default)]
    pub name: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdFilter {
    #[serde(default)]
    pub id: Vec<String>,
}

/// The filter of `POST …/events/filter` (a subset of Prefect's EventFilter plus actor/workspace).
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    pub occurred: Option<OccurredFilter>,
    pub event: Option<EventNameFilter>,
    pub resource: Option<IdFilter>,
    /// Actor user ids.
    pub actor: Option<IdFilter>,
    /// Workspace ids.
    pub workspace: Option<IdFilter>,
}

/// `POST …/events/filter` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterEvents {
    /// Page size (default 50, at most 200).
    #[schema(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    pub filter: Option<EventFilter>,
}

/// An event as the API shows it (Prefect's event shape plus the chain fields).
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub id: Uuid,
    pub occurred: chrono::DateTime<chrono::Utc>,
    pub received: chrono::DateTime<chrono::Utc>,
    pub event: String,
    #[schema(value_type = Object)]
    pub resource: Value,
    #[schema(value_type = Vec<Object>)]
    pub related: Value,
    #[schema(value_type = Object)]
    pub payload: Value,
    pub follows: Option<Uuid>,
    pub account: Uuid,
    pub workspace: Option<Uuid>,
    #[schema(value_type = Object)]
    pub actor: Value,
    #[schema(value_type = Object)]
    pub client: Value,
    pub seq: i64,
    pub hash: String,
    pub prev_hash: String,
}

fn view(e: AuditRecord) -> EventView {
    let t = crate::store::time(e.occurred);
    let mut resource = json!({"prefect.resource.id": e.resource_id});
    if let Some(n) = &e.resource_name {
        resource["prefect.resource.name"] = json!(n);
    }
    EventView {
        id: e.id,
        occurred: t,
        received: t,
        event: e.event,
        resource,
        related: e.related,
        payload: e.payload,
        follows: None,
        account: e.account,
        workspace: e.workspace,
        actor: json!({"type": e.actor.kind, "id": e.actor.id, "name": e.actor.name}),
        client: json!({"ip": e.ip, "user_agent": e.user_agent}),
        seq: e.seq,
        hash: e.hash,
        prev_hash: e.prev_hash,
    }
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<EventView>,
    /// Matching events, counted up to 10,000.
    pub total: i64,
    pub next_page: Option<String>,
}

/// What a page token carries: the query and where the previous page ended.
#[derive(Serialize, Deserialize)]
struct PageToken {
    f: EventFilter,
    w: Option<Uuid>,
    l: i64,
    o: i64,
    s: i64,
}

const MAX_WINDOW_DAYS: i64 = 14;
const COUNT_CAP: i64 = 10_000;

fn to_query(
    f: &EventFilter,
    workspace: Option<WorkspaceId>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<EventQuery> {
    let occurred = f.occurred.as_ref();
    let until = occurred.and_then(|o| o.until).unwrap_or(now);
    let since = occurred
        .and_then(|o| o.since)
        .unwrap_or(until - chrono::Duration::days(MAX_WINDOW_DAYS));
    if since > until {
        return Err(Error::validation("occurred.since is after occurred.until"));
    }
    if until - since > chrono::Duration::days(MAX_WINDOW_DAYS) {
        return Err(Error::validation(format!(
            "event queries cover at most {MAX_WINDOW_DAYS} days"
        )));
    }
    let mut q = EventQuery {
        since: Some(since.timestamp_micros()),
        until: Some(until.timestamp_micros()),
        event_prefixes: f
            .event
            .as_ref()
            .map(|e| e.prefix.clone())
            .unwrap_or_default(),
        event_names: f.event.as_ref().map(|e| e.name.clone()).unwrap_or_default(),
        resource_ids: f
            .resource
            .as_ref()
            .map(|r| r.id.clone())
            .unwrap_or_default(),
        actor_ids: f.actor.as_ref().map(|a| a.id.clone()).unwrap_or_default(),
        workspace_ids: f
            .workspace
            .as_ref()
            .map(|w| w.id.clone())
            .unwrap_or_default(),
    };
    if let Some(w) = workspace {
        q.workspace_ids = vec![w.to_string()];
    }
    Ok(q)
}

async fn authorize_read(app: &App, p: &Principal, account: AccountId) -> Result<()> {
    crate::services::authorize(app, p, account, P::ReadAuditEvent).await?;
    crate::services::plans::require_feature(app, account, crate::domain::plan::Feature::AuditLog)?;
    // Refusals this server answered before this read are in the log it reads.
    flush_refusals(app).await;
    Ok(())
}

fn encode_token(t: &PageToken) -> String {
    let bytes = serde_json::to_vec(t).unwrap_or_default();
    crate::services::credentials::hex_bytes(&bytes)
}

/// True when an events query asks only for audit events: every event name or prefix in its filter
/// starts with `prefect-cloud.`, or it carries one of our page tokens.
pub fn asks_for_audit_only(body: &[u8], page_token: Option<&str>) -> bool {
    if let Some(t) = page_token {
        return decode_token(t).is_ok();
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return false;
    };
    let Some(event) = v.pointer("/filter/event") else {
        return false;
    };
    let names: Vec<&str> = ["prefix", "name"]
        .iter()
        .filter_map(|k| event.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    !names.is_empty() && names.iter().all(|n| n.starts_with("prefect-cloud."))
}

fn decode_token(s: &str) -> Result<PageToken> {
    let bytes = crate::services::credentials::unhex_bytes(s)
        .ok_or_else(|| Error::validation("invalid page token"))?;
    serde_json::from_slice(&bytes).map_err(|_| Error::validation("invalid page token"))
}

async fn page(
    app: &App,
    account: AccountId,
    workspace: Option<WorkspaceId>,
    f: EventFilter,
    limit: i64,
    before: Option<(i64, i64)>,
    base_path: &str,
) -> Result<EventPage> {
    let q = to_query(&f, workspace, app.now())?;
    let mut c = app.store.reader().await?;
    let events = store::audit::find_events(
        &mut c,
        account.0,
        &q,
        store::audit::Window::Before(before),
        limit,
    )
    .await?;
    let total = store::audit::count_events(&mut c, account.0, &q, COUNT_CAP).await?;
    let next_page = (events.len() as i64 == limit)
        .then(|| events.last())
        .flatten()
        .map(|last| {
            let token = encode_token(&PageToken {
                f,
                w: workspace.map(|w| w.0),
                l: limit,
                o: last.occurred,
                s: last.seq,
            });
            format!(
                "{}{base_path}/filter/next?page-token={token}",
                app.config.public_url
            )
        });
    Ok(EventPage {
        events: events.into_iter().map(view).collect(),
        total,
        next_page,
    })
}

/// The account's audit events after sequence number `after` (from `since`, µs, when `None`),
/// oldest first, at most `limit`: the audit part of the account-wide event stream (the caller
/// was authorized by `services::account_events`). Refusals queued on this server land with later
/// sequence numbers, so a stream polling this sees them on a later poll.
pub async fn stream_after(
    app: &App,
    account: AccountId,
    since: i64,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<EventView>> {
    let q = EventQuery {
        since: Some(since),
        ..EventQuery::default()
    };
    let mut c = app.store.reader().await?;
    let events = store::audit::find_events(
        &mut c,
        account.0,
        &q,
        store::audit::Window::After(after),
        limit,
    )
    .await?;
    Ok(events.into_iter().map(view).collect())
}

fn events_path(account: AccountId, workspace: Option<WorkspaceId>) -> String {
    match workspace {
        Some(w) => format!("/api/accounts/{account}/workspaces/{w}/events"),
        None => format!("/api/accounts/{account}/events"),
    }
}

/// The first page of matching events, newest first.
pub async fn filter_events(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: Option<WorkspaceId>,
    body: FilterEvents,
) -> Result<EventPage> {
    authorize_read(app, p, account).await?;
    if let Some(w) = workspace {
        crate::services::workspaces::read_workspace(app, p, account, w).await?;
    }
    let limit = body.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(Error::validation("limit must be between 1 and 200"));
    }
    page(
        app,
        account,
        workspace,
        body.filter.unwrap_or_default(),
        limit,
        None,
        &events_path(account, workspace),
    )
    .await
}

/// The page after a token from `next_page`.
pub async fn filter_events_next(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: Option<WorkspaceId>,
    token: &str,
) -> Result<EventPage> {
    authorize_read(app, p, account).await?;
    let t = decode_token(token)?;
    if t.w != workspace.map(|w| w.0) || !(1..=200).contains(&t.l) {
        return Err(Error::validation("the page token belongs to another query"));
    }
    page(
        app,
        account,
        workspace,
        t.f,
        t.l,
        Some((t.o, t.s)),
        &events_path(account, workspace),
    )
    .await
}

/// `POST …/events/count-by/{countable}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CountEvents {
    pub filter: Option<EventFilter>,
    /// `week`, `day`, `hour`, `minute` or `second` (for `time`/`day` countables).
    #[schema(pattern = "^(week|day|hour|minute|second)$")]
    pub time_unit: Option<String>,
    #[schema(minimum = 1, maximum = 10_000)]
    pub time_interval: Option<f64>,
}

/// One bucket of a count.
#[derive(Debug, Serialize, ToSchema)]
pub struct CountBucket {
    pub value: String,
    pub label: String,
    pub count: i64,
    pub start_time: Option<chrono::DateTime<chrono::Utc>>,
    pub end_time: Option<chrono::DateTime<chrono::Utc>>,
}

/// Counts matching events per time bucket (`time`, `day`) or per event name (`event`).
pub async fn count_events(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: Option<WorkspaceId>,
    countable: &str,
    body: CountEvents,
) -> Result<Vec<CountBucket>> {
    authorize_read(app, p, account).await?;
    if let Some(w) = workspace {
        crate::services::workspaces::read_workspace(app, p, account, w).await?;
    }
    let q = to_query(&body.filter.unwrap_or_default(), workspace, app.now())?;
    let mut c = app.store.reader().await?;
    match countable {
        "event" => Ok(store::audit::count_by_event(&mut c, account.0, &q)
            .await?
            .into_iter()
            .map(|(name, n)| CountBucket {
                value: name.clone(),
                label: name,
                count: n,
                start_time: None,
                end_time: None,
            })
            .collect()),
        "time" | "day" => {
            let unit = match (countable, body.time_unit.as_deref()) {
                ("day", None) | (_, Some("day")) => 86_400,
                (_, Some("week")) => 7 * 86_400,
                (_, Some("hour")) => 3_600,
                (_, Some("minute")) => 60,
                (_, Some("second")) => 1,
                (_, None) => 3_600,
                (_, Some(other)) => {
                    return Err(Error::validation(format!("unknown time_unit {other:?}")))
                }
            };
            let interval = body.time_interval.unwrap_or(1.0);
            if !(1.0..=10_000.0).contains(&interval) {
                return Err(Error::validation(
                    "time_interval must be between 1 and 10000",
                ));
            }
            let bucket_us = (unit as f64 * interval * 1e6) as i64;
            let buckets = (q.until.unwrap_or(0) - q.since.unwrap_or(0)) / bucket_us;
            if buckets > 10_000 {
                return Err(Error::validation(
                    "too many buckets; use a larger time_unit",
                ));
            }
            Ok(
                store::audit::count_by_time(&mut c, account.0, &q, bucket_us)
                    .await?
                    .into_iter()
                    .map(|(start, n)| {
                        let s = crate::store::time(start);
                        let e = crate::store::time(start + bucket_us);
                        CountBucket {
                            value: s.to_rfc3339(),
                            label: s.to_rfc3339(),
                            count: n,
                            start_time: Some(s),
                            end_time: Some(e),
                        }
                    })
                    .collect(),
            )
        }
        other => Err(Error::validation(format!(
            "unknown countable {other:?}: use time, day or event"
        ))),
    }
}

/// The page token inside a `next_page` URL.
pub fn page_token_of(next_page: &str) -> Option<&str> {
    next_page.split_once("page-token=").map(|(_, t)| t)
}

/// Most events one CSV export holds (the query window is at most 14 days).
pub const MAX_CSV_EVENTS: usize = 100_000;

/// Every event matching `filter` as CSV (when, event, resource, actor, workspace, id), oldest
/// last as the query returns them; cells that a spreadsheet would run as formulas are defused.
pub async fn export_csv(
    app: &App,
    p: &Principal,
    account: AccountId,
    filter: EventFilter,
) -> Result<String> {
    use crate::services::memberships::csv_cell;
    let mut out =
        String::from("occurred,event,resource_id,resource_name,actor,workspace_id,event_id\n");
    let mut page = filter_events(
        app,
        p,
        account,
        None,
        FilterEvents {
            limit: Some(200),
            filter: Some(filter),
        },
    )
    .await?;
    let mut n = 0;
    loop {
        for e in &page.events {
            out.push_str(&format!(
                "{},{},{},{},{},{},{}\n",
                e.occurred.to_rfc3339(),
                csv_cell(&e.event),
                csv_cell(e.resource["prefect.resource.id"].as_str().unwrap_or("")),
                csv_cell(e.resource["prefect.resource.name"].as_str().unwrap_or("")),
                csv_cell(e.actor["name"].as_str().unwrap_or("system")),
                e.workspace.map(|w| w.to_string()).unwrap_or_default(),
                e.id,
            ));
            n += 1;
        }
        match page.next_page.as_deref().and_then(page_token_of) {
            Some(token) if n < MAX_CSV_EVENTS => {
                page = filter_events_next(app, p, account, None, token).await?;
            }
            _ => break,
        }
    }
    Ok(out)
}

/// The public half of the checkpoint signing key.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicKey {
    pub algorithm: &'static str,
    /// Hex of the 32-byte Ed25519 public key (also each checkpoint's `key_id`).
    pub public_key: String,
}

pub fn public_key(app: &App) -> PublicKey {
    PublicKey {
        algorithm: "ed25519",
        public_key: crate::domain::audit::public_key_hex(&app.audit_key.verifying_key()),
    }
}

/// Signs the account chain's head now (`read:audit_event`).
pub async fn checkpoint_account(
    app: &App,
    p: &Principal,
    account: AccountId,
) -> Result<Option<Checkpoint>> {
    authorize_read(app, p, account).await?;
    checkpoint(app, account.0).await
}

/// Verifies the account's chain (`read:audit_event`).
pub async fn verify_account(app: &App, p: &Principal, account: AccountId) -> Result<ChainReport> {
    authorize_read(app, p, account).await?;
    verify_chain(app, account.0).await
}
