//! Invitations: invite people by email with an account role (and optionally a workspace role),
//! list, revoke, resend, accept, reject. Tokens are ≥190 random bits, stored as SHA-256, single
//! use, expiring, and bound to the invited email.

use crate::app::App;
use crate::authz::Principal;
use crate::domain::role::{AccountPermission as P, AccountRole};
use crate::domain::{validate, AccountId, RoleId, WorkspaceId};
use crate::services::audit::{self, NewEvent};
use crate::services::credentials::{random_base62, sha256_hex};
use crate::services::input::{page, AnyOf};
use crate::services::mail;
use crate::services::{Error, Result};
use crate::store::{self, invitations::InvitationRow};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

/// Most invitations in one request.
pub const MAX_PER_REQUEST: usize = 100;

const INVALID: &str =
    "this invitation does not exist, has expired, was revoked or was already used";

/// One invitation in a request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteOne {
    #[schema(
        max_length = 254,
        pattern = r"^\s*[^\s@\x00-\x1F\x7F-\x9F]+@[^\s@.\x00-\x1F\x7F-\x9F]+(\.[^\s@.\x00-\x1F\x7F-\x9F]+)+\s*$"
    )]
    pub email: String,
    /// Account role (default Member; Owner only by Owners).
    #[schema(value_type = Option<crate::domain::AccountRoleId>)]
    pub account_role_id: Option<RoleId>,
    pub workspace_id: Option<WorkspaceId>,
    pub workspace_role_id: Option<RoleId>,
}

/// Several emails with one role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteMany {
    #[schema(min_items = 1, max_items = 100, value_type = Vec<crate::domain::validate::EmailAddress>)]
    pub emails: Vec<String>,
    #[schema(value_type = Option<crate::domain::AccountRoleId>)]
    pub account_role_id: Option<RoleId>,
    pub workspace_id: Option<WorkspaceId>,
    pub workspace_role_id: Option<RoleId>,
}

/// `POST …/invitations/` body: a list of invitations, one invitation, or `{emails: [...], ...}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum InviteBody {
    List(Vec<InviteOne>),
    Many(InviteMany),
    One(InviteOne),
}

crate::services::input::one_or_many_schema!(InviteBody, InviteOne, 1, MAX_PER_REQUEST, InviteMany);

impl InviteBody {
    fn into_list(self) -> Vec<InviteOne> {
        match self {
            InviteBody::List(v) => v,
            InviteBody::One(o) => vec![o],
            InviteBody::Many(m) => m
                .emails
                .into_iter()
                .map(|email| InviteOne {
                    email,
                    account_role_id: m.account_role_id,
                    workspace_id: m.workspace_id,
                    workspace_role_id: m.workspace_role_id,
                })
                .collect(),
        }
    }
}

/// An invitation as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationView {
    pub id: Uuid,
    pub created: chrono::DateTime<chrono::Utc>,
    pub updated: chrono::DateTime<chrono::Utc>,
    pub email: String,
    pub account_id: AccountId,
    pub account_role_id: RoleId,
    pub account_role_name: &'static str,
    pub workspace_id: Option<WorkspaceId>,
    pub workspace_role_id: Option<RoleId>,
    /// `pending`, `accepted`, `rejected`, `revoked` or `expired`.
    pub status: String,
    pub expiration: chrono::DateTime<chrono::Utc>,
    /// Atrium extension: delivery of the invitation email (`pending`, `sent`, `failed`).
    #[schema(value_type = Option<Object>)]
    pub delivery: Option<serde_json::Value>,
}

fn status_of(r: &InvitationRow, now: chrono::DateTime<chrono::Utc>) -> String {
    if r.status == "pending" && r.expires_at <= now {
        "expired".into()
    } else {
        r.status.clone()
    }
}

