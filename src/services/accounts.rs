//! Accounts: create, read, update, delete, settings, roles catalogue.

use crate::app::App;
use crate::authz::Principal;
use crate::config::AccountCreation;
use crate::domain::role::{AccountPermission as P, AccountRole};
use crate::domain::{validate, Account, AccountId, AccountRoleView, RoleId};
use crate::services::audit::{self, NewEvent};
use crate::services::error::unique_or;
use crate::services::input::double_option;
use crate::services::{Error, Result};
use crate::store::{self, accounts::AccountRow};
use serde::Deserialize;
use serde_json::json;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// Account settings keys with their defaults and whether clients may change them.
const SETTINGS: &[(&str, SettingKind)] = &[
    ("allow_public_workspaces", SettingKind::Bool(false)),
    ("ai_log_summaries", SettingKind::Bool(true)),
    ("managed_execution", SettingKind::Bool(false)),
    ("enforce_ip_allowlist", SettingKind::Bool(false)),
    ("enforce_webhook_authentication", SettingKind::Bool(false)),
    ("self_healing_enabled", SettingKind::Bool(false)),
    ("enabled_feature_flags", SettingKind::ReadOnlyList),
    ("default_result_storage", SettingKind::ObjectOrNull),
    // Shortens the plan's flow-run retention for this account (never lengthens it).
    ("run_retention_days", SettingKind::DaysOrNull),
    // Single sign-on (plan feature `sso`, docs/sso.md): members whose email is in one of the
    // account's verified domains sign in only through its IdP (Owners keep a password
    // break-glass), and the account role of members created at sign-in.
    ("require_sso", SettingKind::Bool(false)),
    (
        "sso_default_account_role_id",
        SettingKind::AccountRoleOrNull,
    ),
];

#[derive(Clone, Copy)]
enum SettingKind {
    Bool(bool),
    ReadOnlyList,
    ObjectOrNull,
    DaysOrNull,
    /// The id of the built-in Member or Admin account role, or null.
    AccountRoleOrNull,
}

/// A partial settings object as clients send it: the keys they may change, each with its type
/// (the OpenAPI schema of `PATCH …/settings` and of `settings` in `PATCH …/accounts/{id}`, built
/// from [`SETTINGS`] so the two cannot drift).
pub struct SettingsPatch;

impl utoipa::PartialSchema for SettingsPatch {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, ObjectBuilder, Schema, SchemaType, Type,
        };
        let mut o = ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::Object))
            .description(Some(
                "Settings to change; unknown and read-only keys are refused",
            ))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        for (key, kind) in SETTINGS {
            let s = match kind {
                SettingKind::ReadOnlyList => continue,
                SettingKind::Bool(_) => {
                    ObjectBuilder::new().schema_type(SchemaType::Type(Type::Boolean))
                }
                SettingKind::ObjectOrNull => ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::Object, Type::Null])),
                SettingKind::DaysOrNull => ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
                    .minimum(Some(1))
                    .maximum(Some(3650)),
                SettingKind::AccountRoleOrNull => ObjectBuilder::new()
                    .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                    .enum_values(Some([
                        Value::from(AccountRole::Member.id().to_string()),
                        Value::from(AccountRole::Admin.id().to_string()),
                        Value::Null,
                    ])),
            };
            o = o.property(*key, Schema::Object(s.build()));
        }
        utoipa::openapi::RefOr::T(Schema::Object(o.build()))
    }
}

impl utoipa::ToSchema for SettingsPatch {}

/// Stored settings merged over the defaults: every known key is always present.
pub fn effective_settings(stored: &Map<String, Value>) -> Map<String, Value> {
    SETTINGS
        .iter()
        .map(|(k, kind)| {
            let default = match kind {
                SettingKind::Bool(b) => Value::Bool(*b),
                SettingKind::ReadOnlyList => Value::Array(vec![]),
                SettingKind::ObjectOrNull
                | SettingKind::DaysOrNull
                | SettingKind::AccountRoleOrNull => Value::Null,
            };
            (k.to_string(), stored.get(*k).cloned().unwrap_or(default))
        })
        .collect()
}

