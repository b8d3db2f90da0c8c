//! The frame of every account page: the account switcher, the section navigation (only the
//! sections the signed-in user may read) and the page's CSRF token.

use super::{document, new_csrf};
use crate::app::App;
use crate::authz::Principal;
use crate::domain::AccountId;
use crate::services::mail::html_escape;
use crate::services::Result;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

/// The sections of an account, in navigation order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Section {
    Overview,
    Workspaces,
    Members,
    ServiceAccounts,
    Teams,
    Roles,
    AuditLog,
    Billing,
    Settings,
    Sso,
}

impl Section {
    const ALL: [Section; 10] = [
        Section::Overview,
        Section::Workspaces,
        Section::Members,
        Section::ServiceAccounts,
        Section::Teams,
        Section::Roles,
        Section::AuditLog,
        Section::Billing,
        Section::Settings,
        Section::Sso,
    ];

    fn title(self) -> &'static str {
        match self {
            Section::Overview => "Overview",
            Section::Workspaces => "Workspaces",
            Section::Members => "Members",
            Section::ServiceAccounts => "Service accounts",
            Section::Teams => "Teams",
            Section::Roles => "Roles",
            Section::AuditLog => "Audit log",
            Section::Billing => "Billing",
            Section::Settings => "Settings",
            Section::Sso => "SSO",
        }
    }

    /// The path under `/account/{id}`.
    fn path(self) -> &'static str {
        match self {
            Section::Overview => "",
            Section::Workspaces => "/workspaces",
            Section::Members => "/members",
            Section::ServiceAccounts => "/service-accounts",
            Section::Teams => "/teams",
            Section::Roles => "/roles",
            Section::AuditLog => "/audit-log",
            Section::Billing => "/billing",
            Section::Settings => "/settings",
            Section::Sso => "/sso",
        }
    }

    /// The account permission needed to read the section.
    fn needs(self) -> &'static str {
        match self {
            Section::Overview | Section::Settings | Section::Sso => "read:account",
            Section::Workspaces => "read:workspace",
            Section::Members => "read:account_membership",
            Section::ServiceAccounts => "read:bot",
            Section::Teams => "read:team",
            Section::Roles => "read:workspace_role",
            Section::AuditLog => "read:audit_event",
            Section::Billing => "read:billing",
        }
    }
}

/// An account page being built.
pub struct Shell {
    pub account: AccountId,
    pub account_name: String,
    /// The signed-in user's account role name.
    pub role: &'static str,
    perms: Vec<&'static str>,
    /// The page's CSRF token (every form on it carries it).
    pub csrf: String,
    cookie: HeaderValue,
    who: String,
    switcher: String,
}

impl Shell {
    /// Opens an account page for `p`; an account they cannot read is "not found".
    pub async fn open(app: &App, p: &Principal, account: AccountId) -> Result<Shell> {
        let a = crate::services::accounts::read_account(app, p, account).await?;
        let perms = crate::services::me::my_permissions(app, p, account)?;
        let mine = crate::services::me::my_accounts(app, p).await?;
        let role = mine
            .iter()
            .find(|m| m.account_id == account)
            .map_or("Site admin", |m| m.account_role_name);
        let switcher: String = mine
            .iter()
            .map(|m| {
                let current = if m.account_id == account {
                    " aria-current=\"page\""
                } else {
                    ""
                };
                format!(
                    "<li><a href=\"/account/{id}\"{current}>{name}</a></li>",
                    id = m.account_id,
                    name = html_escape(&m.account_name)
                )
            })
            .collect();
        let (csrf, cookie) = new_csrf(app.config.secure_cookies());
        Ok(Shell {
            account,
            account_name: a.name,
            role,
            perms,
            csrf,
            cookie,
            who: p.name.clone(),
            switcher,
        })
    }

    /// Whether the signed-in user holds an account permission (controls they cannot use are
    /// not drawn; the server refuses them anyway).
    pub fn can(&self, perm: &str) -> bool {
        self.perms.contains(&perm)
    }

    /// The hidden CSRF field for a form on this page.
    pub fn csrf_input(&self) -> String {
        format!(
            "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
            self.csrf
        )
    }

    /// A one-button form posting to `action` (delete, revoke, resend…); `confirm` asks first
    /// (a script-free page posts directly and the action's own page states what it does).
    pub fn button(&self, action: &str, label: &str, aria: &str, confirm: Option<&str>) -> String {
        let confirm = confirm
            .map(|c| format!(" data-confirm=\"{}\"", html_escape(c)))
            .unwrap_or_default();
        format!(
            "<form method=\"post\" action=\"{action}\" class=\"inline\"{confirm}>{csrf}\
             <button class=\"secondary\" type=\"submit\" aria-label=\"{aria}\">{label}</button></form>",
            csrf = self.csrf_input(),
            aria = html_escape(aria),
        )
    }

    /// `/account/{id}` followed by `rest`.
    pub fn url(&self, rest: &str) -> String {
        format!("/account/{}{rest}", self.account)
    }

    /// The whole page, with `section` marked current in the navigation.
    pub fn render(self, section: Section, title: &str, body: &str) -> Response {
        let nav: String = Section::ALL
            .iter()
            .filter(|s| self.can(s.needs()))
            .map(|s| {
                let current = if *s == section {
                    " aria-current=\"page\""
                } else {
                    ""
                };
                format!(
                    "<li><a href=\"/account/{a}{path}\"{current}>{t}</a></li>",
                    a = self.account,
                    path = s.path(),
                    t = s.title()
                )
            })
            .collect();
        let html = format!(
            "<div class=\"shell\"><aside><details class=\"switcher\"><summary><span class=\"muted\">Account</span><br>{name}</summary>\
             <nav aria-label=\"Accounts\"><ul class=\"plain\">{switcher}<li><a href=\"/\">All accounts</a></li></ul></nav></details>\
             <nav aria-label=\"Account sections\" class=\"side\"><ul class=\"plain\">{nav}</ul></nav>\
             <p class=\"muted small\">{who}<br>{role}</p>\
             <nav aria-label=\"You\" class=\"side\"><ul class=\"plain\"><li><a href=\"/my/profile\">Profile</a></li><li><a href=\"/me/api-keys\">API keys</a></li></ul></nav>\
             <form method=\"post\" action=\"/logout\">{csrf}<button class=\"secondary\" type=\"submit\">Sign out</button></form></aside>\
             <main class=\"wide\">{body}</main></div>{CONFIRM_SCRIPT}",
            name = html_escape(&self.account_name),
            switcher = self.switcher,
            who = html_escape(&self.who),
            role = self.role,
            csrf = self.csrf_input(),
        );
        let mut resp = document(
            StatusCode::OK,
            &format!("{title} · {}", self.account_name),
            &html,
        );
        resp.headers_mut().append(header::SET_COOKIE, self.cookie);
        resp
    }
}

/// Asks before destructive forms marked `data-confirm` are sent; without script they post
/// directly (the button's label says what it does).
const CONFIRM_SCRIPT: &str = "<script>document.querySelectorAll('form[data-confirm]').forEach(function(f){f.addEventListener('submit',function(e){if(!window.confirm(f.dataset.confirm)){e.preventDefault();}});});</script>";
