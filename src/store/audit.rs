//! Audit events, chain heads and checkpoints.

use super::Error;
use super::{get_opt_uuid, get_uuid, Arg, Conn, Sql};
use crate::domain::audit::{AuditActor, AuditRecord, Checkpoint, GENESIS_HASH};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

const COLS: &str = "account_id, seq, id, occurred, event, workspace_id, actor_kind, actor_id, \
     actor_name, resource_id, resource_name, related, payload, ip, user_agent, prev_hash, hash";

fn record_from(row: &AnyRow) -> Result<AuditRecord, Error> {
    let json = |col: &str| -> Result<serde_json::Value, Error> {
        let s: String = row.try_get(col)?;
        Ok(
            serde_json::from_str(&s).map_err(|e| sqlx::Error::ColumnDecode {
                index: col.into(),
                source: Box::new(e),
            })?,
        )
    };
    Ok(AuditRecord {
        account: get_uuid(row, "account_id")?,
        seq: row.try_get("seq")?,
        id: get_uuid(row, "id")?,
        occurred: row.try_get("occurred")?,
        event: row.try_get("event")?,
        workspace: get_opt_uuid(row, "workspace_id")?,
        actor: AuditActor {
            kind: row.try_get("actor_kind")?,
            id: get_opt_uuid(row, "actor_id")?,
            name: row.try_get("actor_name")?,
        },
        resource_id: row.try_get("resource_id")?,
        resource_name: row.try_get("resource_name")?,
        related: json("related")?,
        payload: json("payload")?,
        ip: row.try_get("ip")?,
        user_agent: row.try_get("user_agent")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// Appends `e` to its chain inside the caller's transaction, so the event commits or rolls back
/// with the change it records: sets `seq` and `prev_hash`, computes the hash, writes the event and
/// moves the head. `(account_id, seq)` is the primary key, so a chain cannot fork.
///
/// PostgreSQL: the head row is claimed with `UPDATE … RETURNING` (its row lock serializes the
/// chain's writers across processes), then the event is inserted and the head moved.
///
/// SQLite (one writer at a time): triggers check that an event extends the head and move the head
/// (migration 0009), and the process remembers each chain's head, so an append is usually one
/// statement whose `WHERE` re-checks the remembered head. When the head moved under us (another
/// process such as the CLI, or a rolled-back transaction) the statement inserts nothing and the
/// head is read first.
pub async fn append(
    store: &super::Store,
    c: &mut Conn,
    e: AuditRecord,
) -> Result<AuditRecord, Error> {
    match store.engine {
        super::dialect::Engine::Postgres => append_locked(c, e).await,
        super::dialect::Engine::Sqlite => append_linked(store, c, e).await,
    }
}

fn insert_event<'q>(
    sql: &'q str,
    account: &'q str,
    e: &'q AuditRecord,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query(sql)
        .bind(account)
        .bind(e.seq)
        .bind(e.id.to_string())
        .bind(e.occurred)
        .bind(&e.event)
        .bind(e.workspace.map(|w| w.to_string()))
        .bind(&e.actor.kind)
        .bind(e.actor.id.map(|a| a.to_string()))
        .bind(&e.actor.name)
        .bind(&e.resource_id)
        .bind(&e.resource_name)
        .bind(e.related.to_string())
        .bind(e.payload.to_string())
        .bind(&e.ip)
        .bind(&e.user_agent)
        .bind(&e.prev_hash)
        .bind(&e.hash)
}

const VALUES: &str = "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17";

async fn append_linked(
    store: &super::Store,
    c: &mut Conn,
    mut e: AuditRecord,
) -> Result<AuditRecord, Error> {
    let account = e.account.to_string();
    let remembered = store.audit_head(&account);
    if let Some((seq, hash)) = remembered {
        e.seq = seq + 1;
        e.prev_hash = hash;
        e.hash = e.compute_hash();
        let sql = format!(
            "INSERT INTO audit_events ({COLS}) SELECT {VALUES} \
             WHERE EXISTS (SELECT 1 FROM audit_heads WHERE account_id = $1 AND seq = $18 AND hash = $16)"
        );
        let n = insert_event(&sql, &account, &e)
            .bind(seq)
            .execute(&mut *c)
            .await?
            .rows_affected();
        if n == 1 {
            store.remember_audit_head(account, e.seq, e.hash.clone());
            return Ok(e);
        }
    }
    let head = sqlx::query("SELECT seq, hash FROM audit_heads WHERE account_id = $1")
        .bind(&account)
        .fetch_optional(&mut *c)
        .await?;
    let (seq, hash) = match head {
        Some(r) => (r.try_get::<i64, _>("seq")?, r.try_get::<String, _>("hash")?),
        None => (0, GENESIS_HASH.to_string()),
    };
    e.seq = seq + 1;
    e.prev_hash = hash;
    e.hash = e.compute_hash();
    let sql = format!("INSERT INTO audit_events ({COLS}) VALUES ({VALUES})");
    insert_event(&sql, &account, &e).execute(&mut *c).await?;
    store.remember_audit_head(account, e.seq, e.hash.clone());
    Ok(e)
}

async fn append_locked(c: &mut Conn, mut e: AuditRecord) -> Result<AuditRecord, Error> {
    let account = e.account.to_string();
    // Claim the next position and read the previous hash in one statement (it also takes the
    // head row's lock); a chain's first event creates its head.
    let claim = "UPDATE audit_heads SET seq = seq + 1 WHERE account_id = $1 RETURNING seq, hash";
    let mut head = sqlx::query(claim)
        .bind(&account)
        .fetch_optional(&mut *c)
        .await?;
    if head.is_none() {
        sqlx::query(
            "INSERT INTO audit_heads (account_id, seq, hash) VALUES ($1, 0, $2) \
             ON CONFLICT (account_id) DO NOTHING",
        )
        .bind(&account)
        .bind(GENESIS_HASH)
        .execute(&mut *c)
        .await?;
        head = sqlx::query(claim)
            .bind(&account)
            .fetch_optional(&mut *c)
            .await?;
    }
    let head = head.ok_or(sqlx::Error::RowNotFound)?;
    e.seq = head.try_get("seq")?;
    e.prev_hash = head.try_get("hash")?;
    e.hash = e.compute_hash();
    let sql = format!("INSERT INTO audit_events ({COLS}) VALUES ({VALUES})");
    insert_event(&sql, &account, &e).execute(&mut *c).await?;
    sqlx::query("UPDATE audit_heads SET hash = $2 WHERE account_id = $1")
        .bind(&account)
        .bind(&e.hash)
        .execute(&mut *c)
        .await?;
    Ok(e)
}

/// A query over one chain.
#[derive(Debug, Default, Clone)]
pub struct EventQuery {
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub event_prefixes: Vec<String>,
    pub event_names: Vec<String>,
    pub resource_ids: Vec<String>,
    pub actor_ids: Vec<String>,
    pub workspace_ids: Vec<String>,
}

fn filtered(base: &str, account: Uuid, q: &EventQuery) -> Sql {
    let mut s = Sql::new(base);
    s.push(" WHERE account_id = ?", [Arg::Text(account.to_string())]);
    if let Some(t) = q.since {
        s.push(" AND occurred >= ?", [Arg::Int(t)]);
    }
    if let Some(t) = q.until {
        s.push(" AND occurred <= ?", [Arg::Int(t)]);
    }
    if !q.event_prefixes.is_empty() {
        s.push(" AND (", []);
        for (i, p) in q.event_prefixes.iter().enumerate() {
            let escaped = p
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            let sep = if i == 0 { "" } else { " OR " };
            s.push(
                &format!("{sep}event LIKE ? ESCAPE '\\'"),
                [Arg::Text(format!("{escaped}%"))],
            );
        }
        s.push(")", []);
    }
    if !q.event_names.is_empty() {
        s.and_in("event", &q.event_names);
    }
    if !q.resource_ids.is_empty() {
        s.and_in("resource_id", &q.resource_ids);
    }
    if !q.actor_ids.is_empty() {
        s.and_in("actor_id", &q.actor_ids);
    }
    if !q.workspace_ids.is_empty() {
        s.and_in("workspace_id", &q.workspace_ids);
    }
    s
}

/// Which matching events a read returns.
pub enum Window {
    /// Newest first, before (occurred, seq) of the last event of the previous page (keyset), or
    /// from the newest.
    Before(Option<(i64, i64)>),
    /// Oldest first by sequence number, after `seq` of the account's chain (from the first when
    /// `None`): what a live subscription has not been sent yet. Uses the primary key.
    After(Option<i64>),
}

/// Matching events of `window`, at most `limit`.
pub async fn find_events(
    c: &mut Conn,
    account: Uuid,
    q: &EventQuery,
    window: Window,
    limit: i64,
) -> Result<Vec<AuditRecord>, Error> {
    let mut s = filtered(&format!("SELECT {COLS} FROM audit_events"), account, q);
    let order = match window {
        Window::Before(before) => {
            if let Some((occurred, seq)) = before {
                s.push(
                    " AND (occurred < ? OR (occurred = ? AND seq < ?))",
                    [Arg::Int(occurred), Arg::Int(occurred), Arg::Int(seq)],
                );
            }
            " ORDER BY occurred DESC, seq DESC LIMIT ?"
        }
        Window::After(after) => {
            if let Some(seq) = after {
                s.push(" AND seq > ?", [Arg::Int(seq)]);
            }
            " ORDER BY seq ASC LIMIT ?"
        }
    };
    s.push(order, [Arg::Int(limit)]);
    s.query()
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(record_from)
        .collect()
}

/// Matching events, counted up to `cap` (so a count never scans more than that).
pub async fn count_events(
    c: &mut Conn,
    account: Uuid,
    q: &EventQuery,
    cap: i64,
) -> Result<i64, Error> {
    let mut s = filtered("SELECT 1 AS one FROM audit_events", account, q);
    s.push(" LIMIT ?", [Arg::Int(cap)]);
    let inner = s.text.clone();
    let mut outer = Sql::new(&format!("SELECT COUNT(*) AS n FROM ({inner}) AS matched"));
    outer.args = s.args;
    Ok(outer.query().fetch_one(&mut *c).await?.try_get("n")?)
}

/// (bucket start µs, count) of matching events per `bucket_us`.
pub async fn count_by_time(
    c: &mut Conn,
    account: Uuid,
    q: &EventQuery,
    bucket_us: i64,
) -> Result<Vec<(i64, i64)>, Error> {
    let mut s = Sql::new("SELECT (occurred / ");
    s.push("?) * ", [Arg::Int(bucket_us)]);
    s.push(
        "? AS bucket, COUNT(*) AS n FROM audit_events",
        [Arg::Int(bucket_us)],
    );
    let f = filtered("", account, q);
    let offset = s.args.len();
    s.text.push_str(&renumber(&f.text, offset));
    s.args.extend(f.args);
    s.text.push_str(" GROUP BY bucket ORDER BY bucket");
    s.query()
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("bucket")?, r.try_get("n")?)))
        .collect()
}

