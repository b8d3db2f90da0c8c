//! Pure types and rules: ids, validated inputs, entities, scopes, roles. No sqlx, axum or tokio
//! here; time is always passed in.

pub mod audit;
pub mod canonical;
pub mod entities;
pub mod gateway_routes;
pub mod ids;
pub mod ipnet;
pub mod object_acl;
pub mod plan;
pub mod role;
pub mod scim;
pub mod scope;
pub mod upstream_policy;
pub mod validate;

pub use entities::*;
pub use ids::*;