async fn view(
    c: &mut store::Conn,
    r: InvitationRow,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<InvitationView> {
    let delivery = store::invitations::find_delivery(c, r.id)
        .await?
        .map(|(status, attempts, error)| json!({"status": status, "attempts": attempts, "last_error": error}));
    Ok(InvitationView {
        status: status_of(&r, now),
        id: r.id,
        created: r.created,
        updated: r.updated,
        email: r.email,
        account_id: r.account_id,
        account_role_id: RoleId(r.account_role.id()),
        account_role_name: r.account_role.name(),
        workspace_id: r.workspace_id,
        workspace_role_id: r.workspace_role_id,
        expiration: r.expires_at,
        delivery,
    })
}

fn link(app: &App, id: Uuid, code: &str) -> String {
    format!(
        "{}/invitations/{id}?invite_code={code}",
        app.config.public_url
    )
}

async fn queue_email(
    app: &App,
    tx: &mut store::Conn,
    inv: &InvitationRow,
    account_name: &str,
    inviter: &str,
    code: &str,
) -> Result<()> {
    let url = link(app, inv.id, code);
    let days = app.config.invitation_ttl_seconds / 86_400;
    let text = format!(
        "{inviter} invited you to join {account_name} on Atrium as {role}.\n\n\
         Accept the invitation: {url}\n\n\
         The link works once and expires in {days} day(s). If you did not expect this email, ignore it.\n",
        role = inv.account_role.name()
    );
    let html = maud::html! {
        p { (inviter) " invited you to join " strong { (account_name) } " on Atrium as " (inv.account_role.name()) "." }
        p { a href=(url) { "Accept the invitation" } }
        p { "The link works once and expires in " (days) " day(s). If you did not expect this email, ignore it." }
    }
    .into_string();
    mail::enqueue(
        app,
        tx,
        mail::NewEmail {
            account: Some(inv.account_id),
            invitation: Some(inv.id),
            to: &inv.email,
            subject: format!("You are invited to {account_name} on Atrium"),
            text,
            html,
        },
    )
    .await
}

/// Invites one or more people. Nothing is written when any of them is refused.
pub async fn invite(
    app: &App,
    p: &Principal,
    account: AccountId,
    fixed_workspace: Option<WorkspaceId>,
    body: InviteBody,
) -> Result<Vec<InvitationView>> {
    let access =
        crate::services::gate::authorize_access(app, p, account, P::CreateInvitation).await?;
    let caller = access.role();
    let list = body.into_list();
    if list.is_empty() || list.len() > MAX_PER_REQUEST {
        return Err(Error::validation(format!(
            "invite between 1 and {MAX_PER_REQUEST} email addresses per request"
        )));
    }
    let now = app.now();
    let mut seen = std::collections::HashSet::new();
    let mut rows = Vec::with_capacity(list.len());
    for i in &list {
        let email = validate::email(&i.email).map_err(Error::Validation)?;
        if !seen.insert(email.to_lowercase()) {
            return Err(Error::validation(format!("{email} appears more than once")));
        }
        let role = match i.account_role_id {
            None => AccountRole::Member,
            Some(r) => AccountRole::from_id(r.0)
                .ok_or_else(|| Error::validation(format!("unknown account_role_id {r}")))?,
        };
        if role > caller {
            return Err(crate::services::deny(
                app,
                p,
                account,
                format!("a {} cannot invite an {}", caller.name(), role.name()),
            ));
        }
        let workspace_id = match (fixed_workspace, i.workspace_id) {
            (Some(f), Some(w)) if f != w => {
                return Err(Error::validation("workspace_id does not match the path"))
            }
            (f, w) => f.or(w),
        };
        if i.workspace_role_id.is_some() && workspace_id.is_none() {
            return Err(Error::validation("workspace_role_id needs a workspace_id"));
        }
        rows.push(InvitationRow {
            id: Uuid::new_v4(),
            account_id: account,
            email,
            account_role: role,
            workspace_id,
            workspace_role_id: i.workspace_role_id,
            status: "pending".into(),
            expires_at: now + chrono::Duration::seconds(app.config.invitation_ttl_seconds),
            invited_by: Some(p.user_id),
            created: now,
            updated: now,
        });
    }
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let acct = store::accounts::find_account(&mut tx, account)
        .await?
        .ok_or_else(|| Error::not_found("account"))?;
    for r in &rows {
        if let Some(w) = r.workspace_id {
            store::workspaces::find_workspace(&mut tx, account, w)
                .await?
                .ok_or_else(|| Error::validation(format!("unknown workspace_id {w}")))?;
            let role = r.workspace_role_id.unwrap_or(RoleId(
                crate::domain::role::BuiltinWorkspaceRole::Viewer.id(),
            ));
            let scopes = crate::services::roles::usable_role_scopes(&mut tx, account, role).await?;
            let held = access.scopes(w).unwrap_or_default();
            if !held.is_superset(scopes) {
                return Err(crate::services::deny(
                    app,
                    p,
                    account,
                    "you cannot invite with a workspace role whose scopes you do not hold".into(),
                ));
            }
        }
        if let Some(u) = store::users::find_user_by_email(&mut tx, &r.email).await? {
            if store::memberships::find_membership_by_user(&mut tx, account, u.id)
                .await?
                .is_some()
            {
                return Err(Error::conflict(format!(
                    "{} is already a member of this account",
                    r.email
                )));
            }
        }
    }
    // Seats: active members + pending invitations + these.
    crate::services::plans::ensure_seats(app, &mut tx, account, true, rows.len() as i64).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let code = random_base62(32);
        store::invitations::insert_invitation(&mut tx, &r, &sha256_hex(&code))
            .await
            .map_err(|e| {
                crate::services::error::unique_or(
                    e,
                    format!("{} already has a pending invitation", r.email),
                )
            })?;
        queue_email(app, &mut tx, &r, &acct.name, &p.name, &code).await?;
        audit::record(
            app,
            &mut tx,
            Some(p),
            account.0,
            NewEvent::new(
                if r.workspace_id.is_some() {
                    "workspace-invitation"
                } else {
                    "account-invitation"
                },
                "created",
                r.id,
            )
            .name(r.email.clone())
            .payload(json!({
                "email": r.email,
                "account_role_name": r.account_role.name(),
                "workspace_id": r.workspace_id,
                "workspace_role_id": r.workspace_role_id,
                "expiration": r.expires_at,
            })),
        )
        .await?;
        out.push(view(&mut tx, r, now).await?);
    }
    tx.commit().await?;
    crate::services::mail::wake(app);
    Ok(out)
}