/// (event name, count) of matching events.
pub async fn count_by_event(
    c: &mut Conn,
    account: Uuid,
    q: &EventQuery,
) -> Result<Vec<(String, i64)>, Error> {
    let mut s = filtered("SELECT event, COUNT(*) AS n FROM audit_events", account, q);
    s.push(" GROUP BY event ORDER BY event", []);
    s.query()
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("event")?, r.try_get("n")?)))
        .collect()
}

/// Shifts `$n` placeholders in `sql` by `by`.
fn renumber(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch == '$' {
            let mut n = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                n.push(*d);
                chars.next();
            }
            match n.parse::<usize>() {
                Ok(v) => out.push_str(&format!("${}", v + by)),
                Err(_) => out.push('$'),
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// A chain in `seq` order from `after_seq` (exclusive), for verification and export in batches.
pub async fn find_chain(
    c: &mut Conn,
    account: Uuid,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<AuditRecord>, Error> {
    sqlx::query(&format!(
        "SELECT {COLS} FROM audit_events WHERE account_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
    ))
    .bind(account.to_string())
    .bind(after_seq)
    .bind(limit)
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(record_from)
    .collect()
}

/// Every chain (account ids with a head) and its head (seq, hash).
pub async fn find_heads(c: &mut Conn) -> Result<Vec<(Uuid, i64, String)>, Error> {
    sqlx::query("SELECT account_id, seq, hash FROM audit_heads ORDER BY account_id")
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|r| {
            Ok((
                get_uuid(r, "account_id")?,
                r.try_get("seq")?,
                r.try_get("hash")?,
            ))
        })
        .collect()
}

pub async fn find_head(c: &mut Conn, account: Uuid) -> Result<Option<(i64, String)>, Error> {
    sqlx::query("SELECT seq, hash FROM audit_heads WHERE account_id = $1")
        .bind(account.to_string())
        .fetch_optional(&mut *c)
        .await?
        .map(|r| Ok((r.try_get("seq")?, r.try_get("hash")?)))
        .transpose()
}

pub async fn insert_checkpoint(c: &mut Conn, cp: &Checkpoint) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO audit_checkpoints (account_id, seq, hash, signed_at, key_id, signature) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account_id, seq) DO NOTHING",
    )
    .bind(cp.account.to_string())
    .bind(cp.seq)
    .bind(&cp.hash)
    .bind(cp.signed_at)
    .bind(&cp.key_id)
    .bind(&cp.signature)
    .execute(&mut *c)
    .await?;
    Ok(())
}

