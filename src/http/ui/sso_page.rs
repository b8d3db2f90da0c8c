//! The SSO page of an account: its identity providers, its email domains (with the DNS record to
//! publish and a verify button), the "require SSO" switch and the role of members created at
//! sign-in, and directory sync (SCIM tokens) — each change through the same service as the API
//! (docs/sso.md, docs/scim.md).

use super::form::{done, Fields};
use super::session::SignedIn;
use super::shell::{Section, Shell};
use super::{error_page, options, table};
use crate::app::App;
use crate::domain::role::{AccountPermission as P, AccountRole};
use crate::domain::AccountId;
use crate::services::scim::{self, CreateScimToken, ScimTokenCreated};
use crate::services::sso::{self, AddDomain, CreateProvider, ProviderKind, UpdateProvider};
use crate::services::Result;
use axum::extract::{Path, State};
use axum::response::Response;
use maud::{html, Markup};
use serde_json::{Map, Value};
use uuid::Uuid;

/// `GET /account/{a}/sso`
pub async fn show(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
) -> Response {
    render(&app, &p, account, None).await
}

/// The SSO page, with a SCIM token just created shown once.
async fn render(
    app: &App,
    p: &crate::authz::Principal,
    account: AccountId,
    created: Option<ScimTokenCreated>,
) -> Response {
    let r: Result<Response> = async {
        let shell = Shell::open(app, p, account).await?;
        let expiry = super::relative(
            app.now() + chrono::Duration::seconds(app.config.session_ttl_seconds),
            app.now(),
        )
        .trim_start_matches("in ")
        .to_string();
        let has_feature = shell.a.settings.contains_key("require_sso");
        let config = if has_feature && shell.can(P::ReadSso) {
            configuration(app, p, &shell).await?
        } else if has_feature {
            html! { p.muted { "Single sign-on is configured by the account's Owners and Admins." } }
        } else {
            html! { p.muted { "Single sign-on is not included in this account's plan." } }
        };
        let has_scim = shell.a.features.contains(&"scim");
        let directory = if has_scim && shell.can(P::ReadSso) {
            scim_section(app, p, &shell, created.as_ref()).await?
        } else if has_scim {
            html! {}
        } else {
            html! { h2 { "Directory sync (SCIM)" } p.muted { "SCIM provisioning is not included in this account's plan." } }
        };
        let body = html! {
            h1 { "Single sign-on" }
            (config)
            (directory)
            h2 { "How members sign in" }
            ul {
                li {
                    "With their email address and password (stored only as an Argon2id hash), unless the account requires single sign-on for their domain; a session lasts "
                    (expiry) "."
                }
                li { "Through the account's identity provider, from " a href="/auth/sso" { "Sign in with single sign-on" } " (OpenID Connect or SAML 2.0)." }
                li { "New members join through an emailed invitation link, at their first single sign-on, or when the identity provider provisions them (SCIM)." }
                li {
                    "The " code { "prefect" } " CLI and other clients use personal or service-account API keys ("
                    code { "prefect cloud login" } ")."
                }
            }
            p.muted { "See docs/sso.md and docs/scim.md." }
        };
        Ok(shell.render(Section::Sso, "SSO", body))
    }
    .await;
    r.unwrap_or_else(|e| error_page(&e))
}

