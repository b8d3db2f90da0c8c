//! Workspace grants of every kind — users, service accounts, teams — in their three tables
//! (`workspace_user_access`, `workspace_bot_access`, `workspace_team_access`, the same columns):
//! one upsert and one delete parameterised by [`Grantee`], the reads in each kind's API shape,
//! the rows the permission index is built from, and the expiry sweep.

use super::Error;
use super::{get_uuid, micros, opt_time, time, AccessTx, Arg, Conn, Sql};
use crate::domain::{AccessId, AccountId, ActorId, RoleId, Time, UserAccess, UserId, WorkspaceId};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

const USER_SELECT: &str =
    "SELECT g.id, g.workspace_id, g.user_id, g.workspace_role_id, g.expires_at, \
     g.created, g.updated, u.actor_id, u.first_name, u.last_name, u.email, u.handle \
     FROM workspace_user_access g JOIN users u ON u.id = g.user_id";

fn user_access_from(row: &AnyRow) -> Result<UserAccess, Error> {
    Ok(UserAccess {
        id: AccessId(get_uuid(row, "id")?),
        workspace_id: WorkspaceId(get_uuid(row, "workspace_id")?),
        user_id: UserId(get_uuid(row, "user_id")?),
        workspace_role_id: RoleId(get_uuid(row, "workspace_role_id")?),
        expires_at: opt_time(row.try_get("expires_at")?),
        actor_id: ActorId(get_uuid(row, "actor_id")?),
        first_name: row.try_get("first_name")?,
        last_name: row.try_get("last_name")?,
        email: row.try_get("email")?,
        handle: row.try_get("handle")?,
        created: time(row.try_get("created")?),
        updated: time(row.try_get("updated")?),
    })
}

pub use crate::domain::Grantee;

/// A kind's table and subject column.
fn table(kind: Grantee) -> (&'static str, &'static str) {
    match kind {
        Grantee::User => ("workspace_user_access", "user_id"),
        Grantee::ServiceAccount => ("workspace_bot_access", "bot_id"),
        Grantee::Team => ("workspace_team_access", "team_id"),
    }
}

/// Inserts or replaces `subject`'s grant on the workspace; returns the grant's id.
#[allow(clippy::too_many_arguments)] // one grant's columns
pub async fn upsert(
    c: &mut AccessTx<'_>,
    kind: Grantee,
    account: AccountId,
    workspace: WorkspaceId,
    subject: Uuid,
    role: RoleId,
    expires_at: Option<Time>,
    now: Time,
) -> Result<AccessId, Error> {
    let c: &mut Conn = c;
    let (table, column) = table(kind);
    let row = sqlx::query(&format!(
        "INSERT INTO {table} \
           (id, account_id, workspace_id, {column}, workspace_role_id, expires_at, created, updated) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
         ON CONFLICT (workspace_id, {column}) DO UPDATE SET \
           workspace_role_id = excluded.workspace_role_id, expires_at = excluded.expires_at, \
           updated = excluded.updated \
         RETURNING id"
    ))
    .bind(AccessId::new().to_string())
    .bind(account.to_string())
    .bind(workspace.to_string())
    .bind(subject.to_string())
    .bind(role.to_string())
    .bind(expires_at.map(micros))
    .bind(micros(now))
    .fetch_one(&mut *c)
    .await?;
    Ok(AccessId(get_uuid(&row, "id")?))
}

/// The grant of `subject` on the workspace, if any: (grant id, role, expiry).
pub async fn find(
    c: &mut Conn,
    kind: Grantee,
    account: AccountId,
    workspace: WorkspaceId,
    subject: Uuid,
) -> Result<Option<(AccessId, RoleId, Option<Time>)>, Error> {
    let (table, column) = table(kind);
    let Some(r) = sqlx::query(&format!(
        "SELECT id, workspace_role_id, expires_at FROM {table} \
         WHERE account_id = $1 AND workspace_id = $2 AND {column} = $3"
    ))
    .bind(account.to_string())
    .bind(workspace.to_string())
    .bind(subject.to_string())
    .fetch_optional(&mut *c)
    .await?
    else {
        return Ok(None);
    };
    Ok(Some((
        AccessId(get_uuid(&r, "id")?),
        RoleId(get_uuid(&r, "workspace_role_id")?),
        opt_time(r.try_get("expires_at")?),
    )))
}

/// Which grant to delete: by its own id, or by its subject (teams' routes name the team).
#[derive(Debug, Clone, Copy)]
pub enum GrantRef {
    Id(AccessId),
    Subject(Uuid),
}