/// The account's flow-run retention: the plan's, or the account's shorter setting.
pub fn run_retention_days(
    settings: &Map<String, Value>,
    e: &crate::domain::plan::Entitlements,
) -> i64 {
    settings
        .get("run_retention_days")
        .and_then(Value::as_i64)
        .map_or(e.run_retention_days, |d| d.min(e.run_retention_days))
}

fn account_view(app: &App, row: AccountRow) -> Account {
    let e = crate::services::plans::entitlements(app, &row);
    let mut settings = effective_settings(&row.settings);
    // As in Prefect Cloud, the key is absent when the plan has no IP allowlist.
    if !e
        .features
        .contains(crate::domain::plan::Feature::IpAllowlist)
    {
        settings.remove("enforce_ip_allowlist");
    }
    if !e.features.contains(crate::domain::plan::Feature::Sso) {
        settings.remove("require_sso");
        settings.remove("sso_default_account_role_id");
    }
    Account {
        id: row.id,
        created: row.created,
        updated: row.updated,
        settings,
        name: row.name,
        handle: row.handle,
        location: row.location,
        link: row.link,
        image_location: None,
        billing_email: row.billing_email,
        auth_expiration_seconds: row.auth_expiration_seconds,
        status: "active",
        plan_type: e.plan.code(),
        plan_tier: None,
        self_serve: false,
        features: e.features.names(),
        sso_state: "disabled",
        scim_state: "disabled",
        workos_connection_ids: vec![],
        workos_directory_ids: vec![],
        workos_organization_id: None,
        stripe_customer_id: None,
        run_retention_days: run_retention_days(&row.settings, &e),
        audit_log_retention_days: e.audit_log_retention_days,
        automations_limit: None,
        max_deployments_per_workspace: None,
        work_pool_limit: None,
        mex_work_pool_limit: 0,
    }
}

/// `POST /api/accounts/` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
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
    #[schema(max_length = 200, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub location: Option<String>,
    #[schema(max_length = 2000, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub link: Option<String>,
    #[schema(
        max_length = 254,
        pattern = r"^\s*[^\s@\x00-\x1F\x7F-\x9F]+@[^\s@.\x00-\x1F\x7F-\x9F]+(\.[^\s@.\x00-\x1F\x7F-\x9F]+)+\s*$"
    )]
    pub billing_email: Option<String>,
}

/// Whether the caller may create accounts (site admins always; others when the installation's
/// `account_creation` is `anyone`).
pub fn may_create_account(app: &App, p: &Principal) -> bool {
    !p.is_bot() && (p.site_admin || app.config.account_creation == AccountCreation::Anyone)
}

/// Creates an account with the caller as its Owner.
pub async fn create_account(app: &App, p: &Principal, a: CreateAccount) -> Result<Account> {
    if !may_create_account(app, p) {
        return Err(Error::Forbidden(
            "only site admins may create accounts on this server".into(),
        ));
    }
    let name = validate::name("name", &a.name).map_err(Error::Validation)?;
    let handle = validate::handle(&a.handle).map_err(Error::Validation)?;
    let now = app.now();
    let id = AccountId::new();
    let mut tx = crate::services::unit::Unit::begin(app).await?;
    store::accounts::insert_account(
        &mut tx.access(id),
        id,
        &name,
        &handle,
        app.config.default_plan.code(),
        now,
    )
    .await
    .map_err(|e| unique_or(e, format!("account handle {handle:?} is taken")))?;
    let mut row = store::accounts::find_account(&mut tx, id)
        .await?
        .ok_or_else(|| Error::not_found("account"))?;
    apply_patch(
        &mut row,
        UpdateAccount {
            location: a.location.map(Some),
            link: a.link.map(Some),
            billing_email: a.billing_email.map(Some),
            ..Default::default()
        },
    )?;
    store::accounts::update_account(&mut tx.access(id), &row, now).await?;
    store::memberships::insert_membership(
        &mut tx.access(id),
        id,
        p.user_id,
        AccountRole::Owner,
        now,
    )
    .await?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        id.0,
        NewEvent::new("account", "created", id.0)
            .name(row.handle.clone())
            .payload(json!({"name": row.name, "handle": row.handle, "owner": p.user_id})),
    )
    .await?;
    tx.commit().await?;
    Ok(account_view(app, row))
}

