//! The account-wide event stream, `/api/accounts/{a}/events/out` — what Prefect Cloud's
//! `PrefectCloudAccountEventSubscriber` (and `prefect events stream --account`) subscribe to:
//! the events of every workspace of the account where the caller holds `see_events`, relayed from
//! each workspace's upstream Prefect server by `http::gateway::account_ws`, and — for callers who
//! may read the audit log, on plans with it — the account's audit events (`prefect-cloud.*`),
//! as Prefect Cloud's account stream includes them. This module decides what a caller may
//! receive and reads the audit part; the transport relays.

use crate::app::App;
use crate::authz::Principal;
use crate::domain::plan::Feature;
use crate::domain::role::AccountPermission;
use crate::domain::scope::Scope;
use crate::domain::{AccountId, WorkspaceId};
use crate::services::gate::{self, Standing};
use crate::services::upstreams::Upstream;
use crate::services::{audit, gateway, Result};
use serde_json::Value;
use std::sync::Arc;

/// What a caller admitted to the account stream receives.
pub struct Sources {
    /// The workspaces where they hold `see_events` that have an upstream, with it.
    pub workspaces: Vec<(WorkspaceId, Arc<Upstream>)>,
    /// Whether they receive the account's audit events.
    pub audit: bool,
}

/// Admits a caller to the account stream: 404 when they are not an active member, 403 from
/// outside an enforced allowlist (the gate's tenant and allowlist steps). A member who sees no
/// workspace's events and may not read the audit log is admitted to an empty stream, as a
/// workspace can be shared with them later (they reconnect to see it).
pub async fn sources(app: &App, p: &Principal, account: AccountId) -> Result<Sources> {
    let access = gate::member(app, p, account).await?;
    let workspaces = access
        .workspaces_with(Scope::SeeEvents)
        .into_iter()
        .filter_map(|w| {
            let (_, up) = gateway::upstream_of(app, account, w).ok()?;
            Some((w, up))
        })
        .collect();
    Ok(Sources {
        workspaces,
        audit: reads_audit(app, p, account) == Standing::Holds,
    })
}

/// Whether the caller (still) receives a workspace's events.
pub fn sees_workspace(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
) -> Standing {
    gate::standing_in(app, p, account, workspace, Some(Scope::SeeEvents))
}

/// Whether the caller (still) receives the account's audit events: the permission to read the
/// audit log, on a plan that has it.
pub fn reads_audit(app: &App, p: &Principal, account: AccountId) -> Standing {
    match gate::standing(app, p, account, AccountPermission::ReadAuditEvent) {
        Standing::Holds
            if gate::plan(app, account).is_some_and(|(_, f)| f.contains(Feature::AuditLog)) =>
        {
            Standing::Holds
        }
        Standing::Gone => Standing::Gone,
        _ => Standing::Lacks,
    }
}

/// Marks an upstream's `{"type":"event","event":{…}}` frame with the account and workspace it
/// came from (the `account` and `workspace` fields of Prefect Cloud's events, set by Atrium whatever
/// the frame said), so a subscriber to several workspaces can tell them apart. `None` for other
/// frames, which pass unchanged.
pub fn mark(frame: &str, account: AccountId, workspace: WorkspaceId) -> Option<String> {
    let mut v: Value = serde_json::from_str(frame).ok()?;
    if v.get("type").and_then(Value::as_str) != Some("event") {
        return None;
    }
    let event = v.get_mut("event")?.as_object_mut()?;
    event.insert("account".into(), Value::String(account.to_string()));
    event.insert("workspace".into(), Value::String(workspace.to_string()));
    Some(v.to_string())
}

/// Where a subscription's audit part stands: the filter the client sent, the start of its
/// window, and the last audit event sent.
pub struct AuditCursor {
    filter: Value,
    since: i64,
    after: Option<i64>,
}

/// Audit events read per poll at most (the rest come on the next poll).
const AUDIT_BATCH: i64 = 200;

