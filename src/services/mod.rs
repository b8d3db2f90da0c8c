//! One function per use case, called alike by the API, the dashboard and the CLI:
//! authorize → load → apply the domain rule → persist in one transaction → refresh the index.
//! The only layer that calls both `authz` and `store`.

pub mod account_events;
pub mod accounts;
pub mod audit;
pub mod auth;
pub mod credentials;
pub mod error;
pub mod gate;
pub mod gateway;
pub mod grants;
pub mod input;
pub mod invitations;
pub mod ip_allowlist;
pub mod mail;
pub mod me;
pub mod memberships;
pub mod node;
pub mod object_acls;
pub mod plans;
pub mod prefect_ui;
pub mod ratelimit;
pub mod retention;
pub mod roles;
pub mod scim;
pub mod service_accounts;
pub mod setup;
pub mod sso;
pub mod teams;
pub mod unit;
pub mod upstreams;
pub mod users;
pub mod webhooks;
pub mod whatif;
pub mod workspaces;

pub use error::{Error, Result};
pub use gate::index;
pub(crate) use gate::{authorize, deny, require_outranks, require_scope, PrincipalOp};