pub async fn read_account(app: &App, p: &Principal, id: AccountId) -> Result<Account> {
    crate::services::authorize(app, p, id, P::ReadAccount).await?;
    let mut c = app.store.reader().await?;
    let row = store::accounts::find_account(&mut c, id)
        .await?
        .ok_or_else(|| Error::not_found("account"))?;
    Ok(account_view(app, row))
}

/// `PATCH /api/accounts/{id}` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
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
    #[serde(default, deserialize_with = "double_option")]
    #[schema(max_length = 200, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub location: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(max_length = 2000, pattern = r"^[^\x00-\x08\x0B-\x1F\x7F-\x9F]*$")]
    pub link: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(
        max_length = 254,
        pattern = r"^\s*[^\s@\x00-\x1F\x7F-\x9F]+@[^\s@.\x00-\x1F\x7F-\x9F]+(\.[^\s@.\x00-\x1F\x7F-\x9F]+)+\s*$"
    )]
    pub billing_email: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>, minimum = 60)]
    pub auth_expiration_seconds: Option<Option<i64>>,
    #[schema(value_type = Option<SettingsPatch>)]
    pub settings: Option<Map<String, Value>>,
}

fn apply_patch(row: &mut AccountRow, u: UpdateAccount) -> Result<()> {
    let v = |r: std::result::Result<String, String>| r.map_err(Error::Validation);
    if let Some(n) = u.name {
        row.name = v(validate::name("name", &n))?;
    }
    if let Some(h) = u.handle {
        row.handle = v(validate::handle(&h))?;
    }
    if let Some(l) = u.location {
        row.location = l
            .map(|s| v(validate::text("location", &s, 200)))
            .transpose()?;
    }
    if let Some(l) = u.link {
        row.link = l.map(|s| v(validate::text("link", &s, 2000))).transpose()?;
    }
    if let Some(e) = u.billing_email {
        row.billing_email = e.map(|s| v(validate::email(&s))).transpose()?;
    }
    if let Some(s) = u.auth_expiration_seconds {
        if matches!(s, Some(n) if n < 60) {
            return Err(Error::validation(
                "auth_expiration_seconds must be at least 60",
            ));
        }
        row.auth_expiration_seconds = s;
    }
    if let Some(s) = u.settings {
        merge_settings(&mut row.settings, s)?;
    }
    Ok(())
}

/// Validates a partial settings object against the known keys and merges it.
fn merge_settings(stored: &mut Map<String, Value>, patch: Map<String, Value>) -> Result<()> {
    for (k, val) in &patch {
        let kind = SETTINGS
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, kind)| *kind)
            .ok_or_else(|| Error::validation(format!("unknown account setting {k:?}")))?;
        match kind {
            SettingKind::Bool(_) if val.is_boolean() => {}
            SettingKind::Bool(_) => {
                return Err(Error::validation(format!(
                    "setting {k:?} must be a boolean"
                )))
            }
            SettingKind::ReadOnlyList => {
                return Err(Error::validation(format!("setting {k:?} is read-only")))
            }
            SettingKind::ObjectOrNull if val.is_object() || val.is_null() => {}
            SettingKind::ObjectOrNull => {
                return Err(Error::validation(format!(
                    "setting {k:?} must be an object or null"
                )))
            }
            SettingKind::DaysOrNull
                if val.is_null() || val.as_i64().is_some_and(|d| (1..=3650).contains(&d)) => {}
            SettingKind::DaysOrNull => {
                return Err(Error::validation(format!(
                    "setting {k:?} must be a whole number of days from 1 to 3650, or null"
                )))
            }
            SettingKind::AccountRoleOrNull
                if val.is_null()
                    || val
                        .as_str()
                        .and_then(|v| v.parse::<uuid::Uuid>().ok())
                        .and_then(crate::domain::role::AccountRole::from_id)
                        .is_some_and(|r| {
                            matches!(
                                r,
                                crate::domain::role::AccountRole::Member
                                    | crate::domain::role::AccountRole::Admin
                            )
                        }) => {}
            SettingKind::AccountRoleOrNull => {
                return Err(Error::validation(format!(
                    "setting {k:?} must be the id of the Member or Admin account role, or null"
                )))
            }
        }
    }
    stored.extend(patch);
    Ok(())
}

