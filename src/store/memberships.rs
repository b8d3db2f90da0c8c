//! Account memberships (users in accounts with a system account role).

use super::Error;
use super::{get_bool, get_uuid, micros, opt_time, time, AccessTx, Arg, Conn, Sql};
use crate::domain::role::AccountRole;
use crate::domain::{AccountId, ActorId, Membership, MembershipId, RoleId, Time, UserId};
use sqlx::any::AnyRow;
use sqlx::Row;

const SELECT: &str =
    "SELECT m.id, m.account_id, m.user_id, m.role, m.active, m.created, m.updated, \
     m.scim_external_id, m.scim_synced, \
     u.actor_id, u.handle, u.first_name, u.last_name, u.email, u.last_login \
     FROM account_memberships m JOIN users u ON u.id = m.user_id";

fn role_of(row: &AnyRow) -> Result<AccountRole, Error> {
    super::get_account_role(row, "role")
}

fn membership_from(row: &AnyRow) -> Result<Membership, Error> {
    let role = role_of(row)?;
    Ok(Membership {
        id: MembershipId(get_uuid(row, "id")?),
        account_id: AccountId(get_uuid(row, "account_id")?),
        user_id: UserId(get_uuid(row, "user_id")?),
        actor_id: ActorId(get_uuid(row, "actor_id")?),
        handle: row.try_get("handle")?,
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        email: row.try_get("email")?,
        last_login: opt_time(row.try_get("last_login")?),
        account_role_id: RoleId(role.id()),
        account_role_name: role.name(),
        active: get_bool(row, "active")?,
        created: time(row.try_get("created")?),
        updated: time(row.try_get("updated")?),
        directory_id: row.try_get("scim_external_id")?,
        timezone: None,
        teams: Vec::new(),
        idp_synced: opt_time(row.try_get("scim_synced")?),
    })
}

pub async fn insert_membership(
    c: &mut AccessTx<'_>,
    account: AccountId,
    user: UserId,
    role: AccountRole,
    now: Time,
) -> Result<MembershipId, Error> {
    let c: &mut Conn = c;
    let id = MembershipId::new();
    sqlx::query(
        "INSERT INTO account_memberships (id, account_id, user_id, role, active, created, updated) \
         VALUES ($1, $2, $3, $4, 1, $5, $5)",
    )
    .bind(id.to_string())
    .bind(account.to_string())
    .bind(user.to_string())
    .bind(role.code())
    .bind(micros(now))
    .execute(&mut *c)
    .await?;
    Ok(id)
}

pub async fn find_membership(
    c: &mut Conn,
    account: AccountId,
    id: MembershipId,
) -> Result<Option<Membership>, Error> {
    sqlx::query(&format!("{SELECT} WHERE m.account_id = $1 AND m.id = $2"))
        .bind(account.to_string())
        .bind(id.to_string())
        .fetch_optional(&mut *c)
        .await?
        .map(|r| membership_from(&r))
        .transpose()
}

pub async fn find_membership_by_user(
    c: &mut Conn,
    account: AccountId,
    user: UserId,
) -> Result<Option<Membership>, Error> {
    sqlx::query(&format!(
        "{SELECT} WHERE m.account_id = $1 AND m.user_id = $2"
    ))
    .bind(account.to_string())
    .bind(user.to_string())
    .fetch_optional(&mut *c)
    .await?
    .map(|r| membership_from(&r))
    .transpose()
}

/// Filters for listing and counting members.
#[derive(Debug, Default, Clone)]
pub struct MembershipFilter {
    pub emails: Option<Vec<String>>,
    pub user_ids: Option<Vec<String>>,
    pub active: Option<bool>,
}

fn filtered(base: &str, account: AccountId, f: &MembershipFilter) -> Sql {
    let mut q = Sql::new(base);
    q.push(" WHERE m.account_id = ?", [Arg::Text(account.to_string())]);
    if let Some(emails) = &f.emails {
        let lower: Vec<String> = emails.iter().map(|e| e.to_lowercase()).collect();
        q.and_in("u.email_lower", &lower);
    }
    if let Some(ids) = &f.user_ids {
        q.and_in("m.user_id", ids);
    }
    if let Some(active) = f.active {
        q.push(" AND m.active = ?", [Arg::Int(i64::from(active))]);
    }
    q
}