impl AuditCursor {
    /// From the client's `{"type":"filter","filter":{…}}` frame (Prefect's `EventFilter`);
    /// `None` for any other frame. The window starts at `occurred.since` (at most a day back:
    /// the client asks for the last minute, and backfill is not an export).
    pub fn from_frame(frame: &str, now_us: i64) -> Option<AuditCursor> {
        let v: Value = serde_json::from_str(frame).ok()?;
        if v.get("type").and_then(Value::as_str) != Some("filter") {
            return None;
        }
        let filter = v.get("filter").cloned().unwrap_or(Value::Null);
        let day = 86_400_000_000;
        let since = time_of(filter.pointer("/occurred/since"))
            .unwrap_or(now_us)
            .max(now_us - day);
        Some(AuditCursor {
            filter,
            since,
            after: None,
        })
    }

    /// The audit events the subscription has not been sent yet that its filter matches, as
    /// event frames, oldest first.
    pub async fn poll(&mut self, app: &App, account: AccountId) -> Result<Vec<String>> {
        let events = audit::stream_after(app, account, self.since, self.after, AUDIT_BATCH).await?;
        let mut frames = Vec::new();
        for e in events {
            self.after = Some(e.seq);
            let event = serde_json::to_value(&e).unwrap_or(Value::Null);
            if matches(&self.filter, &event) {
                frames.push(serde_json::json!({"type": "event", "event": event}).to_string());
            }
        }
        Ok(frames)
    }
}

fn time_of(v: Option<&Value>) -> Option<i64> {
    let s = v?.as_str()?;
    Some(
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()?
            .timestamp_micros(),
    )
}

fn strings(v: Option<&Value>) -> Option<Vec<&str>> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(a.iter().filter_map(Value::as_str).collect()),
        Some(_) => Some(Vec::new()),
    }
}

