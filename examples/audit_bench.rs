//! Audit-log benchmark at scale.
//!
//! `cargo run --release --example audit_bench -- DATABASE_URL ACCOUNTS EVENTS_PER_ACCOUNT [QUERIES]`
//!
//! 1. Fills `audit_events` with ACCOUNTS × EVENTS_PER_ACCOUNT rows spread over 180 days (generated
//!    inside the database; the rows are shaped like real events but their hashes are not a real
//!    chain — this measures queries, not verification).
//! 2. Times the first page of the API's filtered query (account + 7-day window + event prefix,
//!    50 events, newest first) and, separately, its `total` count, over QUERIES random
//!    accounts/windows: p50/p99/max.
//! 3. Times a typical mutation (update a workspace row and bump the access version, committed)
//!    with and without the audit append, to report the added cost of auditing.
//!
//! Prints JSON lines. Use a fresh database: the example refuses one that already has events.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed step here should fail loudly

use atrium::domain::audit::{AuditActor, AuditRecord};
use atrium::store::{self, audit::EventQuery, Engine, Store};
use serde_json::json;
use std::time::Instant;
use uuid::Uuid;

const DAY_US: i64 = 86_400_000_000;
const BASE_US: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
const SPAN_DAYS: i64 = 180;
const EVENTS: [&str; 5] = [
    "prefect-cloud.workspace.created",
    "prefect-cloud.workspace-access.created",
    "prefect-cloud.account-membership.updated",
    "prefect-cloud.api-key.created",
    "prefect-cloud.user.logged-in",
];

fn account_id(i: i64) -> Uuid {
    Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0000 | i as u128)
}