pub async fn find_memberships(
    c: &mut Conn,
    account: AccountId,
    f: &MembershipFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<Membership>, Error> {
    let mut q = filtered(SELECT, account, f);
    q.push(
        " ORDER BY u.email_lower, m.id LIMIT ? OFFSET ?",
        [Arg::Int(limit), Arg::Int(offset)],
    );
    q.query()
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(membership_from)
        .collect()
}

pub async fn count_memberships(
    c: &mut Conn,
    account: AccountId,
    f: &MembershipFilter,
) -> Result<i64, Error> {
    let q = filtered(
        "SELECT COUNT(*) AS n FROM account_memberships m JOIN users u ON u.id = m.user_id",
        account,
        f,
    );
    Ok(q.query().fetch_one(&mut *c).await?.try_get("n")?)
}

pub async fn update_membership_role(
    c: &mut AccessTx<'_>,
    account: AccountId,
    id: MembershipId,
    role: AccountRole,
    now: Time,
) -> Result<bool, Error> {
    let c: &mut Conn = c;
    let r = sqlx::query(
        "UPDATE account_memberships SET role = $3, updated = $4 WHERE account_id = $1 AND id = $2",
    )
    .bind(account.to_string())
    .bind(id.to_string())
    .bind(role.code())
    .bind(micros(now))
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn delete_membership(
    c: &mut AccessTx<'_>,
    account: AccountId,
    id: MembershipId,
) -> Result<bool, Error> {
    let c: &mut Conn = c;
    let r = sqlx::query("DELETE FROM account_memberships WHERE account_id = $1 AND id = $2")
        .bind(account.to_string())
        .bind(id.to_string())
        .execute(&mut *c)
        .await?;
    Ok(r.rows_affected() > 0)
}

/// Active Owners of the account.
pub async fn count_active_owners(c: &mut Conn, account: AccountId) -> Result<i64, Error> {
    Ok(sqlx::query(
        "SELECT COUNT(*) AS n FROM account_memberships \
         WHERE account_id = $1 AND role = 'owner' AND active = 1",
    )
    .bind(account.to_string())
    .fetch_one(&mut *c)
    .await?
    .try_get("n")?)
}

/// (account id, role, active) of every account membership, for the permission index.
pub async fn find_member_roles(
    c: &mut Conn,
    account: AccountId,
) -> Result<Vec<(UserId, AccountRole, bool)>, Error> {
    sqlx::query("SELECT user_id, role, active FROM account_memberships WHERE account_id = $1")
        .bind(account.to_string())
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(|r| {
            Ok((
                UserId(get_uuid(r, "user_id")?),
                role_of(r)?,
                get_bool(r, "active")?,
            ))
        })
        .collect()
}

/// One user's membership role and state in the account, for the permission index.
pub async fn find_member_role(
    c: &mut Conn,
    account: AccountId,
    user: UserId,
) -> Result<Option<(AccountRole, bool)>, Error> {
    sqlx::query(
        "SELECT user_id, role, active FROM account_memberships WHERE account_id = $1 AND user_id = $2",
    )
    .bind(account.to_string())
    .bind(user.to_string())
    .fetch_optional(&mut *c)
    .await?
    .map(|r| Ok((role_of(&r)?, get_bool(&r, "active")?)))
    .transpose()
}

/// One account a user belongs to, with the account's names.
pub struct UserAccountRow {
    pub membership_id: MembershipId,
    pub account_id: AccountId,
    pub account_name: String,
    pub account_handle: String,
    pub role: AccountRole,
    pub active: bool,
}

pub async fn find_accounts_of_user(
    c: &mut Conn,
    user: UserId,
) -> Result<Vec<UserAccountRow>, Error> {
    sqlx::query(
        "SELECT m.id, m.account_id, m.role, m.active, a.name, a.handle \
         FROM account_memberships m JOIN accounts a ON a.id = m.account_id \
         WHERE m.user_id = $1 ORDER BY a.handle",
    )
    .bind(user.to_string())
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(|r| {
        Ok(UserAccountRow {
            membership_id: MembershipId(get_uuid(r, "id")?),
            account_id: AccountId(get_uuid(r, "account_id")?),
            account_name: r.try_get("name")?,
            account_handle: r.try_get("handle")?,
            role: role_of(r)?,
            active: get_bool(r, "active")?,
        })
    })
    .collect()
}

/// Seats in use: active user members.
pub async fn count_active_members(c: &mut Conn, account: AccountId) -> Result<i64, Error> {
    Ok(sqlx::query(
        "SELECT COUNT(*) AS n FROM account_memberships WHERE account_id = $1 AND active = 1",
    )
    .bind(account.to_string())
    .fetch_one(&mut *c)
    .await?
    .try_get("n")?)
}

pub async fn update_membership_active(
    c: &mut AccessTx<'_>,
    account: AccountId,
    id: MembershipId,
    active: bool,
    now: Time,
) -> Result<bool, Error> {
    let c: &mut Conn = c;
    let r = sqlx::query(
        "UPDATE account_memberships SET active = $3, updated = $4 WHERE account_id = $1 AND id = $2",
    )
    .bind(account.to_string())
    .bind(id.to_string())
    .bind(i64::from(active))
    .bind(micros(now))
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() > 0)
}