pub async fn update_account(
    app: &App,
    p: &Principal,
    id: AccountId,
    u: UpdateAccount,
) -> Result<()> {
    crate::services::authorize(app, p, id, P::UpdateAccount).await?;
    let mut tx = crate::services::unit::Unit::account(app, id).await?;
    let mut row = store::accounts::find_account(&mut tx, id)
        .await?
        .ok_or_else(|| Error::not_found("account"))?;
    let before = account_view(app, row.clone());
    let only_settings = u.settings.is_some()
        && u.name.is_none()
        && u.handle.is_none()
        && u.location.is_none()
        && u.link.is_none()
        && u.billing_email.is_none()
        && u.auth_expiration_seconds.is_none();
    let sso_keys = u.settings.as_ref().is_some_and(|s| {
        s.contains_key("require_sso") || s.contains_key("sso_default_account_role_id")
    });
    apply_patch(&mut row, u)?;
    crate::services::ip_allowlist::check_enforcement(app, p, &before.settings, &row)?;
    let requires =
        |s: &Map<String, Value>| s.get("require_sso").and_then(Value::as_bool) == Some(true);
    let sso_turned_on = requires(&row.settings) && !requires(&before.settings);
    if sso_keys {
        crate::services::authorize(app, p, id, P::AdministrateSso).await?;
        crate::services::plans::require_feature(app, id, crate::domain::plan::Feature::Sso)?;
    }
    if sso_turned_on {
        crate::services::sso::on_require_sso(&mut tx, id).await?;
    }
    store::accounts::update_account(&mut tx.access(id), &row, app.now())
        .await
        .map_err(|e| unique_or(e, format!("account handle {:?} is taken", row.handle)))?;
    let after = account_view(app, row.clone());
    let resource = if only_settings {
        "account-settings"
    } else {
        "account"
    };
    audit::record(
        app,
        &mut tx,
        Some(p),
        id.0,
        NewEvent::new(resource, "updated", id.0)
            .name(row.handle.clone())
            .payload(audit::changes(&before, &after)),
    )
    .await?;
    // Settings feed the gateway (run retention): every process reloads the account.
    tx.commit().await
}

pub async fn delete_account(app: &App, p: &Principal, id: AccountId) -> Result<()> {
    crate::services::authorize(app, p, id, P::DeleteAccount).await?;
    let mut tx = crate::services::unit::Unit::account(app, id).await?;
    if !store::accounts::delete_account(&mut tx.access(id), id).await? {
        return Err(Error::not_found("account"));
    }
    audit::record(
        app,
        &mut tx,
        Some(p),
        id.0,
        NewEvent::new("account", "deleted", id.0),
    )
    .await?;
    // The commit announces the change and drops the account from the permission index and the
    // gateway registry (its snapshot no longer loads).
    tx.commit().await
}

pub async fn read_settings(app: &App, p: &Principal, id: AccountId) -> Result<Map<String, Value>> {
    Ok(read_account(app, p, id).await?.settings)
}

pub async fn update_settings(
    app: &App,
    p: &Principal,
    id: AccountId,
    patch: Map<String, Value>,
) -> Result<()> {
    update_account(
        app,
        p,
        id,
        UpdateAccount {
            settings: Some(patch),
            ..Default::default()
        },
    )
    .await
}

/// Every account permission string.
pub fn all_permissions() -> Vec<&'static str> {
    P::ALL.iter().map(|p| p.name()).collect()
}

