//! The frame of every account page: the account switcher, the section navigation (only the
//! sections the signed-in user may read) and the page's CSRF token.

use super::{csrf_field, document, session_csrf};
use crate::app::App;
use crate::authz::Principal;
use crate::domain::role::AccountPermission as P;
use crate::domain::scope::{Scope, ScopeSet};
use crate::domain::AccountId;
use crate::services::Result;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup, PreEscaped};

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
    fn needs(self) -> P {
        match self {
            Section::Overview | Section::Settings | Section::Sso => P::ReadAccount,
            Section::Workspaces => P::ReadWorkspace,
            Section::Members => P::ReadAccountMembership,
            Section::ServiceAccounts => P::ReadBot,
            Section::Teams => P::ReadTeam,
            Section::Roles => P::ReadWorkspaceRole,
            Section::AuditLog => P::ReadAuditEvent,
            Section::Billing => P::ReadBilling,
        }
    }
}

/// An account page being built.
pub struct Shell {
    pub account: AccountId,
    /// The account as the API shows it (read once for the frame; pages use it too).
    pub a: crate::domain::Account,
    /// The signed-in user's account role name.
    pub role: &'static str,
    /// What the gate lets the signed-in user do in the account.
    access: crate::services::gate::Access,
    /// The page's CSRF token (every form on it carries it).
    pub csrf: String,
    who: String,
    switcher: Markup,
}

impl Shell {
    /// Opens an account page for `p`; an account they cannot read is "not found".
    pub async fn open(app: &App, p: &Principal, account: AccountId) -> Result<Shell> {
        let a = crate::services::accounts::read_account(app, p, account).await?;
        let access = crate::services::gate::member(app, p, account).await?;
        let mine = crate::services::me::my_accounts(app, p).await?;
        let role = mine
            .iter()
            .find(|m| m.account_id == account)
            .map_or("Site admin", |m| m.account_role_name);
        let switcher = html! {
            @for m in &mine {
                li { a href={ "/account/" (m.account_id) } aria-current=[(m.account_id == account).then_some("page")] { (m.account_name) } }
            }
        };
        let csrf = session_csrf(app, p);
        Ok(Shell {
            account,
            a,
            role,
            access,
            csrf,
            who: p.name.clone(),
            switcher,
        })
    }

    /// Whether the signed-in user holds an account permission (controls they cannot use are
    /// not drawn; the server refuses them anyway).
    pub fn can(&self, perm: P) -> bool {
        self.access.can(perm)
    }

    /// The signed-in user's scopes in a workspace of the account (empty when they cannot reach
    /// it), for drawing only the controls they may use.
    pub fn scopes(&self, workspace: crate::domain::WorkspaceId) -> ScopeSet {
        self.access.scopes(workspace).unwrap_or_default()
    }

    /// Whether the account's plan includes a feature (to draw only the pages it has).
    pub fn has_feature(&self, f: crate::domain::plan::Feature) -> bool {
        self.access.snapshot().features.contains(f)
    }

    /// Whether the signed-in user holds `scope` in a workspace of the account.
    pub fn may(&self, workspace: crate::domain::WorkspaceId, scope: Scope) -> bool {
        self.scopes(workspace).contains(scope)
    }

    /// The account's workspaces the user can see (up to the API's page size).
    pub async fn workspaces(
        &self,
        app: &App,
        p: &Principal,
    ) -> Result<Vec<crate::domain::Workspace>> {
        crate::services::workspaces::filter_workspaces(app, p, self.account, Default::default())
            .await
    }

    /// The account's users, for pickers; none when the user may not list members.
    pub async fn members(
        &self,
        app: &App,
        p: &Principal,
    ) -> Result<Vec<crate::domain::Membership>> {
        if !self.can(P::ReadAccountMembership) {
            return Ok(Vec::new());
        }
        crate::services::memberships::filter_memberships(
            app,
            p,
            self.account,
            crate::services::memberships::FilterMemberships {
                only_users: true,
                ..Default::default()
            },
        )
        .await
    }

