//! Id newtypes, so an account id can never be passed where a workspace id is expected.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($($name:ident),* $(,)?) => {$(
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random (v4) id.
            pub fn new() -> Self {
                $name(Uuid::new_v4())
            }
            /// Parses the canonical 36-character form; no allocation.
            pub fn parse(s: &str) -> Option<Self> {
                Uuid::try_parse(s).ok().map($name)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                    .into()
            }
        }
        impl utoipa::ToSchema for $name {}
    )*};
}

id_type!(
    UserId,
    ActorId,
    AccountId,
    WorkspaceId,
    MembershipId,
    RoleId,
    AccessId,
    ApiKeyId,
    TeamId,
    ServiceAccountId,
);

/// The id of an account role (Owner, Admin or Member) as request bodies carry it: one of three
/// fixed UUIDs (`domain::role::AccountRole::id`), so its schema lists them.
pub struct AccountRoleId;

impl utoipa::PartialSchema for AccountRoleId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
            .enum_values(Some(
                crate::domain::role::AccountRole::ALL.map(|r| r.id().to_string()),
            ))
            .description(Some(
                "Owner, Admin or Member (the ids of GET /api/accounts/{id}/account_roles)",
            ))
            .into()
    }
}
impl utoipa::ToSchema for AccountRoleId {}

/// The id of a built-in workspace role (what a custom role may inherit): one of five fixed UUIDs.
pub struct BuiltinWorkspaceRoleId;

impl utoipa::PartialSchema for BuiltinWorkspaceRoleId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
            .enum_values(Some(
                crate::domain::role::BuiltinWorkspaceRole::ALL.map(|r| r.id().to_string()),
            ))
            .description(Some("Owner, Developer, Runner, Viewer or Worker"))
            .into()
    }
}
impl utoipa::ToSchema for BuiltinWorkspaceRoleId {}
