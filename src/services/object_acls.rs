//! Object access control lists: the API that reads and sets them (`…/deployments/{id}/access`,
//! `…/work_pools/{name}/access`, `…/block_documents/{id}/access`, Prefect Cloud's routes and
//! shapes) and their enforcement on gateway calls — decided before a call is forwarded
//! ([`decide`]) and, for the reads that name or list objects, on the upstream's answer
//! ([`filter_answer`]). The rules are `domain::object_acl`'s; who is on which list is the gate's
//! ([`AclView`]).

use crate::app::App;
use crate::authz::Principal;
use crate::domain::canonical;
use crate::domain::object_acl::{Accessor, AclRoute, Level, ObjectAcl, ObjectKind};
use crate::domain::plan::Feature;
use crate::domain::scope::Scope;
use crate::domain::{AccountId, ServiceAccountId, TeamId, UserId, WorkspaceId};
use crate::services::audit::{self, NewEvent};
use crate::services::gate::AclView;
use crate::services::gateway::Target;
use crate::services::upstreams::{call, Upstream};
use crate::services::{Error, Result};
use crate::store;
use axum::http::Method;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use utoipa::ToSchema;
use uuid::Uuid;

/// Most accessors one level of an ACL may list.
const MAX_PER_LEVEL: usize = 500;

/// `PUT …/access` body (the Terraform provider's `*AccessSet`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetAccess {
    pub access_control: AccessControlSet,
}

/// Who may reach the object at each level: actor ids of users and service accounts, team ids,
/// or `*` for everyone whose workspace role reaches it. A missing or null list is empty. Block
/// documents have no run level.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessControlSet {
    #[serde(default)]
    pub manage_actor_ids: Option<Vec<String>>,
    #[serde(default)]
    pub run_actor_ids: Option<Vec<String>>,
    #[serde(default)]
    pub view_actor_ids: Option<Vec<String>>,
    #[serde(default)]
    pub manage_team_ids: Option<Vec<String>>,
    #[serde(default)]
    pub run_team_ids: Option<Vec<String>>,
    #[serde(default)]
    pub view_team_ids: Option<Vec<String>>,
}

/// One accessor as `GET …/access` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActorAccess {
    /// The actor id (users, service accounts), the team id, or `*`.
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    /// `user`, `service_account`, `team` or `*`.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// `GET …/access`: the accessors at each level (`run_actors` only for deployments and work
/// pools). An object without an ACL shows `*` at every level.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessControl {
    pub manage_actors: Vec<ActorAccess>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_actors: Option<Vec<ActorAccess>>,
    pub view_actors: Vec<ActorAccess>,
}

/// The scope that lets a caller see objects of a kind at all.
fn see_scope(kind: ObjectKind) -> Scope {
    match kind {
        ObjectKind::Deployment => Scope::SeeDeployments,
        ObjectKind::WorkPool => Scope::SeeWorkPools,
        ObjectKind::BlockDocument => Scope::SeeBlocks,
    }
}

fn title(kind: ObjectKind) -> &'static str {
    match kind {
        ObjectKind::Deployment => "Deployment",
        ObjectKind::WorkPool => "Work pool",
        ObjectKind::BlockDocument => "Block document",
    }
}

/// A name as one path segment of an upstream URL.
fn segment(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The upstream path of one object.
fn object_path(kind: ObjectKind, key: &str) -> String {
    match kind {
        ObjectKind::Deployment => format!("deployments/{key}"),
        ObjectKind::BlockDocument => format!("block_documents/{key}"),
        ObjectKind::WorkPool => format!("work_pools/{}", segment(key)),
    }
}

/// An object of `kind` as the workspace's upstream answers `path` (404 when it has none).
async fn upstream_object(
    app: &App,
    account: AccountId,
    ws: WorkspaceId,
    kind: ObjectKind,
    path: &str,
) -> Result<Value> {
    let (_, up) = crate::services::gateway::upstream_of(app, account, ws)?;
    call(app, &up, Method::GET, path, None)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound(format!("{} not found.", title(kind))),
            e => e,
        })
}