    /// The account's service accounts, for pickers; none without `read:bot` or when the plan
    /// has no service accounts.
    pub async fn bots(
        &self,
        app: &App,
        p: &Principal,
    ) -> Result<Vec<crate::services::service_accounts::ServiceAccountView>> {
        if !self.can(P::ReadBot) {
            return Ok(Vec::new());
        }
        unless_refused(
            crate::services::service_accounts::filter_bots(
                app,
                p,
                self.account,
                Default::default(),
            )
            .await,
        )
    }

    /// The account's teams, for pickers; none without `read:team` or when the plan has no teams.
    pub async fn teams(
        &self,
        app: &App,
        p: &Principal,
    ) -> Result<Vec<crate::services::teams::TeamView>> {
        if !self.can(P::ReadTeam) {
            return Ok(Vec::new());
        }
        unless_refused(
            crate::services::teams::filter_teams(app, p, self.account, Default::default()).await,
        )
    }

    /// Every workspace role of the account (built-ins first) as (id, name), for role pickers.
    pub async fn workspace_roles(&self, app: &App, p: &Principal) -> Result<Vec<(String, String)>> {
        Ok(
            crate::services::roles::filter_roles(app, p, self.account, Default::default())
                .await?
                .into_iter()
                .map(|r| (r.id.to_string(), r.name))
                .collect(),
        )
    }

    /// The hidden CSRF field for a form on this page.
    pub fn csrf_input(&self) -> Markup {
        csrf_field(&self.csrf)
    }

    /// A one-button form posting to `action` (delete, revoke, resend…); `confirm` asks first
    /// (a script-free page posts directly and the action's own page states what it does).
    pub fn button(&self, action: &str, label: &str, aria: &str, confirm: Option<&str>) -> Markup {
        html! {
            form.inline method="post" action=(action) data-confirm=[confirm] {
                (self.csrf_input())
                button.secondary type="submit" aria-label=(aria) { (label) }
            }
        }
    }

    /// `/account/{id}` followed by `rest`.
    pub fn url(&self, rest: &str) -> String {
        format!("/account/{}{rest}", self.account)
    }

    /// The whole page, with `section` marked current in the navigation.
    pub fn render(self, section: Section, title: &str, body: Markup) -> Response {
        let html = html! {
            div.shell {
                aside {
                    details.switcher {
                        summary { span.muted { "Account" } br; (self.a.name) }
                        nav aria-label="Accounts" { ul.plain {
                            (self.switcher)
                            li { a href="/" { "All accounts" } }
                        } }
                    }
                    nav.side aria-label="Account sections" { ul.plain {
                        @for s in Section::ALL.iter().filter(|s| self.can(s.needs())) {
                            li { a href={ "/account/" (self.account) (s.path()) } aria-current=[(*s == section).then_some("page")] { (s.title()) } }
                        }
                    } }
                    p.muted.small { (self.who) br; (self.role) }
                    nav.side aria-label="You" { ul.plain {
                        li { a href="/my/profile" { "Profile" } }
                        li { a href="/me/api-keys" { "API keys" } }
                    } }
                    form method="post" action="/logout" {
                        (self.csrf_input())
                        button.secondary type="submit" { "Sign out" }
                    }
                }
                main.wide { (body) }
            }
            (CONFIRM_SCRIPT)
        };
        document(StatusCode::OK, &format!("{title} · {}", self.a.name), html)
    }
}

/// A list a plan feature may withhold (403) is simply empty on the page; other failures stand.
fn unless_refused<T>(r: Result<Vec<T>>) -> Result<Vec<T>> {
    match r {
        Err(crate::services::Error::Forbidden(_)) => Ok(Vec::new()),
        other => other,
    }
}

/// The role a grant form starts on: the least privileged built-in (Viewer), never Owner.
pub fn least_role() -> String {
    crate::domain::role::BuiltinWorkspaceRole::Viewer
        .id()
        .to_string()
}

/// Asks before destructive forms marked `data-confirm` are sent; without script they post
/// directly (the button's label says what it does).
const CONFIRM_SCRIPT: PreEscaped<&str> = PreEscaped("<script>document.querySelectorAll('form[data-confirm]').forEach(function(f){f.addEventListener('submit',function(e){if(!window.confirm(f.dataset.confirm)){e.preventDefault();}});});</script>");