/// Deletes a grant; false when there was none.
pub async fn delete(
    c: &mut AccessTx<'_>,
    kind: Grantee,
    account: AccountId,
    workspace: WorkspaceId,
    grant: GrantRef,
) -> Result<bool, Error> {
    let c: &mut Conn = c;
    let (table, column) = table(kind);
    let (key, value) = match grant {
        GrantRef::Id(id) => ("id", id.0),
        GrantRef::Subject(s) => (column, s),
    };
    let r = sqlx::query(&format!(
        "DELETE FROM {table} WHERE account_id = $1 AND workspace_id = $2 AND {key} = $3"
    ))
    .bind(account.to_string())
    .bind(workspace.to_string())
    .bind(value.to_string())
    .execute(&mut *c)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// One grant as the permission index needs it.
pub struct GrantRow {
    pub workspace_id: WorkspaceId,
    pub user_id: UserId,
    pub role_id: RoleId,
    pub expires_at: Option<Time>,
}

pub async fn find_user_grants(c: &mut Conn, account: AccountId) -> Result<Vec<GrantRow>, Error> {
    Ok(
        super::grant_rows(c, "workspace_user_access", "user_id", account)
            .await?
            .into_iter()
            .map(|(workspace_id, user, role_id, expires_at)| GrantRow {
                workspace_id,
                user_id: UserId(user),
                role_id,
                expires_at,
            })
            .collect(),
    )
}

/// One user's direct grants in the account (for the permission index).
pub async fn find_grants_of_user(
    c: &mut Conn,
    account: AccountId,
    user: UserId,
) -> Result<Vec<GrantRow>, Error> {
    sqlx::query(
        "SELECT workspace_id, workspace_role_id, expires_at FROM workspace_user_access \
         WHERE account_id = $1 AND user_id = $2",
    )
    .bind(account.to_string())
    .bind(user.to_string())
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(|r| {
        Ok(GrantRow {
            workspace_id: crate::domain::WorkspaceId(super::get_uuid(r, "workspace_id")?),
            user_id: user,
            role_id: crate::domain::RoleId(super::get_uuid(r, "workspace_role_id")?),
            expires_at: super::opt_time(r.try_get("expires_at")?),
        })
    })
    .collect()
}

// ---- service-account grants ----

/// A bot's grant on a workspace.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ServiceAccountAccess {
    pub id: AccessId,
    pub created: chrono::DateTime<chrono::Utc>,
    pub updated: chrono::DateTime<chrono::Utc>,
    pub workspace_id: WorkspaceId,
    pub workspace_role_id: RoleId,
    pub actor_id: ActorId,
    pub bot_id: Uuid,
    pub bot_name: String,
    /// Atrium extension: when the grant stops counting (null = never).
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

const BOT_SELECT: &str =
    "SELECT g.id, g.workspace_id, g.bot_id, g.workspace_role_id, g.expires_at, g.created, \
     g.updated, b.actor_id, b.name FROM workspace_bot_access g JOIN bots b ON b.id = g.bot_id";

fn bot_access_from(r: &AnyRow) -> Result<ServiceAccountAccess, Error> {
    Ok(ServiceAccountAccess {
        id: AccessId(get_uuid(r, "id")?),
        workspace_id: WorkspaceId(get_uuid(r, "workspace_id")?),
        bot_id: get_uuid(r, "bot_id")?,
        workspace_role_id: RoleId(get_uuid(r, "workspace_role_id")?),
        expires_at: opt_time(r.try_get("expires_at")?),
        actor_id: ActorId(get_uuid(r, "actor_id")?),
        bot_name: r.try_get("name")?,
        created: time(r.try_get("created")?),
        updated: time(r.try_get("updated")?),
    })
}

/// Every workspace grant of one bot, by workspace.
pub async fn find_accesses_of_bot(
    c: &mut Conn,
    account: AccountId,
    bot: Uuid,
) -> Result<Vec<ServiceAccountAccess>, Error> {
    sqlx::query(&format!(
        "{BOT_SELECT} WHERE g.account_id = $1 AND g.bot_id = $2 ORDER BY g.workspace_id"
    ))
    .bind(account.to_string())
    .bind(bot.to_string())
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(bot_access_from)
    .collect()
}

/// Every bot grant of the account, for the permission index: (workspace, bot, role, expiry).
pub async fn find_bot_grants(
    c: &mut Conn,
    account: AccountId,
) -> Result<Vec<super::GrantTuple>, Error> {
    super::grant_rows(c, "workspace_bot_access", "bot_id", account).await
}

// ---- team grants ----

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TeamAccess {
    pub id: AccessId,
    pub created: chrono::DateTime<chrono::Utc>,
    pub updated: chrono::DateTime<chrono::Utc>,
    pub workspace_id: WorkspaceId,
    pub workspace_role_id: RoleId,
    pub team_id: Uuid,
    pub team_name: String,
    /// Atrium extension: when the grant stops counting (null = never).
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

const TEAM_SELECT: &str = "SELECT g.id, g.workspace_id, g.team_id, g.workspace_role_id, g.expires_at, g.created, g.updated, \
     t.name FROM workspace_team_access g JOIN teams t ON t.id = g.team_id";

fn team_access_from(r: &AnyRow) -> Result<TeamAccess, Error> {
    Ok(TeamAccess {
        id: AccessId(get_uuid(r, "id")?),
        workspace_id: WorkspaceId(get_uuid(r, "workspace_id")?),
        team_id: get_uuid(r, "team_id")?,
        workspace_role_id: RoleId(get_uuid(r, "workspace_role_id")?),
        expires_at: opt_time(r.try_get("expires_at")?),
        team_name: r.try_get("name")?,
        created: time(r.try_get("created")?),
        updated: time(r.try_get("updated")?),
    })
}

/// Every team grant of the account: (workspace, team, role, expiry).
pub async fn find_team_grants(
    c: &mut Conn,
    account: AccountId,
) -> Result<Vec<super::GrantTuple>, Error> {
    super::grant_rows(c, "workspace_team_access", "team_id", account).await
}

// ---- expiry ----

/// Deletes memberships and grants whose expiry has passed (the engine stopped counting them at
/// their instant already); returns how many rows went.
pub async fn sweep_expired(
    w: &mut super::Write,
    accounts: &[AccountId],
    now: Time,
) -> Result<u64, Error> {
    // Every account with an expired row is recorded as changed; `accounts` comes from
    // `find_accounts_with_expired` in the same transaction.
    for a in accounts {
        w.access(*a);
    }
    let c: &mut Conn = w;
    let mut n = 0;
    for table in [
        "team_members",
        "workspace_team_access",
        "workspace_user_access",
        "workspace_bot_access",
    ] {
        n += sqlx::query(&format!(
            "DELETE FROM {table} WHERE expires_at IS NOT NULL AND expires_at <= $1"
        ))
        .bind(micros(now))
        .execute(&mut *c)
        .await?
        .rows_affected();
    }
    Ok(n)
}

/// Accounts that have expired rows (to rebuild their snapshots after a sweep).
pub async fn find_accounts_with_expired(c: &mut Conn, now: Time) -> Result<Vec<AccountId>, Error> {
    let mut out = std::collections::BTreeSet::new();
    for table in [
        "team_members",
        "workspace_team_access",
        "workspace_user_access",
        "workspace_bot_access",
    ] {
        for r in sqlx::query(&format!("SELECT DISTINCT account_id FROM {table} WHERE expires_at IS NOT NULL AND expires_at <= $1"))
            .bind(micros(now))
            .fetch_all(&mut *c)
            .await?
        {
            out.insert(get_uuid(&r, "account_id")?);
        }
    }
    Ok(out.into_iter().map(AccountId).collect())
}

// ---- the three kinds as the API shows them ----

/// How one kind's grants are read as the API shows them: its query, its subject column, its
/// order and its row.
pub struct View<T> {
    select: &'static str,
    subject: &'static str,
    order: &'static str,
    from: fn(&AnyRow) -> Result<T, Error>,
}

pub const USER_VIEW: View<UserAccess> = View {
    select: USER_SELECT,
    subject: "g.user_id",
    order: "u.email_lower, g.id",
    from: user_access_from,
};

pub const BOT_VIEW: View<ServiceAccountAccess> = View {
    select: BOT_SELECT,
    subject: "g.bot_id",
    order: "b.name, g.id",
    from: bot_access_from,
};

pub const TEAM_VIEW: View<TeamAccess> = View {
    select: TEAM_SELECT,
    subject: "g.team_id",
    order: "t.name, g.id",
    from: team_access_from,
};

/// One grant of a workspace by its id.
pub async fn find_view<T>(
    c: &mut Conn,
    v: &View<T>,
    account: AccountId,
    workspace: WorkspaceId,
    id: AccessId,
) -> Result<Option<T>, Error> {
    sqlx::query(&format!(
        "{} WHERE g.account_id = $1 AND g.workspace_id = $2 AND g.id = $3",
        v.select
    ))
    .bind(account.to_string())
    .bind(workspace.to_string())
    .bind(id.to_string())
    .fetch_optional(&mut *c)
    .await?
    .map(|r| (v.from)(&r))
    .transpose()
}

/// A page of a workspace's grants, only those of `subjects` when given.
pub async fn find_views<T>(
    c: &mut Conn,
    v: &View<T>,
    account: AccountId,
    workspace: WorkspaceId,
    subjects: Option<&[String]>,
    limit: i64,
    offset: i64,
) -> Result<Vec<T>, Error> {
    let mut q = Sql::new(v.select);
    q.push(
        " WHERE g.account_id = ? AND g.workspace_id = ?",
        [
            Arg::Text(account.to_string()),
            Arg::Text(workspace.to_string()),
        ],
    );
    if let Some(ids) = subjects {
        q.and_in(v.subject, ids);
    }
    q.push(
        &format!(" ORDER BY {} LIMIT ? OFFSET ?", v.order),
        [Arg::Int(limit), Arg::Int(offset)],
    );
    q.query()
        .fetch_all(&mut *c)
        .await?
        .iter()
        .map(v.from)
        .collect()
}