/// The caller's access and scopes in the workspace, requiring `scope` (a workspace they cannot
/// reach is "workspace not found").
async fn require(
    app: &App,
    p: &Principal,
    account: AccountId,
    ws: WorkspaceId,
    scope: Scope,
) -> Result<(
    crate::services::gate::Access,
    crate::domain::scope::ScopeSet,
)> {
    crate::services::gate::require_scope_access(app, p, account, ws, scope)
        .await
        .map_err(|e| match e {
            Error::NotFound(_) => Error::not_found("workspace"),
            e => e,
        })
}

/// `GET …/{kind}/{key}/access` (the kind's `see_` scope, and view access to the object).
pub async fn read_access(
    app: &App,
    p: &Principal,
    account: AccountId,
    ws: WorkspaceId,
    kind: ObjectKind,
    raw: &str,
) -> Result<AccessControl> {
    let (access, held) = require(app, p, account, ws, see_scope(kind)).await?;
    crate::services::plans::require_feature(app, account, Feature::ObjectAcls)?;
    let key = kind
        .key(raw)
        .ok_or_else(|| Error::NotFound(format!("{} not found.", title(kind))))?;
    let object = upstream_object(app, account, ws, kind, &object_path(kind, &key)).await?;
    if let Some(view) = access.object_acls(ws, held) {
        let pool = object["work_pool_name"].as_str();
        let visible = match kind {
            ObjectKind::Deployment => view.deployment(&key, pool, Level::View),
            _ => view.allows(kind, &key, Level::View),
        };
        if !visible {
            return Err(Error::NotFound(format!("{} not found.", title(kind))));
        }
    }
    let acl = access
        .snapshot()
        .workspaces
        .get(&ws.0)
        .and_then(|w| w.acls.get(kind, &key).cloned());
    let mut c = app.store.reader().await?;
    render(&mut c, account, kind, acl).await
}

async fn render(
    c: &mut store::Conn,
    account: AccountId,
    kind: ObjectKind,
    acl: Option<ObjectAcl>,
) -> Result<AccessControl> {
    let acl = acl.unwrap_or_else(|| ObjectAcl {
        manage: vec![Accessor::Everyone],
        run: vec![Accessor::Everyone],
        view: vec![Accessor::Everyone],
    });
    let mut levels = Vec::with_capacity(3);
    for l in [Level::Manage, Level::Run, Level::View] {
        let mut out = Vec::new();
        for a in acl.level(l) {
            out.extend(accessor_view(c, account, a).await?);
        }
        levels.push(out);
    }
    let view_actors = levels.pop().unwrap_or_default();
    let run_actors = levels.pop().unwrap_or_default();
    let manage_actors = levels.pop().unwrap_or_default();
    Ok(AccessControl {
        manage_actors,
        run_actors: kind.has_run().then_some(run_actors),
        view_actors,
    })
}

/// An accessor with its name (`None` when it no longer exists: it is not shown).
async fn accessor_view(
    c: &mut store::Conn,
    account: AccountId,
    a: &Accessor,
) -> Result<Option<ActorAccess>> {
    Ok(match a {
        Accessor::Everyone => Some(ActorAccess {
            id: "*".into(),
            name: "*".into(),
            email: None,
            kind: "*",
        }),
        Accessor::User { id, actor_id } => store::users::find_user_by_id(c, UserId(*id))
            .await?
            .map(|u| ActorAccess {
                id: actor_id.to_string(),
                name: format!("{} {}", u.first_name, u.last_name)
                    .trim()
                    .to_string(),
                email: Some(u.email),
                kind: "user",
            }),
        Accessor::ServiceAccount { id, actor_id } => {
            store::service_accounts::find_bot(c, account, ServiceAccountId(*id))
                .await?
                .map(|b| ActorAccess {
                    id: actor_id.to_string(),
                    name: b.name,
                    email: None,
                    kind: "service_account",
                })
        }
        Accessor::Team { id } => store::teams::find_team(c, account, TeamId(*id))
            .await?
            .map(|t| ActorAccess {
                id: id.to_string(),
                name: t.name,
                email: None,
                kind: "team",
            }),
    })
}

