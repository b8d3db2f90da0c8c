//! Workspace grants as one capability: users, service accounts and teams are granted workspace
//! roles through one upsert and one revoke parameterised by [`GrantKind`] (the three tables, the
//! Prefect-compatible routes and their shapes stay). Nobody grants a role with scopes they do not
//! hold themselves in that workspace, nor acts on a principal above their own account role.
//! `explain`, the workspace access list and the expiry sweep live here too.

use crate::app::App;
use crate::authz::AccessPath;
use crate::authz::Principal;
use crate::domain::plan::Feature;
use crate::domain::scope::Scope;
use crate::domain::{
    AccessId, AccountId, RoleId, ServiceAccountId, TeamId, UserAccess, UserId, WorkspaceId,
};
use crate::services::audit::{self, NewEvent};
use crate::services::input::{page, AnyOf};
use crate::services::roles::usable_role_scopes;
use crate::services::{Error, Result};
use crate::store::{
    self, grants::GrantRef, grants::Grantee, grants::ServiceAccountAccess, grants::TeamAccess,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

pub const MAX_GRANTS_PER_REQUEST: usize = 200;

/// Defines the body of one kind's upsert in its Prefect-compatible shape: one grant
/// `{<subject field>, workspace_role_id, expires_at}` or a list of them.
macro_rules! grant_body {
    ($input:ident, $upsert:ident, $field:ident: $ty:ty, $min:expr, $subject:expr) => {
        /// One grant in an upsert.
        #[derive(Debug, Deserialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $input {
            pub $field: $ty,
            pub workspace_role_id: RoleId,
            /// Atrium extension: the grant stops counting at this instant.
            pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
        }

        /// The upsert body: one grant or a list.
        #[derive(Debug, Deserialize)]
        #[serde(untagged)]
        pub enum $upsert {
            Many(Vec<$input>),
            One($input),
        }

        impl $upsert {
            /// The grants as (subject, role, expiry).
            fn wanted(self) -> Vec<Wanted> {
                let all = match self {
                    $upsert::Many(v) => v,
                    $upsert::One(g) => vec![g],
                };
                all.into_iter()
                    .map(|g| ($subject(g.$field), g.workspace_role_id, g.expires_at))
                    .collect()
            }
        }

        crate::services::input::one_or_many_schema!($upsert, $input, $min, MAX_GRANTS_PER_REQUEST);
    };
}

/// One grant to make: (subject, role, expiry).
pub type Wanted = (Uuid, RoleId, Option<chrono::DateTime<chrono::Utc>>);

grant_body!(UserAccessInput, UserAccessUpsert, user_id: UserId, 0, |u: UserId| u.0);
grant_body!(ServiceAccountAccessInput, ServiceAccountAccessUpsert, bot_id: ServiceAccountId, 1, |b: ServiceAccountId| b.0);
grant_body!(TeamAccessInput, TeamAccessUpsert, team_id: TeamId, 1, |t: TeamId| t.0);

/// What differs between the kinds of workspace grant.
pub struct GrantKind {
    /// Whose grants these are (the store's table).
    pub grantee: Grantee,
    /// The scope needed to grant and revoke.
    pub scope: Scope,
    /// The scope needed to list and read.
    pub see: Scope,
    /// Plan features needed.
    pub features: &'static [crate::domain::plan::Feature],
    /// How a subject is named in messages.
    pub noun: &'static str,
    /// The subject's field in audit payloads.
    pub field: &'static str,
    /// Fewest grants in one request.
    pub min: usize,
    /// The subjects are principals (users, service accounts), so granting to them is acting on
    /// them (`gate::require_outranks`); teams are not.
    pub principals: bool,
}

impl GrantKind {
    /// A kind: grantee, the scopes to manage and to see, plan features, noun, audit field,
    /// fewest grants per request, whether the subjects are principals.
    #[allow(clippy::too_many_arguments)] // a table row, read next to the field docs above
    const fn new(
        grantee: Grantee,
        scope: Scope,
        see: Scope,
        features: &'static [Feature],
        noun: &'static str,
        field: &'static str,
        min: usize,
        principals: bool,
    ) -> GrantKind {
        GrantKind {
            grantee,
            scope,
            see,
            features,
            noun,
            field,
            min,
            principals,
        }
    }
}

