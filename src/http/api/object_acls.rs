//! Object access control lists: `GET|PUT …/workspaces/{w}/deployments/{id}/access`,
//! `…/work_pools/{name}/access` and `…/block_documents/{id}/access` — Prefect Cloud's routes and
//! the Terraform provider's shapes; one set of handlers per kind generated from one definition
//! over `object_acls::{read,set}_access`.

use super::ErrorBody;
use crate::app::App;
use crate::domain::object_acl::ObjectKind;
use crate::domain::{AccountId, WorkspaceId};
use crate::http::extract::{Auth, Json, Path};
use crate::services::object_acls::{self, AccessControl, SetAccess};
use crate::services::Result;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as Out;
use serde::Deserialize;
use utoipa::IntoParams;

macro_rules! acl_handlers {
    ($kind:expr, $segment:literal, $param:ident, $params:ident, $what:literal, $see:literal, $read:ident, $set:ident) => {
        #[derive(Deserialize, IntoParams)]
        #[into_params(parameter_in = Path)]
        pub struct $params {
            pub account_id: AccountId,
            pub workspace_id: WorkspaceId,
            #[doc = concat!("The ", $what, ".")]
            pub $param: String,
        }

        #[doc = concat!("Reads the ", $what, "'s access control list (`", $see, "` and view access to it; plan feature `object_acls`). Without an ACL every level is `*`.")]
        #[utoipa::path(get, path = concat!("/api/accounts/{account_id}/workspaces/{workspace_id}/", $segment, "/{", stringify!($param), "}/access"), tag = "object-acls",
            params($params),
            responses((status = 200, body = AccessControl), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)), security(("bearer" = [])))]
        pub async fn $read(
            State(app): State<App>,
            Auth(p): Auth,
            Path(a): Path<$params>,
        ) -> Result<Out<AccessControl>> {
            let acl = object_acls::read_access(&app, &p, a.account_id, a.workspace_id, $kind, &a.$param);
            Ok(Out(acl.await?))
        }

        #[doc = concat!("Replaces the ", $what, "'s access control list (`manage_acls`; plan feature `object_acls`). Every level `*` removes it. Audited.")]
        #[utoipa::path(put, path = concat!("/api/accounts/{account_id}/workspaces/{workspace_id}/", $segment, "/{", stringify!($param), "}/access"), tag = "object-acls",
            params($params), request_body = SetAccess,
            responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)), security(("bearer" = [])))]
        pub async fn $set(
            State(app): State<App>,
            Auth(p): Auth,
            Path(a): Path<$params>,
            Json(b): Json<SetAccess>,
        ) -> Result<StatusCode> {
            object_acls::set_access(&app, &p, a.account_id, a.workspace_id, $kind, &a.$param, b).await?;
            Ok(StatusCode::NO_CONTENT)
        }
    };
}

acl_handlers!(
    ObjectKind::Deployment,
    "deployments",
    deployment_id,
    DeploymentAccessPath,
    "deployment",
    "see_deployments",
    read_deployment_access,
    set_deployment_access
);
acl_handlers!(
    ObjectKind::WorkPool,
    "work_pools",
    work_pool_name,
    WorkPoolAccessPath,
    "work pool",
    "see_work_pools",
    read_work_pool_access,
    set_work_pool_access
);
acl_handlers!(
    ObjectKind::BlockDocument,
    "block_documents",
    block_document_id,
    BlockDocumentAccessPath,
    "block document",
    "see_blocks",
    read_block_document_access,
    set_block_document_access
);