/// `PUT …/{kind}/{key}/access` (`manage_acls`; plan feature `object_acls`): replaces the
/// object's ACL. Every level `*` removes it. Audited with the lists before and after.
#[allow(clippy::too_many_arguments)]
pub async fn set_access(
    app: &App,
    p: &Principal,
    account: AccountId,
    ws: WorkspaceId,
    kind: ObjectKind,
    raw: &str,
    body: SetAccess,
) -> Result<()> {
    let (access, _) = require(app, p, account, ws, Scope::ManageAcls).await?;
    crate::services::plans::require_feature(app, account, Feature::ObjectAcls)?;
    let key = kind
        .key(raw)
        .ok_or_else(|| Error::NotFound(format!("{} not found.", title(kind))))?;
    let a = body.access_control;
    if !kind.has_run() && (a.run_actor_ids.is_some() || a.run_team_ids.is_some()) {
        return Err(Error::validation(
            "block documents have no run level: send only manage_ and view_ lists",
        ));
    }
    let object = upstream_object(app, account, ws, kind, &object_path(kind, &key)).await?;
    let mut c = app.store.reader().await?;
    let mut acl = ObjectAcl::default();
    for (level, actors, teams) in [
        (Level::Manage, &a.manage_actor_ids, &a.manage_team_ids),
        (Level::Run, &a.run_actor_ids, &a.run_team_ids),
        (Level::View, &a.view_actor_ids, &a.view_team_ids),
    ] {
        let out = match level {
            Level::Manage => &mut acl.manage,
            Level::Run => &mut acl.run,
            Level::View => &mut acl.view,
        };
        let actors = actors.as_deref().unwrap_or_default();
        let teams = teams.as_deref().unwrap_or_default();
        if actors.len() + teams.len() > MAX_PER_LEVEL {
            return Err(Error::validation(format!(
                "at most {MAX_PER_LEVEL} accessors per level"
            )));
        }
        let named = actors.iter().map(|s| (s, false));
        for (s, team) in named.chain(teams.iter().map(|s| (s, true))) {
            let a = resolve(&mut c, account, s, team, level).await?;
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    drop(c);
    let open = acl.is_open(kind);
    let before = access
        .snapshot()
        .workspaces
        .get(&ws.0)
        .and_then(|w| w.acls.get(kind, &key).cloned());
    let object_id = object["id"]
        .as_str()
        .and_then(|s| Uuid::try_parse(s).ok())
        .unwrap_or_default();
    let name = object["name"].as_str().unwrap_or(&key).to_string();
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    if open {
        store::object_acls::delete_acl(&mut tx.access(account), account, ws, kind, &key).await?;
    } else {
        let row = store::object_acls::AclRow {
            workspace_id: ws,
            kind,
            key: key.clone(),
            acl: acl.clone(),
        };
        store::object_acls::upsert_acl(&mut tx.access(account), account, &row, app.now()).await?;
    }
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("object-acl", "updated", object_id)
            .name(name)
            .workspace(ws)
            .payload(json!({
                "object_kind": kind.code(),
                "object_key": key,
                "before": before.map(|a| ids(&a)),
                "after": (!open).then(|| ids(&acl)),
            })),
    )
    .await?;
    tx.commit().await
}

/// An ACL as its accessors' ids per level (audit payloads).
fn ids(acl: &ObjectAcl) -> Value {
    let list = |l: &[Accessor]| -> Vec<Value> {
        l.iter()
            .map(|a| match a {
                Accessor::Everyone => json!("*"),
                Accessor::User { actor_id, .. } => json!({"user": actor_id}),
                Accessor::ServiceAccount { actor_id, .. } => json!({"service_account": actor_id}),
                Accessor::Team { id } => json!({"team": id}),
            })
            .collect()
    };
    json!({"manage": list(&acl.manage), "run": list(&acl.run), "view": list(&acl.view)})
}

/// One id of a `PUT …/access` list: `*`, an actor id of a user or service account of the account
/// (`team`: false), or a team id of the account.
async fn resolve(
    c: &mut store::Conn,
    account: AccountId,
    s: &str,
    team: bool,
    level: Level,
) -> Result<Accessor> {
    if s == "*" {
        return Ok(Accessor::Everyone);
    }
    let field = format!(
        "{}_{}_ids",
        level.name(),
        if team { "team" } else { "actor" }
    );
    let id = Uuid::try_parse(s)
        .map_err(|_| Error::validation(format!("{field}: {s:?} is neither a UUID nor *")))?;
    if team {
        return match store::teams::find_team(c, account, TeamId(id)).await? {
            Some(_) => Ok(Accessor::Team { id }),
            None => Err(Error::validation(format!(
                "{field}: {id} is not a team of this account"
            ))),
        };
    }
    if let Some(user) = store::users::find_user_by_actor(c, id).await? {
        if store::memberships::find_membership_by_user(c, account, user)
            .await?
            .is_some()
        {
            return Ok(Accessor::User {
                id: user.0,
                actor_id: id,
            });
        }
    }
    if let Some(bot) = store::service_accounts::find_bot_by_actor(c, account, id).await? {
        return Ok(Accessor::ServiceAccount {
            id: bot,
            actor_id: id,
        });
    }
    Err(Error::validation(format!(
        "{field}: {id} is not the actor id of a member or service account of this account"
    )))
}

// ---- Enforcement on gateway calls ----

/// How long a deployment's work pool is remembered (a deployment moved to another pool by a
/// call through this server is forgotten at once; by another server or directly upstream, within
/// this time).
const POOL_TTL: Duration = Duration::from_secs(10);
/// Entries kept before the cache is emptied.
const POOL_CACHE_MAX: usize = 100_000;

/// Deployments' work pools, as the upstream answered them: what delegation to a pool's ACL needs.
#[derive(Default)]
pub struct PoolCache(Mutex<FxHashMap<PoolKey, PoolEntry>>);

/// (pool name, when the upstream answered it)
type PoolEntry = (Option<Box<str>>, Instant);

/// (workspace, deployment id)
type PoolKey = (Uuid, Box<str>);

impl PoolCache {
    fn get(&self, ws: Uuid, id: &str) -> Option<Option<String>> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&(ws, id.into()))
            .filter(|(_, at)| at.elapsed() < POOL_TTL)
            .map(|(p, _)| p.as_deref().map(str::to_string))
    }

    fn put(&self, ws: Uuid, id: &str, pool: Option<&str>) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= POOL_CACHE_MAX {
            m.clear();
        }
        m.insert((ws, id.into()), (pool.map(Into::into), Instant::now()));
    }

    fn forget(&self, ws: Uuid, id: &str) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(&(ws, id.into()));
    }
}

