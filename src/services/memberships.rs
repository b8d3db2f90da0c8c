//! Account memberships: list, read, change role, remove, leave — with the rules that an account
//! always keeps an active Owner and that nobody grants a role above their own.

use crate::app::App;
use crate::authz::Principal;
use crate::domain::role::{AccountPermission as P, AccountRole};
use crate::domain::{AccountId, Membership, MembershipId, RoleId, UserId};
use crate::services::audit::{self, NewEvent};
use crate::services::input::{page, AnyOf};
use crate::services::{require_outranks, Error, PrincipalOp, Result};
use crate::store::{self, memberships::MembershipFilter};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

/// `account_memberships` part of a filter body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembershipFields {
    pub email: Option<AnyOf<String>>,
    pub user_id: Option<AnyOf<UserId>>,
}

/// `POST …/account_memberships/filter` and `/count` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterMemberships {
    #[schema(minimum = 0)]
    pub limit: Option<i64>,
    #[schema(minimum = 0)]
    pub offset: Option<i64>,
    pub account_memberships: Option<MembershipFields>,
    #[serde(default)]
    pub only_users: bool,
    #[serde(default)]
    pub only_bots: bool,
    pub active: Option<bool>,
    /// Accepted for compatibility; members are ordered by email.
    pub sort: Option<String>,
}

impl FilterMemberships {
    fn to_filter(&self) -> MembershipFilter {
        let fields = self.account_memberships.as_ref();
        MembershipFilter {
            emails: fields
                .and_then(|f| f.email.as_ref())
                .map(|e| e.any_.clone()),
            user_ids: fields
                .and_then(|f| f.user_id.as_ref())
                .map(|u| u.any_.iter().map(|i| i.to_string()).collect()),
            active: self.active,
        }
    }
}

pub async fn filter_memberships(
    app: &App,
    p: &Principal,
    account: AccountId,
    f: FilterMemberships,
) -> Result<Vec<Membership>> {
    crate::services::authorize(app, p, account, P::ReadAccountMembership).await?;
    let (limit, offset) = page(f.limit, f.offset)?;
    let mut c = app.store.reader().await?;
    if f.only_bots {
        return Ok(
            store::service_accounts::find_bots(&mut c, account, None, limit, offset)
                .await?
                .iter()
                .map(crate::services::service_accounts::as_membership)
                .collect(),
        );
    }
    Ok(
        store::memberships::find_memberships(&mut c, account, &f.to_filter(), limit, offset)
            .await?,
    )
}

pub async fn count_memberships(
    app: &App,
    p: &Principal,
    account: AccountId,
    f: FilterMemberships,
) -> Result<i64> {
    crate::services::authorize(app, p, account, P::ReadAccountMembership).await?;
    // Paging does not change a count, but it is validated as the filter's is.
    page(f.limit, f.offset)?;
    let mut c = app.store.reader().await?;
    if f.only_bots {
        return Ok(
            store::service_accounts::find_bots(&mut c, account, None, i64::MAX, 0)
                .await?
                .len() as i64,
        );
    }
    Ok(store::memberships::count_memberships(&mut c, account, &f.to_filter()).await?)
}

pub async fn read_membership(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: MembershipId,
) -> Result<Membership> {
    crate::services::authorize(app, p, account, P::ReadAccountMembership).await?;
    let mut c = app.store.reader().await?;
    store::memberships::find_membership(&mut c, account, id)
        .await?
        .ok_or_else(|| Error::not_found("membership"))
}

pub async fn read_membership_by_user(
    app: &App,
    p: &Principal,
    account: AccountId,
    user: UserId,
) -> Result<Membership> {
    crate::services::authorize(app, p, account, P::ReadAccountMembership).await?;
    let mut c = app.store.reader().await?;
    store::memberships::find_membership_by_user(&mut c, account, user)
        .await?
        .ok_or_else(|| Error::not_found("membership"))
}

/// `PATCH …/account_memberships/{id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMembership {
    #[schema(value_type = crate::domain::AccountRoleId)]
    pub account_role_id: RoleId,
}