/// The statuses an invitation filter may name.
const STATUSES: [&str; 5] = ["pending", "accepted", "rejected", "revoked", "expired"];

/// `{"any_": [status, …]}`, as the filter's schema says it.
pub struct InvitationStatuses;
impl utoipa::PartialSchema for InvitationStatuses {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "any_",
                ArrayBuilder::new().items(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(STATUSES)),
                ),
            )
            .required("any_")
            .into()
    }
}
impl utoipa::ToSchema for InvitationStatuses {}

/// `invitations` part of the filter body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationFields {
    pub email: Option<AnyOf<String>>,
    /// `pending`, `accepted`, `rejected`, `revoked`, `expired`.
    #[schema(value_type = Option<InvitationStatuses>)]
    pub status: Option<AnyOf<String>>,
}

/// `POST …/invitations/filter` and `/count` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterInvitations {
    #[schema(minimum = 0)]
    pub limit: Option<i64>,
    #[schema(minimum = 0)]
    pub offset: Option<i64>,
    #[serde(alias = "workspace_invitations")]
    pub invitations: Option<InvitationFields>,
}

fn to_filter(
    f: &FilterInvitations,
    workspace: Option<WorkspaceId>,
) -> Result<store::invitations::InvitationFilter> {
    let fields = f.invitations.as_ref();
    let statuses = fields
        .and_then(|x| x.status.as_ref())
        .map(|s| s.any_.clone());
    if let Some(st) = &statuses {
        if let Some(bad) = st.iter().find(|s| !STATUSES.contains(&s.as_str())) {
            return Err(Error::validation(format!("unknown status {bad:?}")));
        }
    }
    Ok(store::invitations::InvitationFilter {
        statuses,
        emails: fields
            .and_then(|x| x.email.as_ref())
            .map(|e| e.any_.clone()),
        workspace,
    })
}

pub async fn filter_invitations(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: Option<WorkspaceId>,
    f: FilterInvitations,
) -> Result<Vec<InvitationView>> {
    crate::services::authorize(app, p, account, P::ReadInvitation).await?;
    let (limit, offset) = page(f.limit, f.offset)?;
    let filter = to_filter(&f, workspace)?;
    let now = app.now();
    let mut c = app.store.reader().await?;
    let rows =
        store::invitations::find_invitations(&mut c, account, &filter, now, limit, offset).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(view(&mut c, r, now).await?);
    }
    Ok(out)
}