/// A deployment's work pool name (`None`: it has none, or it does not exist). Asked of the
/// upstream only when some work pool of the workspace has an ACL; cached for [`POOL_TTL`].
async fn pool_of(
    app: &App,
    t: &Target<'_>,
    up: &Upstream,
    view: &AclView,
    id: &str,
) -> Result<Option<String>> {
    if !view.has(ObjectKind::WorkPool) {
        return Ok(None);
    }
    if let Some(p) = app.deployment_pools.get(t.workspace.0, id) {
        return Ok(p);
    }
    let pool = match call(app, up, Method::GET, &format!("deployments/{id}"), None).await {
        Ok(v) => v["work_pool_name"].as_str().map(str::to_string),
        Err(Error::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    app.deployment_pools.put(t.workspace.0, id, pool.as_deref());
    Ok(pool)
}

/// What the gateway must still do with the answer of an ACL-governed call.
#[derive(Clone)]
pub struct After {
    route: AclRoute,
    view: AclView,
    /// The call's body (the filter of a count or a page).
    body: Option<Vec<u8>>,
}

/// A refusal by an object's ACL: 404 when the caller may not even view the object (it does not
/// exist for them), else 403. Audited like every denial.
fn refuse(
    app: &App,
    p: &Principal,
    t: &Target<'_>,
    kind: ObjectKind,
    key: &str,
    level: Level,
    visible: bool,
) -> Error {
    let what = format!(
        "{} access to {} {key} (object access control list)",
        level.name(),
        kind.code()
    );
    audit::record_denial(app, p, t.account, &what, Some(t.workspace));
    if visible {
        Error::Forbidden(format!(
            "the access control list of this {} does not give you {} access",
            kind.code().replace('_', " "),
            level.name()
        ))
    } else {
        Error::NotFound(format!("{} not found.", title(kind)))
    }
}

/// Requires `level` on a deployment (delegated to its pool's ACL).
async fn require_deployment(
    app: &App,
    p: &Principal,
    t: &Target<'_>,
    up: &Upstream,
    view: &AclView,
    id: &str,
    level: Level,
) -> Result<()> {
    let pool = pool_of(app, t, up, view, id).await?;
    if view.deployment(id, pool.as_deref(), level) {
        return Ok(());
    }
    let visible = level > Level::View && view.deployment(id, pool.as_deref(), Level::View);
    Err(refuse(
        app,
        p,
        t,
        ObjectKind::Deployment,
        id,
        level,
        visible,
    ))
}

/// Requires `level` on a work pool named in a body (a pool without an ACL needs nothing).
fn require_pool(
    app: &App,
    p: &Principal,
    t: &Target<'_>,
    view: &AclView,
    pool: &str,
    level: Level,
) -> Result<()> {
    if view.allows(ObjectKind::WorkPool, pool, level) {
        return Ok(());
    }
    let visible = view.allows(ObjectKind::WorkPool, pool, Level::View);
    Err(refuse(
        app,
        p,
        t,
        ObjectKind::WorkPool,
        pool,
        level,
        visible,
    ))
}

fn unreadable(u: canonical::Unreadable) -> Error {
    Error::Malformed(format!(
        "the gateway refused this call: it cannot read {} unambiguously",
        u.0
    ))
}

/// The body as a JSON object (an absent body is an empty object).
fn object(body: Option<&[u8]>) -> Result<Map<String, Value>> {
    match body {
        None | Some(b"") => Ok(Map::new()),
        Some(b) => canonical::json_object(b).map_err(unreadable),
    }
}

/// A string field of a body that must be a string or null when present.
fn string_field<'a>(o: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>> {
    match o.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::Malformed(format!(
            "the gateway refused this call: {name} must be a string"
        ))),
    }
}