#[rustfmt::skip]
pub(crate) const USER_GRANTS: GrantKind = GrantKind::new(Grantee::User,
    Scope::ManageWorkspaceUsers, Scope::SeeWorkspaceUsers,
    &[Feature::WorkspaceRbac], "user", "user_id", 0, true);
#[rustfmt::skip]
pub(crate) const BOT_GRANTS: GrantKind = GrantKind::new(Grantee::ServiceAccount,
    Scope::ManageWorkspaceServiceAccounts, Scope::SeeWorkspaceServiceAccounts,
    &[Feature::ServiceAccounts, Feature::WorkspaceRbac], "service account", "bot_id", 1, true);
#[rustfmt::skip]
pub(crate) const TEAM_GRANTS: GrantKind = GrantKind::new(Grantee::Team,
    Scope::ManageWorkspaceTeams, Scope::SeeWorkspaceUsers,
    &[Feature::Teams, Feature::WorkspaceRbac], "team", "team_id", 1, false);

/// The checks every workspace-grant upsert starts with — user, service-account and team grants
/// alike: the caller holds the kind's scope in the workspace, the plan has its features, the
/// number of grants is in bounds, no subject twice, expiries in the future. Returns the caller's
/// scopes in the workspace (for [`check_grantable`]).
pub(crate) async fn check_grants(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    kind: &GrantKind,
    subjects: &[(uuid::Uuid, Option<chrono::DateTime<chrono::Utc>>)],
) -> Result<crate::domain::scope::ScopeSet> {
    let (noun, min) = (kind.noun, kind.min);
    let held = crate::services::require_scope(app, p, account, workspace, kind.scope).await?;
    for f in kind.features {
        crate::services::plans::require_feature(app, account, *f)?;
    }
    if subjects.len() < min || subjects.len() > MAX_GRANTS_PER_REQUEST {
        return Err(Error::validation(format!(
            "give between {min} and {MAX_GRANTS_PER_REQUEST} grants"
        )));
    }
    let now = app.now();
    let mut seen = std::collections::HashSet::new();
    for (subject, expires_at) in subjects {
        if !seen.insert(*subject) {
            return Err(Error::validation(format!("{noun} {subject} appears twice")));
        }
        if matches!(expires_at, Some(t) if *t <= now) {
            return Err(Error::validation("expires_at must be in the future"));
        }
        if kind.principals {
            crate::services::require_outranks(
                app,
                p,
                account,
                *subject,
                crate::services::PrincipalOp::Grant,
            )?;
        }
    }
    Ok(held)
}

/// Refuses (and audits) granting a role whose scopes the caller does not hold in the workspace;
/// an unknown role or another account's role is a validation error.
pub(crate) async fn check_grantable(
    app: &App,
    p: &Principal,
    tx: &mut store::Conn,
    account: AccountId,
    held: crate::domain::scope::ScopeSet,
    role: RoleId,
) -> Result<()> {
    let scopes = usable_role_scopes(tx, account, role).await?;
    if !held.is_superset(scopes) {
        return Err(crate::services::deny(
            app,
            p,
            account,
            "you cannot grant a role with scopes you do not hold in this workspace".into(),
        ));
    }
    Ok(())
}

/// A reader for listing or reading a kind's grants in a workspace, once the caller holds the
/// kind's `see` scope there; with the page of a filter body (`limit`, `offset`).
async fn seeing(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    kind: &GrantKind,
    paging: (Option<i64>, Option<i64>),
) -> Result<(store::Reader, i64, i64)> {
    crate::services::require_scope(app, p, account, workspace, kind.see).await?;
    let (limit, offset) = page(paging.0, paging.1)?;
    Ok((app.store.reader().await?, limit, offset))
}

