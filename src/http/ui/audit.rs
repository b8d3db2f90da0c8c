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
use crate::services::{Error, Result};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
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
    let results: Result<(Markup, Markup, Markup)> = async {
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
        let rows: Vec<Markup> = page
            .events
            .iter()
            .map(|e| {
                html! { tr {
                    td { time datetime=(e.occurred.to_rfc3339()) { (e.occurred.format("%Y-%m-%d %H:%M:%S")) } }
                    td { code { (e.event.trim_start_matches("prefect-cloud.")) } }
                    td { (e.resource["prefect.resource.name"].as_str().unwrap_or("")) }
                    td { (e.actor["name"].as_str().unwrap_or("system")) }
                    td { (ws_name(e.workspace)) }
                } }
            })
            .collect();
        let next = page.next_page.as_deref().and_then(audit::page_token_of);
        let list = html! {
            p.muted { (page.total) " matching event" (if page.total == 1 { "" } else { "s" }) "." }
            (table("Events, newest first", &["When (UTC)", "Event", "Resource", "Who", "Workspace"], &rows, "No events match."))
            @if let Some(t) = next {
                p { a href={ (shell.url("/audit-log")) "?" (q.encoded()) "&page=" (t) } rel="next" { "Older events" } }
            }
        };
        // One bar per day of the range, days without events included.
        let max = per_day.iter().map(|b| b.count).max().unwrap_or(0).max(1);
        let mut days = Vec::new();
        let mut d = from;
        while d <= to {
            let n = per_day
                .iter()
                .find(|b| b.start_time.is_some_and(|s| s.date_naive() == d))
                .map_or(0, |b| b.count);
            days.push((d, n));
            d += chrono::Duration::days(1);
        }
        let chart = html! {
            figure {
                figcaption.muted { "Events per day, " (from) " to " (to) " (highest: " (max) ")" }
                div.chart { @for (d, n) in &days {
                    span style={ "height:" (n * 100 / max) "%" } title={ (d) ": " (n) } role="img" aria-label={ (d) ": " (n) " events" } {}
                } }
                div.chart-axis.muted.small aria-hidden="true" { span { (from) } span { (to) } }
            }
        };
        let event_options = options(
            by_event.iter().map(|b| (b.value.clone(), b.label.trim_start_matches("prefect-cloud."))),
            &q.event,
        );
        Ok((list, chart, event_options))
    }
    .await;
    let (list, chart, event_options, problem) = match results {
        Ok((l, c, e)) => (l, c, e, None),
        Err(e @ Error::Validation(_)) => (html! {}, html! {}, html! {}, Some(e.to_string())),
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
    let base = shell.url("/audit-log");
    let body = html! {
        h1 { "Audit log" }
        @if let Some(problem) = problem { p.error role="alert" { (problem) } }
        form method="get" action=(base) { div.row {
            div { label for="f-ws" { "Workspace" } select #f-ws name="workspace" { option value="" { "any" } (ws_options) } }
            div { label for="f-user" { "Who" } select #f-user name="user" { option value="" { "anyone" } (user_options) } }
            div { label for="f-event" { "Event type" } select #f-event name="event" { option value="" { "any" } (event_options) } }
            div { label for="f-from" { "From" } input #f-from name="from" type="date" value=(from); }
            div { label for="f-to" { "To" } input #f-to name="to" type="date" value=(to); }
            div { button type="submit" { "Filter" } }
        } }
        p.muted.small {
            "A range covers at most 14 days. "
            a href={ (base) "/export?" (q.encoded()) } { "Export these events as CSV" }
        }
        (chart)
        (list)
    };
    Ok(shell.render(Section::AuditLog, "Audit log", body))
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