/// Decides an ACL-governed gateway call before it is forwarded (`view`: the caller's place on
/// the workspace's ACLs, from the gate; `body`: the whole body when the route needs it). Answers
/// what must be done with the upstream's answer, for the reads that name or list objects.
pub async fn decide(
    app: &App,
    p: &Principal,
    t: &Target<'_>,
    up: &Upstream,
    route: AclRoute,
    view: AclView,
    body: Option<&[u8]>,
) -> Result<Option<After>> {
    let segment = |i: usize| -> Result<Option<String>> {
        let raw = t.rest.split('/').nth(i).unwrap_or("");
        canonical::decode_component(raw)
            .map(|s| Some(s).filter(|s| !s.is_empty()))
            .map_err(unreadable)
    };
    match route {
        AclRoute::Path {
            kind,
            segment: i,
            level,
        } => {
            // A malformed id reaches no object: the upstream answers it (422 or 404).
            let Some(key) = segment(i)?.and_then(|s| kind.key(&s)) else {
                return Ok(None);
            };
            if kind == ObjectKind::Deployment {
                require_deployment(app, p, t, up, &view, &key, level).await?;
                if level == Level::Manage {
                    app.deployment_pools.forget(t.workspace.0, &key);
                }
            } else if !view.allows(kind, &key, level) {
                let visible = level > Level::View && view.allows(kind, &key, Level::View);
                return Err(refuse(app, p, t, kind, &key, level, visible));
            }
            Ok(None)
        }
        AclRoute::PatchDeployment => {
            if let Some(id) = segment(1)?.and_then(|s| ObjectKind::Deployment.key(&s)) {
                require_deployment(app, p, t, up, &view, &id, Level::Manage).await?;
                app.deployment_pools.forget(t.workspace.0, &id);
            }
            if let Some(pool) = string_field(&object(body)?, "work_pool_name")? {
                require_pool(app, p, t, &view, pool, Level::Manage)?;
            }
            Ok(None)
        }
        AclRoute::CreateDeployment => {
            let o = object(body)?;
            if let Some(pool) = string_field(&o, "work_pool_name")? {
                require_pool(app, p, t, &view, pool, Level::Manage)?;
            }
            // The deployment this upsert would replace (same flow and name).
            let flow = string_field(&o, "flow_id")?;
            let name = string_field(&o, "name")?;
            if let (Some(flow), Some(name)) = (flow, name) {
                let filter = json!({
                    "flows": {"id": {"any_": [flow]}},
                    "deployments": {"name": {"any_": [name]}},
                    "limit": 1,
                });
                let found = call(app, up, Method::POST, "deployments/filter", Some(&filter))
                    .await
                    .or_else(|e| match e {
                        // A malformed flow id: the upstream refuses the create itself.
                        Error::UpstreamFailed(_) => Ok(Value::Null),
                        e => Err(e),
                    })?;
                let existing = found
                    .as_array()
                    .and_then(|a| a.first())
                    .and_then(|d| d["id"].as_str().map(str::to_string));
                if let Some(id) = existing {
                    require_deployment(app, p, t, up, &view, &id, Level::Manage).await?;
                    app.deployment_pools.forget(t.workspace.0, &id);
                }
            }
            Ok(None)
        }
        AclRoute::CreateFlowRun => {
            let o = object(body)?;
            if let Some(id) = string_field(&o, "deployment_id")? {
                if let Some(id) = ObjectKind::Deployment.key(id) {
                    require_deployment(app, p, t, up, &view, &id, Level::Run).await?;
                }
            }
            Ok(None)
        }
        AclRoute::DeploymentIds => {
            let o = object(body)?;
            let ids = match o.get("deployment_ids") {
                None | Some(Value::Null) => vec![],
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                Some(_) => {
                    return Err(Error::Malformed(
                        "the gateway refused this call: deployment_ids must be a list".into(),
                    ))
                }
            };
            for id in ids {
                if let Some(id) = ObjectKind::Deployment.key(id) {
                    require_deployment(app, p, t, up, &view, &id, Level::Run).await?;
                }
            }
            Ok(None)
        }
        AclRoute::BulkDelete => {
            if !view
                .denied(ObjectKind::Deployment, Level::Manage)
                .is_empty()
                || !view.denied(ObjectKind::WorkPool, Level::Manage).is_empty()
            {
                audit::record_denial(
                    app,
                    p,
                    t.account,
                    "bulk delete of deployments (object access control lists)",
                    Some(t.workspace),
                );
                return Err(Error::Forbidden(
                    "access control lists keep you from managing some deployments of this workspace: delete deployments one by one".into(),
                ));
            }
            Ok(None)
        }
        AclRoute::Object(_) | AclRoute::List { .. } | AclRoute::Count(_) => Ok(Some(After {
            route,
            view,
            body: body.map(<[u8]>::to_vec),
        })),
    }
}

