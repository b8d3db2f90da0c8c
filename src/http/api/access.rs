//! Workspace grants, the three kinds alike: `/api/accounts/{a}/workspaces/{w}/user_access…`,
//! `…/bot_access…` and `…/team_access…` — Prefect's routes and shapes, one set of handlers per
//! kind generated from one definition over [`grants::GrantApi`].

use super::teams::TeamAccessPath;
use super::{AccessPath, AccountWorkspacePath, ErrorBody};
use crate::app::App;
use crate::domain::{Grantee, UserAccess};
use crate::http::extract::{Auth, Json, Path};
use crate::services::grants::{
    self, FilterServiceAccountAccess, FilterTeamAccess, FilterUserAccess,
    ServiceAccountAccessUpsert, TeamAccessUpsert, UserAccessUpsert,
};
use crate::services::Result;
use crate::store::grants::{ServiceAccountAccess, TeamAccess};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json as Out;

/// The handlers of one kind of grant — upsert, filter, (read,) delete — under
/// `…/workspaces/{workspace_id}/<segment>`. The documentation and the operation ids are the
/// kind's own; the behaviour is `grants::{upsert,filter,read}_access` and `grants::revoke` for
/// every kind.
macro_rules! grant_handlers {
    (
        $kind:ty, $grantee:expr, $view:ident, $segment:literal, manage: $manage:literal, see: $see:literal,
        $upsert:ident: $method:ident $upsert_body:ident, $filter:ident: $filter_body:ident,
        $(read: $read:ident,)? delete: $delete:ident: $delete_params:ident . $subject:ident
    ) => {
        #[doc = concat!("Grants a role in the workspace, replacing the previous grant (`", $manage, "`; only roles whose scopes you hold yourself).")]
        #[utoipa::path($method, path = concat!("/api/accounts/{account_id}/workspaces/{workspace_id}/", $segment), tag = "access",
            params(AccountWorkspacePath), request_body = $upsert_body,
            responses((status = 200, body = Vec<$view>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
        pub async fn $upsert(
            State(app): State<App>,
            Auth(p): Auth,
            Path(w): Path<AccountWorkspacePath>,
            Json(b): Json<$upsert_body>,
        ) -> Result<Out<Vec<$view>>> {
            let made = grants::upsert_access::<$kind>(&app, &p, w.account_id, w.workspace_id, b);
            Ok(Out(made.await?))
        }

        #[doc = concat!("Lists the workspace's grants of this kind (`", $see, "`).")]
        #[utoipa::path(post, path = concat!("/api/accounts/{account_id}/workspaces/{workspace_id}/", $segment, "/filter"), tag = "access",
            params(AccountWorkspacePath), request_body = $filter_body,
            responses((status = 200, body = Vec<$view>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
        pub async fn $filter(
            State(app): State<App>,
            Auth(p): Auth,
            Path(w): Path<AccountWorkspacePath>,
            Json(f): Json<$filter_body>,
        ) -> Result<Out<Vec<$view>>> {
            let page = grants::filter_access::<$kind>(&app, &p, w.account_id, w.workspace_id, f);
            Ok(Out(page.await?))
        }

        $(
        #[doc = concat!("Reads one grant (`", $see, "`).")]
        #[utoipa::path(get, path = concat!("/api/accounts/{account_id}/workspaces/{workspace_id}/", $segment, "/{access_id}"), tag = "access",
            params(AccessPath),
            responses((status = 200, body = $view), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
        pub async fn $read(
            State(app): State<App>,
            Auth(p): Auth,
            Path(a): Path<AccessPath>,
        ) -> Result<Out<$view>> {
            let one = grants::read_access::<$kind>(&app, &p, a.account_id, a.workspace_id, a.access_id);
            Ok(Out(one.await?))
        }
        )?

        #[doc = concat!("Revokes a grant (`", $manage, "`); effective at the next request.")]
        #[utoipa::path(delete, path = concat!("/api/accounts/{account_id}/workspaces/{workspace_id}/", $segment, "/{", stringify!($subject), "}"), tag = "access",
            params($delete_params),
            responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
        pub async fn $delete(
            State(app): State<App>,
            Auth(p): Auth,
            Path(a): Path<$delete_params>,
        ) -> Result<StatusCode> {
            grants::revoke(&app, &p, a.account_id, a.workspace_id, $grantee, a.$subject.0).await?;
            Ok(StatusCode::NO_CONTENT)
        }
    };
}

grant_handlers!(grants::Users, Grantee::User, UserAccess, "user_access",
    manage: "manage_workspace_users", see: "see_workspace_users",
    upsert_user_access: post UserAccessUpsert, filter_user_access: FilterUserAccess,
    read: read_user_access, delete: delete_user_access: AccessPath.access_id);

grant_handlers!(grants::ServiceAccounts, Grantee::ServiceAccount, ServiceAccountAccess, "bot_access",
    manage: "manage_workspace_service_accounts", see: "see_workspace_service_accounts",
    upsert_bot_access: post ServiceAccountAccessUpsert, filter_bot_access: FilterServiceAccountAccess,
    read: read_bot_access, delete: delete_bot_access: AccessPath.access_id);

// Teams' grants are keyed by team: no read by grant id, and removal names the team.
grant_handlers!(grants::Teams, Grantee::Team, TeamAccess, "team_access",
    manage: "manage_workspace_teams", see: "see_workspace_users",
    upsert_team_access: put TeamAccessUpsert, filter_team_access: FilterTeamAccess,
    delete: delete_team_access: TeamAccessPath.team_id);