/// The ids of a filter body's `any_` list, as text.
fn any_ids<T: ToString>(ids: Option<&[T]>) -> Option<Vec<String>> {
    ids.map(|i| i.iter().map(ToString::to_string).collect())
}

/// Grants workspace roles to the subjects of one kind — `(subject, role, expiry)` each — in one
/// transaction: every check first ([`check_grants`]), then per grant the role's scopes against
/// the caller's ([`check_grantable`]), the subject's existence, the upsert and its audit record
/// (`created`, or `updated` with before and after). Answers the grants' ids in order.
pub(crate) async fn upsert_grants(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    kind: &GrantKind,
    wanted: &[Wanted],
) -> Result<Vec<AccessId>> {
    let now = app.now();
    let subjects: Vec<_> = wanted.iter().map(|(s, _, e)| (*s, *e)).collect();
    let held = check_grants(app, p, account, workspace, kind, &subjects).await?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let mut ids = Vec::with_capacity(wanted.len());
    for (subject, role, expires_at) in wanted {
        check_grantable(app, p, &mut tx, account, held, *role).await?;
        let exists = match kind.grantee {
            Grantee::User => {
                store::memberships::find_membership_by_user(&mut tx, account, UserId(*subject))
                    .await?
                    .is_some()
            }
            Grantee::ServiceAccount => {
                store::service_accounts::find_bot(&mut tx, account, ServiceAccountId(*subject))
                    .await?
                    .is_some()
            }
            Grantee::Team => store::teams::find_team(&mut tx, account, TeamId(*subject))
                .await?
                .is_some(),
        };
        if !exists {
            return Err(Error::NotFound(match kind.grantee {
                Grantee::User => format!("user {subject} is not a member of this account"),
                _ => format!("{} {subject} not found", kind.noun),
            }));
        }
        let before =
            store::grants::find(&mut tx, kind.grantee, account, workspace, *subject).await?;
        let id = store::grants::upsert(
            &mut tx.access(account),
            kind.grantee,
            account,
            workspace,
            *subject,
            *role,
            *expires_at,
            now,
        )
        .await?;
        let (action, payload) = match before {
            None => (
                "created",
                json!({kind.field: subject, "workspace_role_id": role, "expires_at": expires_at}),
            ),
            Some((_, before_role, before_expiry)) => (
                "updated",
                json!({
                    kind.field: subject,
                    "before": {"workspace_role_id": before_role, "expires_at": before_expiry},
                    "after": {"workspace_role_id": role, "expires_at": expires_at},
                }),
            ),
        };
        audit::record(
            app,
            &mut tx,
            Some(p),
            account.0,
            NewEvent::new("workspace-access", action, id.0)
                .workspace(workspace)
                .payload(payload),
        )
        .await?;
        ids.push(id);
    }
    tx.commit().await?;
    Ok(ids)
}

/// Revokes one grant of a kind (by its id, or — teams — by its subject): the kind's scope, the
/// escalation guard for principals, the delete and its audit record in one transaction; the
/// subject's next request sees the change.
pub(crate) async fn revoke_grant(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    kind: &GrantKind,
    grant: GrantRef,
) -> Result<()> {
    crate::services::require_scope(app, p, account, workspace, kind.scope).await?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let (id, subject, role, name) = match (kind.grantee, grant) {
        (Grantee::User, GrantRef::Id(id)) => {
            store::grants::find_view(&mut tx, &store::grants::USER_VIEW, account, workspace, id)
                .await?
                .map(|g| (id, g.user_id.0, g.workspace_role_id, Some(g.email)))
        }
        (Grantee::ServiceAccount, GrantRef::Id(id)) => {
            store::grants::find_view(&mut tx, &store::grants::BOT_VIEW, account, workspace, id)
                .await?
                .map(|g| (id, g.bot_id, g.workspace_role_id, Some(g.bot_name)))
        }
        (_, GrantRef::Subject(s)) => {
            store::grants::find(&mut tx, kind.grantee, account, workspace, s)
                .await?
                .map(|(id, role, _)| (id, s, role, None))
        }
        (Grantee::Team, GrantRef::Id(_)) => None,
    }
    .ok_or_else(|| {
        Error::not_found(if kind.grantee == Grantee::Team {
            "team access"
        } else {
            "workspace access"
        })
    })?;
    if kind.principals {
        crate::services::require_outranks(
            app,
            p,
            account,
            subject,
            crate::services::PrincipalOp::RevokeGrant,
        )?;
    }
    store::grants::delete(
        &mut tx.access(account),
        kind.grantee,
        account,
        workspace,
        GrantRef::Id(id),
    )
    .await?;
    let mut e = NewEvent::new(
        "workspace-access",
        "deleted",
        if kind.grantee == Grantee::Team {
            subject
        } else {
            id.0
        },
    )
    .workspace(workspace)
    .payload(json!({kind.field: subject, "workspace_role_id": role}));
    if let Some(n) = name {
        e = e.name(n);
    }
    audit::record(app, &mut tx, Some(p), account.0, e).await?;
    tx.commit().await
}