/// Whether the caller may view one object of a list or a by-name read.
fn visible(view: &AclView, kind: ObjectKind, item: &Value) -> bool {
    let s = |f: &str| item[f].as_str();
    match kind {
        ObjectKind::Deployment => s("id").is_none_or(|id| {
            view.deployment(&id.to_ascii_lowercase(), s("work_pool_name"), Level::View)
        }),
        ObjectKind::WorkPool => s("name").is_none_or(|n| view.allows(kind, n, Level::View)),
        ObjectKind::BlockDocument => {
            s("id").is_none_or(|id| view.allows(kind, &id.to_ascii_lowercase(), Level::View))
        }
    }
}

/// Filters a successful answer of an ACL-governed read ([`After`] from [`decide`]): a hidden
/// object read by name is 404, hidden objects are left out of lists, and counts (a count, a
/// page's) leave them out too — the upstream counts the hidden objects the same filter matches,
/// and they are subtracted. An answer the gateway cannot read is refused, never relayed as it is.
pub async fn filter_answer(
    app: &App,
    t: &Target<'_>,
    up: &Upstream,
    after: &After,
    answer: &[u8],
) -> Result<Vec<u8>> {
    let bad = || Error::UpstreamFailed("the upstream's answer could not be read".into());
    let mut v: Value = serde_json::from_slice(answer).map_err(|_| bad())?;
    let view = &after.view;
    match after.route {
        AclRoute::Object(kind) if !visible(view, kind, &v) => {
            return Err(Error::NotFound(format!("{} not found.", title(kind))));
        }
        AclRoute::List {
            kind,
            paginate: false,
        } => {
            v.as_array_mut()
                .ok_or_else(bad)?
                .retain(|item| visible(view, kind, item));
        }
        AclRoute::List {
            kind,
            paginate: true,
        } => {
            if !v.is_object() {
                return Err(bad());
            }
            v["results"]
                .as_array_mut()
                .ok_or_else(bad)?
                .retain(|item| visible(view, kind, item));
            let hidden = hidden_count(app, t, up, view, kind, after.body.as_deref()).await?;
            let count = v["count"].as_u64().unwrap_or(0).saturating_sub(hidden);
            v["count"] = json!(count);
            if let Some(limit) = v["limit"].as_u64().filter(|l| *l > 0) {
                v["pages"] = json!(count.div_ceil(limit));
            }
        }
        AclRoute::Count(kind) => {
            let n = v.as_u64().ok_or_else(bad)?;
            let hidden = hidden_count(app, t, up, view, kind, after.body.as_deref()).await?;
            v = json!(n.saturating_sub(hidden));
        }
        _ => {}
    }
    serde_json::to_vec(&v).map_err(|_| bad())
}