/// Changes a member's account role. The caller may not grant a role above their own, and only
/// Owners may change an Owner's role; the last active Owner cannot be demoted.
pub async fn update_membership(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: MembershipId,
    u: UpdateMembership,
) -> Result<()> {
    let caller = crate::services::authorize(app, p, account, P::UpdateAccountMembership).await?;
    let new_role = AccountRole::from_id(u.account_role_id.0)
        .ok_or_else(|| Error::validation("unknown account_role_id"))?;
    if new_role > caller {
        return Err(crate::services::deny(
            app,
            p,
            account,
            format!(
                "a {} cannot grant the {} role",
                caller.name(),
                new_role.name()
            ),
        ));
    }
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let m = store::memberships::find_membership(&mut tx, account, id)
        .await?
        .ok_or_else(|| Error::not_found("membership"))?;
    let current = AccountRole::from_id(m.account_role_id.0)
        .ok_or_else(|| Error::Unexpected(anyhow::anyhow!("membership {id} has an unknown role")))?;
    require_outranks(app, p, account, m.user_id.0, PrincipalOp::ChangeRole)?;
    if current == new_role {
        return Ok(());
    }
    store::memberships::update_membership_role(
        &mut tx.access(account),
        account,
        id,
        new_role,
        app.now(),
    )
    .await?;
    ensure_an_owner_remains(&mut tx, account).await?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        NewEvent::new("account-membership", "updated", id.0)
            .name(m.email.clone())
            .payload(json!({
                "user_id": m.user_id,
                "before": {"account_role_name": current.name()},
                "after": {"account_role_name": new_role.name()},
            })),
    )
    .await?;
    tx.commit().await
}

/// Removes a member (their workspace grants go with the membership).
pub async fn delete_membership(
    app: &App,
    p: &Principal,
    account: AccountId,
    id: MembershipId,
) -> Result<()> {
    crate::services::authorize(app, p, account, P::DeleteAccountMembership).await?;
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let m = store::memberships::find_membership(&mut tx, account, id)
        .await?
        .ok_or_else(|| Error::not_found("membership"))?;
    require_outranks(app, p, account, m.user_id.0, PrincipalOp::Remove)?;
    remove_in(app, &mut tx, p, account, &m, None).await?;
    tx.commit().await
}

/// The caller leaves the account.
pub async fn leave_account(app: &App, p: &Principal, account: AccountId) -> Result<()> {
    crate::services::gate::member(app, p, account).await?;
    if p.is_bot() {
        return Err(Error::not_found(
            "membership (service accounts are removed by deleting them)",
        ));
    }
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let m = store::memberships::find_membership_by_user(&mut tx, account, p.user_id)
        .await?
        .ok_or_else(|| Error::not_found("membership"))?;
    remove_in(app, &mut tx, p, account, &m, None).await?;
    tx.commit().await
}

/// Removes a membership inside `tx` (the caller authorized it): the member's team memberships go
/// with it, and the change is refused — rolled back — if no active Owner would remain. Audited
/// as `deleted`, with `via` when another channel than the API made it (SCIM).
pub(crate) async fn remove_in(
    app: &App,
    tx: &mut crate::services::unit::Unit<'_>,
    p: &Principal,
    account: AccountId,
    m: &Membership,
    via: Option<&str>,
) -> Result<()> {
    store::memberships::delete_membership(&mut tx.access(account), account, m.id).await?;
    store::teams::delete_member_everywhere(&mut tx.access(account), account, m.user_id.0).await?;
    ensure_an_owner_remains(tx, account).await?;
    audit::record(
        app,
        tx,
        Some(p),
        account.0,
        membership_event("deleted", m, via),
    )
    .await
}

/// Deactivates or reactivates one membership inside `tx` (the caller authorized it and checks
/// that an active Owner remains): reactivation needs a free seat. Audited with the states before
/// and after, and `via` when another channel than the API made it.
pub(crate) async fn set_active_in(
    app: &App,
    tx: &mut crate::services::unit::Unit<'_>,
    p: &Principal,
    account: AccountId,
    m: &Membership,
    active: bool,
    via: Option<&str>,
) -> Result<()> {
    if m.active == active {
        return Ok(());
    }
    if active {
        crate::services::plans::ensure_seat(app, tx, account, true).await?;
    }
    store::memberships::update_membership_active(
        &mut tx.access(account),
        account,
        m.id,
        active,
        app.now(),
    )
    .await?;
    let mut payload =
        json!({"user_id": m.user_id, "before": {"active": m.active}, "after": {"active": active}});
    if let Some(via) = via {
        payload["via"] = json!(via);
    }
    let action = if active { "reactivated" } else { "deactivated" };
    let e = NewEvent::new("account-membership", action, m.id.0)
        .name(m.email.clone())
        .payload(payload);
    audit::record(app, tx, Some(p), account.0, e).await
}

fn membership_event(action: &'static str, m: &Membership, via: Option<&str>) -> NewEvent {
    let mut payload =
        json!({"user_id": m.user_id, "email": m.email, "account_role_name": m.account_role_name});
    if let Some(via) = via {
        payload["via"] = json!(via);
    }
    NewEvent::new("account-membership", action, m.id.0)
        .name(m.email.clone())
        .payload(payload)
}