fn role_view(r: AccountRole) -> AccountRoleView {
    AccountRoleView {
        id: RoleId(r.id()),
        created: None,
        updated: None,
        account_id: None,
        name: r.name(),
        permissions: r.permissions().names(),
        is_system_role: true,
    }
}

/// The account roles (system roles; optionally filtered by name).
pub async fn list_account_roles(
    app: &App,
    p: &Principal,
    id: AccountId,
    names: Option<Vec<String>>,
) -> Result<Vec<AccountRoleView>> {
    crate::services::authorize(app, p, id, P::ReadAccountRole).await?;
    Ok(AccountRole::ALL
        .into_iter()
        .filter(|r| {
            names
                .as_ref()
                .is_none_or(|n| n.iter().any(|x| x == r.name()))
        })
        .map(role_view)
        .collect())
}

pub async fn read_account_role(
    app: &App,
    p: &Principal,
    id: AccountId,
    role: RoleId,
) -> Result<AccountRoleView> {
    crate::services::authorize(app, p, id, P::ReadAccountRole).await?;
    AccountRole::from_id(role.0)
        .map(role_view)
        .ok_or_else(|| Error::not_found("account role"))
}

/// Finds an account by handle (operator CLI).
pub async fn find_by_handle(app: &App, handle: &str) -> Result<AccountRow> {
    let mut c = app.store.reader().await?;
    store::accounts::find_account_by_handle(&mut c, handle)
        .await?
        .ok_or_else(|| Error::not_found("account"))
}

/// What the dashboard's account page shows.
#[derive(Debug, serde::Serialize)]
pub struct AccountOverview {
    pub id: AccountId,
    pub name: String,
    pub handle: String,
    pub role: &'static str,
    pub plan: &'static str,
    /// Active members plus pending invitations, against the plan's user limit.
    pub seats_used: i64,
    pub seat_limit: Option<i64>,
    pub workspace_limit: Option<i64>,
    /// The workspaces the caller can see, with whether they may see who has access.
    pub workspaces: Vec<(crate::domain::Workspace, bool)>,
    /// The newest audit events, when the caller may read the audit log and the plan has it.
    pub recent_activity: Option<Vec<crate::services::audit::EventView>>,
}

/// The account page: plan, seats, the caller's workspaces and recent activity (`read:account`).
pub async fn overview(app: &App, p: &Principal, id: AccountId) -> Result<AccountOverview> {
    let access = crate::services::gate::authorize_access(app, p, id, P::ReadAccount).await?;
    let role = access.role();
    let now = app.now();
    let (row, seats_used, all) = {
        let mut c = app.store.reader().await?;
        let row = store::accounts::find_account(&mut c, id)
            .await?
            .ok_or_else(|| Error::not_found("account"))?;
        let used = store::memberships::count_active_members(&mut c, id).await?
            + store::invitations::count_pending(&mut c, id, now).await?;
        let all = store::workspaces::find_all_workspaces(&mut c, id).await?;
        (row, used, all)
    };
    let e = crate::services::plans::entitlements(app, &row);
    let workspaces = all
        .into_iter()
        .filter_map(|w| {
            let scopes = access.scopes(w.id)?;
            let sees_access = scopes.contains(crate::domain::scope::Scope::SeeWorkspaceUsers);
            Some((w, sees_access))
        })
        .collect();
    let may_read_audit = role.permissions().contains(P::ReadAuditEvent)
        && e.features.contains(crate::domain::plan::Feature::AuditLog);
    let recent_activity = if may_read_audit {
        let page = crate::services::audit::filter_events(
            app,
            p,
            id,
            None,
            crate::services::audit::FilterEvents {
                limit: Some(8),
                filter: None,
            },
        )
        .await?;
        Some(page.events)
    } else {
        None
    };
    Ok(AccountOverview {
        id,
        name: row.name,
        handle: row.handle,
        role: role.name(),
        plan: e.plan.display(),
        seats_used,
        seat_limit: e.user_limit,
        workspace_limit: e.workspace_limit,
        workspaces,
        recent_activity,
    })
}