/// The keys of `denied` a filter's `{collection: {field: {any_: [...]}}}` still admits (all of
/// them when the filter has no such list).
fn narrowed(
    f: &Map<String, Value>,
    collection: &str,
    field: &str,
    denied: Vec<String>,
) -> Vec<String> {
    match f
        .get(collection)
        .and_then(|c| c.get(field))
        .and_then(|c| c.get("any_"))
        .and_then(Value::as_array)
    {
        Some(any) => {
            let any: Vec<String> = any
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_ascii_lowercase)
                .collect();
            denied
                .into_iter()
                .filter(|d| any.contains(&d.to_ascii_lowercase()))
                .collect()
        }
        None => denied,
    }
}

/// `f` with `{collection: {field: {any_: keys}}}` set (the rest of the filter kept).
fn with_any(f: &Map<String, Value>, collection: &str, field: &str, keys: &[String]) -> Value {
    let mut f = f.clone();
    let c = f
        .entry(collection)
        .or_insert_with(|| Value::Object(Map::new()));
    if !c.is_object() {
        *c = Value::Object(Map::new());
    }
    c[field] = json!({"any_": keys});
    Value::Object(f)
}

/// How many objects the caller may not view the filter `body` (a count's or a page's) matches.
async fn hidden_count(
    app: &App,
    t: &Target<'_>,
    up: &Upstream,
    view: &AclView,
    kind: ObjectKind,
    body: Option<&[u8]>,
) -> Result<u64> {
    let mut f = object(body)?;
    for k in ["page", "limit", "offset", "sort"] {
        f.remove(k);
    }
    // The objects of `collection` whose `field` is one of `hidden` that the filter matches.
    let count =
        |path: &'static str, collection: &'static str, field: &'static str, hidden: Vec<String>| {
            let f = &f;
            async move {
                let keys = narrowed(f, collection, field, hidden);
                if keys.is_empty() {
                    return Ok(0);
                }
                let filter = with_any(f, collection, field, &keys);
                let v = call(app, up, Method::POST, path, Some(&filter)).await?;
                v.as_u64()
                    .ok_or_else(|| Error::UpstreamFailed(format!("{path} did not answer a number")))
            }
        };
    match kind {
        ObjectKind::WorkPool => {
            let hidden = view.denied(kind, Level::View);
            count("work_pools/count", "work_pools", "name", hidden).await
        }
        ObjectKind::BlockDocument => {
            let hidden = view.denied(kind, Level::View);
            count("block_documents/count", "block_documents", "id", hidden).await
        }
        ObjectKind::Deployment => {
            // Deployments in pools whose ACL hides them…
            let pools = view.denied(ObjectKind::WorkPool, Level::View);
            let in_pools = count("deployments/count", "work_pools", "name", pools);
            // …and those hidden by their own ACL, unless their pool's ACL governs them (the
            // pools looked up together).
            let own = async {
                let denied = narrowed(
                    &f,
                    "deployments",
                    "id",
                    view.denied(ObjectKind::Deployment, Level::View),
                );
                let pools = futures_util::future::join_all(
                    denied.iter().map(|id| pool_of(app, t, up, view, id)),
                )
                .await;
                let mut own = Vec::with_capacity(denied.len());
                for (id, pool) in denied.into_iter().zip(pools) {
                    if !pool?.is_some_and(|p| view.governed(ObjectKind::WorkPool, &p)) {
                        own.push(id);
                    }
                }
                count("deployments/count", "deployments", "id", own).await
            };
            let (a, b) = futures_util::future::join(in_pools, own).await;
            Ok(a? + b?)
        }
    }
}