/// `users` part of the filter body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessUserFields {
    pub id: Option<AnyOf<UserId>>,
}

/// Defines a `…/filter` body of user or service-account grants in Prefect's shape: a page, the
/// subjects by id under `$field`, and the fields Prefect sends that Atrium accepts and ignores.
macro_rules! access_filter {
    ($name:ident, $field:ident: $fields:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Default, Deserialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            #[schema(minimum = 0)]
            pub limit: Option<i64>,
            #[schema(minimum = 0)]
            pub offset: Option<i64>,
            pub $field: Option<$fields>,
            #[schema(value_type = Option<Object>)]
            pub workspace_accesses: Option<serde_json::Map<String, serde_json::Value>>,
            pub sort: Option<String>,
        }
    };
}

access_filter!(FilterUserAccess, users: AccessUserFields, "`POST …/user_access/filter` body.");
access_filter!(
    FilterServiceAccountAccess,
    bots: AccessServiceAccountFields,
    "`POST …/bot_access/filter` body."
);

/// One line of a workspace's access page.
#[derive(Debug, Clone, Serialize)]
pub struct AccessLine {
    /// `user`, `service_account` or `team`.
    pub kind: &'static str,
    /// The user's, service account's or team's id.
    pub id: uuid::Uuid,
    pub name: String,
    /// The grant's own id (what revoking it names for users and service accounts).
    pub grant_id: AccessId,
    pub role_id: RoleId,
    pub role: String,
    /// When the grant stops counting (`None` = never).
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// True when the expiry has passed (the grant no longer counts and awaits the sweeper).
    pub expired: bool,
}

/// Everyone granted a role in a workspace — users, service accounts and teams — with role names
/// and expiries, for the dashboard. Needs `see_workspace_users` (and `see_workspace_service_accounts`
/// for the service-account lines, which are left out without it).
pub async fn workspace_access_lines(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
) -> Result<Vec<AccessLine>> {
    let held = crate::services::require_scope(app, p, account, workspace, Scope::SeeWorkspaceUsers)
        .await?;
    let custom: Vec<(RoleId, String)> = {
        let mut c = app.store.reader().await?;
        store::roles::find_roles(&mut c, account, None)
            .await?
            .into_iter()
            .map(|r| (r.id, r.name))
            .collect()
    };
    let role_name = |id: RoleId| {
        crate::domain::role::BuiltinWorkspaceRole::from_id(id.0)
            .map(|r| r.name().to_string())
            .or_else(|| {
                custom
                    .iter()
                    .find(|(c, _)| *c == id)
                    .map(|(_, n)| n.clone())
            })
            .unwrap_or_else(|| "unknown role".into())
    };
    let now = app.now();
    let mut parts = lines_of::<Users>(app, p, account, workspace).await?;
    if held.contains(Scope::SeeWorkspaceServiceAccounts) {
        parts.extend(lines_of::<ServiceAccounts>(app, p, account, workspace).await?);
    }
    parts.extend(lines_of::<Teams>(app, p, account, workspace).await?);
    Ok(parts
        .into_iter()
        .map(|l| AccessLine {
            kind: l.kind,
            id: l.subject,
            name: l.name,
            grant_id: l.grant,
            role_id: l.role,
            role: role_name(l.role),
            expired: l.expires_at.is_some_and(|t| t <= now),
            expires_at: l.expires_at,
        })
        .collect())
}

