//! Workspace roles: the five built-ins (read-only) and an account's custom roles.

use crate::app::App;
use crate::authz::{custom_role_scopes, Principal};
use crate::domain::plan::Feature;
use crate::domain::role::{AccountPermission as P, BuiltinWorkspaceRole};
use crate::domain::scope::{catalogue, ScopeInfo, ScopeSet};
use crate::domain::{validate, AccountId, CustomRoleRow, RoleId, WorkspaceRole};
use crate::services::audit::{self, NewEvent};
use crate::services::error::unique_or;
use crate::services::input::{double_option, page, AnyOf};
use crate::services::{Error, Result};
use crate::store;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

pub fn builtin_view(r: BuiltinWorkspaceRole) -> WorkspaceRole {
    WorkspaceRole {
        id: RoleId(r.id()),
        created: None,
        updated: None,
        account_id: None,
        name: r.name().to_string(),
        description: r.description().to_string(),
        scopes: r.scopes().names(),
        permissions: vec![],
        inherited_role_id: None,
        is_system_role: true,
    }
}

fn custom_view(r: CustomRoleRow) -> WorkspaceRole {
    let own = ScopeSet::parse_names(r.scopes.iter().map(String::as_str)).unwrap_or_default();
    WorkspaceRole {
        id: r.id,
        created: Some(r.created),
        updated: Some(r.updated),
        account_id: Some(r.account_id),
        scopes: custom_role_scopes(own, r.inherited_role_id).names(),
        name: r.name,
        description: r.description,
        permissions: vec![],
        inherited_role_id: r.inherited_role_id,
        is_system_role: false,
    }
}

/// The scope catalogue.
pub fn workspace_scopes() -> Vec<ScopeInfo> {
    catalogue()
}

/// `POST …/workspace_roles/` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspaceRole {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^\s*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    pub name: String,
    #[serde(default)]
    #[schema(max_length = 1000, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub description: String,
    #[schema(value_type = Vec<crate::domain::scope::ScopeName>)]
    pub scopes: Vec<String>,
    #[schema(value_type = Option<crate::domain::BuiltinWorkspaceRoleId>)]
    pub inherited_role_id: Option<RoleId>,
}

fn check_scopes(scopes: &[String]) -> Result<Vec<String>> {
    let set = ScopeSet::parse_names(scopes.iter().map(String::as_str))
        .map_err(|bad| Error::validation(format!("unknown scope {bad:?}")))?;
    Ok(set.names().into_iter().map(str::to_string).collect())
}

fn check_inherited(id: Option<RoleId>) -> Result<Option<RoleId>> {
    match id {
        Some(r) if BuiltinWorkspaceRole::from_id(r.0).is_none() => Err(Error::validation(
            "inherited_role_id must be one of the built-in workspace roles",
        )),
        other => Ok(other),
    }
}

fn check_name(name: &str) -> Result<String> {
    let n = validate::name("name", name).map_err(Error::Validation)?;
    if BuiltinWorkspaceRole::ALL
        .iter()
        .any(|b| b.name().eq_ignore_ascii_case(&n))
    {
        return Err(Error::conflict(format!(
            "{n:?} is the name of a built-in role"
        )));
    }
    Ok(n)
}

pub async fn create_role(
    app: &App,
    p: &Principal,
    account: AccountId,
    r: CreateWorkspaceRole,
) -> Result<WorkspaceRole> {
    crate::services::authorize(app, p, account, P::CreateWorkspaceRole).await?;
    crate::services::plans::require_feature(app, account, Feature::CustomRoles)?;
    let now = app.now();
    let row = CustomRoleRow {
        id: RoleId::new(),
        created: now,
        updated: now,
        account_id: account,
        name: check_name(&r.name)?,
        description: validate::text("description", &r.description, 1000)
            .map_err(Error::Validation)?,
        scopes: check_scopes(&r.scopes)?,
        inherited_role_id: check_inherited(r.inherited_role_id)?,
    };
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    store::roles::insert_role(&mut tx, &row)
        .await
        .map_err(|e| unique_or(e, format!("a role named {:?} exists", row.name)))?;
    let view = custom_view(row);
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("workspace-role", "created", view.id.0)
            .name(view.name.clone())
            .payload(json!({"name": view.name, "scopes": view.scopes, "inherited_role_id": view.inherited_role_id})),
    )
    .await?;
    tx.commit().await?;
    Ok(view)
}

/// Reads a role of this account or a built-in.
pub async fn read_role(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: RoleId,
) -> Result<WorkspaceRole> {
    crate::services::authorize(app, p, account, P::ReadWorkspaceRole).await?;
    if let Some(b) = BuiltinWorkspaceRole::from_id(id.0) {
        return Ok(builtin_view(b));
    }
    let mut c = app.store.reader().await?;
    store::roles::find_role(&mut c, account, id)
        .await?
        .map(custom_view)
        .ok_or_else(|| Error::not_found("workspace role"))
}

/// `workspace_roles` part of the filter body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleFields {
    pub name: Option<AnyOf<String>>,
}