pub async fn count_invitations(
    app: &App,
    p: &Principal,
    account: AccountId,
    f: FilterInvitations,
) -> Result<i64> {
    crate::services::authorize(app, p, account, P::ReadInvitation).await?;
    // Paging does not change a count, but it is validated as the filter's is.
    crate::services::input::page(f.limit, f.offset)?;
    let filter = to_filter(&f, None)?;
    let mut c = app.store.reader().await?;
    Ok(store::invitations::count_invitations(&mut c, account, &filter, app.now()).await?)
}

pub async fn read_invitation(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: Option<WorkspaceId>,
    id: Uuid,
) -> Result<InvitationView> {
    crate::services::authorize(app, p, account, P::ReadInvitation).await?;
    let mut c = app.store.reader().await?;
    let r = store::invitations::find_invitation(&mut c, account, id)
        .await?
        .filter(|r| workspace.is_none() || r.workspace_id == workspace)
        .ok_or_else(|| Error::not_found("invitation"))?;
    view(&mut c, r, app.now()).await
}

/// Revokes a pending invitation; its link stops working.
pub async fn revoke(
    app: &App,
    p: &Principal,
    account: AccountId,
    workspace: Option<WorkspaceId>,
    id: Uuid,
) -> Result<()> {
    crate::services::authorize(app, p, account, P::UpdateInvitation).await?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let r = store::invitations::find_invitation(&mut tx, account, id)
        .await?
        .filter(|r| workspace.is_none() || r.workspace_id == workspace)
        .ok_or_else(|| Error::not_found("invitation"))?;
    if !store::invitations::revoke(&mut tx, account, id, app.now()).await? {
        return Err(Error::conflict(format!(
            "the invitation is {} and cannot be revoked",
            status_of(&r, app.now())
        )));
    }
    store::invitations::cancel_for_invitation(&mut tx, id).await?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("account-invitation", "revoked", id).name(r.email.clone()),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Sends a pending (or expired) invitation again with a new link; the old link stops working.
pub async fn resend(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: Uuid,
) -> Result<InvitationView> {
    crate::services::authorize(app, p, account, P::UpdateInvitation).await?;
    let now = app.now();
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let acct = store::accounts::find_account(&mut tx, account)
        .await?
        .ok_or_else(|| Error::not_found("account"))?;
    let mut r = store::invitations::find_invitation(&mut tx, account, id)
        .await?
        .ok_or_else(|| Error::not_found("invitation"))?;
    let code = random_base62(32);
    r.expires_at = now + chrono::Duration::seconds(app.config.invitation_ttl_seconds);
    if !store::invitations::renew(&mut tx, account, id, &sha256_hex(&code), r.expires_at, now)
        .await?
    {
        return Err(Error::conflict(format!(
            "the invitation is {} and cannot be resent",
            status_of(&r, now)
        )));
    }
    store::invitations::cancel_for_invitation(&mut tx, id).await?;
    queue_email(app, &mut tx, &r, &acct.name, &p.name, &code).await?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("account-invitation", "resent", id).name(r.email.clone()),
    )
    .await?;
    let v = view(&mut tx, r, now).await?;
    tx.commit().await?;
    crate::services::mail::wake(app);
    Ok(v)
}

/// The invitation a code opens, if it is still pending (for the acceptance page).
pub async fn find_open(app: &App, id: Uuid, code: &str) -> Result<(InvitationRow, String)> {
    let mut c = app.store.reader().await?;
    let r = store::invitations::find_by_token(&mut c, id, &sha256_hex(code))
        .await?
        .filter(|r| r.status == "pending" && r.expires_at > app.now())
        .ok_or_else(|| Error::NotFound(INVALID.into()))?;
    let acct = store::accounts::find_account(&mut c, r.account_id)
        .await?
        .ok_or_else(|| Error::NotFound(INVALID.into()))?;
    Ok((r, acct.name))
}