/// A grant of any kind as one line of the access page, before role names are looked up.
pub struct LineParts {
    kind: &'static str,
    grant: AccessId,
    subject: Uuid,
    name: String,
    role: RoleId,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The first 200 grants of a kind as access-page lines (the kind's `see` scope).
async fn lines_of<K: GrantApi>(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
) -> Result<Vec<LineParts>> {
    let rows = page_of::<K>(app, p, account, workspace, (Some(200), None), None).await?;
    Ok(rows.into_iter().map(K::line).collect())
}

/// The [`GrantKind`] of a grantee.
pub(crate) fn kind_of(who: Grantee) -> &'static GrantKind {
    match who {
        Grantee::User => &USER_GRANTS,
        Grantee::ServiceAccount => &BOT_GRANTS,
        Grantee::Team => &TEAM_GRANTS,
    }
}

/// A grantee kind named on the dashboard (`user`, `service_account`, `team`).
pub fn parse_grantee(kind: &str) -> Result<Grantee> {
    Grantee::parse(kind)
        .ok_or_else(|| Error::validation("kind must be user, service_account or team"))
}

/// Grants (or changes) one workspace role for a user, service account or team — the same
/// checks and events as the three API upserts, which this calls.
#[allow(clippy::too_many_arguments)]
pub async fn grant(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    who: Grantee,
    subject: uuid::Uuid,
    role: RoleId,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<()> {
    upsert_grants(
        app,
        p,
        account,
        workspace,
        kind_of(who),
        &[(subject, role, expires_at)],
    )
    .await
    .map(drop)
}

/// Changes the role of an existing grant and keeps its expiry (404 when there is no grant).
pub async fn change_role(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    who: Grantee,
    subject: uuid::Uuid,
    role: RoleId,
) -> Result<()> {
    let kind = who.kind();
    let current = workspace_access_lines(app, p, account, workspace)
        .await?
        .into_iter()
        .find(|l| l.id == subject && l.kind == kind)
        .ok_or_else(|| Error::not_found("workspace access"))?;
    grant(
        app,
        p,
        account,
        workspace,
        who,
        subject,
        role,
        current.expires_at,
    )
    .await
}

/// Revokes a grant — the API's three revoke routes and the dashboard's — named by the grant id
/// for users and service accounts, by the team id for teams; the subject's next request sees the
/// change.
pub async fn revoke(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    who: Grantee,
    id: uuid::Uuid,
) -> Result<()> {
    let grant = match who {
        Grantee::Team => GrantRef::Subject(id),
        _ => GrantRef::Id(AccessId(id)),
    };
    revoke_grant(app, p, account, workspace, kind_of(who), grant).await
}

// ---- service-account grants (the API's `bot_access`) ----

/// `bots` part of the bot-access filter.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessServiceAccountFields {
    pub id: Option<crate::services::input::AnyOfUuid>,
}

/// A service account's workspace grants, limited to the workspaces where the caller may see
/// service accounts (`read:bot` on the account).
pub async fn bot_access_of(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: Uuid,
) -> Result<Vec<ServiceAccountAccess>> {
    crate::services::service_accounts::read_bot(app, p, account, ServiceAccountId(id)).await?;
    let access = crate::services::gate::member(app, p, account).await?;
    let mut c = app.store.reader().await?;
    let all = store::grants::find_accesses_of_bot(&mut c, account, id).await?;
    Ok(all
        .into_iter()
        .filter(|g| {
            access
                .scopes(g.workspace_id)
                .is_some_and(|s| s.contains(Scope::SeeWorkspaceServiceAccounts))
        })
        .collect())
}

// ---- team grants ----

/// `POST …/team_access/filter` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterTeamAccess {
    #[schema(minimum = 0)]
    pub limit: Option<i64>,
    #[schema(minimum = 0)]
    pub offset: Option<i64>,
}

