//! The account sections of the dashboard over HTTP, on both databases: each page's main change
//! goes through a CSRF-checked form and lands in the same state the API shows; a refused change
//! shows the API's message and changes nothing; a Member sees no controls they cannot use and
//! the server refuses them anyway.

use crate::dashboard::{fixture, get_page, sign_in, Fixture};
use crate::support::*;
use axum::http::{Method as M, StatusCode as S};
use serde_json::json;

/// A signed-in browser: its session cookie.
struct Visitor<'a> {
    t: &'a TestApp,
    session: String,
}

impl Visitor<'_> {
    async fn get(&self, path: &str) -> (S, String) {
        let (s, _, html) = get_page(self.t, path, &self.session).await;
        (s, html)
    }

    /// Opens `page`, then submits a form to `action` with the page's CSRF token.
    async fn submit(
        &self,
        page: &str,
        action: &str,
        fields: &[(&str, &str)],
    ) -> (S, axum::http::HeaderMap, String) {
        let (s, h, html) = get_page(self.t, page, &self.session).await;
        assert_eq!(s, S::OK, "{page}: {html}");
        let csrf = csrf_cookie(&h);
        let token = hidden(&html, "csrf");
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        form(self.t, action, &format!("{}; {csrf}", self.session), &all).await
    }
}

async fn visitor<'a>(t: &'a TestApp, email: &str) -> Visitor<'a> {
    let (s, h) = sign_in(t, email, "a-long-password", "/").await;
    assert_eq!(s, S::SEE_OTHER);
    Visitor {
        t,
        session: cookie_of(&h, "atrium_session"),
    }
}

/// The fixture's account with its Admin `ada` signed in, and the account's page path.
async fn admin_signed_in(t: &TestApp) -> (Fixture, Visitor<'_>, String) {
    let f = fixture(t).await;
    let ada = visitor(t, "ada@acme.test").await;
    let a = format!("/account/{}", f.account);
    (f, ada, a)
}