// ---- The dashboard's names ----

/// The key of an object named as people name it (`flow/deployment`, a work pool's name,
/// `block-type-slug/block-name`), looked up on the workspace's upstream (the kind's `see_` scope;
/// whether the caller may view it is [`read_access`]'s to decide).
pub async fn find_by_name(
    app: &App,
    p: &Principal,
    account: AccountId,
    ws: WorkspaceId,
    kind: ObjectKind,
    name: &str,
) -> Result<String> {
    require(app, p, account, ws, see_scope(kind)).await?;
    let path = match kind {
        ObjectKind::WorkPool => return Ok(name.to_string()),
        ObjectKind::Deployment => {
            let (flow, dep) = name.split_once('/').ok_or_else(|| {
                Error::validation("name a deployment as flow-name/deployment-name")
            })?;
            format!("deployments/name/{}/{}", segment(flow), segment(dep))
        }
        ObjectKind::BlockDocument => {
            let (slug, block) = name
                .split_once('/')
                .ok_or_else(|| Error::validation("name a block as block-type-slug/block-name"))?;
            format!(
                "block_types/slug/{}/block_documents/name/{}",
                segment(slug),
                segment(block)
            )
        }
    };
    let v = upstream_object(app, account, ws, kind, &path).await?;
    v["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Error::UpstreamFailed("the upstream's answer has no id".into()))
}

/// The accessors of one level as the dashboard's form writes them — one per line: `*`, a
/// member's email, a service account's name, `team:NAME` — as (actor ids, team ids).
pub async fn accessors_from_lines(
    app: &App,
    account: AccountId,
    text: &str,
) -> Result<(Vec<String>, Vec<String>)> {
    let mut c = app.store.reader().await?;
    let (mut actors, mut teams) = (Vec::new(), Vec::new());
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line == "*" {
            actors.push("*".to_string());
        } else if let Some(team) = line.strip_prefix("team:") {
            let f = store::teams::TeamFilter {
                names: Some(vec![team.trim().to_string()]),
                ..Default::default()
            };
            let t = store::teams::find_teams(&mut c, account, &f, 1, 0)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    Error::validation(format!("no team named {team:?} in this account"))
                })?;
            teams.push(t.id.0.to_string());
        } else if line.contains('@') {
            let u = store::users::find_user_by_email(&mut c, line)
                .await?
                .ok_or_else(|| {
                    Error::validation(format!("{line} is not a member of this account"))
                })?;
            actors.push(u.actor_id.0.to_string());
        } else {
            let b = store::service_accounts::find_bots(
                &mut c,
                account,
                Some(&[line.to_string()]),
                1,
                0,
            )
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                Error::validation(format!("no service account named {line:?} in this account"))
            })?;
            actors.push(b.actor_id.0.to_string());
        }
    }
    Ok((actors, teams))
}
