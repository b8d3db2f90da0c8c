//! The integration tests: one binary, every test on SQLite and (when configured) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed step here should fail loudly

mod support;

mod account_events;
mod accounts;
mod adversarial;
mod audit;
mod browser;
mod cli;
mod concurrency;
mod crash;
mod dashboard;
mod dashboard_gate;
mod dashboard_pages;
mod fault;
mod gateway;
mod gateway_differential;
mod inputs;
mod invitations;
mod ip_allowlist;
mod matrix;
mod migrations;
mod object_acls;
mod plans;
mod prefect_cli;
mod prefect_gateway;
mod prefect_ui;
mod processes;
mod scale_out;
mod schemathesis;
mod scim;
mod service_accounts;
mod setup;
mod sso;
mod teams;
mod upstream_tls;
mod webhooks;
