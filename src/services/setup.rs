//! First run: on an installation without users, `atrium serve` prints a one-time link; opening it
//! lets the operator create the first (site admin) user and the first account in the browser.

use crate::app::App;
use crate::authz::Principal;
use crate::services::auth::{self, Signup};
use crate::services::credentials::{random_base62, sha256};
use crate::services::{accounts, Error, Result};
use crate::store;
use std::sync::Mutex;

/// The current setup token (its SHA-256), held by the serving process only.
#[derive(Default)]
pub struct SetupToken(Mutex<Option<[u8; 32]>>);

impl SetupToken {
    /// Makes a new token when the installation has no user; returns it (to print) or `None`.
    pub async fn issue(app: &App) -> Result<Option<String>> {
        let mut c = app.store.reader().await?;
        if store::users::count_users(&mut c).await? > 0 {
            return Ok(None);
        }
        let token = random_base62(32);
        *app.setup.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(sha256(&token));
        Ok(Some(token))
    }

    fn check(&self, token: &str) -> bool {
        let held = *self.0.lock().unwrap_or_else(|p| p.into_inner());
        held.is_some_and(|h| subtle::ConstantTimeEq::ct_eq(&h[..], &sha256(token)[..]).into())
    }

    fn burn(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// True when `token` opens the setup page (the link is live and nobody has set up yet).
pub async fn is_open(app: &App, token: &str) -> Result<bool> {
    if !app.setup.check(token) {
        return Ok(false);
    }
    let mut c = app.store.reader().await?;
    Ok(store::users::count_users(&mut c).await? == 0)
}

/// What the setup form sends.
pub struct FirstRun {
    pub email: String,
    pub password: String,
    pub account_name: String,
    pub account_handle: String,
}

/// Creates the first site admin and the first account; the link dies. Refused once any user
/// exists (a second process's link, or a second submit).
pub async fn first_run(
    app: &App,
    token: &str,
    f: FirstRun,
) -> Result<(auth::NewSession, crate::domain::AccountId)> {
    if !is_open(app, token).await? {
        return Err(Error::NotFound("this setup link was already used or has expired; restart the server to get a new one if there are still no users".into()));
    }
    let user = auth::create_user(
        app,
        Signup {
            email: f.email.clone(),
            password: f.password.clone(),
            handle: None,
            first_name: None,
            last_name: None,
        },
        true,
    )
    .await?;
    app.setup.burn();
    let p = Principal::cli(user.id, user.email.clone());
    let account = accounts::create_account(
        app,
        &p,
        accounts::CreateAccount {
            name: f.account_name,
            handle: f.account_handle,
            location: None,
            link: None,
            billing_email: None,
        },
    )
    .await?;
    let session = auth::login(app, &f.email, f.password, None, Some("atrium-setup")).await?;
    Ok((session, account.id))
}