/// Whether an audit event matches a Prefect `EventFilter`, for the criteria an audit event can
/// be judged on: `occurred`, `event` (name, prefix and their exclusions), `resource` and
/// `any_resource` (`id`, `id_prefix`), `id`. A filter with any other criterion set (labels,
/// `related`, `text`, unknown fields) matches no audit event: the stream never sends what the
/// subscriber did not ask for.
pub fn matches(filter: &Value, event: &Value) -> bool {
    let Some(f) = filter.as_object() else {
        return filter.is_null();
    };
    let name = event.get("event").and_then(Value::as_str).unwrap_or("");
    let occurred = time_of(event.get("occurred")).unwrap_or(i64::MIN);
    let resource = event
        .pointer("/resource/prefect.resource.id")
        .and_then(Value::as_str)
        .unwrap_or("");
    let related: Vec<&str> = event
        .get("related")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(|x| x.get("prefect.resource.id").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let ids_match = |crit: &Value, ids: &[&str]| -> bool {
        let Some(c) = crit.as_object() else {
            return crit.is_null();
        };
        c.iter().all(|(k, v)| match k.as_str() {
            "id" => strings(Some(v)).is_none_or(|want| ids.iter().any(|i| want.contains(i))),
            "id_prefix" => strings(Some(v))
                .is_none_or(|want| ids.iter().any(|i| want.iter().any(|p| i.starts_with(p)))),
            _ => v.is_null(),
        })
    };
    f.iter().all(|(k, v)| match k.as_str() {
        "occurred" => {
            time_of(v.get("since")).is_none_or(|s| occurred >= s)
                && time_of(v.get("until")).is_none_or(|u| occurred <= u)
        }
        "event" => {
            let Some(c) = v.as_object() else {
                return v.is_null();
            };
            c.iter().all(|(k, v)| match k.as_str() {
                "prefix" => strings(Some(v)).is_none_or(|p| p.iter().any(|p| name.starts_with(p))),
                "exclude_prefix" => {
                    strings(Some(v)).is_none_or(|p| !p.iter().any(|p| name.starts_with(p)))
                }
                "name" => strings(Some(v)).is_none_or(|n| n.contains(&name)),
                "exclude_name" => strings(Some(v)).is_none_or(|n| !n.contains(&name)),
                _ => v.is_null(),
            })
        }
        "resource" => ids_match(v, &[resource]),
        "any_resource" => {
            let mut all = related.clone();
            all.push(resource);
            ids_match(v, &all)
        }
        "id" => {
            let id = event.get("id").and_then(Value::as_str).unwrap_or("");
            match v.get("id") {
                Some(Value::Array(ids)) if !ids.is_empty() => {
                    ids.iter().any(|x| x.as_str() == Some(id))
                }
                _ => true,
            }
        }
        "order" => true,
        _ => v.is_null(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event() -> Value {
        json!({
            "id": "5b6bd6a5-0000-4000-8000-000000000001",
            "occurred": "2026-12-04T10:00:00Z",
            "event": "prefect-cloud.workspace.created",
            "resource": {"prefect.resource.id": "prefect-cloud.workspace.abc"},
            "related": [{"prefect.resource.id": "prefect-cloud.user.u1", "prefect.resource.role": "actor"}],
        })
    }

    #[test]
    fn audit_events_match_the_criteria_prefects_filter_sets_and_nothing_it_cannot_judge() {
        let e = event();
        // What the stock client sends: every field present, most null.
        let stock = json!({
            "occurred": {"since": "2026-12-04T09:59:00Z", "until": "2027-12-04T10:00:00Z"},
            "event": null, "resource": null, "related": null, "any_resource": null,
            "id": {"id": []}, "text": null, "order": "DESC"
        });
        assert!(matches(&stock, &e));
        assert!(matches(&Value::Null, &e));
        let with = |k: &str, v: Value| {
            let mut f = stock.clone();
            f[k] = v;
            matches(&f, &e)
        };
        assert!(with(
            "event",
            json!({"prefix": ["prefect-cloud."], "name": null})
        ));
        assert!(!with("event", json!({"prefix": ["prefect.flow-run."]})));
        assert!(!with(
            "event",
            json!({"exclude_prefix": ["prefect-cloud.workspace"]})
        ));
        assert!(with(
            "event",
            json!({"name": ["prefect-cloud.workspace.created"]})
        ));
        assert!(!with(
            "event",
            json!({"exclude_name": ["prefect-cloud.workspace.created"]})
        ));
        assert!(with(
            "resource",
            json!({"id_prefix": ["prefect-cloud.workspace."]})
        ));
        assert!(!with("resource", json!({"id": ["prefect-cloud.user.u1"]})));
        assert!(with(
            "any_resource",
            json!({"id": ["prefect-cloud.user.u1"]})
        ));
        assert!(!with(
            "id",
            json!({"id": ["5b6bd6a5-0000-4000-8000-000000000002"]})
        ));
        assert!(!with(
            "occurred",
            json!({"since": "2026-12-04T10:00:01Z", "until": null})
        ));
        // Criteria an audit event cannot be judged on match nothing.
        assert!(!with("text", json!({"query": "workspace"})));
        assert!(!with("related", json!({"role": ["actor"]})));
        assert!(!with("resource", json!({"labels": {"a": "b"}})));
        assert!(!with("something_new", json!(1)));
    }

    #[test]
    fn upstream_event_frames_are_marked_with_their_account_and_workspace() {
        let a = AccountId(uuid::Uuid::from_u128(1));
        let w = WorkspaceId(uuid::Uuid::from_u128(2));
        let out = mark(r#"{"type":"event","event":{"id":"x","event":"e"}}"#, a, w);
        let v: Value = serde_json::from_str(&out.expect("marked")).expect("json");
        assert_eq!(v["event"]["account"], json!(a.to_string()));
        assert_eq!(v["event"]["workspace"], json!(w.to_string()));
        assert_eq!(v["event"]["event"], json!("e"));
        assert!(mark(r#"{"type":"pong"}"#, a, w).is_none());
        assert!(mark("not json", a, w).is_none());
    }
}