/// `POST …/workspace_roles/filter` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterWorkspaceRoles {
    #[schema(minimum = 0)]
    pub limit: Option<i64>,
    #[schema(minimum = 0)]
    pub offset: Option<i64>,
    pub workspace_roles: Option<RoleFields>,
}

/// Built-ins first, then the account's custom roles by name.
pub async fn filter_roles(
    app: &App,
    p: &Principal,
    account: AccountId,
    f: FilterWorkspaceRoles,
) -> Result<Vec<WorkspaceRole>> {
    crate::services::authorize(app, p, account, P::ReadWorkspaceRole).await?;
    let (limit, offset) = page(f.limit, f.offset)?;
    let names = f.workspace_roles.and_then(|r| r.name).map(|n| n.any_);
    let mut c = app.store.reader().await?;
    let custom = store::roles::find_roles(&mut c, account, names.as_deref()).await?;
    let all = BuiltinWorkspaceRole::ALL
        .into_iter()
        .filter(|b| {
            names
                .as_ref()
                .is_none_or(|n| n.iter().any(|x| x == b.name()))
        })
        .map(builtin_view)
        .chain(custom.into_iter().map(custom_view));
    Ok(all.skip(offset as usize).take(limit as usize).collect())
}

/// `PATCH …/workspace_roles/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkspaceRole {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^\s*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$"
    )]
    pub name: Option<String>,
    #[schema(max_length = 1000, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub description: Option<String>,
    #[schema(value_type = Option<Vec<crate::domain::scope::ScopeName>>)]
    pub scopes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<crate::domain::BuiltinWorkspaceRoleId>)]
    pub inherited_role_id: Option<Option<RoleId>>,
}

pub async fn update_role(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: RoleId,
    u: UpdateWorkspaceRole,
) -> Result<()> {
    crate::services::authorize(app, p, account, P::UpdateWorkspaceRole).await?;
    crate::services::plans::require_feature(app, account, Feature::CustomRoles)?;
    if BuiltinWorkspaceRole::from_id(id.0).is_some() {
        return Err(Error::Forbidden("built-in roles cannot be changed".into()));
    }
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let mut row = store::roles::find_role(&mut tx, account, id)
        .await?
        .ok_or_else(|| Error::not_found("workspace role"))?;
    let before = custom_view(row.clone());
    if let Some(n) = u.name {
        row.name = check_name(&n)?;
    }
    if let Some(d) = u.description {
        row.description = validate::text("description", &d, 1000).map_err(Error::Validation)?;
    }
    if let Some(s) = u.scopes {
        row.scopes = check_scopes(&s)?;
    }
    if let Some(i) = u.inherited_role_id {
        row.inherited_role_id = check_inherited(i)?;
    }
    row.updated = app.now();
    store::roles::update_role(&mut tx.access(account), &row)
        .await
        .map_err(|e| unique_or(e, format!("a role named {:?} exists", row.name)))?;
    let after = custom_view(row);
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("workspace-role", "updated", id.0)
            .name(after.name.clone())
            .payload(audit::changes(&before, &after)),
    )
    .await?;
    tx.commit().await
}

/// Deletes a custom role; a role still granted or used as a workspace default → 409.
pub async fn delete_role(app: &App, p: &Principal, account: AccountId, id: RoleId) -> Result<()> {
    crate::services::authorize(app, p, account, P::DeleteWorkspaceRole).await?;
    if BuiltinWorkspaceRole::from_id(id.0).is_some() {
        return Err(Error::Forbidden("built-in roles cannot be deleted".into()));
    }
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let role = store::roles::find_role(&mut tx, account, id)
        .await?
        .ok_or_else(|| Error::not_found("workspace role"))?;
    let uses = store::roles::count_role_uses(&mut tx, account, id).await?;
    if uses > 0 {
        return Err(Error::conflict(format!(
            "the role is in use by {uses} grant(s) or workspace default(s); reassign them first"
        )));
    }
    match store::roles::delete_role(&mut tx.access(account), account, id).await {
        Ok(true) => {}
        Ok(false) => return Err(Error::not_found("workspace role")),
        Err(store::Error::ForeignKey) => {
            return Err(Error::conflict(
                "the role is in use; reassign its grants first",
            ))
        }
        Err(e) => return Err(e.into()),
    }
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("workspace-role", "deleted", id.0)
            .name(role.name.clone())
            .payload(json!({"name": role.name, "scopes": role.scopes})),
    )
    .await?;
    tx.commit().await
}

/// Resolves a role id usable in this account (built-in or the account's own custom role) to its
/// closed scopes; anything else is a validation error.
pub async fn usable_role_scopes(
    c: &mut store::Conn,
    account: AccountId,
    id: RoleId,
) -> Result<ScopeSet> {
    if let Some(b) = BuiltinWorkspaceRole::from_id(id.0) {
        return Ok(b.scopes());
    }
    let row = store::roles::find_role(c, account, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("workspace role {id} not found")))?;
    let own = ScopeSet::parse_names(row.scopes.iter().map(String::as_str)).unwrap_or_default();
    Ok(custom_role_scopes(own, row.inherited_role_id))
}