pub async fn find_checkpoints(c: &mut Conn, account: Uuid) -> Result<Vec<Checkpoint>, Error> {
    sqlx::query(
        "SELECT account_id, seq, hash, signed_at, key_id, signature FROM audit_checkpoints \
         WHERE account_id = $1 ORDER BY seq",
    )
    .bind(account.to_string())
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(|r| {
        Ok(Checkpoint {
            account: get_uuid(r, "account_id")?,
            seq: r.try_get("seq")?,
            hash: r.try_get("hash")?,
            signed_at: r.try_get("signed_at")?,
            key_id: r.try_get("key_id")?,
            signature: r.try_get("signature")?,
        })
    })
    .collect()
}

/// The last event (seq, hash) that occurred before `cutoff`, if any.
pub async fn find_last_before(
    c: &mut Conn,
    account: Uuid,
    cutoff: i64,
) -> Result<Option<(i64, String)>, Error> {
    sqlx::query(
        "SELECT seq, hash FROM audit_events WHERE account_id = $1 AND occurred < $2 \
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(account.to_string())
    .bind(cutoff)
    .fetch_optional(&mut *c)
    .await?
    .map(|r| Ok((r.try_get("seq")?, r.try_get("hash")?)))
    .transpose()
}

/// Deletes the events up to and including `seq` (retention; a checkpoint at `seq` is written first).
pub async fn delete_through(c: &mut Conn, account: Uuid, seq: i64) -> Result<u64, Error> {
    Ok(
        sqlx::query("DELETE FROM audit_events WHERE account_id = $1 AND seq <= $2")
            .bind(account.to_string())
            .bind(seq)
            .execute(&mut *c)
            .await?
            .rows_affected(),
    )
}
