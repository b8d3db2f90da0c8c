//! Entities as the store returns them and the API shows them (field names follow the Prefect
//! Cloud reference). Secrets never appear here except in the one-time `ApiKeyCreated`.

use super::ids::*;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

pub type Time = DateTime<Utc>;

/// A user as `GET /api/users/{id}` and `GET /api/me/` show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct User {
    pub id: UserId,
    pub created: chrono::DateTime<chrono::Utc>,
    pub updated: chrono::DateTime<chrono::Utc>,
    pub actor_id: ActorId,
    pub handle: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub location: Option<String>,
    pub title: Option<String>,
    pub image_location: Option<String>,
    pub idp_user_id: Option<String>,
    pub personal_account_id: Option<AccountId>,
    #[schema(value_type = Object)]
    pub settings: Value,
    pub last_login: Option<chrono::DateTime<chrono::Utc>>,
    /// Atrium extension: operators of this installation.
    pub site_admin: bool,
}

/// A personal API key as listed (never the secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyInfo {
    pub id: ApiKeyId,
    pub created: chrono::DateTime<chrono::Utc>,
    pub name: String,
    pub expiration: Option<chrono::DateTime<chrono::Utc>>,
    pub masked_key: String,
}

/// A freshly created key: the only time `key` is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ApiKeyCreated {
    pub id: ApiKeyId,
    pub created: chrono::DateTime<chrono::Utc>,
    pub name: String,
    pub expiration: Option<chrono::DateTime<chrono::Utc>>,
    pub key: String,
}

/// An account (organization).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Account {
    pub id: AccountId,
    pub created: chrono::DateTime<chrono::Utc>,
    pub updated: chrono::DateTime<chrono::Utc>,
    pub name: String,
    pub handle: String,
    pub location: Option<String>,
    pub link: Option<String>,
    pub image_location: Option<String>,
    pub billing_email: Option<String>,
    pub auth_expiration_seconds: Option<i64>,
    pub status: &'static str,
    #[schema(value_type = Object)]
    pub settings: Map<String, Value>,
    pub plan_type: &'static str,
    pub plan_tier: Option<String>,
    pub self_serve: bool,
    pub features: Vec<&'static str>,
    pub sso_state: &'static str,
    pub scim_state: &'static str,
    pub workos_connection_ids: Vec<String>,
    pub workos_directory_ids: Vec<String>,
    pub workos_organization_id: Option<String>,
    pub stripe_customer_id: Option<String>,
    pub run_retention_days: i64,
    pub audit_log_retention_days: i64,
    pub automations_limit: Option<i64>,
    pub max_deployments_per_workspace: Option<i64>,
    pub work_pool_limit: Option<i64>,
    pub mex_work_pool_limit: i64,
}

/// An account membership with the member's user fields, as the filter and detail routes show it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Membership {
    pub id: MembershipId,
    pub created: chrono::DateTime<chrono::Utc>,
    pub updated: chrono::DateTime<chrono::Utc>,
    pub account_id: AccountId,
    pub actor_id: ActorId,
    pub user_id: UserId,
    pub handle: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub account_role_id: RoleId,
    pub account_role_name: &'static str,
    pub last_login: Option<chrono::DateTime<chrono::Utc>>,
    pub active: bool,
    /// The identity provider's id for the member (SCIM `externalId`) when SCIM manages them.
    pub directory_id: Option<String>,
    pub timezone: Option<String>,
    #[schema(value_type = Vec<Object>)]
    pub teams: Vec<Value>,
    /// Atrium extension: when SCIM last changed this member (`None`: managed by hand).
    pub idp_synced: Option<chrono::DateTime<chrono::Utc>>,
}

/// A system account role.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccountRoleView {
    pub id: RoleId,
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    pub updated: Option<chrono::DateTime<chrono::Utc>>,
    pub account_id: Option<AccountId>,
    pub name: &'static str,
    pub permissions: Vec<&'static str>,
    pub is_system_role: bool,
}

/// A workspace.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub created: chrono::DateTime<chrono::Utc>,
    pub updated: chrono::DateTime<chrono::Utc>,
    pub account_id: AccountId,
    pub name: String,
    pub handle: String,
    pub description: String,
    pub default_workspace_role_id: Option<RoleId>,
    pub is_public: bool,
}

/// A workspace role: built-in (account_id null) or custom.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WorkspaceRole {
    pub id: RoleId,
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    pub updated: Option<chrono::DateTime<chrono::Utc>>,
    pub account_id: Option<AccountId>,
    pub name: String,
    pub description: String,
    /// The role's effective scopes: its own plus the inherited role's, closed over implications.
    pub scopes: Vec<&'static str>,
    pub permissions: Vec<&'static str>,
    pub inherited_role_id: Option<RoleId>,
    pub is_system_role: bool,
}

/// A custom role as stored (scopes as granted, before inheritance and closure).
#[derive(Debug, Clone)]
pub struct CustomRoleRow {
    pub id: RoleId,
    pub created: chrono::DateTime<chrono::Utc>,
    pub updated: chrono::DateTime<chrono::Utc>,
    pub account_id: AccountId,
    pub name: String,
    pub description: String,
    pub scopes: Vec<String>,
    pub inherited_role_id: Option<RoleId>,
}

/// A user's grant on a workspace.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserAccess {
    pub id: AccessId,
    pub created: chrono::DateTime<chrono::Utc>,
    pub updated: chrono::DateTime<chrono::Utc>,
    pub workspace_id: WorkspaceId,
    pub workspace_role_id: RoleId,
    pub actor_id: ActorId,
    pub user_id: UserId,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub handle: String,
    /// Atrium extension: when the grant stops counting (null = never).
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// One entry of `GET /api/me/workspaces` (every field required by the `prefect` client).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MeWorkspace {
    pub account_id: AccountId,
    pub account_name: String,
    pub account_handle: String,
    pub workspace_id: WorkspaceId,
    pub workspace_name: String,
    pub workspace_description: String,
    pub workspace_handle: String,
}

/// One entry of `GET /api/me/accounts`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MeAccount {
    pub account_membership_id: MembershipId,
    pub account_id: AccountId,
    pub account_name: String,
    pub account_handle: String,
    pub account_role_name: &'static str,
    pub account_plan_type: &'static str,
    pub account_plan_tier: Option<String>,
    pub account_plan_features: Vec<&'static str>,
    pub self_serve: bool,
    pub annual_billing: bool,
    pub annual_self_serve_enabled: bool,
}

/// Who a workspace grant is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grantee {
    User,
    ServiceAccount,
    Team,
}

impl Grantee {
    /// `user`, `service_account` or `team` (as the dashboard's access lines name them).
    pub fn kind(self) -> &'static str {
        match self {
            Grantee::User => "user",
            Grantee::ServiceAccount => "service_account",
            Grantee::Team => "team",
        }
    }

    /// The kind named by [`Grantee::kind`].
    pub fn parse(kind: &str) -> Option<Grantee> {
        [Grantee::User, Grantee::ServiceAccount, Grantee::Team]
            .into_iter()
            .find(|g| g.kind() == kind)
    }
}
