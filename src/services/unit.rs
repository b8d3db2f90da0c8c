//! The unit of work: one write transaction of the service layer. It knows its engine, takes the
//! account's lock when opened for an account, and its [`Unit::commit`] records that access
//! changed (bumps the access versions of the accounts whose access data the transaction wrote),
//! commits, and refreshes the permission index of those accounts before returning — so the very
//! next request sees the change. A write to access data needs the `store::AccessTx` that only
//! `Write::access` hands out, and a raw commit answers a `#[must_use]` list of accounts to
//! refresh: a write that forgets the refresh does not compile (clippy -D warnings).

use crate::app::App;
use crate::domain::AccountId;
use crate::services::{index, Result};
use crate::store;

pub struct Unit<'a> {
    app: &'a App,
    w: store::Write,
}

impl<'a> Unit<'a> {
    /// A write transaction that touches no account's data (users, sessions, personal keys).
    pub async fn begin(app: &'a App) -> Result<Unit<'a>> {
        Ok(Unit {
            app,
            w: app.store.begin().await?,
        })
    }

    /// A write transaction on `account`'s data, holding the account's lock from the start (see
    /// `Store::begin_account` for the lock order).
    pub async fn account(app: &'a App, account: AccountId) -> Result<Unit<'a>> {
        Ok(Unit {
            app,
            w: app.store.begin_account(account).await?,
        })
    }

    /// Commits, then refreshes the permission index of every account whose access changed.
    pub async fn commit(self) -> Result<()> {
        let changed = self.w.commit().await.map_err(|e| {
            tracing::warn!(error = %e, "committing a write transaction failed");
            e
        })?;
        for c in changed.0 {
            index::reload_after_commit(self.app, c).await?;
        }
        Ok(())
    }
}

impl Unit<'_> {
    /// See `store::Write::only_members`.
    pub fn only_members(&mut self, account: AccountId, users: Vec<uuid::Uuid>) {
        self.w.only_members(account, users);
    }
}

impl std::ops::Deref for Unit<'_> {
    type Target = store::Write;
    fn deref(&self) -> &store::Write {
        &self.w
    }
}

impl std::ops::DerefMut for Unit<'_> {
    fn deref_mut(&mut self) -> &mut store::Write {
        &mut self.w
    }
}
