//! Atrium: self-hosted accounts, workspaces and RBAC with a Prefect Cloud-compatible API.

pub mod app;
pub mod authz;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod services;
pub mod store;
pub mod upstream;