// ---- the three kinds as the API shows them ----

/// A kind of workspace grant as the Prefect-compatible API shows it: its upsert and filter
/// bodies and its rows. Everything else about the kind is its [`GrantKind`].
pub trait GrantApi {
    const KIND: &'static GrantKind;
    type Upsert;
    type Filter;
    type View;
    const VIEW: store::grants::View<Self::View>;
    /// The grants an upsert asks for.
    fn wanted(body: Self::Upsert) -> Vec<Wanted>;
    /// A filter's limit, offset and the subjects it names, if any.
    fn page(f: Self::Filter) -> (Option<i64>, Option<i64>, Option<Vec<String>>);
    /// The subject of a row.
    fn subject(v: &Self::View) -> Uuid;
    /// A row as a line of the access page.
    fn line(v: Self::View) -> LineParts;
}

/// User grants (`…/user_access`).
pub struct Users;
/// Service-account grants (`…/bot_access`).
pub struct ServiceAccounts;
/// Team grants (`…/team_access`).
pub struct Teams;

/// A kind's [`GrantApi`]: its types, its store view, how its filter names subjects and a row its
/// subject.
macro_rules! grant_api {
    ($api:ident, $kind:ident, $upsert:ident, $filter:ident, $view:ident, $store_view:ident,
     |$f:ident| $page:expr, |$v:ident| $subject:expr, |$g:ident| $label:literal, $name:expr) => {
        impl GrantApi for $api {
            const KIND: &'static GrantKind = &$kind;
            type Upsert = $upsert;
            type Filter = $filter;
            type View = $view;
            const VIEW: store::grants::View<$view> = store::grants::$store_view;
            fn wanted(body: $upsert) -> Vec<Wanted> {
                body.wanted()
            }
            fn page($f: $filter) -> (Option<i64>, Option<i64>, Option<Vec<String>>) {
                $page
            }
            fn subject($v: &$view) -> Uuid {
                $subject
            }
            fn line($g: $view) -> LineParts {
                LineParts {
                    kind: $label,
                    grant: $g.id,
                    subject: Self::subject(&$g),
                    role: $g.workspace_role_id,
                    expires_at: $g.expires_at,
                    name: $name,
                }
            }
        }
    };
}

grant_api! { Users, USER_GRANTS, UserAccessUpsert, FilterUserAccess, UserAccess, USER_VIEW,
|f| (f.limit, f.offset, any_ids(f.users.and_then(|u| u.id).as_ref().map(|i| i.any_.as_slice()))),
|v| v.user_id.0, |g| "user", g.email }
grant_api! { ServiceAccounts, BOT_GRANTS, ServiceAccountAccessUpsert, FilterServiceAccountAccess,
ServiceAccountAccess, BOT_VIEW,
|f| (f.limit, f.offset, any_ids(f.bots.and_then(|b| b.id).as_ref().map(|i| i.any_.as_slice()))),
|v| v.bot_id, |g| "service_account", g.bot_name }
grant_api! { Teams, TEAM_GRANTS, TeamAccessUpsert, FilterTeamAccess, TeamAccess, TEAM_VIEW,
|f| (f.limit, f.offset, None), |v| v.team_id, |g| "team", g.team_name }

/// Grants (or changes) workspace roles of one kind, all or nothing; answers the grants made, in
/// the order asked.
pub async fn upsert_access<K: GrantApi>(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    body: K::Upsert,
) -> Result<Vec<K::View>> {
    let wanted = K::wanted(body);
    upsert_grants(app, p, account, workspace, K::KIND, &wanted).await?;
    let subjects: Vec<String> = wanted.iter().map(|(s, ..)| s.to_string()).collect();
    let mut c = app.store.reader().await?;
    let mut made = store::grants::find_views(
        &mut c,
        &K::VIEW,
        account,
        workspace,
        Some(&subjects),
        i64::MAX,
        0,
    )
    .await?;
    made.sort_by_key(|v| wanted.iter().position(|(s, ..)| *s == K::subject(v)));
    Ok(made)
}