/// Called after a change, inside the transaction that holds the account lock: refuses (and so
/// rolls back) a change that leaves no active Owner.
pub(crate) async fn ensure_an_owner_remains(
    tx: &mut store::Conn,
    account: AccountId,
) -> Result<()> {
    if store::memberships::count_active_owners(tx, account).await? < 1 {
        return Err(Error::conflict(
            "an account must keep at least one active Owner; make someone else Owner first",
        ));
    }
    Ok(())
}

/// Adds an existing user to the account with a role (`add:account_member`; never above the
/// caller's own role). Used by the operator CLI; invitations are the way in for everyone else.
pub async fn add_member(
    app: &App,
    p: &Principal,
    account: AccountId,
    user: UserId,
    role: AccountRole,
) -> Result<Membership> {
    let caller = crate::services::authorize(app, p, account, P::AddAccountMember).await?;
    if role > caller {
        return Err(crate::services::deny(
            app,
            p,
            account,
            format!("a {} cannot grant the {} role", caller.name(), role.name()),
        ));
    }
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    store::users::find_user_by_id(&mut tx, user)
        .await?
        .ok_or_else(|| Error::not_found("user"))?;
    crate::services::plans::ensure_seat(app, &mut tx, account, true).await?;
    let id = store::memberships::insert_membership(
        &mut tx.access(account),
        account,
        user,
        role,
        app.now(),
    )
    .await
    .map_err(|e| crate::services::error::unique_or(e, "the user is already a member"))?;
    let m = store::memberships::find_membership(&mut tx, account, id)
        .await?
        .ok_or_else(|| Error::not_found("membership"))?;
    audit::record(
        app,
        &mut tx,
        Some(p),
        account.0,
        membership_event("created", &m, None),
    )
    .await?;
    tx.commit().await?;
    Ok(m)
}

/// `PATCH …/account_memberships/{id}/active` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetActive {
    pub active: bool,
}

/// `POST …/account_memberships/set_active` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetActiveMany {
    #[schema(min_items = 1, max_items = 200)]
    pub membership_ids: Vec<MembershipId>,
    pub active: bool,
}

/// Deactivates or reactivates members (`update:account_membership`). A deactivated member keeps
/// their record but loses all access to the account at their next request and frees their seat;
/// reactivating needs a free seat. The last active Owner cannot be deactivated. All or nothing.
pub async fn set_active(
    app: &App,
    p: &Principal,
    account: AccountId,
    ids: &[MembershipId],
    active: bool,
) -> Result<()> {
    crate::services::authorize(app, p, account, P::UpdateAccountMembership).await?;
    if ids.is_empty() || ids.len() > 200 {
        return Err(Error::validation("give between 1 and 200 membership ids"));
    }
    let mut tx = crate::services::unit::Unit::account(app, account).await?;
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if !seen.insert(*id) {
            return Err(Error::validation(format!("membership {id} appears twice")));
        }
        let m = store::memberships::find_membership(&mut tx, account, *id)
            .await?
            .ok_or_else(|| Error::not_found("membership"))?;
        require_outranks(app, p, account, m.user_id.0, PrincipalOp::SetActive)?;
        set_active_in(app, &mut tx, p, account, &m, active, None).await?;
    }
    ensure_an_owner_remains(&mut tx, account).await?;
    tx.commit().await
}

/// Members as CSV (`read:account_membership`). Cells that a spreadsheet would run as a formula
/// are prefixed with `'`.
pub async fn download_memberships(app: &App, p: &Principal, account: AccountId) -> Result<String> {
    crate::services::authorize(app, p, account, P::ReadAccountMembership).await?;
    let mut c = app.store.reader().await?;
    let mut out =
        String::from("email,handle,first_name,last_name,account_role,active,last_login,joined\n");
    let mut offset = 0;
    loop {
        let page = store::memberships::find_memberships(
            &mut c,
            account,
            &MembershipFilter::default(),
            200,
            offset,
        )
        .await?;
        for m in &page {
            let cells = [
                m.email.clone(),
                m.handle.clone(),
                m.first_name.clone(),
                m.last_name.clone(),
                m.account_role_name.to_string(),
                m.active.to_string(),
                m.last_login.map(|t| t.to_rfc3339()).unwrap_or_default(),
                m.created.to_rfc3339(),
            ];
            let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        if page.len() < 200 {
            return Ok(out);
        }
        offset += 200;
    }
}

pub(crate) fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}