/// Directory sync: the SCIM base URL, the tokens with their last use, and (for
/// `administrate:sso`) the forms to create and revoke them. A new token is shown once.
async fn scim_section(
    app: &App,
    p: &crate::authz::Principal,
    shell: &Shell,
    created: Option<&ScimTokenCreated>,
) -> Result<Markup> {
    let account = shell.account;
    let admin = shell.can(P::AdministrateSso);
    let tokens = scim::list_tokens(app, p, account).await?;
    let now = app.now();
    let base = shell.url("/sso");
    let rows: Vec<Markup> = tokens
        .iter()
        .map(|t| {
            html! { tr {
                td { (t.name) }
                td { code { (t.masked) } }
                td { (t.created_by) }
                (super::expiry_cell(t.expires_at, now))
                td { (t.last_used.map_or("never".to_string(), |u| super::relative(u, now))) }
                td {
                    @if admin {
                        (shell.button(
                            &format!("{base}/scim_tokens/{}/delete", t.id),
                            "Revoke",
                            &format!("Revoke SCIM token {}", t.name),
                            Some("Revoke this token? The identity provider's next request is refused."),
                        ))
                    }
                }
            } }
        })
        .collect();
    Ok(html! {
        h2 { "Directory sync (SCIM)" }
        p {
            "SCIM base URL for your identity provider: "
            code #scim-base { (scim::base_url(app, account)) }
        }
        @if let Some(c) = created {
            section.notice role="status" {
                h2 { "SCIM token “" (c.name) "” created" }
                p { "Copy the token now: it is not shown again. Give it to your identity provider as the bearer token, with the base URL above." }
                p { code #new-key { (c.token) } }
            }
        }
        (table("SCIM tokens", &["Name", "Token", "Created by", "Expires", "Last used", "Actions"], &rows, "No SCIM token yet."))
        @if admin {
            form method="post" action={ (base) "/scim_tokens" } {
                (shell.csrf_input())
                div.row {
                    div { (super::name_input("scim-name", None)) }
                    div { (super::days_input("scim-days", "Expires after (days; empty = never)", None)) }
                    div { button type="submit" { "Create SCIM token" } }
                }
            }
        }
    })
}

/// `POST /account/{a}/sso/scim_tokens`: creates a SCIM token and shows it once.
pub async fn create_scim_token(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
    f: Fields,
) -> Response {
    let made = async {
        let expires_at = super::days_from_now(&app, f.opt("days"))?;
        scim::create_token(
            &app,
            &p,
            account,
            CreateScimToken {
                name: f.get("name").to_string(),
                expires_at,
            },
        )
        .await
    }
    .await;
    match made {
        Ok(c) => {
            let mut resp = render(&app, &p, account, Some(c)).await;
            // The page holds a secret: never cache it.
            resp.headers_mut().insert(
                axum::http::header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            resp
        }
        Err(e) => super::error_page_back(&e, Some(&back(account))),
    }
}

/// `POST /account/{a}/sso/scim_tokens/{id}/delete`
pub async fn delete_scim_token(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id)): Path<(AccountId, Uuid)>,
    _f: Fields,
) -> Response {
    done(
        &back(account),
        scim::delete_token(&app, &p, account, id).await,
    )
}