/// A page of a workspace's grants of one kind (the kind's `see` scope).
pub async fn filter_access<K: GrantApi>(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    f: K::Filter,
) -> Result<Vec<K::View>> {
    let (limit, offset, subjects) = K::page(f);
    page_of::<K>(app, p, account, workspace, (limit, offset), subjects).await
}

async fn page_of<K: GrantApi>(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    page: (Option<i64>, Option<i64>),
    subjects: Option<Vec<String>>,
) -> Result<Vec<K::View>> {
    let (mut c, limit, offset) = seeing(app, p, account, workspace, K::KIND, page).await?;
    Ok(store::grants::find_views(
        &mut c,
        &K::VIEW,
        account,
        workspace,
        subjects.as_deref(),
        limit,
        offset,
    )
    .await?)
}

/// One grant of a kind by its id (the kind's `see` scope).
pub async fn read_access<K: GrantApi>(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    id: AccessId,
) -> Result<K::View> {
    let (mut c, ..) = seeing(app, p, account, workspace, K::KIND, (None, None)).await?;
    store::grants::find_view(&mut c, &K::VIEW, account, workspace, id)
        .await?
        .ok_or_else(|| Error::not_found("workspace access"))
}

// ---- explain and the access list ----

/// One path of an explanation.
#[derive(Debug, Serialize, ToSchema)]
pub struct PathView {
    /// `account_role`, `default_role`, `direct` or `team`.
    pub kind: &'static str,
    pub role_name: String,
    pub role_id: Option<RoleId>,
    pub team_id: Option<Uuid>,
    pub team_name: Option<String>,
    /// When this path stops counting (the earlier of grant and team membership), if ever.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether this path gives the asked scope.
    pub grants_scope: bool,
}

/// Why an actor has (or lacks) a scope in a workspace.
#[derive(Debug, Serialize, ToSchema)]
pub struct Explanation {
    pub actor_id: Uuid,
    pub scope: &'static str,
    pub granted: bool,
    pub paths: Vec<PathView>,
}

fn exp(us: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    (us != i64::MAX).then(|| crate::store::time(us))
}

/// Explains `scope` for a user or service account (`see_workspace_users` in the workspace).
pub async fn explain(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
    subject: Uuid,
    scope: &str,
) -> Result<Explanation> {
    let access = sees_workspace_users(app, p, account, workspace).await?;
    let snap = access.snapshot();
    let scope =
        Scope::parse(scope).ok_or_else(|| Error::validation(format!("unknown scope {scope:?}")))?;
    let paths = snap
        .explain(&subject, &workspace.0, app.now().timestamp_micros())
        .ok_or_else(|| Error::not_found("account member"))?;
    let mut c = app.store.reader().await?;
    let mut out = Vec::with_capacity(paths.len());
    for e in paths {
        let grants_scope = e.scopes.contains(scope);
        out.push(match e.path {
            AccessPath::AccountRole(r) => PathView {
                kind: "account_role",
                role_name: r.name().into(),
                role_id: Some(RoleId(r.id())),
                team_id: None,
                team_name: None,
                expires_at: None,
                grants_scope,
            },
            AccessPath::DefaultRole(r) => PathView {
                kind: "default_role",
                role_name: crate::services::teams::role_name(&mut c, account, r).await?,
                role_id: Some(r),
                team_id: None,
                team_name: None,
                expires_at: None,
                grants_scope,
            },
            AccessPath::Direct {
                role_id,
                expires_at_us,
            } => PathView {
                kind: "direct",
                role_name: crate::services::teams::role_name(&mut c, account, role_id).await?,
                role_id: Some(role_id),
                team_id: None,
                team_name: None,
                expires_at: exp(expires_at_us),
                grants_scope,
            },
            AccessPath::Team {
                team,
                role_id,
                grant_expires_at_us,
                membership_expires_at_us,
            } => PathView {
                kind: "team",
                role_name: crate::services::teams::role_name(&mut c, account, role_id).await?,
                role_id: Some(role_id),
                team_id: Some(team),
                team_name: store::teams::find_team(&mut c, account, TeamId(team))
                    .await?
                    .map(|t| t.name),
                expires_at: exp(grant_expires_at_us.min(membership_expires_at_us)),
                grants_scope,
            },
        });
    }
    Ok(Explanation {
        actor_id: subject,
        scope: scope.name(),
        granted: out.iter().any(|p| p.grants_scope),
        paths: out,
    })
}