/// Accepts an invitation as the signed-in user: the membership (and workspace access) is created
/// in the same transaction that uses up the token.
pub async fn accept(app: &App, p: &Principal, id: Uuid, code: &str) -> Result<InvitationView> {
    let (r, _) = find_open(app, id, code).await?;
    let user = {
        let mut c = app.store.reader().await?;
        store::users::find_user_by_id(&mut c, p.user_id)
            .await?
            .ok_or_else(|| Error::Unauthenticated("user no longer exists".into()))?
    };
    if !user.email.eq_ignore_ascii_case(&r.email) {
        return Err(Error::Forbidden(
            "this invitation was sent to a different email address; sign in as that address".into(),
        ));
    }
    let account = r.account_id;
    let now = app.now();
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    if !store::invitations::claim(&mut tx, id, &sha256_hex(code), "accepted", now).await? {
        return Err(Error::NotFound(INVALID.into()));
    }
    if store::memberships::find_membership_by_user(&mut tx, account, user.id)
        .await?
        .is_some()
    {
        return Err(Error::conflict("you are already a member of this account"));
    }
    // The invitation's own seat becomes the member's: only members count here.
    crate::services::plans::ensure_seat(app, &mut tx, account, false).await?;
    let membership = store::memberships::insert_membership(
        &mut tx.access(account),
        account,
        user.id,
        r.account_role,
        now,
    )
    .await?;
    if let (Some(w), role) = (r.workspace_id, r.workspace_role_id) {
        let role = role.unwrap_or(RoleId(
            crate::domain::role::BuiltinWorkspaceRole::Viewer.id(),
        ));
        store::grants::upsert(
            &mut tx.access(account),
            store::grants::Grantee::User,
            account,
            w,
            user.id.0,
            role,
            None,
            now,
        )
        .await?;
    }
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("account-invitation", "accepted", id)
            .name(r.email.clone())
            .payload(json!({
                "membership_id": membership,
                "user_id": user.id,
                "account_role_name": r.account_role.name(),
                "workspace_id": r.workspace_id,
                "workspace_role_id": r.workspace_role_id,
            })),
    )
    .await?;
    tx.commit().await?;
    let mut c = app.store.reader().await?;
    let row = store::invitations::find_invitation(&mut c, account, id)
        .await?
        .ok_or_else(|| Error::not_found("invitation"))?;
    view(&mut c, row, now).await
}

/// How someone answers an invitation on its page.
pub enum PageAnswer {
    /// Create a user for the invited address, then join.
    SignUp(crate::services::auth::Signup),
    /// Sign in as the invited address, then join.
    SignIn {
        email: String,
        password: String,
    },
    Decline,
}

/// Answers an invitation from its page: signs up or signs in and joins (returning the new
/// session), or declines (returning `None`).
pub async fn answer_on_page(
    app: &App,
    id: Uuid,
    code: &str,
    answer: PageAnswer,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> Result<Option<crate::services::auth::NewSession>> {
    use crate::services::auth;
    match answer {
        PageAnswer::Decline => {
            reject(app, None, id, code).await?;
            Ok(None)
        }
        PageAnswer::SignUp(s) => {
            let (email, password) = (s.email.clone(), s.password.clone());
            auth::signup(app, s, Some((id, code.to_string()))).await?;
            Ok(Some(
                auth::login(app, &email, password, ip, user_agent).await?,
            ))
        }
        PageAnswer::SignIn { email, password } => {
            let session = auth::login(app, &email, password, ip, user_agent).await?;
            let p = auth::authenticate_session(app, &session.id).await?;
            accept(app, &p, id, code).await?;
            Ok(Some(session))
        }
    }
}

/// Declines an invitation (the code is the proof; no sign-in needed).
pub async fn reject(app: &App, p: Option<&Principal>, id: Uuid, code: &str) -> Result<()> {
    let (r, _) = find_open(app, id, code).await?;
    let mut tx = crate::services::unit::Unit::account(app, r.account_id).await?;
    if !store::invitations::claim(&mut tx, id, &sha256_hex(code), "rejected", app.now()).await? {
        return Err(Error::NotFound(INVALID.into()));
    }
    audit::record(
        app,
        &mut tx,
        p,
        r.account_id.0,
        NewEvent::new("account-invitation", "rejected", id).name(r.email.clone()),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