#[tokio::test]
async fn every_account_section_opens_and_workspaces_are_created_edited_and_deleted_from_forms() {
    each_db(|t| async move {
        let (f, ada, a) = admin_signed_in(&t).await;
        let Fixture { account, owner, .. } = f;

        // Every section is in the navigation and opens.
        for (path, heading) in [
            ("", "ACME"),
            ("/workspaces", "Workspaces"),
            ("/members", "Members"),
            ("/service-accounts", "Service accounts"),
            ("/teams", "Teams"),
            ("/roles", "Roles"),
            ("/audit-log", "Audit log"),
            ("/billing", "Billing"),
            ("/settings", "Settings"),
            ("/sso", "Single sign-on"),
        ] {
            let (s, html) = ada.get(&format!("{a}{path}")).await;
            assert_eq!(s, S::OK, "{path}: {html}");
            assert!(
                html.contains(&format!("<h1>{heading}</h1>")),
                "{path}: {html}"
            );
            assert!(
                html.contains(&format!("href=\"{a}{path}\" aria-current=\"page\"")),
                "{path} is marked current: {html}"
            );
        }

        // Workspaces: create with a default role, edit, then delete only with the typed handle.
        let (s, h, body) = ada
            .submit(
                &format!("{a}/workspaces"),
                &format!("{a}/workspaces"),
                &[
                    ("name", "Staging"),
                    ("handle", "staging"),
                    ("description", "pre-prod"),
                    (
                        "default_workspace_role_id",
                        &atrium::domain::role::BuiltinWorkspaceRole::Viewer
                            .id()
                            .to_string(),
                    ),
                ],
            )
            .await;
        assert_eq!(s, S::SEE_OTHER, "{body}");
        let ws_page = h["location"].to_str().expect("location").to_string();
        let staging = ws_page.rsplit('/').next().expect("id").to_string();
        let (_, v) = t
            .call(
                M::GET,
                &format!("/api/accounts/{account}/workspaces/{staging}"),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(
            (v["handle"].as_str(), v["description"].as_str()),
            (Some("staging"), Some("pre-prod")),
            "{v}"
        );
        assert_eq!(
            v["default_workspace_role_id"],
            json!(atrium::domain::role::BuiltinWorkspaceRole::Viewer.id())
        );
        let (s, _, _) = ada
            .submit(
                &ws_page,
                &ws_page,
                &[
                    ("name", "Staging 2"),
                    ("handle", "staging"),
                    ("description", ""),
                ],
            )
            .await;
        assert_eq!(s, S::SEE_OTHER);
        let (s, _, _) = ada
            .submit(
                &ws_page,
                &format!("{ws_page}/default-access"),
                &[("default_workspace_role_id", "")],
            )
            .await;
        assert_eq!(s, S::SEE_OTHER);
        let (_, v) = t
            .call(
                M::GET,
                &format!("/api/accounts/{account}/workspaces/{staging}"),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(
            (v["name"].as_str(), &v["default_workspace_role_id"]),
            (Some("Staging 2"), &json!(null)),
            "{v}"
        );
        let (s, _, body) = ada
            .submit(
                &format!("{ws_page}/delete"),
                &format!("{ws_page}/delete"),
                &[("confirm", "prod")],
            )
            .await;
        assert_eq!(s, S::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body.contains("does not match"), "{body}");
        let (s, _) = t
            .call(
                M::GET,
                &format!("/api/accounts/{account}/workspaces/{staging}"),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(s, S::OK, "a wrong handle deletes nothing");
        let (s, h, _) = ada
            .submit(
                &format!("{ws_page}/delete"),
                &format!("{ws_page}/delete"),
                &[("confirm", "staging")],
            )
            .await;
        assert_eq!(
            (s, h["location"].to_str().ok()),
            (S::SEE_OTHER, Some(format!("{a}/workspaces").as_str()))
        );
        let (s, _) = t
            .call(
                M::GET,
                &format!("/api/accounts/{account}/workspaces/{staging}"),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(s, S::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn workspace_access_members_and_invitations_change_through_forms() {
    each_db(|t| async move {
        let (f, ada, a) = admin_signed_in(&t).await;
        let Fixture {
            account,
            ws,
            owner,
            vic,
            ..
        } = f;

        // Access: change vic's role (the expiry stays), explain it, then remove it.
        let access = format!("{a}/workspace/{ws}/access");
        let developer = atrium::domain::role::BuiltinWorkspaceRole::Developer
            .id()
            .to_string();
        let (s, _, body) = ada
            .submit(
                &access,
                &access,
                &[("subject", &format!("user:{vic}")), ("role", &developer)],
            )
            .await;
        assert_eq!(s, S::SEE_OTHER, "{body}");
        let (_, grants) = t
            .call(
                M::POST,
                &format!("/api/accounts/{account}/workspaces/{ws}/user_access/filter"),
                Some(&owner.key),
                Some(json!({})),
            )
            .await;
        let g = grants
            .as_array()
            .expect("list")
            .iter()
            .find(|g| g["user_id"] == json!(vic))
            .expect("vic's grant")
            .clone();
        assert_eq!(g["workspace_role_id"].as_str(), Some(developer.as_str()));
        assert!(
            g["expires_at"].is_string(),
            "changing the role keeps the expiry: {g}"
        );
        let (_, m) = t
            .call(
                M::GET,
                &format!("/api/accounts/{account}/account_memberships/by-user/{vic}"),
                Some(&owner.key),
                None,
            )
            .await;
        let (s, html) = ada
            .get(&format!("{access}?who={vic}&scope=manage_deployments"))
            .await;
        assert_eq!(s, S::OK, "{html}");
        assert!(
            html.contains("<strong>vic@acme.test</strong> has <code>manage_deployments</code>")
                && html.contains("a direct grant of Developer"),
            "{html}"
        );
        let (s, html) = ada
            .get(&format!("{access}?who=not-an-id&scope=see_flows"))
            .await;
        assert_eq!(s, S::OK, "a mangled link still gets the page");
        assert!(
            html.contains("who: not a member or service account id"),
            "{html}"
        );
        let (s, _, _) = ada
            .submit(
                &access,
                &format!(
                    "{access}/remove?kind=user&id={}",
                    g["id"].as_str().expect("id")
                ),
                &[],
            )
            .await;
        assert_eq!(s, S::SEE_OTHER);
        let (_, grants) = t
            .call(
                M::POST,
                &format!("/api/accounts/{account}/workspaces/{ws}/user_access/filter"),
                Some(&owner.key),
                Some(json!({})),
            )
            .await;
        assert!(
            grants
                .as_array()
                .expect("list")
                .iter()
                .all(|g| g["user_id"] != json!(vic)),
            "{grants}"
        );

        // Members: invite two at once, revoke one; change a role; deactivate.
        let members = format!("{a}/members");
        let (s, _, body) = ada
            .submit(
                &members,
                &format!("{members}/invite"),
                &[("emails", "bea@acme.test, cal@acme.test")],
            )
            .await;
        assert_eq!(s, S::SEE_OTHER, "{body}");
        let (_, inv) = t
            .call(
                M::POST,
                &format!("/api/accounts/{account}/invitations/filter"),
                Some(&owner.key),
                Some(json!({})),
            )
            .await;
        let inv = inv.as_array().expect("list").clone();
        assert_eq!(inv.len(), 2, "{inv:?}");
        assert!(inv
            .iter()
            .all(|i| i["account_role_name"] == "Member" && i["status"] == "pending"));
        let (_, html) = ada.get(&members).await;
        assert!(
            html.contains("bea@acme.test")
                && html.contains("cal@acme.test")
                && html.contains("Pending invitations"),
            "{html}"
        );
        let cal = inv
            .iter()
            .find(|i| i["email"] == "cal@acme.test")
            .expect("cal")["id"]
            .as_str()
            .expect("id")
            .to_string();
        let (s, _, _) = ada
            .submit(&members, &format!("{a}/invitations/{cal}/revoke"), &[])
            .await;
        assert_eq!(s, S::SEE_OTHER);
        let (_, v) = t
            .call(
                M::GET,
                &format!("/api/accounts/{account}/invitations/{cal}"),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(v["status"], "revoked");
        let admin = atrium::domain::role::AccountRole::Admin.id().to_string();
        let (s, _, _) = ada
            .submit(
                &members,
                &format!("{members}/{}/role", m["id"].as_str().expect("id")),
                &[("account_role_id", &admin)],
            )
            .await;
        assert_eq!(s, S::SEE_OTHER);
        let (s, _, _) = ada
            .submit(
                &members,
                &format!("{members}/{}/deactivate", m["id"].as_str().expect("id")),
                &[],
            )
            .await;
        assert_eq!(s, S::SEE_OTHER);
        let (_, m2) = t
            .call(
                M::GET,
                &format!("/api/accounts/{account}/account_memberships/by-user/{vic}"),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(
            (m2["account_role_name"].as_str(), m2["active"].as_bool()),
            (Some("Admin"), Some(false)),
            "{m2}"
        );

        // An invitation can carry a workspace role too.
        let (s, _, body) = ada
            .submit(
                &members,
                &format!("{members}/invite"),
                &[
                    ("emails", "dan@acme.test"),
                    ("workspace_id", &ws.to_string()),
                    ("workspace_role_id", &developer),
                ],
            )
            .await;
        assert_eq!(s, S::SEE_OTHER, "{body}");
        let (_, inv) = t
            .call(
                M::POST,
                &format!("/api/accounts/{account}/invitations/filter"),
                Some(&owner.key),
                Some(json!({"invitations": {"email": {"any_": ["dan@acme.test"]}}})),
            )
            .await;
        assert_eq!(
            (
                inv[0]["workspace_id"].as_str(),
                inv[0]["workspace_role_id"].as_str()
            ),
            (Some(ws.to_string().as_str()), Some(developer.as_str())),
            "{inv}"
        );
    })
    .await;
}

#[tokio::test]
async fn service_accounts_roles_teams_and_the_audit_log_work_from_forms_and_forged_forms_change_nothing(
) {
    each_db(|t| async move {
        let (f, ada, a) = admin_signed_in(&t).await;
        let Fixture {
            account,
            ws,
            owner,
            vic,
            ..
        } = f;

        // Service accounts: created with the key shown once; rotation keeps the old key for the
        // chosen overlap.
        let sas = format!("{a}/service-accounts");
        let (s, h, html) = ada
            .submit(&sas, &sas, &[("name", "ci"), ("days", "30")])
            .await;
        assert_eq!(s, S::OK, "{html}");
        assert_eq!(h["cache-control"], "no-store");
        let key1 = html
            .split("id=\"new-key\">")
            .nth(1)
            .and_then(|r| r.split('<').next())
            .expect("key shown")
            .to_string();
        assert!(key1.starts_with("pnb_"), "{key1}");
        let (s, _) = t
            .call(M::GET, "/api/me/workspaces", Some(&key1), None)
            .await;
        assert_eq!(s, S::OK, "the shown key works");
        let (_, bots) = t
            .call(
                M::POST,
                &format!("/api/accounts/{account}/bots/filter"),
                Some(&owner.key),
                Some(json!({})),
            )
            .await;
        let bot = bots[0]["id"].as_str().expect("bot").to_string();
        let sa_page = format!("{a}/service-account/{bot}");
        let (_, again) = ada.get(&sa_page).await;
        assert!(!again.contains(&key1), "the key is shown only once");
        let (s, _, html) = ada
            .submit(
                &sa_page,
                &format!("{sa_page}/rotate"),
                &[("days", ""), ("overlap", "3600")],
            )
            .await;
        assert_eq!(s, S::OK, "{html}");
        let key2 = html
            .split("id=\"new-key\">")
            .nth(1)
            .and_then(|r| r.split('<').next())
            .expect("new key")
            .to_string();
        assert!(key2 != key1 && html.contains("rotating out"), "{html}");
        assert_eq!(
            t.call(M::GET, "/api/me/workspaces", Some(&key1), None)
                .await
                .0,
            S::OK,
            "the old key works during the overlap"
        );
        t.clock.advance(chrono::Duration::minutes(61));
        assert_eq!(
            t.call(M::GET, "/api/me/workspaces", Some(&key1), None)
                .await
                .0,
            S::UNAUTHORIZED,
            "and not after it"
        );
        assert_eq!(
            t.call(M::GET, "/api/me/workspaces", Some(&key2), None)
                .await
                .0,
            S::OK
        );
        let runner = atrium::domain::role::BuiltinWorkspaceRole::Runner
            .id()
            .to_string();
        let (s, _, _) = ada
            .submit(
                &sa_page,
                &format!("{sa_page}/access"),
                &[
                    ("workspace", &ws.to_string()),
                    ("role", &runner),
                    ("expires_at", ""),
                ],
            )
            .await;
        assert_eq!(s, S::SEE_OTHER);
        let (_, html) = ada.get(&sa_page).await;
        assert!(
            html.contains("Runner") && html.contains(&format!("{a}/workspace/{ws}/access")),
            "{html}"
        );

        // Roles: a custom role from the scope picker, inheriting Viewer.
        let (s, _, body) = ada
            .submit(
                &format!("{a}/roles/new"),
                &format!("{a}/roles"),
                &[
                    ("name", "Deployer"),
                    ("description", "runs deployments"),
                    (
                        "inherited_role_id",
                        &atrium::domain::role::BuiltinWorkspaceRole::Viewer
                            .id()
                            .to_string(),
                    ),
                    ("scopes", "run_deployments"),
                    ("scopes", "see_deployments"),
                ],
            )
            .await;
        assert_eq!(s, S::SEE_OTHER, "{body}");
        let (_, roles) = t
            .call(
                M::POST,
                &format!("/api/accounts/{account}/workspace_roles/filter"),
                Some(&owner.key),
                Some(json!({})),
            )
            .await;
        let deployer = roles
            .as_array()
            .expect("list")
            .iter()
            .find(|r| r["name"] == "Deployer")
            .expect("created")
            .clone();
        assert_eq!(
            deployer["inherited_role_id"],
            json!(atrium::domain::role::BuiltinWorkspaceRole::Viewer.id())
        );
        assert!(
            deployer["scopes"]
                .as_array()
                .expect("scopes")
                .contains(&json!("run_deployments")),
            "{deployer}"
        );
        let (_, html) = ada
            .get(&format!(
                "{a}/role/{}",
                atrium::domain::role::BuiltinWorkspaceRole::Viewer.id()
            ))
            .await;
        assert!(
            html.contains("A built-in role: read-only")
                && html.contains(" disabled")
                && !html.contains("Save role"),
            "{html}"
        );

        // Teams: create, add a member, grant the custom role.
        let (s, h, _) = ada
            .submit(
                &format!("{a}/teams"),
                &format!("{a}/teams"),
                &[("name", "data"), ("description", "")],
            )
            .await;
        assert_eq!(s, S::SEE_OTHER);
        let team_page = h["location"].to_str().expect("location").to_string();
        let (s, _, body) = ada
            .submit(
                &team_page,
                &format!("{team_page}/members"),
                &[("member", &format!("user:{vic}")), ("expires_at", "")],
            )
            .await;
        assert_eq!(s, S::SEE_OTHER, "{body}");
        let (s, _, body) = ada
            .submit(
                &team_page,
                &format!("{team_page}/access"),
                &[
                    ("workspace", &ws.to_string()),
                    ("role", deployer["id"].as_str().expect("id")),
                ],
            )
            .await;
        assert_eq!(s, S::SEE_OTHER, "{body}");
        let (_, html) = ada.get(&team_page).await;
        assert!(
            html.contains("vic@acme.test") && html.contains("Deployer") && html.contains("prod"),
            "{html}"
        );

        // Audit log: filtered by event type, exported as CSV; the chart has a bar per day.
        let (s, html) = ada
            .get(&format!("{a}/audit-log?event=prefect-cloud.team.created"))
            .await;
        assert_eq!(s, S::OK, "{html}");
        assert!(
            html.contains("1 matching event.")
                && html.contains("<code>team.created</code>")
                && !html.contains("<code>bot.created</code>"),
            "{html}"
        );
        assert!(
            html.contains(&format!(
                "<option value=\"{bot}\">ci (service account)</option>"
            )),
            "service accounts are in the who filter: {html}"
        );
        assert_eq!(
            html.matches("events\"></span>").count(),
            7,
            "seven days by default: {html}"
        );
        let (s, _, csv) = get_page(
            &t,
            &format!("{a}/audit-log/export?event=prefect-cloud.team.created"),
            &ada.session,
        )
        .await;
        assert_eq!(s, S::OK);
        assert!(
            csv.starts_with("occurred,event,")
                && csv.lines().count() == 2
                && csv.contains("prefect-cloud.team.created,"),
            "{csv}"
        );
        // Pages of 50: the link to older events carries the filters and the page token.
        for i in 0..55 {
            let (s, _) = t
                .call(
                    M::PATCH,
                    &format!("/api/accounts/{account}/settings"),
                    Some(&owner.key),
                    Some(json!({"ai_log_summaries": i % 2 == 0})),
                )
                .await;
            assert_eq!(s, S::NO_CONTENT);
        }
        let (_, html) = ada
            .get(&format!(
                "{a}/audit-log?event=prefect-cloud.account-settings.updated"
            ))
            .await;
        assert!(
            html.contains("55 matching events.")
                && html
                    .matches("<code>account-settings.updated</code>")
                    .count()
                    == 50,
            "{html}"
        );
        let next = html
            .split("href=\"")
            .find(|h| h.contains("page="))
            .and_then(|h| h.split('"').next())
            .expect("older events link")
            .replace("&amp;", "&");
        assert!(
            next.contains("event=prefect-cloud.account-settings.updated"),
            "{next}"
        );
        let (s, html) = ada.get(&next).await;
        assert_eq!(s, S::OK, "{html}");
        assert_eq!(
            html.matches("<code>account-settings.updated</code>")
                .count(),
            5,
            "{html}"
        );
        assert!(!html.contains("rel=\"next\""), "no further page: {html}");
        let (s, html) = ada.get(&format!("{a}/audit-log?from=2020-01-01")).await;
        assert_eq!(s, S::OK);
        assert!(
            html.contains("event queries cover at most 14 days"),
            "a bad range is explained on the page: {html}"
        );

        // A forged form changes nothing.
        let (s, _, _) = form(
            &t,
            &format!("{a}/teams"),
            &ada.session,
            &[("csrf", "forged"), ("name", "sneaky")],
        )
        .await;
        assert_eq!(s, S::FORBIDDEN);
        let (_, teams) = t
            .call(
                M::POST,
                &format!("/api/accounts/{account}/teams/filter"),
                Some(&owner.key),
                Some(json!({})),
            )
            .await;
        assert_eq!(teams.as_array().map(Vec::len), Some(1));
    })
    .await;
}

#[tokio::test]
async fn settings_the_ip_allowlist_and_billing_work_from_forms() {
    each_db(|t| async move {
        let (f, ada, a) = admin_signed_in(&t).await;
        let Fixture { account, owner, .. } = f;

        // Settings: name and a toggle, through the API's own checks.
        let (s, _, _) = ada
            .submit(
                &format!("{a}/settings"),
                &format!("{a}/settings"),
                &[
                    ("name", "ACME Corp"),
                    ("handle", "acme"),
                    ("run_retention_days", ""),
                ],
            )
            .await;
        assert_eq!(s, S::SEE_OTHER);
        let (_, v) = t
            .call(
                M::GET,
                &format!("/api/accounts/{account}"),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(
            (v["name"].as_str(), &v["settings"]["ai_log_summaries"]),
            (Some("ACME Corp"), &json!(false)),
            "{v}"
        );
        let (s, _, body) = ada
            .submit(
                &format!("{a}/settings"),
                &format!("{a}/settings"),
                &[
                    ("name", "ACME Corp"),
                    ("handle", "Not A Handle!"),
                    ("ai_log_summaries", "on"),
                ],
            )
            .await;
        assert_eq!(s, S::UNPROCESSABLE_ENTITY, "{body}");
        let (_, v) = t
            .call(
                M::GET,
                &format!("/api/accounts/{account}"),
                Some(&owner.key),
                None,
            )
            .await;
        assert_eq!(
            (v["handle"].as_str(), &v["settings"]["ai_log_summaries"]),
            (Some("acme"), &json!(false)),
            "a refused change changes nothing: {v}"
        );

        // The IP allowlist: entries edited in one form; enforcing it from an address it does not
        // admit is refused (in-process requests have no address) and nothing changes.
        let (s, _, body) = ada.submit(&format!("{a}/settings"), &format!("{a}/settings/ip-allowlist"), &[
            ("count", "1"), ("net_0", "192.0.2.0/24"), ("desc_0", "office"), ("on_0", "on")]).await;
        assert_eq!(s, S::SEE_OTHER, "{body}");
        let (_, v) = t.call(M::GET, &format!("/api/accounts/{account}/ip_allowlist"), Some(&owner.key), None).await;
        assert_eq!(v, json!({"entries": [{"ip_network": "192.0.2.0/24", "enabled": true, "description": "office", "last_seen": null}]}));
        let (_, html) = ada.get(&format!("{a}/settings")).await;
        assert!(html.contains("value=\"192.0.2.0/24\"") && html.contains("id=\"ip-enforce\""), "{html}");
        let (s, _, body) = ada.submit(&format!("{a}/settings"), &format!("{a}/settings/ip-allowlist"), &[
            ("count", "2"), ("net_0", "192.0.2.0/24"), ("on_0", "on"), ("net_1", "198.51.100.7"), ("on_1", "on"), ("enforce", "on")]).await;
        assert_eq!(s, S::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body.contains("shut out your own address"), "{body}");
        let (_, v) = t.call(M::GET, &format!("/api/accounts/{account}/settings"), Some(&owner.key), None).await;
        assert_eq!(v["enforce_ip_allowlist"], false);
        let (_, v) = t.call(M::GET, &format!("/api/accounts/{account}/ip_allowlist"), Some(&owner.key), None).await;
        assert_eq!(v["entries"].as_array().map(Vec::len), Some(1), "the refused save left the list alone: {v}");

        // Billing draws seats against the plan.
        let (_, html) = ada.get(&format!("{a}/billing")).await;
        assert!(
            html.contains("Seats used") && html.contains("Payment method"),
            "{html}"
        );

    })
    .await;
}

#[tokio::test]
async fn a_member_sees_no_controls_they_cannot_use_and_is_refused_anyway() {
    each_db(|t| async move {
        let Fixture { account, owner, .. } = fixture(&t).await;
        let id = t.user_with_password("mo@acme.test").await;
        let mo = TestUser {
            id,
            key: owner.key.clone(),
            key_id: owner.key_id,
        };
        t.add_member(
            account,
            &owner,
            &mo,
            atrium::domain::role::AccountRole::Member,
        )
        .await;
        let mo = visitor(&t, "mo@acme.test").await;
        let a = format!("/account/{account}");
        let (s, html) = mo.get(&a).await;
        assert_eq!(s, S::OK, "{html}");
        assert!(
            !html.contains(&format!("href=\"{a}/audit-log\""))
                && !html.contains(&format!("href=\"{a}/billing\"")),
            "no sections they cannot read: {html}"
        );
        let (s, html) = mo.get(&format!("{a}/members")).await;
        assert_eq!(s, S::OK, "{html}");
        assert!(
            !html.contains("Invite people")
                && !html.contains(">Remove<")
                && !html.contains(">Deactivate<"),
            "{html}"
        );
        let (_, html) = mo.get(&format!("{a}/workspaces")).await;
        assert!(!html.contains("New workspace"), "{html}");
        // The server refuses the forms anyway, with the API's message, and nothing is created.
        let (s, _, body) = mo
            .submit(
                &format!("{a}/members"),
                &format!("{a}/members/invite"),
                &[("emails", "x@acme.test")],
            )
            .await;
        assert_eq!(s, S::FORBIDDEN, "{body}");
        assert!(body.contains("create:invitation"), "{body}");
        let (_, inv) = t
            .call(
                M::POST,
                &format!("/api/accounts/{account}/invitations/filter"),
                Some(&owner.key),
                Some(json!({})),
            )
            .await;
        assert_eq!(inv.as_array().map(Vec::len), Some(0));
        let (s, html) = mo.get(&format!("{a}/audit-log")).await;
        assert_eq!(s, S::FORBIDDEN, "{html}");
        // Another account's pages do not exist for them.
        let other_owner = t.user("o@other.test").await;
        let other = t.account(&other_owner, "other").await;
        for path in ["/workspaces", "/members", "/settings", "/roles"] {
            let (s, _) = mo.get(&format!("/account/{other}{path}")).await;
            assert_eq!(s, S::NOT_FOUND, "{path}");
        }
    })
    .await;
}

#[tokio::test]
async fn open_sign_up_then_a_new_account_from_the_home_page_and_prefect_links_land_on_the_prefect_ui(
) {
    each_db(|t| async move {
        // Invite-only (the default): the page says so and the form posts are refused.
        let (s, _, html) = get_page(&t, "/signup", "").await;
        assert_eq!(s, S::OK);
        assert!(
            html.contains("Sign-up is by invitation") && !html.contains("<form"),
            "{html}"
        );
        let (_, _, login) = get_page(&t, "/login", "").await;
        assert!(
            !login.contains("/signup"),
            "no sign-up link when it is closed"
        );

        let t = t
            .reconfigured(|c| {
                c.signup_policy = atrium::config::SignupPolicy::Open;
                c.account_creation = atrium::config::AccountCreation::Anyone;
            })
            .await;
        let (_, _, login) = get_page(&t, "/login", "").await;
        assert!(login.contains("href=\"/signup\""), "{login}");
        let (s, h, html) = get_page(&t, "/signup", "").await;
        assert_eq!(s, S::OK);
        let csrf = csrf_cookie(&h);
        let token = hidden(&html, "csrf");
        let (s, _, body) = form(
            &t,
            "/signup",
            &csrf,
            &[
                ("csrf", &token),
                ("email", "zed@x.test"),
                ("password", "short"),
            ],
        )
        .await;
        assert_eq!(s, S::UNPROCESSABLE_ENTITY, "{body}");
        assert!(
            body.contains("password must be 8-1024 characters"),
            "{body}"
        );
        let (s, h, _) = form(
            &t,
            "/signup",
            &csrf,
            &[
                ("csrf", &token),
                ("email", "zed@x.test"),
                ("password", "a-long-password"),
                ("first_name", "Zed"),
            ],
        )
        .await;
        assert_eq!((s, h["location"].to_str().ok()), (S::SEE_OTHER, Some("/")));
        let zed = Visitor {
            t: &t,
            session: cookie_of(&h, "atrium_session"),
        };

        // Home offers a new account; creating one opens it with Zed as its Owner.
        let (_, html) = zed.get("/").await;
        assert!(
            html.contains("not a member of any account") && html.contains("New account"),
            "{html}"
        );
        let (s, h, body) = zed
            .submit(
                "/",
                "/accounts",
                &[("name", "Zed Co"), ("handle", "zed-co")],
            )
            .await;
        assert_eq!(s, S::SEE_OTHER, "{body}");
        let account_page = h["location"].to_str().expect("location").to_string();
        let (s, html) = zed.get(&account_page).await;
        assert_eq!(s, S::OK);
        assert!(
            html.contains("<h1>Zed Co</h1>") && html.contains("your role: Owner"),
            "{html}"
        );
        let (s, _, body) = zed
            .submit("/", "/accounts", &[("name", "Again"), ("handle", "zed-co")])
            .await;
        assert_eq!(s, S::CONFLICT, "{body}");

        // Prefect Cloud's personal-key URL leads to ours.
        let (s, h, _) = get_page(&t, "/my/api-keys", &zed.session).await;
        assert_eq!(
            (s, h["location"].to_str().ok()),
            (S::PERMANENT_REDIRECT, Some("/me/api-keys"))
        );
        // A link the prefect client prints into Prefect's UI lands on the same page of the
        // workspace's Prefect UI (served by Atrium; tests/it/prefect_ui.rs).
        let (s, h, body) = zed
            .submit(
                &format!("{account_page}/workspaces"),
                &format!("{account_page}/workspaces"),
                &[("name", "Prod"), ("handle", "prod")],
            )
            .await;
        assert_eq!(s, S::SEE_OTHER, "{body}");
        let ws_page = h["location"].to_str().expect("location").to_string();
        let run = "runs/flow-run/0b7c0a8e-4a4e-4d4c-9b1a-3a1d2f3e4c5d";
        let (s, h, _) = get_page(&t, &format!("{ws_page}/{run}?tab=Logs"), &zed.session).await;
        assert_eq!(
            (s, h["location"].to_str().ok()),
            (
                S::SEE_OTHER,
                Some(format!("{ws_page}/ui/{run}?tab=Logs").as_str())
            )
        );
    })
    .await;
}
