//! Workspaces: create, read, update, delete, list — visible to a caller only where they hold at
//! least one scope (account Owners and Admins see all).

use crate::app::App;
use crate::authz::Principal;
use crate::domain::role::AccountPermission as P;
use crate::domain::scope::Scope;
use crate::domain::{validate, AccountId, RoleId, Workspace, WorkspaceId};
use crate::services::audit::{self, NewEvent};
use crate::services::error::unique_or;
use crate::services::input::{double_option, page, AnyOf};
use crate::services::roles::usable_role_scopes;
use crate::services::{Error, Result};
use crate::store;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

/// `POST …/workspaces/` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^\s*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    pub name: String,
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
    )]
    pub handle: String,
    #[serde(default)]
    #[schema(max_length = 2000, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub description: Option<String>,
    pub default_workspace_role_id: Option<RoleId>,
}

pub async fn create_workspace(
    app: &App,
    p: &Principal,
    account: AccountId,
    w: CreateWorkspace,
) -> Result<Workspace> {
    crate::services::authorize(app, p, account, P::CreateWorkspace).await?;
    let now = app.now();
    let ws = Workspace {
        id: WorkspaceId::new(),
        created: now,
        updated: now,
        account_id: account,
        name: validate::name("name", &w.name).map_err(Error::Validation)?,
        handle: validate::handle(&w.handle).map_err(Error::Validation)?,
        description: validate::text("description", w.description.as_deref().unwrap_or(""), 2000)
            .map_err(Error::Validation)?,
        default_workspace_role_id: w.default_workspace_role_id,
        is_public: false,
    };
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    crate::services::plans::ensure_workspace_slot(app, &mut tx, account).await?;
    if let Some(r) = ws.default_workspace_role_id {
        usable_role_scopes(&mut tx, account, r).await?;
    }
    store::workspaces::insert_workspace(&mut tx.access(account), &ws)
        .await
        .map_err(|e| {
            unique_or(
                e,
                format!("workspace handle {:?} is taken in this account", ws.handle),
            )
        })?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("workspace", "created", ws.id.0)
            .name(ws.handle.clone())
            .workspace(ws.id)
            .payload(
                json!({"name": ws.name, "handle": ws.handle, "description": ws.description,
                "default_workspace_role_id": ws.default_workspace_role_id}),
            ),
    )
    .await?;
    tx.commit().await?;
    Ok(ws)
}

/// Reads a workspace the caller can reach (any scope in it).
pub async fn read_workspace(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: WorkspaceId,
) -> Result<Workspace> {
    crate::services::gate::workspace(app, p, account, id).await?;
    let mut c = app.store.reader().await?;
    store::workspaces::find_workspace(&mut c, account, id)
        .await?
        .ok_or_else(|| Error::not_found("workspace"))
}

/// `GET /api/workspaces/{id}`: the workspace, found without its account.
pub async fn read_workspace_by_id(app: &App, p: &Principal, id: WorkspaceId) -> Result<Workspace> {
    let (account, _) = crate::services::gate::account_of_workspace(app, p, id).await?;
    let mut c = app.store.reader().await?;
    store::workspaces::find_workspace(&mut c, account, id)
        .await?
        .ok_or_else(|| Error::not_found("workspace"))
}

/// `workspaces` part of the filter body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceFields {
    pub handle: Option<AnyOf<String>>,
    pub id: Option<AnyOf<WorkspaceId>>,
}

/// `POST …/workspaces/filter` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterWorkspaces {
    #[schema(minimum = 0)]
    pub limit: Option<i64>,
    #[schema(minimum = 0)]
    pub offset: Option<i64>,
    pub workspaces: Option<WorkspaceFields>,
    pub sort: Option<String>,
}

pub async fn filter_workspaces(
    app: &App,
    p: &Principal,
    account: AccountId,
    f: FilterWorkspaces,
) -> Result<Vec<Workspace>> {
    let (limit, offset) = page(f.limit, f.offset)?;
    Ok(visible_workspaces(app, p, account, &f)
        .await?
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .collect())
}