/// An actor with access to a workspace.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessActor {
    pub id: Option<Uuid>,
    pub name: String,
    pub email: Option<String>,
    /// `user`, `service_account`, `team` or `*` (every account member, through the default role).
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// Who has access to a workspace: users and service accounts with grants or implicit Owner,
/// teams with grants, and `*` when a default role gives every member access.
pub async fn list_access(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
) -> Result<Vec<AccessActor>> {
    let access = sees_workspace_users(app, p, account, workspace).await?;
    let snap = access.snapshot();
    let ws = snap
        .workspaces
        .get(&workspace.0)
        .ok_or_else(|| Error::not_found("workspace"))?;
    let now = app.now().timestamp_micros();
    let mut c = app.store.reader().await?;
    let mut out = Vec::new();
    if ws.default_role.is_some() {
        out.push(AccessActor {
            id: None,
            name: "All account members".into(),
            email: None,
            kind: "*",
        });
    }
    let mut subjects: Vec<Uuid> = snap
        .members
        .iter()
        .filter(|(id, m)| {
            m.active
                && (m.role.implicit_workspace_owner()
                    || ws.grants.get(*id).is_some_and(|g| g.expires_at_us > now))
        })
        .map(|(id, _)| *id)
        .collect();
    subjects.sort();
    for id in subjects {
        if let Some(u) = store::users::find_user_by_id(&mut c, crate::domain::UserId(id)).await? {
            out.push(AccessActor {
                id: Some(u.actor_id.0),
                name: format!("{} {}", u.first_name, u.last_name)
                    .trim()
                    .to_string(),
                email: Some(u.email),
                kind: "user",
            });
        } else if let Some(b) =
            store::service_accounts::find_bot(&mut c, account, ServiceAccountId(id)).await?
        {
            out.push(AccessActor {
                id: Some(b.actor_id.0),
                name: b.name,
                email: None,
                kind: "service_account",
            });
        }
    }
    for (team, g) in &ws.team_grants {
        if g.expires_at_us > now {
            if let Some(t) = store::teams::find_team(&mut c, account, TeamId(*team)).await? {
                out.push(AccessActor {
                    id: Some(t.id.0),
                    name: t.name,
                    email: None,
                    kind: "team",
                });
            }
        }
    }
    Ok(out)
}

/// Deletes expired grants and team memberships (they stopped counting at their instant already),
/// audits one event per account, and refreshes those accounts' snapshots.
pub async fn sweep_expired(app: &App) -> Result<u64> {
    let now = app.now();
    let mut tx = crate::services::unit::Unit::begin(app).await?;
    let mut accounts = store::grants::find_accounts_with_expired(&mut tx, now).await?;
    if accounts.is_empty() {
        return Ok(0);
    }
    // The accounts' rows first, in one order (see `Store::begin_account`).
    accounts.sort_by_key(|a| a.0);
    for a in &accounts {
        store::accounts::lock_account(&mut tx, app.store.engine, *a).await?;
    }
    let n = store::grants::sweep_expired(&mut tx, &accounts, now).await?;
    for a in &accounts {
        audit::record(
            app,
            &mut tx,
            None,
            a.0,
            NewEvent::new("workspace-access", "expired", a.0).payload(json!({"swept_before": now})),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(n)
}

/// The gate's answer for who-has-access questions about a workspace (`see_workspace_users`).
async fn sees_workspace_users(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: WorkspaceId,
) -> Result<crate::services::gate::Access> {
    Ok(crate::services::gate::require_scope_access(
        app,
        p,
        account,
        workspace,
        Scope::SeeWorkspaceUsers,
    )
    .await?
    .0)
}