fn generate_sql(engine: Engine) -> &'static str {
    match engine {
        Engine::Sqlite => {
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2) \
             INSERT INTO audit_events (account_id, seq, id, occurred, event, workspace_id, actor_kind, \
               actor_id, actor_name, resource_id, resource_name, related, payload, ip, user_agent, prev_hash, hash) \
             SELECT $1, i, printf('%08x-%04x-4%03x-8000-%012x', $3, i / 65536, i % 4096, i), \
               $4 + i * $5, \
               CASE i % 5 WHEN 0 THEN 'prefect-cloud.workspace.created' WHEN 1 THEN 'prefect-cloud.workspace-access.created' \
                 WHEN 2 THEN 'prefect-cloud.account-membership.updated' WHEN 3 THEN 'prefect-cloud.api-key.created' \
                 ELSE 'prefect-cloud.user.logged-in' END, \
               NULL, 'user', '00000000-0000-4000-8000-000000000abc', 'ann@example.com', \
               'prefect-cloud.workspace.' || i, 'prod', '[]', '{\"after\":{\"name\":\"prod\"}}', '127.0.0.1', 'bench', \
               'prev', 'hash' FROM n"
        }
        Engine::Postgres => {
            "INSERT INTO audit_events (account_id, seq, id, occurred, event, workspace_id, actor_kind, \
               actor_id, actor_name, resource_id, resource_name, related, payload, ip, user_agent, prev_hash, hash) \
             SELECT $1, i, lpad(to_hex($3::bigint), 8, '0') || '-' || lpad(to_hex(i / 65536), 4, '0') || '-4' || \
                 lpad(to_hex(i % 4096), 3, '0') || '-8000-' || lpad(to_hex(i), 12, '0'), \
               $4 + i * $5, \
               CASE i % 5 WHEN 0 THEN 'prefect-cloud.workspace.created' WHEN 1 THEN 'prefect-cloud.workspace-access.created' \
                 WHEN 2 THEN 'prefect-cloud.account-membership.updated' WHEN 3 THEN 'prefect-cloud.api-key.created' \
                 ELSE 'prefect-cloud.user.logged-in' END, \
               NULL, 'user', '00000000-0000-4000-8000-000000000abc', 'ann@example.com', \
               'prefect-cloud.workspace.' || i, 'prod', '[]', '{\"after\":{\"name\":\"prod\"}}', '127.0.0.1', 'bench', \
               'prev', 'hash' FROM generate_series(1::bigint, $2::bigint) AS i"
        }
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn stats(mut v: Vec<u128>) -> serde_json::Value {
    v.sort_unstable();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    json!({"n": v.len(), "p50_us": p(0.5), "p99_us": p(0.99), "max_us": v[v.len() - 1]})
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 4,
        "usage: audit_bench DATABASE_URL ACCOUNTS EVENTS_PER_ACCOUNT [QUERIES]"
    );
    let url = &args[1];
    let accounts: i64 = args[2].parse()?;
    let per: i64 = args[3].parse()?;
    let queries: usize = args.get(4).map(|q| q.parse()).transpose()?.unwrap_or(1000);
    let s = Store::connect(url, None).await?;
    s.migrate().await?;
    {
        let mut c = s.reader().await?;
        let existing =
            store::audit::count_events(&mut c, account_id(0), &EventQuery::default(), 1).await?;
        anyhow::ensure!(existing == 0, "use a fresh database");
    }

    let step = SPAN_DAYS * DAY_US / per;
    let t0 = Instant::now();
    // The generated rows are query fodder, not chains: on SQLite the chain triggers are set aside
    // while they are written and put back for the write benchmark.
    if s.engine == Engine::Sqlite {
        let mut tx = s.begin().await?;
        sqlx::query("DROP TRIGGER audit_events_link")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DROP TRIGGER audit_events_move_head")
            .execute(&mut *tx)
            .await?;
        let _audit_rows_only = tx.commit().await?;
    }
    for a in 0..accounts {
        let mut tx = s.begin().await?;
        sqlx::query(generate_sql(s.engine))
            .bind(account_id(a).to_string())
            .bind(per)
            .bind(a)
            .bind(BASE_US)
            .bind(step)
            .execute(&mut *tx)
            .await?;
        let _audit_rows_only = tx.commit().await?;
    }
    if s.engine == Engine::Postgres {
        let mut c = s.reader().await?;
        sqlx::query("ANALYZE audit_events").execute(&mut *c).await?;
    } else {
        let mut tx = s.begin().await?;
        sqlx::query("ANALYZE").execute(&mut *tx).await?;
        sqlx::raw_sql(include_str!(
            "../migrations/sqlite/0009_audit_head_trigger.sql"
        ))
        .execute(&mut *tx)
        .await?;
        let _audit_rows_only = tx.commit().await?;
    }
    println!(
        "{}",
        json!({"phase": "generate", "engine": format!("{:?}", s.engine), "events": accounts * per, "seconds": t0.elapsed().as_secs_f64()})
    );

    // Queries: the API's first page and its total, separately.
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let (mut page_us, mut count_us, mut found) = (Vec::new(), Vec::new(), 0usize);
    let mut c = s.reader().await?;
    for _ in 0..queries {
        let a = account_id((rng.next() % accounts as u64) as i64);
        let until = BASE_US + 7 * DAY_US + (rng.next() % ((SPAN_DAYS - 7) as u64)) as i64 * DAY_US;
        let q = EventQuery {
            since: Some(until - 7 * DAY_US),
            until: Some(until),
            event_prefixes: vec!["prefect-cloud.workspace.".into()],
            ..Default::default()
        };
        let t = Instant::now();
        let page = store::audit::find_events(&mut c, a, &q, store::audit::Window::Before(None), 50)
            .await?;
        page_us.push(t.elapsed().as_micros());
        found += page.len();
        let t = Instant::now();
        store::audit::count_events(&mut c, a, &q, 10_000).await?;
        count_us.push(t.elapsed().as_micros());
    }
    drop(c);
    println!(
        "{}",
        json!({"phase": "first_page", "query": "account + 7 days + prefix, limit 50", "events_returned": found, "latency": stats(page_us)})
    );
    println!(
        "{}",
        json!({"phase": "total_count", "latency": stats(count_us)})
    );

    // Write overhead: a typical mutation with and without its audit append.
    let account = account_id(accounts + 1);
    let ws = Uuid::new_v4();
    {
        let mut tx = s.begin().await?;
        sqlx::query("INSERT INTO accounts (id, handle, name, settings, created, updated) VALUES ($1, 'bench', 'Bench', '{}', 0, 0)")
            .bind(account.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO workspaces (id, account_id, name, handle, description, created, updated) VALUES ($1, $2, 'w', 'w', '', 0, 0)")
            .bind(ws.to_string())
            .bind(account.to_string())
            .execute(&mut *tx)
            .await?;
        let _audit_rows_only = tx.commit().await?;
    }
    let mutation = |audit: bool, i: i64| {
        let s = s.clone();
        async move {
            let mut tx = s.begin().await?;
            sqlx::query("UPDATE workspaces SET description = $3, updated = $4 WHERE account_id = $1 AND id = $2")
                .bind(account.to_string())
                .bind(ws.to_string())
                .bind(format!("d{i}"))
                .bind(i)
                .execute(&mut *tx)
                .await?;
            store::accounts::bump_access_version(
                &mut tx,
                s.engine,
                atrium::domain::AccountId(account),
            )
            .await?;
            if audit {
                let rec = AuditRecord {
                    account,
                    seq: 0,
                    id: Uuid::new_v4(),
                    occurred: BASE_US + i,
                    event: EVENTS[0].into(),
                    workspace: Some(ws),
                    actor: AuditActor {
                        kind: "user".into(),
                        id: Some(Uuid::nil()),
                        name: "ann@example.com".into(),
                    },
                    resource_id: format!("prefect-cloud.workspace.{ws}"),
                    resource_name: Some("w".into()),
                    related: json!([{"prefect.resource.id": "prefect-cloud.user.x", "prefect.resource.role": "actor"}]),
                    payload: json!({"before": {"description": format!("d{}", i - 1)}, "after": {"description": format!("d{i}")}}),
                    ip: Some("127.0.0.1".into()),
                    user_agent: Some("bench".into()),
                    prev_hash: String::new(),
                    hash: String::new(),
                };
                store::audit::append(&s, &mut tx, rec).await?;
            }
            let _audit_rows_only = tx.commit().await?;
            anyhow::Ok(())
        }
    };
    let rounds = 2_000i64;
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        // Interleave so drift in the machine affects both alike.
        let t = Instant::now();
        mutation(false, 2 * i).await?;
        without.push(t.elapsed().as_micros());
        let t = Instant::now();
        mutation(true, 2 * i + 1).await?;
        with.push(t.elapsed().as_micros());
    }
    let mean = |v: &Vec<u128>| v.iter().sum::<u128>() as f64 / v.len() as f64;
    let (mw, mo) = (mean(&with), mean(&without));
    println!(
        "{}",
        json!({"phase": "write_overhead", "mutation": "update workspace + access version, committed",
               "without_audit": stats(without), "with_audit": stats(with),
               "mean_without_us": mo, "mean_with_us": mw, "added_cost_percent": (mw / mo - 1.0) * 100.0})
    );

    // A typical API mutation end to end in the service layer: PATCH a workspace (authorize, load,
    // validate, update, audit, bump the access version, commit, rebuild the account's snapshot).
    // Its audit share is estimated as the append's measured cost above over the rest.
    let data = tempfile::tempdir()?;
    let app = atrium::app::App::new(
        atrium::config::Config {
            database_url: url.clone(),
            data_dir: data.path().to_path_buf(),
            audit_key_file: data.path().join("audit.key"),
            ..Default::default()
        },
        s.clone(),
        std::sync::Arc::new(atrium::app::SystemClock),
    )
    .await?;
    let owner = {
        let mut tx = s.begin().await?;
        let u = store::users::insert_user(
            &mut tx,
            store::users::NewUser {
                email: "owner@bench.test",
                handle: "bench-owner",
                first_name: "",
                last_name: "",
                password_hash: None,
                site_admin: true,
            },
            app.now(),
        )
        .await?;
        let _audit_rows_only = tx.commit().await?;
        atrium::authz::Principal::cli(u.id, u.email)
    };
    let acct = atrium::services::accounts::create_account(
        &app,
        &owner,
        atrium::services::accounts::CreateAccount {
            name: "Typical".into(),
            handle: "typical".into(),
            location: None,
            link: None,
            billing_email: None,
        },
    )
    .await?;
    let wsid = atrium::services::workspaces::create_workspace(
        &app,
        &owner,
        acct.id,
        serde_json::from_value(json!({"name": "w", "handle": "w"}))?,
    )
    .await?
    .id;
    let mut service = Vec::new();
    for i in 0..rounds {
        let t = Instant::now();
        atrium::services::workspaces::update_workspace(
            &app,
            &owner,
            acct.id,
            wsid,
            serde_json::from_value(json!({"description": format!("d{i}")}))?,
        )
        .await?;
        service.push(t.elapsed().as_micros());
    }
    let ms = mean(&service);
    let append = mw - mo;
    println!(
        "{}",
        json!({"phase": "typical_mutation", "mutation": "services::workspaces::update_workspace",
               "latency": stats(service), "mean_us": ms, "audit_append_mean_us": append,
               "estimated_audit_share_percent": append / (ms - append) * 100.0})
    );
    Ok(())
}