/// Every workspace matching the filter that the caller can reach, in the store's order (what
/// `filter` pages through and `count` counts).
async fn visible_workspaces(
    app: &App,
    p: &Principal,
    account: AccountId,
    f: &FilterWorkspaces,
) -> Result<Vec<Workspace>> {
    let access = crate::services::gate::authorize_access(app, p, account, P::ReadWorkspace).await?;
    let handles = f
        .workspaces
        .as_ref()
        .and_then(|w| w.handle.as_ref())
        .map(|h| h.any_.clone());
    let ids = f
        .workspaces
        .as_ref()
        .and_then(|w| w.id.as_ref())
        .map(|i| i.any_.iter().map(|x| x.to_string()).collect::<Vec<_>>());
    let all = {
        let mut c = app.store.reader().await?;
        store::workspaces::find_workspaces(
            &mut c,
            account,
            handles.as_deref(),
            ids.as_deref(),
            i64::MAX,
            0,
        )
        .await?
    };
    Ok(all.into_iter().filter(|w| access.sees(w.id)).collect())
}

/// How many workspaces match the filter and are reachable by the caller (paging ignored, but
/// validated as the filter's is).
pub async fn count_workspaces(
    app: &App,
    p: &Principal,
    account: AccountId,
    f: FilterWorkspaces,
) -> Result<i64> {
    page(f.limit, f.offset)?;
    Ok(visible_workspaces(app, p, account, &f).await?.len() as i64)
}

/// `PATCH …/workspaces/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkspace {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^\s*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    pub name: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 63,
        pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
    )]
    pub handle: Option<String>,
    #[schema(max_length = 2000, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    pub default_workspace_role_id: Option<Option<RoleId>>,
}

/// Renaming needs `write_workspace_settings`; setting the default role for all members needs
/// `manage_workspace_users` as well (it grants access).
pub async fn update_workspace(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: WorkspaceId,
    u: UpdateWorkspace,
) -> Result<()> {
    let now = app.now();
    let held =
        crate::services::require_scope(app, p, account, id, Scope::WriteWorkspaceSettings).await?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let mut ws = store::workspaces::find_workspace(&mut tx, account, id)
        .await?
        .ok_or_else(|| Error::not_found("workspace"))?;
    let before = ws.clone();
    if let Some(n) = u.name {
        ws.name = validate::name("name", &n).map_err(Error::Validation)?;
    }
    if let Some(h) = u.handle {
        ws.handle = validate::handle(&h).map_err(Error::Validation)?;
    }
    if let Some(d) = u.description {
        ws.description = validate::text("description", &d, 2000).map_err(Error::Validation)?;
    }
    if let Some(role) = u.default_workspace_role_id {
        if !held.contains(Scope::ManageWorkspaceUsers) {
            return Err(crate::services::deny(
                app,
                p,
                account,
                "missing workspace scope manage_workspace_users (needed to set the default role)"
                    .into(),
            ));
        }
        if let Some(r) = role {
            let scopes = usable_role_scopes(&mut tx, account, r).await?;
            if !held.is_superset(scopes) {
                return Err(crate::services::deny(
                    app,
                    p,
                    account,
                    "you cannot grant a role with scopes you do not hold".into(),
                ));
            }
        }
        ws.default_workspace_role_id = role;
    }
    ws.updated = now;
    store::workspaces::update_workspace(&mut tx.access(account), &ws)
        .await
        .map_err(|e| {
            unique_or(
                e,
                format!("workspace handle {:?} is taken in this account", ws.handle),
            )
        })?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("workspace", "updated", id.0)
            .name(ws.handle.clone())
            .workspace(id)
            .payload(audit::changes(&before, &ws)),
    )
    .await?;
    tx.commit().await
}

pub async fn delete_workspace(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: WorkspaceId,
) -> Result<()> {
    crate::services::authorize(app, p, account, P::DeleteWorkspace).await?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let ws = store::workspaces::find_workspace(&mut tx, account, id)
        .await?
        .ok_or_else(|| Error::not_found("workspace"))?;
    store::workspaces::delete_workspace(&mut tx.access(account), account, id).await?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("workspace", "deleted", id.0)
            .name(ws.handle.clone())
            .workspace(id)
            .payload(json!({"name": ws.name, "handle": ws.handle})),
    )
    .await?;
    tx.commit().await
}
