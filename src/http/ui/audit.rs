//! The Audit Log page: filter by workspace, user, event type and date range; page through the
//! results; export them as CSV; a chart of activity per day over the range.

use super::session::SignedIn;
use super::shell::{Section, Shell};
use super::{error_page, options, table};
use crate::app::App;
use crate::authz::Principal;
use crate::domain::AccountId;
use crate::services::audit::{
    self, CountEvents, EventFilter, EventNameFilter, FilterEvents, IdFilter, OccurredFilter,
};
use crate::services::mail::html_escape;
use crate::services::{Error, Result};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// The page's query: the filters, and a page token from the previous page.
#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    pub workspace: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub event: String,
    /// First day (YYYY-MM-DD, UTC).
    #[serde(default)]
    pub from: String,
    /// Last day, inclusive.
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub page: String,
}

impl AuditQuery {
    /// The days covered, defaulting to the last 7 (the query API allows at most 14).
    fn range(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(chrono::NaiveDate, chrono::NaiveDate)> {
        let day = |s: &str, what: &str| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map_err(|_| Error::validation(format!("{what}: expected a date (YYYY-MM-DD)")))
        };
        let to = if self.to.is_empty() {
            now.date_naive()
        } else {
            day(&self.to, "to")?
        };
        let from = if self.from.is_empty() {
            to - chrono::Duration::days(6)
        } else {
            day(&self.from, "from")?
        };
        Ok((from, to))
    }

    fn filter(&self, now: chrono::DateTime<chrono::Utc>) -> Result<EventFilter> {
        let (from, to) = self.range(now)?;
        let since = from.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        let until = to
            .and_hms_opt(23, 59, 59)
            .map(|t| t.and_utc())
            .map(|t| t.min(now));
        let ids = |v: &str| {
            (!v.is_empty()).then(|| IdFilter {
                id: vec![v.to_string()],
            })
        };
        Ok(EventFilter {
            occurred: Some(OccurredFilter { since, until }),
            event: (!self.event.is_empty()).then(|| EventNameFilter {
                prefix: vec![self.event.clone()],
                name: Vec::new(),
            }),
            resource: None,
            actor: ids(&self.user),
            workspace: ids(&self.workspace),
        })
    }

    /// The filters as a query string (for the next-page and export links).
    fn encoded(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("workspace", &self.workspace)
            .append_pair("user", &self.user)
            .append_pair("event", &self.event)
            .append_pair("from", &self.from)
            .append_pair("to", &self.to)
            .finish()
    }
}

