//! Single sign-on against a real OpenID provider (panva's certified `oidc-provider`, npm) and a
//! real authoritative DNS server (`dnslib`): domain verification, home-realm discovery by email,
//! the code flow with PKCE, just-in-time members, IdP groups → teams, and the refusals (replayed
//! answers, addresses outside the account's verified domains).

use crate::support::*;
use axum::http::{Method as M, StatusCode as S};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};

/// A child process stopped when the test ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn wait_for_tcp(port: u16, what: &str) {
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "{what} did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The IdP, the DNS server and the Python that plays the browser at the IdP; `None` (a failure
/// under `ATRIUM_TEST_REQUIRE_ALL=1`) when Node's IdP packages or the Python tools are missing.
struct Idps {
    python: String,
    issuer: String,
    dns_port: u16,
    records: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _procs: Vec<Proc>,
}

fn idp_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp")
}

impl Idps {
    fn start(redirect_uri: &str, accounts: Value) -> Option<Idps> {
        let Ok(python) = std::env::var("ATRIUM_TEST_PYTHON") else {
            missing("the SSO tools (ATRIUM_TEST_PYTHON with httpx and dnslib)");
            return None;
        };
        let tools = Command::new(&python)
            .args(["-c", "import dnslib, httpx"])
            .status()
            .is_ok_and(|s| s.success());
        if !tools {
            missing("the SSO tools (dnslib and httpx in ATRIUM_TEST_PYTHON)");
            return None;
        }
        if !idp_dir().join("node_modules/oidc-provider").exists() {
            missing("the test identity provider (npm ci in tests/idp)");
            return None;
        }
        let dir = tempfile::tempdir().expect("dir");
        let records = dir.path().join("records.json");
        std::fs::write(&records, "{}").expect("records");
        let dns_port = free_port();
        let dns = Command::new(&python)
            .arg(idp_dir().join("dns.py"))
            .arg(dns_port.to_string())
            .arg(&records)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dns.py");
        let port = free_port();
        let op = Command::new("node")
            .arg(idp_dir().join("oidc-op.mjs"))
            .env("PORT", port.to_string())
            .env("REDIRECT_URI", redirect_uri)
            .env("ACCOUNTS", accounts.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start oidc-op.mjs");
        let procs = vec![Proc(dns), Proc(op)];
        wait_for_tcp(port, "the OpenID provider");
        wait_for_tcp(dns_port, "the DNS server");
        Some(Idps {
            python,
            issuer: format!("http://127.0.0.1:{port}"),
            dns_port,
            records,
            _dir: dir,
            _procs: procs,
        })
    }

    /// `t` asking this DNS server, on the real time (IdPs sign with it; tests start in the past).
    async fn app(&self, t: TestApp) -> TestApp {
        let dns: std::net::SocketAddr = format!("127.0.0.1:{}", self.dns_port)
            .parse()
            .expect("addr");
        let t = t.reconfigured(|c| c.dns_resolver = Some(dns)).await;
        t.clock.advance(chrono::Utc::now() - t.app.now());
        t
    }

    /// Publishes TXT records (replacing all).
    fn publish(&self, records: Value) {
        std::fs::write(&self.records, records.to_string()).expect("records");
    }

    /// Signs in at the IdP as `login` from `authorize_url`; answers the callback path and query.
    fn sign_in(&self, authorize_url: &str, login: &str, callback: &str) -> String {
        let out = Command::new(&self.python)
            .arg(idp_dir().join("oidc_login.py"))
            .args([authorize_url, login, callback])
            .output()
            .expect("oidc_login.py");
        assert!(
            out.status.success(),
            "the IdP sign-in failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        url.strip_prefix(callback.trim_end_matches("/auth/oidc/callback"))
            .expect("a callback URL")
            .to_string()
    }
}

/// `GET /api/me` with a session cookie (`name=value`).
async fn me_with(t: &TestApp, cookie: &str) -> (S, Value) {
    let req = axum::http::Request::builder()
        .uri("/api/me")
        .header("cookie", cookie)
        .body(axum::body::Body::empty())
        .expect("request");
    let (s, _, b) = t.send(req).await;
    (s, json_or_text(&b))
}

/// A team's members as the API lists them.
async fn team_members(t: &TestApp, path: &str, key: Option<&str>) -> Vec<Value> {
    let (_, v) = t.call(M::GET, path, key, None).await;
    v["memberships"].as_array().cloned().unwrap_or_default()
}

/// A GET through the router: status, headers and body as text.
async fn get(t: &TestApp, path: &str) -> (S, axum::http::HeaderMap, String) {
    let (s, h, b) = t.raw(M::GET, path, None, None, "text/plain").await;
    (s, h, String::from_utf8_lossy(&b).into_owned())
}

#[tokio::test]
async fn oidc_sign_in_verifies_the_domain_creates_the_member_and_follows_idp_groups() {
    let redirect = format!(
        "{}/auth/oidc/callback",
        atrium::config::Config::default().public_url
    );
    let Some(idp) = Idps::start(
        &redirect,
        json!({
            "alice": {"email": "alice@acme.test", "email_verified": true, "name": "Alice Liddell", "groups": ["admins", "staff"]},
            "alice-left": {"email": "alice@acme.test", "email_verified": true, "name": "Alice Liddell", "groups": ["staff"]},
            "bob": {"email": "bob@elsewhere.test", "email_verified": true, "name": "Bob", "groups": ["admins"]},
            "carol": {"email": "carol@acme.test", "email_verified": false, "name": "Carol"},
            "dave": {"email": "dave@acme.test", "email_verified": true, "name": "Dave"},
        }),
    ) else {
        return;
    };
    let (idp, redirect) = (&idp, redirect.as_str());
    each_db(|t| async move {
        let t = idp.app(t).await;
        // The IdP signs with the real time; Atrium's clock starts in the past in tests.
        t.clock.advance(chrono::Utc::now() - t.app.now());
        idp.publish(json!({}));
        let owner = t.user("owner@acme.test").await;
        let a = t.account(&owner, "acme").await;
        let key = Some(owner.key.as_str());
        let (s, team) = t
            .call(M::POST, &format!("/api/accounts/{a}/teams/"), key, Some(json!({"name": "Admins"})))
            .await;
        assert_eq!(s, S::CREATED, "{team}");
        let team_id = team["id"].as_str().expect("team id").to_string();

        // The provider: discovery answered, the secret never shown again.
        let (s, p) = t
            .call(
                M::POST,
                &format!("/api/accounts/{a}/sso/providers"),
                key,
                Some(json!({"kind": "oidc", "name": "Acme IdP", "issuer": idp.issuer,
                            "client_id": "atrium", "client_secret": "atrium-secret", "groups_claim": "groups", "scopes": ["groups"]})),
            )
            .await;
        assert_eq!(s, S::CREATED, "{p}");
        assert_eq!(p["redirect_uri"], redirect);
        assert!(p.get("client_secret").is_none() && p["has_client_secret"] == true, "{p}");
        let provider = p["id"].as_str().expect("provider id").to_string();
        let (s, v) = t
            .call(
                M::POST,
                &format!("/api/accounts/{a}/sso/providers"),
                key,
                Some(json!({"kind": "oidc", "name": "Nowhere", "issuer": "http://127.0.0.1:9",
                            "client_id": "x"})),
            )
            .await;
        assert_eq!(s, S::UNPROCESSABLE_ENTITY, "an issuer without discovery is refused: {v}");
        let (s, v) = t
            .call(
                M::PUT,
                &format!("/api/accounts/{a}/sso/providers/{provider}/group_mappings"),
                key,
                Some(json!([{"group": "admins", "team_id": team_id}])),
            )
            .await;
        assert_eq!(s, S::OK, "{v}");

        // The domain: refused until the TXT record is published, then verified.
        let (s, d) = t
            .call(M::POST, &format!("/api/accounts/{a}/sso/domains"), key, Some(json!({"domain": "Acme.test"})))
            .await;
        assert_eq!(s, S::CREATED, "{d}");
        assert_eq!(d["domain"], "acme.test");
        assert_eq!(d["txt_name"], "_atrium-challenge.acme.test");
        assert_eq!(d["verified"], false);
        let verify = format!("/api/accounts/{a}/sso/domains/{}/verify", d["id"].as_str().expect("id"));
        // Before verification the email finds no account to sign in with.
        let (s, _, body) = get(&t, "/auth/sso?email=alice@acme.test").await;
        assert_eq!(s, S::NOT_FOUND, "{body:.300}");
        let (s, v) = t.call(M::POST, &verify, key, None).await;
        assert_eq!(s, S::CONFLICT, "{v}");
        assert!(v["detail"].as_str().unwrap_or("").contains("no TXT record"), "{v}");
        idp.publish(json!({"_atrium-challenge.acme.test.": ["atrium-domain-verification=wrong"]}));
        let (s, v) = t.call(M::POST, &verify, key, None).await;
        assert_eq!(s, S::CONFLICT, "{v}");
        assert!(v["detail"].as_str().unwrap_or("").contains("wrong"), "names what it saw: {v}");
        idp.publish(json!({"_atrium-challenge.acme.test.": [d["txt_value"]]}));
        let (s, v) = t.call(M::POST, &verify, key, None).await;
        assert_eq!((s, &v["verified"]), (S::OK, &json!(true)), "{v}");

        // The sign-in form, email first: no password, and the address's domain sends to the IdP.
        let (_, h, html) = crate::dashboard::get_page(&t, "/login?next=/", "").await;
        let (s, h, _) = form(&t, "/login", &csrf_cookie(&h),
            &[("csrf", &hidden(&html, "csrf")), ("email", "alice@acme.test"), ("password", ""), ("next", "/")]).await;
        assert!(s.is_redirection() && h["location"].to_str().unwrap_or("").starts_with(&idp.issuer), "{s} {h:?}");
        // Email first → the account's IdP → back, signed in as a new member in the mapped team.
        let (s, h, body) = get(&t, "/auth/sso?email=alice@acme.test&next=/account/x").await;
        assert!(s.is_redirection(), "{s} {body:.300}");
        let authorize = h["location"].to_str().expect("location").to_string();
        assert!(authorize.starts_with(&idp.issuer), "{authorize}");
        assert!(authorize.contains("code_challenge_method=S256") && authorize.contains("nonce="), "{authorize}");
        let callback = idp.sign_in(&authorize, "alice", redirect);
        let (s, h, body) = get(&t, &callback).await;
        assert!(s.is_redirection(), "{s} {}", body.split("role=\"alert\">").nth(1).unwrap_or(&body));
        assert_eq!(h["location"], "/account/x");
        let session = cookie_of(&h, "atrium_session");
        let (s, me) = me_with(&t, &session).await;
        assert_eq!(s, S::OK, "{me}");
        assert_eq!((me["email"].as_str(), me["first_name"].as_str(), me["last_name"].as_str()),
                   (Some("alice@acme.test"), Some("Alice"), Some("Liddell")));
        let alice_id = me["id"].as_str().expect("id").to_string();
        let (s, m) = t
            .call(M::GET, &format!("/api/accounts/{a}/account_memberships/by-user/{alice_id}"), key, None)
            .await;
        assert_eq!(s, S::OK, "a member was created just in time: {m}");
        assert_eq!(m["account_role_name"], "Member");
        let team_path = format!("/api/accounts/{a}/teams/{team_id}");
        assert!(team_members(&t, &team_path, key).await.iter().any(|m| m["member_id"] == alice_id.as_str()),
                "the admins group put Alice in the Admins team: {:?}", team_members(&t, &team_path, key).await);

        // The same answer twice: the second is refused.
        let (s, _, body) = get(&t, &callback).await;
        assert_eq!(s, S::FORBIDDEN, "a replayed answer: {body:.300}");

        // Leaving the IdP group leaves the team at the next sign-in; the session obeys the
        // account's auth_expiration_seconds.
        let (s, v) = t
            .call(M::PATCH, &format!("/api/accounts/{a}"), key, Some(json!({"auth_expiration_seconds": 3600})))
            .await;
        assert_eq!(s, S::NO_CONTENT, "{v}");
        let (_, h, _) = get(&t, "/auth/sso?account=acme").await;
        let callback = idp.sign_in(h["location"].to_str().expect("location"), "alice-left", redirect);
        let (s, h, body) = get(&t, &callback).await;
        assert!(s.is_redirection(), "{s} {body:.300}");
        let cookie = h.get_all("set-cookie").iter().filter_map(|c| c.to_str().ok())
            .find(|c| c.starts_with("atrium_session=")).expect("session cookie").to_string();
        let max_age: i64 = cookie.split("Max-Age=").nth(1).and_then(|r| r.split(';').next())
            .and_then(|n| n.parse().ok()).expect("Max-Age");
        assert!((3500..=3600).contains(&max_age), "the session lives at most the account's bound: {cookie}");
        assert!(team_members(&t, &team_path, key).await.iter().all(|m| m["member_id"] != alice_id.as_str()),
                "out of the group, out of the team: {:?}", team_members(&t, &team_path, key).await);

        // An address outside the verified domains, and an unverified address: refused, nothing
        // created.
        for (login, why) in [("bob", "not in a domain this account has verified"), ("carol", "has not verified")] {
            let (_, h, _) = get(&t, "/auth/sso?account=acme").await;
            let callback = idp.sign_in(h["location"].to_str().expect("location"), login, redirect);
            let (s, h, body) = get(&t, &callback).await;
            assert_eq!(s, S::FORBIDDEN, "{login}: {body:.300}");
            assert!(body.contains(why), "{login}: {body:.500}");
            assert!(h.get("set-cookie").is_none_or(|c| !c.to_str().unwrap_or("").contains("atrium_session=")), "{login}");
        }
        let (_, listed) = t
            .call(M::POST, &format!("/api/accounts/{a}/account_memberships/filter"), key, Some(json!({})))
            .await;
        let emails: Vec<&str> = listed.as_array().expect("members").iter().filter_map(|m| m["email"].as_str()).collect();
        assert_eq!(emails.len(), 2, "the owner and Alice only: {emails:?}");

        // The Prefect CLI's browser login goes through the IdP and comes back to its page.
        let (_, h, _) = get(&t, "/auth/sso?email=alice@acme.test&next=/auth/client?callback=http://localhost:5555").await;
        let callback = idp.sign_in(h["location"].to_str().expect("location"), "alice", redirect);
        let (s, h, _) = get(&t, &callback).await;
        assert!(s.is_redirection(), "{s}");
        assert_eq!(h["location"], "/auth/client?callback=http://localhost:5555");

        // A full plan: a new member is refused with the plan's message, and nothing is created.
        let admin = t.site_admin("root@site.test").await;
        let (s, v) = t
            .call(M::PUT, &format!("/api/admin/accounts/{a}/plan"), Some(&admin.key),
                  Some(json!({"plan_type": "enterprise", "overrides": {"user_limit": 2}})))
            .await;
        assert_eq!(s, S::OK, "{v}");
        let users_before = count_users(&t).await;
        let (_, h, _) = get(&t, "/auth/sso?account=acme").await;
        let callback = idp.sign_in(h["location"].to_str().expect("location"), "dave", redirect);
        let (s, _, body) = get(&t, &callback).await;
        assert_eq!(s, S::FORBIDDEN, "{body:.300}");
        assert!(body.contains("seat"), "{}", body.split("role=\"alert\">").nth(1).unwrap_or(&body));
        assert_eq!(count_users(&t).await, users_before, "no user was created for Dave");

        // Every step is in the audit log.
        let (_, events) = t
            .call(M::POST, &format!("/api/accounts/{a}/events/filter"), key,
                  Some(json!({"filter": {"event": {"prefix": ["prefect-cloud.sso"]}}, "limit": 50})))
            .await;
        let names: Vec<&str> = events["events"].as_array().expect("events").iter().filter_map(|e| e["event"].as_str()).collect();
        for want in ["prefect-cloud.sso-provider.created", "prefect-cloud.sso-domain.verified",
                     "prefect-cloud.sso.login-succeeded", "prefect-cloud.sso.groups-synced", "prefect-cloud.sso.login-refused"] {
            assert!(names.contains(&want), "{want} in {names:?}");
        }
    })
    .await;
}

/// A user with a password, added to `account` with `role` (the owner's key makes the change).
async fn member_with_password(
    t: &TestApp,
    account: atrium::domain::AccountId,
    owner: &TestUser,
    email: &str,
    role: atrium::domain::role::AccountRole,
) -> atrium::domain::UserId {
    let id = t.user_with_password(email).await;
    let u = TestUser {
        id,
        key: owner.key.clone(),
        key_id: owner.key_id,
    };
    t.add_member(account, owner, &u, role).await;
    id
}

#[tokio::test]
async fn require_sso_ends_password_sign_in_for_the_domain_owners_break_glass_and_a_lost_record_unverifies(
) {
    use atrium::domain::role::AccountRole;
    let Some(idp) = Idps::start("http://127.0.0.1:9/unused", json!({})) else {
        return;
    };
    let idp = &idp;
    each_db(|t| async move {
        let t = idp.app(t).await;
        let root = t.user("root@elsewhere.test").await;
        let a = t.account(&root, "acme").await;
        let key = Some(root.key.as_str());
        let olga = member_with_password(&t, a, &root, "olga@acme.test", AccountRole::Owner).await;
        let dana = member_with_password(&t, a, &root, "dana@acme.test", AccountRole::Member).await;
        let (_, d) = t
            .call(M::POST, &format!("/api/accounts/{a}/sso/domains"), key, Some(json!({"domain": "acme.test"})))
            .await;
        idp.publish(json!({"_atrium-challenge.acme.test.": [d["txt_value"]]}));
        let (s, v) = t
            .call(M::POST, &format!("/api/accounts/{a}/sso/domains/{}/verify", d["id"].as_str().expect("id")), key, None)
            .await;
        assert_eq!(s, S::OK, "{v}");

        // Before the switch, Dana signs in with her password and holds a session.
        let (s, h) = crate::dashboard::sign_in(&t, "dana@acme.test", "a-long-password", "/").await;
        assert!(s.is_redirection(), "{s}");
        let dana_session = cookie_of(&h, "atrium_session");
        assert_eq!(me_with(&t, &dana_session).await.0, S::OK);

        // Only with administrate:sso and the plan's feature; only Member or Admin as the default.
        let settings = format!("/api/accounts/{a}/settings");
        let owner_role = AccountRole::Owner.id().to_string();
        let (s, v) = t
            .call(M::PATCH, &settings, key, Some(json!({"sso_default_account_role_id": owner_role})))
            .await;
        assert_eq!(s, S::UNPROCESSABLE_ENTITY, "members made at sign-in are never Owners: {v}");
        let (s, v) = t.call(M::PATCH, &settings, key, Some(json!({"require_sso": true}))).await;
        assert_eq!(s, S::NO_CONTENT, "{v}");
        let (_, v) = t.call(M::GET, &settings, key, None).await;
        assert_eq!(v["require_sso"], true, "{v}");

        // Dana's session ended; her password no longer signs her in; her key makes no keys.
        assert_eq!(me_with(&t, &dana_session).await.0, S::UNAUTHORIZED, "the session ended at once");
        let (s, h) = crate::dashboard::sign_in(&t, "dana@acme.test", "a-long-password", "/").await;
        assert_eq!(s, S::FORBIDDEN, "password refused");
        assert!(h.get("set-cookie").is_none_or(|c| !c.to_str().unwrap_or("").starts_with("atrium_session=")));
        let dana_key = atrium::services::users::issue_api_key(&t.app, None, dana, "laptop", None)
            .await
            .expect("key");
        let (s, v) = t
            .call(M::POST, "/api/me/api_keys", Some(&dana_key.key), Some(json!({"name": "another"})))
            .await;
        assert_eq!(s, S::FORBIDDEN, "a key cannot make keys when SSO is required: {v}");
        assert!(v["detail"].as_str().unwrap_or("").contains("single sign-on"), "{v}");

        // Olga, an Owner, keeps the password path: allowed and audited as break-glass.
        let (s, h) = crate::dashboard::sign_in(&t, "olga@acme.test", "a-long-password", "/").await;
        assert!(s.is_redirection(), "the Owner's break-glass: {s}");
        assert_eq!(me_with(&t, &cookie_of(&h, "atrium_session")).await.0, S::OK);
        let (_, events) = t
            .call(M::POST, &format!("/api/accounts/{a}/events/filter"), key,
                  Some(json!({"filter": {"event": {"prefix": ["prefect-cloud.sso"]}}, "limit": 50})))
            .await;
        let seen = |name: &str| {
            events["events"].as_array().expect("events").iter().any(|e| e["event"] == name)
        };
        assert!(seen("prefect-cloud.sso.break-glass") && seen("prefect-cloud.sso.password-refused"), "{events}");
        let _ = olga;

        // The record disappears: the domain stays verified through the grace period, then lapses
        // (audited), and with it the requirement.
        idp.publish(json!({}));
        assert_eq!(atrium::services::sso::reverify_domains(&t.app).await.expect("reverify"), 0);
        let (_, v) = t.call(M::GET, &format!("/api/accounts/{a}/sso/domains"), key, None).await;
        assert_eq!((v[0]["verified"].clone(), v[0]["failing_since"].is_string()), (json!(true), true), "{v}");
        t.clock.advance(chrono::Duration::seconds(atrium::services::sso::DOMAIN_GRACE_SECONDS + 1));
        assert_eq!(atrium::services::sso::reverify_domains(&t.app).await.expect("reverify"), 1);
        let (_, v) = t.call(M::GET, &format!("/api/accounts/{a}/sso/domains"), key, None).await;
        assert_eq!(v[0]["verified"], false, "{v}");
        let (s, _) = crate::dashboard::sign_in(&t, "dana@acme.test", "a-long-password", "/").await;
        assert!(s.is_redirection(), "no verified domain, no requirement: {s}");
        let (_, events) = t
            .call(M::POST, &format!("/api/accounts/{a}/events/filter"), key,
                  Some(json!({"filter": {"event": {"prefix": ["prefect-cloud.sso-domain"]}}, "limit": 50})))
            .await;
        assert!(events["events"].as_array().expect("events").iter().any(|e| e["event"] == "prefect-cloud.sso-domain.unverified"), "{events}");
    })
    .await;
}

/// A change an attacker holding the browser makes to the IdP's answer.
type Forge = Box<dyn Fn(&str) -> String>;

/// The `Location` of a raw HTTP answer.
fn location_of(raw: &str) -> String {
    raw.lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("location"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Location in {raw:.400}"))
}

/// Replaces (or adds) one query parameter of a URL path.
fn with_param(path: &str, name: &str, value: &str) -> String {
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .filter(|(k, _)| k != name)
        .collect();
    pairs.push((name.to_string(), value.to_string()));
    let q: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{base}?{q}")
}

#[tokio::test]
async fn forged_and_broken_oidc_answers_are_all_refused_and_create_nothing() {
    let Some(idp) = Idps::start("http://127.0.0.1:9/unused", json!({})) else {
        return;
    };
    let mock_port = free_port();
    let _mock = Proc(
        Command::new("node")
            .arg(idp_dir().join("mock-op.mjs"))
            .env("PORT", mock_port.to_string())
            .env("EMAIL", "alice@example.test")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mock-op.mjs"),
    );
    wait_for_tcp(mock_port, "the forging OpenID provider");
    let mode = |m: &str| {
        let out = http(mock_port, "POST", &format!("/__mode/{m}"), "", "");
        assert!(out.contains(&format!("mode={m}")), "{out}");
    };
    let idp = &idp;
    let mode = &mode;
    each_db(|t| async move {
        let t = idp.app(t).await;
        let root = t.user("root@elsewhere.test").await;
        let a = t.account(&root, "acme").await;
        let key = Some(root.key.as_str());
        let (s, p) = t
            .call(M::POST, &format!("/api/accounts/{a}/sso/providers"), key,
                  Some(json!({"kind": "oidc", "name": "Mock", "issuer": format!("http://127.0.0.1:{mock_port}"), "client_id": "atrium"})))
            .await;
        assert_eq!(s, S::CREATED, "{p}");
        let (_, d) = t
            .call(M::POST, &format!("/api/accounts/{a}/sso/domains"), key, Some(json!({"domain": "example.test"})))
            .await;
        idp.publish(json!({"_atrium-challenge.example.test.": [d["txt_value"]]}));
        let (s, v) = t
            .call(M::POST, &format!("/api/accounts/{a}/sso/domains/{}/verify", d["id"].as_str().expect("id")), key, None)
            .await;
        assert_eq!(s, S::OK, "{v}");
        let users_before = count_users(&t).await;
        let mut refused = Vec::new();
        let mut accepted = Vec::new();
        let token_modes = [
            "bad_nonce", "no_nonce", "wrong_aud", "extra_aud", "wrong_iss", "expired", "iat_future",
            "nbf_future", "email_unverified", "no_email", "other_domain", "alg_none", "foreign_key",
            "unknown_kid", "hs256_public_key", "tampered_payload", "no_id_token",
        ];
        for m in token_modes {
            mode(m);
            let cb = idp_answer(&t, mock_port).await;
            let (s, h, body) = get(&t, &cb).await;
            let signed_in = h.get_all("set-cookie").iter().any(|c| c.to_str().unwrap_or("").starts_with("atrium_session="));
            if s == S::FORBIDDEN && !signed_in && body.contains("single sign-on refused") {
                refused.push(m.to_string());
            } else {
                accepted.push(format!("{m}: {s} {}", body.split("role=\"alert\">").nth(1).unwrap_or(&body)));
            }
        }
        // Answers tampered on the way back (the browser is the attacker's).
        mode("ok");
        let forged_answers: Vec<(&str, Forge)> = vec![
            ("state mismatch", Box::new(|cb: &str| with_param(cb, "state", "forged-state"))),
            ("state missing", Box::new(|cb: &str| {
                let (base, q) = cb.split_once('?').unwrap_or((cb, ""));
                let kept: Vec<&str> = q.split('&').filter(|kv| !kv.starts_with("state=")).collect();
                format!("{base}?{}", kept.join("&"))
            })),
            ("RFC 9207 iss of another issuer", Box::new(|cb: &str| with_param(cb, "iss", "http://evil.example"))),
            ("code missing", Box::new(|cb: &str| {
                let (base, q) = cb.split_once('?').unwrap_or((cb, ""));
                let kept: Vec<&str> = q.split('&').filter(|kv| !kv.starts_with("code=")).collect();
                format!("{base}?{}", kept.join("&"))
            })),
            ("IdP error", Box::new(|cb: &str| with_param(cb, "error", "access_denied"))),
        ];
        for (name, forge) in &forged_answers {
            let cb = idp_answer(&t, mock_port).await;
            let (s, h, body) = get(&t, &forge(&cb)).await;
            let signed_in = h.get_all("set-cookie").iter().any(|c| c.to_str().unwrap_or("").starts_with("atrium_session="));
            if s == S::FORBIDDEN && !signed_in {
                refused.push(name.to_string());
            } else {
                accepted.push(format!("{name}: {s} {body:.200}"));
            }
        }
        // A code from one sign-in under the state of another (its nonce is not this one's).
        let first = idp_answer(&t, mock_port).await;
        let second = idp_answer(&t, mock_port).await;
        let code = form_urlencoded::parse(first.split_once('?').expect("query").1.as_bytes())
            .find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()).expect("code");
        let (s, _, body) = get(&t, &with_param(&second, "code", &code)).await;
        if s == S::FORBIDDEN { refused.push("code of another sign-in".into()) } else { accepted.push(format!("code swap: {s} {body:.200}")) }
        // The control: the same IdP answering properly signs in, once.
        let cb = idp_answer(&t, mock_port).await;
        let (s, _, body) = get(&t, &cb).await;
        assert!(s.is_redirection(), "the honest answer signs in: {s} {}", body.split("role=\"alert\">").nth(1).unwrap_or(&body));
        let (s, _, _) = get(&t, &cb).await;
        if s == S::FORBIDDEN { refused.push("replayed answer".into()) } else { accepted.push(format!("replay: {s}")) }

        assert!(accepted.is_empty(), "forged or broken answers accepted: {accepted:#?}");
        assert!(refused.len() >= 15, "the corpus: {refused:?}");
        eprintln!("{:?}: {} broken OIDC answers refused: {refused:?}", t.db, refused.len());
        assert_eq!(count_users(&t).await, users_before + 1, "only the honest sign-in created a user");
        let (_, events) = t
            .call(M::POST, &format!("/api/accounts/{a}/events/filter"), key,
                  Some(json!({"filter": {"event": {"prefix": ["prefect-cloud.sso.login-refused"]}}, "limit": 100})))
            .await;
        let logged = events["events"].as_array().expect("events").len();
        // Answers whose state names no sign-in (forged, missing, replayed) cannot name the account
        // either: those three are in the installation's log; every other refusal is in the account's.
        assert_eq!(logged, refused.len() - 3, "refusals are audited");
    })
    .await;
}

/// Starts a sign-in at Atrium and lets the mock IdP answer: the callback path and query.
async fn idp_answer(t: &TestApp, mock_port: u16) -> String {
    let (_, h, body) = get(t, "/auth/sso?account=acme").await;
    let authorize = h
        .get("location")
        .unwrap_or_else(|| panic!("no redirect to the IdP: {body:.300}"))
        .to_str()
        .expect("location")
        .to_string();
    let path = authorize
        .trim_start_matches(&format!("http://127.0.0.1:{mock_port}"))
        .to_string();
    let back = location_of(&http(mock_port, "GET", &path, "", ""));
    let public = atrium::config::Config::default().public_url;
    back.trim_start_matches(public.as_str()).to_string()
}

async fn count_users(t: &TestApp) -> i64 {
    let mut c = t.app.store.reader().await.expect("reader");
    atrium::store::users::count_users(&mut c)
        .await
        .expect("count")
}

#[tokio::test]
async fn the_sso_page_adds_verifies_and_removes_a_domain_and_saves_the_rules_from_forms() {
    use crate::dashboard::get_page;
    use atrium::domain::role::AccountRole;
    let Some(idp) = Idps::start("http://127.0.0.1:9/unused", json!({})) else {
        return;
    };
    let idp = &idp;
    each_db(|t| async move {
        let t = idp.app(t).await;
        idp.publish(json!({}));
        let root = t.user("root@elsewhere.test").await;
        let a = t.account(&root, "acme").await;
        member_with_password(&t, a, &root, "olga@acme.test", AccountRole::Owner).await;
        member_with_password(&t, a, &root, "dana@acme.test", AccountRole::Member).await;
        let (_, h) = crate::dashboard::sign_in(&t, "olga@acme.test", "a-long-password", "/").await;
        let olga = cookie_of(&h, "atrium_session");
        let page = format!("/account/{a}/sso");
        let (s, _, html) = get_page(&t, &page, &olga).await;
        assert_eq!(s, S::OK);
        assert!(html.contains("No identity provider yet.") && html.contains("/auth/oidc/callback"), "{html:.2000}");
        let csrf = hidden(&html, "csrf");
        // The SAML form shows what to register at the IdP; metadata that is not an IdP's is
        // refused with the reason (or, in a build without the saml feature, with that).
        assert!(html.contains("Add a SAML 2.0 provider") && html.contains(&format!("/auth/saml/{a}/acs")), "{html:.3000}");
        let (s, _, body) = form(&t, &format!("{page}/providers"), &olga,
            &[("csrf", &csrf), ("kind", "saml"), ("name", "Bad"), ("metadata_xml", "<not-metadata/>")]).await;
        let why = body.split("role=\"alert\">").nth(1).unwrap_or(&body);
        assert_eq!(s, S::UNPROCESSABLE_ENTITY, "{why}");
        assert!(why.contains("no SAML 2.0 support") || why.starts_with("metadata:"), "{why}");

        let (s, h, _) = form(&t, &format!("{page}/domains"), &olga, &[("csrf", &csrf), ("domain", "acme.test")]).await;
        assert!(s.is_redirection(), "{s}");
        assert_eq!(h["location"], page.as_str());
        let (_, _, html) = get_page(&t, &page, &olga).await;
        assert!(html.contains("_atrium-challenge.acme.test") && html.contains("not verified"), "{html:.3000}");
        let value = html
            .split("atrium-domain-verification=")
            .nth(1)
            .and_then(|r| r.split('<').next())
            .expect("the TXT value on the page");
        idp.publish(json!({"_atrium-challenge.acme.test.": [format!("atrium-domain-verification={value}")]}));
        let id = html.split(&format!("{page}/domains/")).nth(1).and_then(|r| r.split('/').next()).expect("domain id");
        let (s, _, _) = form(&t, &format!("{page}/domains/{id}/verify"), &olga, &[("csrf", &csrf)]).await;
        assert!(s.is_redirection(), "{s}");
        let (_, _, html) = get_page(&t, &page, &olga).await;
        assert!(html.contains(">verified<"), "{html:.3000}");

        // The rules: required, and new members join as Admins.
        let admin_role = AccountRole::Admin.id().to_string();
        let (s, _, _) = form(&t, &format!("{page}/settings"), &olga,
            &[("csrf", &csrf), ("require_sso", "on"), ("sso_default_account_role_id", &admin_role)]).await;
        assert!(s.is_redirection(), "{s}");
        let (_, v) = t.call(M::GET, &format!("/api/accounts/{a}/settings"), Some(&root.key), None).await;
        assert_eq!((v["require_sso"].clone(), v["sso_default_account_role_id"].clone()), (json!(true), json!(admin_role)), "{v}");
        let (s, _) = crate::dashboard::sign_in(&t, "dana@acme.test", "a-long-password", "/").await;
        assert_eq!(s, S::FORBIDDEN, "the rule holds");

        // Signed out, the page sends to the sign-in page.
        let (s, h, _) = get_page(&t, &page, "").await;
        assert!(s.is_redirection() && h["location"].to_str().unwrap_or("").starts_with("/login"), "{s}");
        // Removing the domain from its form.
        let (s, _, _) = form(&t, &format!("{page}/domains/{id}/delete"), &olga, &[("csrf", &csrf)]).await;
        assert!(s.is_redirection(), "{s}");
        let (_, _, html) = get_page(&t, &page, &olga).await;
        assert!(html.contains("No domain yet."), "{html:.3000}");
    })
    .await;
}

/// Atrium's base URL on `listener`: known before the app serves, since an IdP only sends
/// browsers back to the address registered with it.
fn base_of(listener: &tokio::net::TcpListener) -> String {
    format!(
        "http://127.0.0.1:{}",
        listener.local_addr().expect("addr").port()
    )
}

/// An app whose public URL is `listener`'s address, resolving DNS through the harness's server,
/// its clock at the real time (IdPs sign with it), and its base URL.
async fn app_for_browser(listener: &tokio::net::TcpListener, idp: &Idps) -> (TestApp, String) {
    let base = base_of(listener);
    let dns: std::net::SocketAddr = format!("127.0.0.1:{}", idp.dns_port).parse().expect("addr");
    let t = TestApp::new(Db::Sqlite)
        .await
        .reconfigured(|c| {
            c.public_url = base.clone();
            c.dns_resolver = Some(dns);
        })
        .await;
    t.clock.advance(chrono::Utc::now() - t.app.now());
    (t, base)
}

/// The account's "Admins" team, the IdP group `admins` mapped to it on `provider`, and
/// `acme.test` verified through the harness's DNS: the team's id.
async fn admins_team_and_verified_domain(
    t: &TestApp,
    idp: &Idps,
    a: atrium::domain::AccountId,
    key: Option<&str>,
    provider: &Value,
) -> String {
    let (_, team) = t
        .call(
            M::POST,
            &format!("/api/accounts/{a}/teams/"),
            key,
            Some(json!({"name": "Admins"})),
        )
        .await;
    let team_id = team["id"].as_str().expect("team").to_string();
    let mappings = format!(
        "/api/accounts/{a}/sso/providers/{}/group_mappings",
        provider["id"].as_str().expect("id")
    );
    let (s, _) = t
        .call(
            M::PUT,
            &mappings,
            key,
            Some(json!([{"group": "admins", "team_id": team_id}])),
        )
        .await;
    assert_eq!(s, S::OK);
    let (_, d) = t
        .call(
            M::POST,
            &format!("/api/accounts/{a}/sso/domains"),
            key,
            Some(json!({"domain": "acme.test"})),
        )
        .await;
    idp.publish(json!({"_atrium-challenge.acme.test.": [d["txt_value"]]}));
    let verify = format!(
        "/api/accounts/{a}/sso/domains/{}/verify",
        d["id"].as_str().expect("id")
    );
    assert_eq!(t.call(M::POST, &verify, key, None).await.0, S::OK);
    team_id
}

/// Back from the IdP in the browser: on Atrium's accounts page signed in as `email`, and the only
/// member of the mapped team.
async fn landed_in_team(
    t: &TestApp,
    page: &mut crate::browser::Page,
    base: &str,
    email: &str,
    a: atrium::domain::AccountId,
    key: Option<&str>,
    team_id: &str,
) {
    page.wait_for(&format!(
        "location.origin === '{base}' && location.pathname === '/' && document.readyState === 'complete'"
    ))
    .await;
    let text = page.text().await;
    assert!(
        text.contains("Your accounts") && text.contains("acme"),
        "{text}"
    );
    assert!(text.contains(email), "signed in as {email}: {text}");
    let (_, v) = t
        .call(
            M::GET,
            &format!("/api/accounts/{a}/teams/{team_id}"),
            key,
            None,
        )
        .await;
    assert_eq!(
        v["memberships"].as_array().map(Vec::len),
        Some(1),
        "{email} joined Admins: {v}"
    );
}

#[tokio::test]
async fn a_member_signs_in_through_the_idp_in_chromium_and_lands_in_their_team() {
    let Some(browser) = crate::browser::Browser::launch() else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let redirect = format!("{}/auth/oidc/callback", base_of(&listener));
    let Some(idp) = Idps::start(
        &redirect,
        json!({"alice": {"email": "alice@acme.test", "email_verified": true, "name": "Alice Liddell", "groups": ["admins"]}}),
    ) else {
        return;
    };
    let (t, base) = app_for_browser(&listener, &idp).await;
    let root = t.user("root@elsewhere.test").await;
    let a = t.account(&root, "acme").await;
    let key = Some(root.key.as_str());
    let (s, p) = t
        .call(M::POST, &format!("/api/accounts/{a}/sso/providers"), key,
              Some(json!({"kind": "oidc", "name": "Acme IdP", "issuer": idp.issuer, "client_id": "atrium",
                          "client_secret": "atrium-secret", "scopes": ["groups"], "groups_claim": "groups"})))
        .await;
    assert_eq!(s, S::CREATED, "{p}");
    assert_eq!(p["redirect_uri"], redirect.as_str());
    let team_id = admins_team_and_verified_domain(&t, &idp, a, key, &p).await;
    t.serve_listener(listener).await;

    // From Atrium's sign-in page, email first, to the IdP's login form and back, signed in.
    let mut page = browser.page().await;
    page.goto(&format!("{base}/login")).await;
    page.eval(
        "document.querySelector('#email').value = 'alice@acme.test';\
         document.querySelector('form[action=\"/login\"] button[type=submit]').click(); true",
    )
    .await;
    page.wait_for(&format!(
        "location.origin === '{}' && document.querySelector('input[name=login]') !== null",
        idp.issuer
    ))
    .await;
    page.screenshot("sso-idp-login").await;
    page.eval(
        "document.querySelector('input[name=login]').value = 'alice';\
         document.querySelector('input[name=password]').value = 'anything';\
         document.querySelector('form').submit(); true",
    )
    .await;
    landed_in_team(&t, &mut page, &base, "alice@acme.test", a, key, &team_id).await;
}

#[cfg(feature = "saml")]
/// The npm `saml-idp` for one account (its ACS and audience are the account's), with a fresh
/// signing key made by openssl.
struct SamlIdp {
    port: u16,
    dir: std::sync::Arc<tempfile::TempDir>,
    _proc: Proc,
}

#[cfg(feature = "saml")]
impl SamlIdp {
    fn start(acs: &str, audience: &str) -> SamlIdp {
        let dir = std::sync::Arc::new(tempfile::tempdir().expect("dir"));
        let ok = Command::new("openssl")
            .args(["req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes"])
            .args(["-subj", "/CN=Test IdP", "-days", "30", "-keyout"])
            .arg(dir.path().join("idp-key.pem"))
            .arg("-out")
            .arg(dir.path().join("idp-cert.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "openssl made the IdP's key");
        Self::run(dir, acs, audience, &[])
    }

    /// Another process of the same IdP (same issuer, same signing key) with other settings.
    fn twin(&self, acs: &str, audience: &str, extra: &[&str]) -> SamlIdp {
        Self::run(self.dir.clone(), acs, audience, extra)
    }

    fn run(
        dir: std::sync::Arc<tempfile::TempDir>,
        acs: &str,
        audience: &str,
        extra: &[&str],
    ) -> SamlIdp {
        let port = free_port();
        let child = Command::new("node")
            .current_dir(idp_dir())
            .arg("node_modules/saml-idp/bin/run.js")
            .args(extra)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--acsUrl",
                acs,
                "--audience",
                audience,
                "--issuer",
                "urn:example:idp",
            ])
            .arg("--cert")
            .arg(dir.path().join("idp-cert.pem"))
            .arg("--key")
            .arg(dir.path().join("idp-key.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start saml-idp");
        let proc = Proc(child);
        wait_for_tcp(port, "the SAML IdP");
        SamlIdp {
            port,
            dir,
            _proc: proc,
        }
    }

    /// Signs in at the IdP from Atrium's redirect; answers (ACS URL, SAMLResponse, RelayState).
    fn sign_in(&self, python: &str, sso_url: &str, attributes: Value) -> (String, String, String) {
        let out = Command::new(python)
            .arg(idp_dir().join("saml_login.py"))
            .arg(sso_url)
            .arg(attributes.to_string())
            .output()
            .expect("saml_login.py");
        assert!(
            out.status.success(),
            "the SAML IdP sign-in failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        (s("acs"), s("SAMLResponse"), s("RelayState"))
    }
}

#[cfg(feature = "saml")]
/// Posts a SAML response to the account's ACS (as the IdP's auto-submitting page would).
async fn post_acs(
    t: &TestApp,
    account: atrium::domain::AccountId,
    response: &str,
    relay: &str,
) -> (S, axum::http::HeaderMap, String) {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("SAMLResponse", response)
        .append_pair("RelayState", relay)
        .finish();
    let (s, h, b) = t
        .raw(
            M::POST,
            &format!("/auth/saml/{account}/acs"),
            None,
            Some(body.into_bytes()),
            "application/x-www-form-urlencoded",
        )
        .await;
    (s, h, String::from_utf8_lossy(&b).into_owned())
}

#[cfg(feature = "saml")]
fn alert(body: &str) -> &str {
    body.split("role=\"alert\">").nth(1).unwrap_or(body)
}

#[cfg(feature = "saml")]
#[tokio::test]
async fn saml_sign_in_through_a_real_idp_verifies_signatures_and_refuses_what_it_must() {
    use base64::Engine;
    let Some(idp) = Idps::start("http://127.0.0.1:9/unused", json!({})) else {
        return;
    };
    let idp = &idp;
    each_db(|t| async move {
        let t = idp.app(t).await;
        let root = t.user("root@elsewhere.test").await;
        let a = t.account(&root, "acme").await;
        let key = Some(root.key.as_str());
        let entity = atrium::services::sso::sp_entity_id(&t.app, a);
        let acs = atrium::services::sso::acs_url(&t.app, a);
        let saml = SamlIdp::start(&acs, &entity);
        let metadata_url = format!("http://127.0.0.1:{}/metadata", saml.port);

        // Atrium's SP metadata is public at its entity id.
        let (s, _, md) = get(&t, entity.trim_start_matches(&atrium::config::Config::default().public_url)).await;
        assert_eq!(s, S::OK);
        assert!(md.contains(&format!("entityID=\"{entity}\"")) && md.contains(&acs), "{md}");

        // Metadata without a signing certificate is refused when saved.
        let fetched = http(saml.port, "GET", "/metadata", "", "");
        let fetched = fetched.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        let start = fetched.find("<KeyDescriptor").expect("a KeyDescriptor");
        let end = fetched.find("</KeyDescriptor>").expect("its end") + "</KeyDescriptor>".len();
        let unsigned = format!("{}{}", &fetched[..start], &fetched[end..]);
        let (s, v) = t
            .call(M::POST, &format!("/api/accounts/{a}/sso/providers"), key,
                  Some(json!({"kind": "saml", "name": "Unsigned", "metadata_xml": unsigned})))
            .await;
        assert_eq!(s, S::UNPROCESSABLE_ENTITY, "{v}");
        assert!(v["detail"].as_str().unwrap_or("").contains("no signing certificate"), "{v}");

        let (s, team) = t
            .call(M::POST, &format!("/api/accounts/{a}/teams/"), key, Some(json!({"name": "Admins"})))
            .await;
        assert_eq!(s, S::CREATED);
        let team_id = team["id"].as_str().expect("team").to_string();
        let (s, p) = t
            .call(M::POST, &format!("/api/accounts/{a}/sso/providers"), key,
                  Some(json!({"kind": "saml", "name": "Acme SAML", "metadata_url": metadata_url, "groups_attribute": "groups"})))
            .await;
        assert_eq!(s, S::CREATED, "{p}");
        assert_eq!((p["entity_id"].as_str(), p["acs_url"].as_str(), p["issuer"].as_str()),
                   (Some(entity.as_str()), Some(acs.as_str()), Some("urn:example:idp")), "{p}");
        let (s, _) = t
            .call(M::PUT, &format!("/api/accounts/{a}/sso/providers/{}/group_mappings", p["id"].as_str().expect("id")), key,
                  Some(json!([{"group": "admins", "team_id": team_id}])))
            .await;
        assert_eq!(s, S::OK);
        let (_, d) = t
            .call(M::POST, &format!("/api/accounts/{a}/sso/domains"), key, Some(json!({"domain": "acme.test"})))
            .await;
        idp.publish(json!({"_atrium-challenge.acme.test.": [d["txt_value"]]}));
        let (s, _) = t
            .call(M::POST, &format!("/api/accounts/{a}/sso/domains/{}/verify", d["id"].as_str().expect("id")), key, None)
            .await;
        assert_eq!(s, S::OK);

        let alice = json!({"userName": "alice@acme.test", "email": "alice@acme.test", "firstName": "Alice", "lastName": "Liddell", "groups": "admins"});
        // SP-initiated: Atrium's AuthnRequest (128-bit id) → the IdP → a signed response → in.
        let (_, h, _) = get(&t, "/auth/sso?email=alice@acme.test&next=/").await;
        let sso = h["location"].to_str().expect("location").to_string();
        assert!(sso.starts_with(&format!("http://127.0.0.1:{}/", saml.port)) && sso.contains("SAMLRequest="), "{sso}");
        let (to, response, relay) = saml.sign_in(&idp.python, &sso, alice.clone());
        assert_eq!(to, acs);
        let (s, h, body) = post_acs(&t, a, &response, &relay).await;
        assert!(s.is_redirection(), "{s} {}", alert(&body));
        let session = cookie_of(&h, "atrium_session");
        let (s, me) = me_with(&t, &session).await;
        assert_eq!((s, me["email"].as_str()), (S::OK, Some("alice@acme.test")), "{me}");
        let (_, v) = t.call(M::GET, &format!("/api/accounts/{a}/teams/{team_id}"), key, None).await;
        assert_eq!(v["memberships"].as_array().map(Vec::len), Some(1), "the admins group mapped Alice into Admins: {v}");

        // Refused: the same response again (its RelayState is spent), the same response without
        // RelayState (IdP-initiated sign-in is off), and a response changed after signing.
        let mut refused = Vec::new();
        // Signature-wrapping shapes where Atrium read the signed assertion and ignored the
        // wrapper: safe (Alice signed in, never Mallory), but not counted as refusals.
        let mut signed_used = Vec::new();
        let (s, _, body) = post_acs(&t, a, &response, &relay).await;
        assert_eq!(s, S::FORBIDDEN, "replay: {}", alert(&body));
        refused.push("replayed response");
        let (s, _, body) = post_acs(&t, a, &response, "").await;
        assert_eq!(s, S::FORBIDDEN, "IdP-initiated while off: {}", alert(&body));
        assert!(body.contains("not accepted by this account"), "{}", alert(&body));
        refused.push("IdP-initiated when disabled");
        let b64 = base64::engine::general_purpose::STANDARD;
        let decode = |r: &str| String::from_utf8(b64.decode(r).expect("base64")).expect("utf8");
        let cases: Vec<(&str, Forge)> = vec![
            ("NameID changed after signing", Box::new(|x: &str| x.replacen("alice@acme.test", "mallory@acme.test", 1))),
            ("signatures stripped", Box::new(|x: &str| {
                let mut out = x.to_string();
                while let (Some(s), Some(e)) = (out.find("<Signature"), out.find("</Signature>")) {
                    out.replace_range(s..e + "</Signature>".len(), "");
                }
                out
            })),
            ("a DOCTYPE with an entity", Box::new(|x: &str| format!("<!DOCTYPE r [<!ENTITY e \"x\">]>{x}"))),
            ("an external entity (XXE) in the NameID", Box::new(|x: &str| {
                format!("<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{}", x.replacen(">alice@acme.test<", ">&x;<", 1))
            })),
            ("entity expansion (billion laughs)", Box::new(|x: &str| {
                let mut dtd = String::from("<!ENTITY l0 \"lol\">");
                for i in 1..10 {
                    dtd.push_str(&format!("<!ENTITY l{i} \"{}\">", format!("&l{};", i - 1).repeat(10)));
                }
                format!("<!DOCTYPE r [{dtd}]>{}", x.replacen(">Saml<", ">&l9;<", 1))
            })),
            ("an encrypted assertion", Box::new(|x: &str| x.replacen("<saml:Assertion", "<saml:EncryptedAssertion/><saml:Assertion", 1))),
            ("groups changed after signing", Box::new(|x: &str| x.replacen(">admins<", ">owners<", 1))),
        ];
        for (name, forge) in &cases {
            let (_, h, _) = get(&t, "/auth/sso?account=acme").await;
            let (_, response, relay) = saml.sign_in(&idp.python, h["location"].to_str().expect("location"), alice.clone());
            let forged = b64.encode(forge(&decode(&response)));
            assert_ne!(forged, response, "{name}: the forgery changed something");
            let (s, h, body) = post_acs(&t, a, &forged, &relay).await;
            let signed_in = h.get_all("set-cookie").iter().any(|c| c.to_str().unwrap_or("").starts_with("atrium_session="));
            assert!(s == S::FORBIDDEN && !signed_in, "{name}: {s} {}", alert(&body));
            refused.push(name);
        }
        // Comment injection (the Duo 2018 family): a user of a look-alike domain at the IdP, and
        // a comment that would cut the signed NameID short for a parser that reads only the first
        // text node. Canonicalization drops comments, so the signature still verifies: what
        // counts is that the whole address is read.
        let (_, h, _) = get(&t, "/auth/sso?account=acme").await;
        let look_alike = json!({"userName": "alice@acme.test.evil.test", "email": "alice@acme.test.evil.test"});
        let (_, response, relay) = saml.sign_in(&idp.python, h["location"].to_str().expect("location"), look_alike);
        let injected = b64.encode(decode(&response).replace("alice@acme.test.evil.test", "alice@acme.test<!---->.evil.test"));
        let (s, h, body) = post_acs(&t, a, &injected, &relay).await;
        let signed_in = h.get_all("set-cookie").iter().any(|c| c.to_str().unwrap_or("").starts_with("atrium_session="));
        assert!(s == S::FORBIDDEN && !signed_in, "comment injection: {s} {}", alert(&body));
        assert!(!alert(&body).contains("alice@acme.test is") , "{}", alert(&body));
        refused.push("comment injection in NameID");
        // Signature wrapping: an unsigned assertion for Mallory placed before, or around, the
        // signed one. Whatever is accepted must be the signed identity, never Mallory.
        for (name, wrap) in [
            ("XSW: unsigned assertion first", 0),
            ("XSW: signed assertion wrapped in an unsigned one", 1),
        ] {
            let (_, h, _) = get(&t, "/auth/sso?account=acme").await;
            let (_, response, relay) = saml.sign_in(&idp.python, h["location"].to_str().expect("location"), alice.clone());
            let xml = decode(&response);
            let start = xml.find("<saml:Assertion").or_else(|| xml.find("<Assertion")).expect("assertion");
            let end_tag = if xml.contains("</saml:Assertion>") { "</saml:Assertion>" } else { "</Assertion>" };
            let end = xml.find(end_tag).expect("assertion end") + end_tag.len();
            let genuine = &xml[start..end];
            let mut evil = genuine.replace("alice@acme.test", "mallory@acme.test");
            // Unsigned, with its own id.
            while let (Some(s), Some(e)) = (evil.find("<ds:Signature"), evil.find("</ds:Signature>")) {
                evil.replace_range(s..e + "</ds:Signature>".len(), "");
            }
            while let (Some(s), Some(e)) = (evil.find("<Signature"), evil.find("</Signature>")) {
                evil.replace_range(s..e + "</Signature>".len(), "");
            }
            let evil = evil.replacen(" ID=\"", " ID=\"evil-", 1);
            let forged = if wrap == 0 {
                format!("{}{evil}{}", &xml[..start], &xml[start..])
            } else {
                let open_end = evil.find('>').expect("open tag") + 1;
                let close = evil.rfind("</").expect("close tag");
                format!("{}{}{genuine}{}{}", &xml[..start], &evil[..open_end], &evil[close..], &xml[end..])
            };
            let (s, h, body) = post_acs(&t, a, &b64.encode(forged), &relay).await;
            if s == S::FORBIDDEN {
                refused.push(name);
            } else {
                let session = cookie_of(&h, "atrium_session");
                let (_, me) = me_with(&t, &session).await;
                assert_eq!(me["email"], "alice@acme.test", "{name}: signed in as someone else: {me} {}", alert(&body));
                eprintln!("{name}: the signed assertion was used, the wrapper ignored");
                signed_used.push(name);
            }
        }
        // Answers that name the wrong request, audience or destination, and broken posts.
        let sso_of = |h: &axum::http::HeaderMap| h["location"].to_str().expect("location").to_string();
        let (_, h1, _) = get(&t, "/auth/sso?account=acme").await;
        let (_, h2, _) = get(&t, "/auth/sso?account=acme").await;
        let (_, response1, _) = saml.sign_in(&idp.python, &sso_of(&h1), alice.clone());
        let (_, _, relay2) = saml.sign_in(&idp.python, &sso_of(&h2), alice.clone());
        let (s, _, body) = post_acs(&t, a, &response1, &relay2).await;
        assert_eq!(s, S::FORBIDDEN, "InResponseTo of another request: {}", alert(&body));
        refused.push("InResponseTo of another sign-in");
        for (name, twin) in [
            ("audience of another service provider", saml.twin(&acs, "urn:someone-else", &[])),
            ("destination of another service provider", saml.twin("http://127.0.0.1:9/elsewhere/acs", &entity, &["--disableRequestAcsUrl"])),
        ] {
            let (_, h, _) = get(&t, "/auth/sso?account=acme").await;
            let url = sso_of(&h).replace(&format!(":{}/", saml.port), &format!(":{}/", twin.port));
            let (_, response, relay) = twin.sign_in(&idp.python, &url, alice.clone());
            let (s, _, body) = post_acs(&t, a, &response, &relay).await;
            assert_eq!(s, S::FORBIDDEN, "{name}: {}", alert(&body));
            refused.push(name);
        }
        for (name, response) in [("not base64", "%%%".to_string()), ("not XML", b64.encode("<not-xml")), ("empty", String::new())] {
            let (_, h, _) = get(&t, "/auth/sso?account=acme").await;
            let relay = form_urlencoded::parse(sso_of(&h).split_once('?').expect("query").1.as_bytes())
                .find(|(k, _)| k == "RelayState").map(|(_, v)| v.into_owned()).expect("relay");
            let (s, _, body) = post_acs(&t, a, &response, &relay).await;
            assert_eq!(s, S::FORBIDDEN, "{name}: {}", alert(&body));
            refused.push(name);
        }
        // A disabled provider answers nothing.
        let provider_path = format!("/api/accounts/{a}/sso/providers/{}", p["id"].as_str().expect("id"));
        let (_, h, _) = get(&t, "/auth/sso?account=acme").await;
        let (_, response, relay) = saml.sign_in(&idp.python, &sso_of(&h), alice.clone());
        assert_eq!(t.call(M::PATCH, &provider_path, key, Some(json!({"enabled": false}))).await.0, S::OK);
        let (s, _, b) = post_acs(&t, a, &response, &relay).await;
        assert_eq!(s, S::FORBIDDEN, "a disabled provider: {}", alert(&b));
        refused.push("provider disabled meanwhile");
        // IdP-initiated sign-in, once the provider allows it: accepted, and only once.
        let (s, v) = t.call(M::PATCH, &provider_path, key, Some(json!({"enabled": true, "idp_initiated": true}))).await;
        assert_eq!(s, S::OK, "{v}");
        let (_, response, _) = saml.sign_in(&idp.python, &format!("idp-initiated:http://127.0.0.1:{}", saml.port), alice.clone());
        let (s, h, body) = post_acs(&t, a, &response, "").await;
        assert!(s.is_redirection(), "IdP-initiated, allowed: {s} {}", alert(&body));
        assert_eq!(me_with(&t, &cookie_of(&h, "atrium_session")).await.1["email"], "alice@acme.test");
        let (s, _, body) = post_acs(&t, a, &response, "").await;
        assert_eq!(s, S::FORBIDDEN, "the same IdP-initiated assertion again: {}", alert(&body));
        assert!(alert(&body).contains("already used"), "{}", alert(&body));
        refused.push("IdP-initiated assertion replayed");
        // While IdP-initiated sign-in is allowed: an answer to a sign-in started at Atrium posted
        // without its RelayState, and an unsolicited answer posted with a started sign-in's.
        let (_, h, _) = get(&t, "/auth/sso?account=acme").await;
        let (_, response, _) = saml.sign_in(&idp.python, &sso_of(&h), alice.clone());
        let (s, _, body) = post_acs(&t, a, &response, "").await;
        assert_eq!(s, S::FORBIDDEN, "a solicited answer without its RelayState: {}", alert(&body));
        assert!(alert(&body).contains("belongs to a sign-in started at Atrium"), "{}", alert(&body));
        refused.push("a solicited answer passed off as IdP-initiated");
        let (_, h, _) = get(&t, "/auth/sso?account=acme").await;
        let relay = form_urlencoded::parse(sso_of(&h).split_once('?').expect("query").1.as_bytes())
            .find(|(k, _)| k == "RelayState").map(|(_, v)| v.into_owned()).expect("relay");
        let (_, response, _) = saml.sign_in(&idp.python, &format!("idp-initiated:http://127.0.0.1:{}", saml.port), alice.clone());
        let (s, _, body) = post_acs(&t, a, &response, &relay).await;
        assert_eq!(s, S::FORBIDDEN, "an unsolicited answer to a started sign-in: {}", alert(&body));
        assert!(alert(&body).contains("'InResponseTo' does not match"), "{}", alert(&body));
        refused.push("an unsolicited answer posted with a started sign-in's RelayState");

        // More of the signature-wrapping family: where the unsigned assertion for Mallory goes,
        // and where the signed one for Alice hides.
        {
            let assertion_bounds = |xml: &str| {
                let start = xml.find("<saml:Assertion").expect("assertion");
                let end = xml.find("</saml:Assertion>").expect("assertion end") + "</saml:Assertion>".len();
                (start, end)
            };
            let evil_of = |genuine: &str, same_id: bool| {
                let mut evil = genuine.replace("alice@acme.test", "mallory@acme.test");
                while let (Some(s), Some(e)) = (evil.find("<Signature xmlns"), evil.find("</Signature>")) {
                    evil.replace_range(s..e + "</Signature>".len(), "");
                }
                if same_id { evil } else { evil.replacen(" ID=\"", " ID=\"evil-", 1) }
            };
            let shapes: Vec<(&str, Forge)> = vec![
                ("XSW: duplicate assertion id, the unsigned one first", Box::new(move |x: &str| {
                    let (s, e) = assertion_bounds(x);
                    format!("{}{}{}", &x[..s], evil_of(&x[s..e], true), &x[s..])
                })),
                ("XSW: unsigned assertion after the signed one", Box::new(move |x: &str| {
                    let (_, e) = assertion_bounds(x);
                    format!("{}{}{}", &x[..e], evil_of(&x[assertion_bounds(x).0..e], false), &x[e..])
                })),
                ("XSW: signed assertion moved into Extensions", Box::new(move |x: &str| {
                    let (s, e) = assertion_bounds(x);
                    let genuine = &x[s..e];
                    let issuer_end = x.find("</saml:Issuer>").expect("issuer") + "</saml:Issuer>".len();
                    format!("{}<samlp:Extensions>{genuine}</samlp:Extensions>{}{}", &x[..issuer_end], &x[issuer_end..s].to_string(), evil_of(genuine, false) + &x[e..])
                })),
                ("XSW: signed assertion inside the unsigned one's Signature Object", Box::new(move |x: &str| {
                    let (s, e) = assertion_bounds(x);
                    let genuine = &x[s..e];
                    let evil = evil_of(genuine, false);
                    let at = evil.find("<saml:Subject").expect("subject");
                    let wrapped = format!("{}<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\"><Object>{genuine}</Object></Signature>{}", &evil[..at], &evil[at..]);
                    format!("{}{wrapped}{}", &x[..s], &x[e..])
                })),
                ("XSW: signed assertion inside the unsigned one's Advice", Box::new(move |x: &str| {
                    let (s, e) = assertion_bounds(x);
                    let genuine = &x[s..e];
                    let evil = evil_of(genuine, false);
                    let at = evil.find("</saml:Conditions>").expect("conditions") + "</saml:Conditions>".len();
                    let wrapped = format!("{}<saml:Advice>{genuine}</saml:Advice>{}", &evil[..at], &evil[at..]);
                    format!("{}{wrapped}{}", &x[..s], &x[e..])
                })),
                ("XSW: the signed response wrapped in an unsigned one", Box::new(move |x: &str| {
                    let (s, e) = assertion_bounds(x);
                    let evil = evil_of(&x[s..e], false);
                    let open_end = x.find('>').expect("root") + 1;
                    let root_open = x[..open_end].replacen(" ID=\"", " ID=\"evil-", 1);
                    format!("{root_open}<samlp:Extensions>{x}</samlp:Extensions>{evil}</samlp:Response>")
                })),
            ];
            for (name, forge) in &shapes {
                let (_, h, _) = get(&t, "/auth/sso?account=acme").await;
                let (_, response, relay) = saml.sign_in(&idp.python, h["location"].to_str().expect("location"), alice.clone());
                let forged = forge(&decode(&response));
                let (s, h, body) = post_acs(&t, a, &b64.encode(forged), &relay).await;
                if s == S::FORBIDDEN {
                    refused.push(name);
                } else {
                    assert!(s.is_redirection(), "{name}: {s} {}", alert(&body));
                    let (_, me) = me_with(&t, &cookie_of(&h, "atrium_session")).await;
                    assert_eq!(me["email"], "alice@acme.test", "{name}: signed in as someone else: {me}");
                    eprintln!("{name}: the signed assertion was used, the wrapper ignored");
                    signed_used.push(name);
                }
            }
        }

        // Re-signed answers (xmlsec1): with the IdP's own key after a change only a signer could
        // make, or with another key. The first, unchanged, must be accepted — it shows that
        // re-signing itself yields valid answers, so the refusals below come from the change.
        let resigner = Resigner::find(&saml);
        if let Some(resign) = &resigner {
            let attacker = Resigner::attacker_key();
            let cases: Vec<(&str, Forge, bool)> = vec![
                ("re-signed unchanged (control)", Box::new(|x: &str| x.to_string()), true),
                ("RSA-SHA1 signature by the IdP's key", Box::new(|x: &str| {
                    x.replace("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "http://www.w3.org/2000/09/xmldsig#rsa-sha1")
                        .replace("http://www.w3.org/2001/04/xmlenc#sha256", "http://www.w3.org/2000/09/xmldsig#sha1")
                }), true),
                ("expired (NotOnOrAfter in the past), signed by the IdP's key", Box::new(|x: &str| {
                    let mut out = x.to_string();
                    for attr in ["NotOnOrAfter=\""] {
                        let mut from = 0;
                        while let Some(i) = out[from..].find(attr) {
                            let s = from + i + attr.len();
                            let e = s + out[s..].find('"').expect("attribute end");
                            out.replace_range(s..e, "2001-01-01T00:00:00Z");
                            from = e;
                        }
                    }
                    out
                }), true),
                ("not yet valid (NotBefore in the future), signed by the IdP's key", Box::new(|x: &str| {
                    let attr = "NotBefore=\"";
                    let mut out = x.to_string();
                    if let Some(i) = out.find(attr) {
                        let s = i + attr.len();
                        let e = s + out[s..].find('"').expect("attribute end");
                        out.replace_range(s..e, "2099-01-01T00:00:00Z");
                    }
                    out
                }), true),
                ("another issuer, signed by the IdP's key", Box::new(|x: &str| x.replace(">urn:example:idp<", ">urn:evil:idp<")), true),
                ("Mallory, re-signed with an attacker's key", Box::new(|x: &str| x.replace("alice@acme.test", "mallory@acme.test")), false),
                ("Alice unchanged, signed with an attacker's key carried in KeyInfo", Box::new(|x: &str| x.to_string()), false),
                ("Recipient of another service provider (Destination right), signed by the IdP's key", Box::new(|x: &str| {
                    set_attr(x, "<saml:SubjectConfirmationData", "Recipient", Some("http://127.0.0.1:9/elsewhere/acs"))
                }), true),
                ("no AudienceRestriction, signed by the IdP's key", Box::new(|x: &str| cut(x, "<saml:AudienceRestriction>", "</saml:AudienceRestriction>")), true),
                ("no Conditions at all, signed by the IdP's key", Box::new(|x: &str| cut(x, "<saml:Conditions", "</saml:Conditions>")), true),
                ("InResponseTo removed (unsolicited answer to a started sign-in), signed by the IdP's key", Box::new(|x: &str| {
                    set_attr(&set_attr(x, "<samlp:Response", "InResponseTo", None), "<saml:SubjectConfirmationData", "InResponseTo", None)
                }), true),
                ("the assertion's InResponseTo names another request, signed by the IdP's key", Box::new(|x: &str| {
                    set_attr(x, "<saml:SubjectConfirmationData", "InResponseTo", Some("id-00000000000000000000000000000000"))
                }), true),
                ("SHA-1 digest under an RSA-SHA256 signature, by the IdP's key", Box::new(|x: &str| {
                    x.replace("http://www.w3.org/2001/04/xmlenc#sha256", "http://www.w3.org/2000/09/xmldsig#sha1")
                }), true),
                ("status Responder (the IdP refused), signed by the IdP's key", Box::new(|x: &str| {
                    x.replace("urn:oasis:names:tc:SAML:2.0:status:Success", "urn:oasis:names:tc:SAML:2.0:status:Responder")
                }), true),
                ("holder-of-key confirmation instead of bearer, signed by the IdP's key", Box::new(|x: &str| {
                    x.replace("urn:oasis:names:tc:SAML:2.0:cm:bearer", "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key")
                }), true),
                ("the subject confirmation expired, signed by the IdP's key", Box::new(|x: &str| {
                    set_attr(x, "<saml:SubjectConfirmationData", "NotOnOrAfter", Some("2001-01-01T00:00:00Z"))
                }), true),
                ("the assertion's issuer differs from the response's, signed by the IdP's key", Box::new(|x: &str| {
                    let first = x.find(">urn:example:idp<").expect("issuer") + 1;
                    format!("{}{}", &x[..first], x[first..].replacen(">urn:example:idp<", ">urn:evil:idp<", 1))
                }), true),
                ("Destination removed from the signed response, signed by the IdP's key", Box::new(|x: &str| {
                    set_attr(x, "<samlp:Response", "Destination", None)
                }), true),
            ];
            let because = [
                ("RSA-SHA1 signature by the IdP's key", "signed with SHA-1"),
                ("expired (NotOnOrAfter in the past), signed by the IdP's key", "Condition expired"),
                ("not yet valid (NotBefore in the future), signed by the IdP's key", "is not valid until"),
                ("another issuer, signed by the IdP's key", "Issuer does not match"),
                ("Mallory, re-signed with an attacker's key", "must be signed"),
                ("Alice unchanged, signed with an attacker's key carried in KeyInfo", "must be signed"),
                ("Recipient of another service provider (Destination right), signed by the IdP's key", "Recipient does not match"),
                ("no AudienceRestriction, signed by the IdP's key", "no audience restriction"),
                ("no Conditions at all, signed by the IdP's key", "no audience restriction"),
                ("InResponseTo removed (unsolicited answer to a started sign-in), signed by the IdP's key", "Response 'InResponseTo' does not match"),
                ("the assertion's InResponseTo names another request, signed by the IdP's key", "Assertion 'InResponseTo' does not match"),
                ("SHA-1 digest under an RSA-SHA256 signature, by the IdP's key", "signed with SHA-1"),
                ("status Responder (the IdP refused), signed by the IdP's key", "status:Responder"),
                ("holder-of-key confirmation instead of bearer, signed by the IdP's key", "missing a bearer SubjectConfirmation"),
                ("the subject confirmation expired, signed by the IdP's key", "SubjectConfirmation expired"),
                ("the assertion's issuer differs from the response's, signed by the IdP's key", "Assertion Issuer does not match"),
                ("Destination removed from the signed response, signed by the IdP's key", "as its Destination"),
            ];
            for (name, change, own_key) in &cases {
                let (_, h, _) = get(&t, "/auth/sso?account=acme").await;
                let (_, response, relay) = saml.sign_in(&idp.python, h["location"].to_str().expect("location"), alice.clone());
                let original = decode(&response);
                assert!(!*own_key || name.ends_with("(control)") || change(&original) != original, "{name}: the forgery changed something");
                let signed = if *own_key { resign.sign(&original, change) } else { attacker.sign(&original, change) };
                let (s, h, body) = post_acs(&t, a, &b64.encode(signed), &relay).await;
                let signed_in = h.get_all("set-cookie").iter().any(|c| c.to_str().unwrap_or("").starts_with("atrium_session="));
                if name.ends_with("(control)") {
                    assert!(s.is_redirection() && signed_in, "{name}: {s} {}", alert(&body));
                } else {
                    assert!(s == S::FORBIDDEN && !signed_in, "{name}: {s} {}", alert(&body));
                    // Each refused for its own reason (not, say, a signature broken by the change).
                    let why = because.iter().find(|(n, _)| n == name).map(|(_, w)| *w).expect("a reason for every case");
                    assert!(alert(&body).contains(why), "{name}: refused, but not because {why:?}: {}", alert(&body));
                    refused.push(name);
                }
            }
        }

        // The IdP rotates its signing key: the provider's metadata is replaced in place (its id,
        // group mappings and settings stay). Metadata without a certificate and OIDC fields are
        // refused and change nothing; then the old key's answers are refused, the new key's taken.
        let (s, v) = t.call(M::PATCH, &provider_path, key, Some(json!({"metadata_xml": unsigned}))).await;
        assert_eq!(s, S::UNPROCESSABLE_ENTITY, "{v}");
        let (s, v) = t.call(M::PATCH, &provider_path, key, Some(json!({"client_secret": "x"}))).await;
        assert!(s == S::UNPROCESSABLE_ENTITY && v["detail"].as_str().unwrap_or("").contains("OIDC"), "{s} {v}");
        let rotated = SamlIdp::start(&acs, &entity);
        let (_, h, _) = get(&t, "/auth/sso?account=acme").await;
        let (_, old_answer, old_relay) = saml.sign_in(&idp.python, &sso_of(&h), alice.clone());
        let (s, v) = t
            .call(M::PATCH, &provider_path, key,
                  Some(json!({"metadata_url": format!("http://127.0.0.1:{}/metadata", rotated.port)})))
            .await;
        assert_eq!((s, &v["id"]), (S::OK, &p["id"]), "{v}");
        let (s, _, body) = post_acs(&t, a, &old_answer, &old_relay).await;
        assert_eq!(s, S::FORBIDDEN, "signed with the retired key: {}", alert(&body));
        refused.push("signed with the IdP's retired key after rotation");
        let (_, h, _) = get(&t, "/auth/sso?account=acme").await;
        let url = sso_of(&h).replace(&format!(":{}/", saml.port), &format!(":{}/", rotated.port));
        let (_, response, relay) = rotated.sign_in(&idp.python, &url, alice.clone());
        let (s, h, body) = post_acs(&t, a, &response, &relay).await;
        assert!(s.is_redirection(), "signed with the new key: {s} {}", alert(&body));
        assert_eq!(me_with(&t, &cookie_of(&h, "atrium_session")).await.1["email"], "alice@acme.test");
        let (_, v) = t.call(M::GET, &format!("{provider_path}/group_mappings"), key, None).await;
        assert_eq!(v, json!([{"group": "admins", "team_id": team_id}]), "the group mapping survived");

        // A response for another account's ACS (its audience and destination are this account's).
        let other = t.account(&root, "other").await;
        let (_, h, _) = get(&t, "/auth/sso?account=acme").await;
        let (_, response, relay) = saml.sign_in(&idp.python, h["location"].to_str().expect("location"), alice.clone());
        let (s, _, body) = post_acs(&t, other, &response, &relay).await;
        assert_eq!(s, S::FORBIDDEN, "another account's ACS: {}", alert(&body));
        refused.push("posted to another account's ACS");
        eprintln!("{:?}: {} SAML refusals: {refused:?}; wrappers ignored: {signed_used:?}", t.db, refused.len());
        // The whole corpus (≥ 40 forged or broken answers refused) ran when xmlsec1 could re-sign.
        if resigner.is_some() {
            assert!(refused.len() >= 40, "{} SAML refusals", refused.len());
        }
        // Each refusal is in the account's audit log with its reason class, except the answer
        // posted to the other account's ACS, which is in that account's.
        let (_, events) = t
            .call(M::POST, &format!("/api/accounts/{a}/events/filter"), key,
                  Some(json!({"filter": {"event": {"prefix": ["prefect-cloud.sso.login-refused"]}}, "limit": 200})))
            .await;
        let logged = events["events"].as_array().expect("events").len();
        assert_eq!(logged, refused.len() - 1, "refusals are audited");
        assert_eq!(count_users(&t).await, 2, "root and Alice only");
    })
    .await;
}

/// `xml` with attribute `attr` of the first element starting `element` set to `value`, or
/// removed when `value` is `None`.
#[cfg(feature = "saml")]
fn set_attr(xml: &str, element: &str, attr: &str, value: Option<&str>) -> String {
    let start = xml
        .find(element)
        .unwrap_or_else(|| panic!("{element} in {xml}"));
    let end = start + xml[start..].find('>').expect("tag end");
    let tag = &xml[start..end];
    let key = format!(" {attr}=\"");
    let tag = match (tag.find(&key), value) {
        (Some(i), v) => {
            let vs = i + key.len();
            let ve = vs + tag[vs..].find('"').expect("value end");
            match v {
                Some(v) => format!("{}{v}{}", &tag[..vs], &tag[ve..]),
                None => format!("{}{}", &tag[..i], &tag[ve + 1..]),
            }
        }
        (None, Some(v)) => format!("{tag}{key}{v}\""),
        (None, None) => panic!("{attr} not on {tag}"),
    };
    format!("{}{tag}{}", &xml[..start], &xml[end..])
}

/// `xml` without the first element from `open` to its `close`.
#[cfg(feature = "saml")]
fn cut(xml: &str, open: &str, close: &str) -> String {
    let s = xml.find(open).unwrap_or_else(|| panic!("{open} in {xml}"));
    let e = s + xml[s..].find(close).expect("close") + close.len();
    format!("{}{}", &xml[..s], &xml[e..])
}

/// The SAML path in a real browser: email first on Atrium's sign-in page → the IdP's login page →
/// its auto-posting form → Atrium's ACS → signed in, created just in time, in the mapped team.
#[cfg(feature = "saml")]
#[tokio::test]
async fn a_member_signs_in_through_a_saml_idp_in_chromium_and_lands_in_their_team() {
    let Some(browser) = crate::browser::Browser::launch() else {
        return;
    };
    let Some(idp) = Idps::start("http://127.0.0.1:9/unused", json!({})) else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let (t, base) = app_for_browser(&listener, &idp).await;
    let root = t.user("root@elsewhere.test").await;
    let a = t.account(&root, "acme").await;
    let key = Some(root.key.as_str());
    let saml = SamlIdp::start(
        &atrium::services::sso::acs_url(&t.app, a),
        &atrium::services::sso::sp_entity_id(&t.app, a),
    );
    let (s, p) = t
        .call(
            M::POST,
            &format!("/api/accounts/{a}/sso/providers"),
            key,
            Some(
                json!({"kind": "saml", "name": "Acme SAML", "groups_attribute": "groups",
                          "metadata_url": format!("http://127.0.0.1:{}/metadata", saml.port)}),
            ),
        )
        .await;
    assert_eq!(s, S::CREATED, "{p}");
    let team_id = admins_team_and_verified_domain(&t, &idp, a, key, &p).await;
    t.serve_listener(listener).await;

    let mut page = browser.page().await;
    page.goto(&format!("{base}/login")).await;
    page.eval(
        "document.querySelector('#email').value = 'carol@acme.test';\
         document.querySelector('form[action=\"/login\"] button[type=submit]').click(); true",
    )
    .await;
    page.wait_for(&format!(
        "location.origin === 'http://127.0.0.1:{}' && document.querySelector('form[action=\"/signin\"]') !== null",
        saml.port
    ))
    .await;
    page.screenshot("sso-saml-idp-login").await;
    page.eval(
        "for (const [k, v] of [['userName', 'carol@acme.test'], ['email', 'carol@acme.test'],\
                              ['firstName', 'Carol'], ['lastName', 'Danvers'], ['displayName', ''], ['groups', 'admins']]) {\
           const i = document.getElementById(k); if (i) i.value = v; }\
         document.querySelector('form[action=\"/signin\"]').submit(); true",
    )
    .await;
    landed_in_team(&t, &mut page, &base, "carol@acme.test", a, key, &team_id).await;
    let (_, members) = t
        .call(
            M::POST,
            &format!("/api/accounts/{a}/account_memberships/filter"),
            key,
            Some(json!({})),
        )
        .await;
    let carol = members
        .as_array()
        .and_then(|m| m.iter().find(|m| m["email"] == "carol@acme.test"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        carol["first_name"], "Carol",
        "the profile follows the IdP: {members}"
    );
}

/// Re-signs SAML responses with xmlsec1 (the Response's enveloped signature; the Assertion's own
/// signature is dropped first, as IdPs that sign only the Response do).
#[cfg(feature = "saml")]
struct Resigner {
    key: std::path::PathBuf,
    cert: std::path::PathBuf,
    _dir: Option<tempfile::TempDir>,
}

#[cfg(feature = "saml")]
impl Resigner {
    /// The IdP's own key; `None` (a failure under `ATRIUM_TEST_REQUIRE_ALL=1`) without xmlsec1.
    fn find(idp: &SamlIdp) -> Option<Resigner> {
        let found = Command::new("xmlsec1")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            missing("xmlsec1 (to re-sign forged SAML responses)");
            return None;
        }
        Some(Resigner {
            key: idp.dir.path().join("idp-key.pem"),
            cert: idp.dir.path().join("idp-cert.pem"),
            _dir: None,
        })
    }

    /// A key and certificate of the attacker's own.
    fn attacker_key() -> Resigner {
        let dir = tempfile::tempdir().expect("dir");
        let (key, cert) = (dir.path().join("k.pem"), dir.path().join("c.pem"));
        let ok = Command::new("openssl")
            .args(["req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes"])
            .args(["-subj", "/CN=Test IdP", "-days", "30", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "openssl made the attacker's key");
        Resigner {
            key,
            cert,
            _dir: Some(dir),
        }
    }

    fn sign(&self, xml: &str, change: &Forge) -> String {
        let first = xml
            .find("<Signature xmlns")
            .expect("the Response's signature");
        let mut xml = xml.to_string();
        if let Some(i) = xml[first + 1..].find("<Signature xmlns") {
            let s = first + 1 + i;
            let e = s + xml[s..].find("</Signature>").expect("end") + "</Signature>".len();
            xml.replace_range(s..e, "");
        }
        let dir = tempfile::tempdir().expect("dir");
        let (input, output) = (dir.path().join("in.xml"), dir.path().join("out.xml"));
        std::fs::write(&input, change(&xml)).expect("write");
        let out = Command::new("xmlsec1")
            .arg("--sign")
            .arg("--privkey-pem")
            .arg(format!("{},{}", self.key.display(), self.cert.display()))
            .args([
                "--id-attr:ID",
                "urn:oasis:names:tc:SAML:2.0:protocol:Response",
                "--output",
            ])
            .arg(&output)
            .arg(&input)
            .output()
            .expect("xmlsec1");
        assert!(
            output.exists(),
            "xmlsec1 signed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(&output).expect("read")
    }
}