/// Providers, domains and settings, with the forms an `administrate:sso` holder may use.
async fn configuration(app: &App, p: &crate::authz::Principal, shell: &Shell) -> Result<Markup> {
    let account = shell.account;
    let admin = shell.can(P::AdministrateSso);
    let providers = sso::list_providers(app, p, account).await?;
    let domains = sso::list_domains(app, p, account).await?;
    let base = shell.url("/sso");
    let provider_rows: Vec<Markup> = providers
        .iter()
        .map(|v| {
            html! { tr {
                td { (v.name) }
                td { (if v.kind == "saml" { "SAML 2.0" } else { "OpenID Connect" }) }
                td { code { (v.issuer) } }
                td {
                    @if v.kind == "saml" {
                        "entity id " code { (v.entity_id) } br; "ACS " code { (v.acs_url) }
                    } @else {
                        "client id " code { (v.client_id) }
                    }
                }
                td { @if v.enabled { span.badge { "enabled" } } @else { span.badge.off { "disabled" } } }
                td {
                    @if admin {
                        (shell.button(
                            &format!("{base}/providers/{}/enabled?to={}", v.id, !v.enabled),
                            if v.enabled { "Disable" } else { "Enable" },
                            &format!("{} {}", if v.enabled { "Disable" } else { "Enable" }, v.name),
                            v.enabled.then_some("Disable this provider? Sign-ins through it stop at once."),
                        ))
                        (shell.button(
                            &format!("{base}/providers/{}/delete", v.id),
                            "Remove",
                            &format!("Remove {}", v.name),
                            Some("Remove this identity provider?"),
                        ))
                    }
                }
            } }
        })
        .collect();
    let domain_rows: Vec<Markup> = domains
        .iter()
        .map(|d| {
            html! { tr {
                td { (d.domain) }
                td { code { (d.txt_name) } br; code.small { (d.txt_value) } }
                td {
                    @if let Some(since) = d.failing_since {
                        span.badge.off { "record missing since " (since.format("%Y-%m-%d %H:%M UTC")) }
                    } @else if d.verified {
                        span.badge { "verified" }
                    } @else {
                        span.badge.off { "not verified" }
                    }
                }
                td {
                    @if admin {
                        (shell.button(&format!("{base}/domains/{}/verify", d.id), "Verify now", &format!("Verify {}", d.domain), None))
                        (shell.button(
                            &format!("{base}/domains/{}/delete", d.id),
                            "Remove",
                            &format!("Remove {}", d.domain),
                            Some("Remove this domain? Its members sign in with passwords again."),
                        ))
                    }
                }
            } }
        })
        .collect();
    let settings = &shell.a.settings;
    let required = settings.get("require_sso").and_then(Value::as_bool) == Some(true);
    let default_role = settings
        .get("sso_default_account_role_id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let member = AccountRole::Member.id().to_string();
    let admin_role = AccountRole::Admin.id().to_string();
    let roles = [(member.clone(), "Member"), (admin_role, "Admin")];
    let saml_entity = sso::sp_entity_id(app, account);
    let saml_acs = sso::acs_url(app, account);
    let redirect = format!(
        "{}{}",
        app.config.public_url.trim_end_matches('/'),
        sso::OIDC_CALLBACK_PATH
    );
    Ok(html! {
        p {
            "Single sign-on: "
            @if providers.iter().any(|v| v.enabled) && domains.iter().any(|d| d.verified) {
                span.badge { "on" }
            } @else {
                span.badge.off { "not set up" }
            }
            @if required { " · " span.badge { "required for verified domains" } }
        }
        h2 { "Identity providers" }
        (table("Identity providers", &["Name", "Protocol", "Issuer", "Registered as", "State", "Actions"], &provider_rows, "No identity provider yet."))
        @if admin {
            details {
                summary { "Add an OpenID Connect provider" }
                p.muted { "Register this redirect URI at the identity provider: " code { (redirect) } }
                form method="post" action={ (base) "/providers" } {
                    (shell.csrf_input())
                    input type="hidden" name="kind" value="oidc";
                    div.row {
                        div { label for="sso-name" { "Name" } input #sso-name name="name" required maxlength="100" placeholder="Okta"; }
                        div { label for="sso-issuer" { "Issuer URL" } input #sso-issuer name="issuer" type="url" required placeholder="https://acme.okta.com"; }
                    }
                    div.row {
                        div { label for="sso-client" { "Client id" } input #sso-client name="client_id" required; }
                        div { label for="sso-secret" { "Client secret" } input #sso-secret name="client_secret" type="password" autocomplete="off"; }
                    }
                    div.row {
                        div { label for="sso-scopes" { "Extra scopes (space-separated)" } input #sso-scopes name="scopes" placeholder="groups"; }
                        div { label for="sso-groups" { "Groups claim (optional)" } input #sso-groups name="groups_claim" placeholder="groups"; }
                    }
                    button type="submit" { "Add provider" }
                }
            }
            details {
                summary { "Add a SAML 2.0 provider" }
                p.muted {
                    "Register at the identity provider: entity id (audience) " code { (saml_entity) }
                    ", assertion consumer service (HTTP-POST) " code { (saml_acs) }
                    ", NameID format email address. The IdP's metadata must carry its signing certificate."
                }
                form method="post" action={ (base) "/providers" } {
                    (shell.csrf_input())
                    input type="hidden" name="kind" value="saml";
                    div.row {
                        div { label for="saml-name" { "Name" } input #saml-name name="name" required maxlength="100" placeholder="Okta SAML"; }
                        div { label for="saml-url" { "IdP metadata URL" } input #saml-url name="metadata_url" type="url" placeholder="https://…/metadata"; }
                    }
                    label for="saml-xml" { "or the IdP metadata XML" }
                    textarea #saml-xml name="metadata_xml" rows="4" {}
                    div.row {
                        div { label for="saml-groups" { "Groups attribute (optional)" } input #saml-groups name="groups_attribute" placeholder="groups"; }
                        div {
                            span.check {
                                input type="checkbox" #saml-idp-initiated name="idp_initiated";
                                label for="saml-idp-initiated" { "Accept sign-ins started at the IdP" }
                            }
                        }
                    }
                    button type="submit" { "Add SAML provider" }
                }
            }
        }
        h2 { "Email domains" }
        p.muted { "An identity provider signs in only addresses in domains verified here. Publish the TXT record, then verify." }
        (table("Email domains", &["Domain", "DNS TXT record", "State", "Actions"], &domain_rows, "No domain yet."))
        @if admin {
            form method="post" action={ (base) "/domains" } {
                (shell.csrf_input())
                div.row {
                    div { label for="sso-domain" { "Domain" } input #sso-domain name="domain" required placeholder="acme.com"; }
                    div { button type="submit" { "Add domain" } }
                }
            }
            h2 { "Sign-in rules" }
            form method="post" action={ (base) "/settings" } {
                (shell.csrf_input())
                span.check {
                    input type="checkbox" #sso-required name="require_sso" checked[required];
                    label for="sso-required" {
                        "Require single sign-on: members whose address is in a verified domain cannot sign in with a password "
                        "(Owners keep a password for emergencies, audited) and their current sessions end"
                    }
                }
                label for="sso-role" { "Account role of members created at their first sign-in" }
                select #sso-role name="sso_default_account_role_id" {
                    (options(roles.iter().map(|(v, l)| (v.clone(), *l)), if default_role.is_empty() { member.as_str() } else { default_role.as_str() }))
                }
                button type="submit" { "Save sign-in rules" }
            }
        }
    })
}

fn back(account: AccountId) -> String {
    format!("/account/{account}/sso")
}

/// `POST /account/{a}/sso/providers`: an OpenID Connect or SAML provider from its form (the
/// form's hidden `kind` says which; fields a form does not have are absent, as in the API).
pub async fn add_provider(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
    f: Fields,
) -> Response {
    let kind = if f.get("kind") == "saml" {
        ProviderKind::Saml
    } else {
        ProviderKind::Oidc
    };
    let text = |k: &str| f.opt(k).map(str::to_string);
    let c = CreateProvider {
        kind,
        name: f.get("name").to_string(),
        issuer: text("issuer"),
        client_id: text("client_id"),
        client_secret: text("client_secret"),
        scopes: f
            .opt("scopes")
            .map(|s| s.split_whitespace().map(str::to_string).collect()),
        email_claim: None,
        name_claim: None,
        groups_claim: text("groups_claim"),
        enabled: None,
        metadata_xml: text("metadata_xml"),
        metadata_url: text("metadata_url"),
        groups_attribute: text("groups_attribute"),
        idp_initiated: (kind == ProviderKind::Saml).then(|| f.checked("idp_initiated")),
    };
    done(
        &back(account),
        sso::create_provider(&app, &p, account, c).await,
    )
}

#[derive(serde::Deserialize)]
pub struct EnabledQuery {
    pub to: bool,
}

/// `POST /account/{a}/sso/providers/{id}/enabled?to=true|false`
pub async fn set_enabled(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id)): Path<(AccountId, Uuid)>,
    axum::extract::Query(q): axum::extract::Query<EnabledQuery>,
    _f: Fields,
) -> Response {
    let u = UpdateProvider {
        enabled: Some(q.to),
        ..Default::default()
    };
    done(
        &back(account),
        sso::update_provider(&app, &p, account, id, u).await,
    )
}

/// `POST /account/{a}/sso/providers/{id}/delete`
pub async fn delete_provider(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id)): Path<(AccountId, Uuid)>,
    _f: Fields,
) -> Response {
    done(
        &back(account),
        sso::delete_provider(&app, &p, account, id).await,
    )
}

/// `POST /account/{a}/sso/domains`
pub async fn add_domain(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
    f: Fields,
) -> Response {
    let d = AddDomain {
        domain: f.get("domain").to_string(),
    };
    done(&back(account), sso::add_domain(&app, &p, account, d).await)
}

/// `POST /account/{a}/sso/domains/{id}/verify`
pub async fn verify_domain(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id)): Path<(AccountId, Uuid)>,
    _f: Fields,
) -> Response {
    done(
        &back(account),
        sso::verify_domain(&app, &p, account, id).await,
    )
}

/// `POST /account/{a}/sso/domains/{id}/delete`
pub async fn delete_domain(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path((account, id)): Path<(AccountId, Uuid)>,
    _f: Fields,
) -> Response {
    done(
        &back(account),
        sso::delete_domain(&app, &p, account, id).await,
    )
}

/// `POST /account/{a}/sso/settings`: "require SSO" and the role of members made at sign-in.
pub async fn save_settings(
    State(app): State<App>,
    SignedIn(p): SignedIn,
    Path(account): Path<AccountId>,
    f: Fields,
) -> Response {
    let mut settings = Map::new();
    settings.insert("require_sso".into(), Value::Bool(f.checked("require_sso")));
    let role = match f.opt("sso_default_account_role_id") {
        None => Value::Null,
        Some(v) => Value::from(v),
    };
    settings.insert("sso_default_account_role_id".into(), role);
    done(
        &back(account),
        crate::services::accounts::update_settings(&app, &p, account, settings).await,
    )
}