async fn render(app: &App, p: &Principal, account: AccountId, q: &AuditQuery) -> Result<Response> {
    let shell = Shell::open(app, p, account).await?;
    let now = app.now();
    let (from, to) = q.range(now)?;
    let workspaces = shell.workspaces(app, p).await?;
    let members = shell.members(app, p).await?;
    // The results: an error in the filters (a bad date, a range over 14 days) is shown above the
    // form, which keeps what was typed.
    let results: Result<(String, String, String)> = async {
        let filter = q.filter(now)?;
        let page = if q.page.is_empty() {
            audit::filter_events(app, p, account, None, FilterEvents { limit: Some(50), filter: Some(filter.clone()) }).await?
        } else {
            audit::filter_events_next(app, p, account, None, &q.page).await?
        };
        let by_event = audit::count_events(
            app,
            p,
            account,
            None,
            "event",
            CountEvents { filter: Some(EventFilter { event: None, ..filter.clone() }), time_unit: None, time_interval: None },
        )
        .await?;
        let per_day = audit::count_events(
            app,
            p,
            account,
            None,
            "day",
            CountEvents { filter: Some(filter), time_unit: Some("day".into()), time_interval: None },
        )
        .await?;
        let ws_name = |id: Option<uuid::Uuid>| {
            id.and_then(|id| workspaces.iter().find(|w| w.id.0 == id))
                .map(|w| w.name.clone())
                .unwrap_or_default()
        };
        let rows: String = page
            .events
            .iter()
            .map(|e| {
                format!(
                    "<tr><td><time datetime=\"{iso}\">{when}</time></td><td><code>{event}</code></td><td>{res}</td><td>{actor}</td><td>{ws}</td></tr>",
                    iso = e.occurred.to_rfc3339(),
                    when = e.occurred.format("%Y-%m-%d %H:%M:%S"),
                    event = html_escape(e.event.trim_start_matches("prefect-cloud.")),
                    res = html_escape(e.resource["prefect.resource.name"].as_str().unwrap_or("")),
                    actor = html_escape(e.actor["name"].as_str().unwrap_or("system")),
                    ws = html_escape(&ws_name(e.workspace)),
                )
            })
            .collect();
        let next = page
            .next_page
            .as_deref()
            .and_then(audit::page_token_of)
            .map(|t| {
                format!(
                    "<p><a href=\"{base}?{f}&amp;page={t}\" rel=\"next\">Older events</a></p>",
                    base = shell.url("/audit-log"),
                    f = html_escape(&q.encoded()),
                    t = html_escape(t),
                )
            })
            .unwrap_or_default();
        let list = format!(
            "<p class=\"muted\">{total} matching event{s}.</p>{t}{next}",
            total = page.total,
            s = if page.total == 1 { "" } else { "s" },
            t = table("Events, newest first", &["When (UTC)", "Event", "Resource", "Who", "Workspace"], &rows, "No events match."),
        );
        // One bar per day of the range, days without events included.
        let max = per_day.iter().map(|b| b.count).max().unwrap_or(0).max(1);
        let mut bars = String::new();
        let mut d = from;
        while d <= to {
            let n = per_day
                .iter()
                .find(|b| b.start_time.is_some_and(|s| s.date_naive() == d))
                .map_or(0, |b| b.count);
            bars += &format!(
                "<span style=\"height:{h}%\" title=\"{d}: {n}\" role=\"img\" aria-label=\"{d}: {n} events\"></span>",
                h = n * 100 / max,
            );
            d += chrono::Duration::days(1);
        }
        let chart = format!(
            "<figure><figcaption class=\"muted\">Events per day, {from} to {to} (highest: {max})</figcaption><div class=\"chart\">{bars}</div><div class=\"chart-axis muted small\" aria-hidden=\"true\"><span>{from}</span><span>{to}</span></div></figure>"
        );
        let event_options = options(
            by_event.iter().map(|b| (b.value.clone(), b.label.trim_start_matches("prefect-cloud."))),
            &q.event,
        );
        Ok((list, chart, event_options))
    }
    .await;
    let (list, chart, event_options, problem) = match results {
        Ok((l, c, e)) => (l, c, e, String::new()),
        Err(e @ Error::Validation(_)) => (
            String::new(),
            String::new(),
            String::new(),
            format!(
                "<p class=\"error\" role=\"alert\">{}</p>",
                html_escape(&e.to_string())
            ),
        ),
        Err(e) => return Err(e),
    };
    let ws_options = options(
        workspaces
            .iter()
            .map(|w| (w.id.to_string(), w.name.as_str())),
        &q.workspace,
    );
    // Service accounts act under their own id, so they are filterable like users.
    let bots = shell.bots(app, p).await?;
    let bot_labels: Vec<String> = bots
        .iter()
        .map(|b| format!("{} (service account)", b.name))
        .collect();
    let user_options = options(
        members
            .iter()
            .map(|m| (m.user_id.to_string(), m.email.as_str()))
            .chain(
                bots.iter()
                    .zip(&bot_labels)
                    .map(|(b, l)| (b.id.to_string(), l.as_str())),
            ),
        &q.user,
    );
    let body = format!(
        "<h1>Audit log</h1>{problem}<form method=\"get\" action=\"{base}\"><div class=\"row\">\
         <div><label for=\"f-ws\">Workspace</label><select id=\"f-ws\" name=\"workspace\"><option value=\"\">any</option>{ws_options}</select></div>\
         <div><label for=\"f-user\">Who</label><select id=\"f-user\" name=\"user\"><option value=\"\">anyone</option>{user_options}</select></div>\
         <div><label for=\"f-event\">Event type</label><select id=\"f-event\" name=\"event\"><option value=\"\">any</option>{event_options}</select></div>\
         <div><label for=\"f-from\">From</label><input id=\"f-from\" name=\"from\" type=\"date\" value=\"{from}\"></div>\
         <div><label for=\"f-to\">To</label><input id=\"f-to\" name=\"to\" type=\"date\" value=\"{to}\"></div>\
         <div><button type=\"submit\">Filter</button></div></div></form>\
         <p class=\"muted small\">A range covers at most 14 days. <a href=\"{base}/export?{f}\">Export these events as CSV</a></p>{chart}{list}",
        base = shell.url("/audit-log"),
        f = html_escape(&q.encoded()),
    );
    Ok(shell.render(Section::AuditLog, "Audit log", &body))
}

/// `GET /account/{a}/audit-log`
pub async fn list(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
    Query(q): Query<AuditQuery>,
) -> Response {
    render(&app, &p, account, &q)
        .await
        .unwrap_or_else(|e| error_page(&e))
}

/// `GET /account/{a}/audit-log/export`: the filtered events as a CSV download.
pub async fn export(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
    Query(q): Query<AuditQuery>,
) -> Response {
    let r = async {
        let f = q.filter(app.now())?;
        audit::export_csv(&app, &p, account, f).await
    }
    .await;
    match r {
        Ok(csv) => (
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/csv; charset=utf-8"),
                ),
                (
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_static("attachment; filename=\"audit-log.csv\""),
                ),
            ],
            csv,
        )
            .into_response(),
        Err(e) => error_page(&e),
    }
}
