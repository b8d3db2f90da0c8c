//! Server-side cost of a sign-in through an identity provider, next to a password sign-in
//! measured in the same run (issue 17, "Measure"):
//! - `sign_in/password`: `services::auth::login` — argon2id verification of the password, the
//!   SSO enforcement check, a new session;
//! - `sign_in/oidc_callback`: `services::sso::finish_login` — the attempt taken once, discovery
//!   and JWKS fetched, the code exchanged (PKCE), the RS256 ID token verified (issuer, audience,
//!   nonce, expiry, `iat`), the domain checked, the member admitted, groups synced, a session.
//!   The IdP is an in-process server on loopback that mints a token per request;
//! - `sign_in/oidc_idp_share`: the same three round trips to that IdP alone (discovery, JWKS,
//!   token), so that Atrium's own cost is `oidc_callback − oidc_idp_share`;
//! - `sign_in/saml_acs` (with `--features saml`): `services::sso::finish_saml` on a response
//!   signed with the IdP's key by xmlsec1 before the timed part — base64, DTD/SHA-1 refusals,
//!   the attempt taken once, signature verification (xmlsec), the profile checks, the assertion
//!   id remembered, the member admitted, a session. No IdP runs during the post.
//!
//! Each iteration signs in the same existing member (the steady state; a first, just-in-time
//! sign-in adds the user and membership inserts once).
//!
//! Run: `cargo bench --bench sso --features saml`. Results go in BENCHMARKS.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed step here should fail loudly

use atrium::app::{App, SystemClock};
use atrium::authz::Principal;
use atrium::config::Config;
use atrium::services::{self, auth, sso};
use atrium::store::{self, Store};
use axum::extract::{Form, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use criterion::{criterion_group, criterion_main, Criterion};
use openidconnect::core::{
    CoreIdToken, CoreIdTokenClaims, CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey,
};
use openidconnect::{
    Audience, EmptyAdditionalClaims, EndUserEmail, IssuerUrl, JsonWebKeyId, Nonce,
    PrivateSigningKey, StandardClaims, SubjectIdentifier,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENT_ID: &str = "atrium-bench";

/// The in-process OIDC provider: discovery, JWKS and a token endpoint that signs an ID token for
/// Bob with the nonce it was handed as the authorization code.
struct Idp {
    issuer: String,
    key: CoreRsaPrivateSigningKey,
}

async fn discovery(State(idp): State<Arc<Idp>>) -> Json<Value> {
    let i = &idp.issuer;
    Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "jwks_uri": format!("{i}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

async fn jwks(State(idp): State<Arc<Idp>>) -> Json<Value> {
    Json(json!({"keys": [idp.key.as_verification_key()]}))
}

async fn token(State(idp): State<Arc<Idp>>, Form(f): Form<HashMap<String, String>>) -> Json<Value> {
    let now = chrono::Utc::now();
    let claims = CoreIdTokenClaims::new(
        IssuerUrl::new(idp.issuer.clone()).expect("issuer"),
        vec![Audience::new(CLIENT_ID.into())],
        now + chrono::Duration::minutes(5),
        now,
        StandardClaims::new(SubjectIdentifier::new("bob".into()))
            .set_email(Some(EndUserEmail::new("bob@oidc.bench.test".into())))
            .set_email_verified(Some(true)),
        EmptyAdditionalClaims {},
    )
    .set_nonce(Some(Nonce::new(f.get("code").cloned().unwrap_or_default())));
    let id_token = CoreIdToken::new(
        claims,
        &idp.key,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        None,
        None,
    )
    .expect("sign");
    Json(json!({
        "access_token": "bench-access-token",
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token.to_string(),
    }))
}

/// An RSA key and self-signed certificate made by openssl (PKCS#1 PEM key, PEM certificate).
fn openssl_key(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (key, cert) = (dir.join("key.pem"), dir.join("cert.pem"));
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes"])
        .args(["-subj", "/CN=Bench IdP", "-days", "2", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl")
        .status
        .success();
    assert!(ok, "openssl made a key");
    let pkcs1 = Command::new("openssl")
        .args(["rsa", "-traditional", "-in"])
        .arg(&key)
        .output()
        .expect("openssl rsa");
    std::fs::write(dir.join("key-pkcs1.pem"), pkcs1.stdout).expect("write");
    (key, cert)
}

/// The RelayState (or OIDC `state`) and another parameter of the URL Atrium redirected to.
fn param(url: &str, name: &str) -> String {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{name} in {url}"))
}

/// An account with a verified domain, owned by `owner`.
async fn account_with_domain(
    app: &App,
    owner: &Principal,
    handle: &str,
    domain: &str,
) -> atrium::domain::AccountId {
    let a = services::accounts::create_account(
        app,
        owner,
        services::accounts::CreateAccount {
            name: handle.into(),
            handle: handle.into(),
            location: None,
            link: None,
            billing_email: None,
        },
    )
    .await
    .expect("account")
    .id;
    let mut tx = app.store.begin().await.expect("tx");
    store::sso::insert_domain(
        &mut tx,
        &store::sso::DomainRow {
            id: uuid::Uuid::new_v4(),
            account_id: a,
            domain: domain.into(),
            token: "bench".into(),
            verified_at: Some(app.now()),
            checked_at: Some(app.now()),
            failing_since: None,
            created: app.now(),
        },
    )
    .await
    .expect("domain");
    let _domains_only = tx.commit().await.expect("commit");
    a
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let (key_pem, cert_pem) = openssl_key(dir.path());
    let app_owned = rt.block_on(async {
        let store = Store::connect(&url, None).await.expect("store");
        store.migrate().await.expect("migrate");
        App::new(
            Config {
                database_url: url.clone(),
                ..Config::default()
            },
            store,
            Arc::new(SystemClock),
        )
        .await
        .expect("app")
    });
    let app = &app_owned;

    // The in-process OIDC provider.
    let (issuer, idp) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        let pem = std::fs::read_to_string(dir.path().join("key-pkcs1.pem")).expect("key");
        let idp = Arc::new(Idp {
            issuer: issuer.clone(),
            key: CoreRsaPrivateSigningKey::from_pem(&pem, Some(JsonWebKeyId::new("k1".into())))
                .expect("key"),
        });
        let router = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .with_state(idp.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        (issuer, idp)
    });

    // The owner (with a password), an OIDC account and its member Bob signed in once (JIT).
    let owner = rt.block_on(async {
        let u = auth::create_user(
            app,
            auth::Signup {
                email: "owner@elsewhere.test".into(),
                password: "correct horse battery staple".into(),
                handle: None,
                first_name: None,
                last_name: None,
            },
            false,
        )
        .await
        .expect("owner");
        let p = Principal::cli(u.id, u.email.clone());
        let a = account_with_domain(app, &p, "oidc-bench", "oidc.bench.test").await;
        let create: sso::CreateProvider = serde_json::from_value(json!({
            "kind": "oidc", "name": "Bench OIDC", "issuer": issuer,
            "client_id": CLIENT_ID, "client_secret": "bench-secret",
        }))
        .expect("provider");
        sso::create_provider(app, &p, a, create)
            .await
            .expect("provider");
        p
    });
    let oidc_attempt = || async {
        let to = sso::begin_login(app, sso::Realm::Account("oidc-bench"), "/")
            .await
            .expect("begin");
        sso::Callback {
            code: Some(param(&to, "nonce")),
            state: Some(param(&to, "state")),
            iss: None,
            error: None,
            error_description: None,
        }
    };
    rt.block_on(async {
        let first = oidc_attempt().await;
        sso::finish_login(app, first, None, None)
            .await
            .expect("JIT sign-in");
    });

    let mut g = c.benchmark_group("sign_in");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.bench_function("password", |b| {
        b.to_async(&rt).iter(|| async {
            auth::login(
                app,
                "owner@elsewhere.test",
                "correct horse battery staple".into(),
                None,
                None,
            )
            .await
            .expect("password sign-in")
        })
    });
    g.bench_function("oidc_callback", |b| {
        b.to_async(&rt).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let cb = oidc_attempt().await;
                let t = Instant::now();
                sso::finish_login(app, cb, None, None)
                    .await
                    .expect("OIDC sign-in");
                total += t.elapsed();
            }
            total
        })
    });
    g.bench_function("oidc_idp_share", |b| {
        let issuer = IssuerUrl::new(issuer.clone()).expect("issuer");
        let token_url = format!("{}/token", idp.issuer);
        b.to_async(&rt).iter(|| {
            let (issuer, token_url) = (issuer.clone(), token_url.clone());
            async move {
                openidconnect::core::CoreProviderMetadata::discover_async(
                    issuer,
                    &sso::back_channel,
                )
                .await
                .expect("discovery");
                let req = axum::http::Request::post(token_url.as_str())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(b"grant_type=authorization_code&code=n".to_vec())
                    .expect("request");
                sso::back_channel(req).await.expect("token")
            }
        })
    });

    #[cfg(feature = "saml")]
    saml_acs(&mut g, &rt, app, &owner, dir.path(), &key_pem, &cert_pem);
    #[cfg(not(feature = "saml"))]
    let _ = (&owner, key_pem, cert_pem);
    g.finish();
}

/// `sign_in/saml_acs`: each iteration starts an SP-initiated sign-in, has xmlsec1 sign the IdP's
/// answer to it (untimed), then times the ACS.
#[cfg(feature = "saml")]
fn saml_acs(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    app: &App,
    owner: &Principal,
    dir: &std::path::Path,
    key_pem: &std::path::Path,
    cert_pem: &std::path::Path,
) {
    use base64::Engine;
    let cert_b64: String = std::fs::read_to_string(cert_pem)
        .expect("cert")
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let metadata = format!(
        r#"<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="urn:bench:idp"><IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><KeyDescriptor use="signing"><KeyInfo xmlns="http://www.w3.org/2000/09/xmldsig#"><X509Data><X509Certificate>{cert_b64}</X509Certificate></X509Data></KeyInfo></KeyDescriptor><SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="http://127.0.0.1:9/sso"/></IDPSSODescriptor></EntityDescriptor>"#
    );
    let account = rt.block_on(async {
        let a = account_with_domain(app, owner, "saml-bench", "saml.bench.test").await;
        let create: sso::CreateProvider = serde_json::from_value(json!({
            "kind": "saml", "name": "Bench SAML", "metadata_xml": metadata,
        }))
        .expect("provider");
        sso::create_provider(app, owner, a, create)
            .await
            .expect("provider");
        a
    });
    let (entity, acs) = (sso::sp_entity_id(app, account), sso::acs_url(app, account));
    let n = std::sync::atomic::AtomicU64::new(0);
    // One signed answer to a sign-in started now: (SAMLResponse, RelayState).
    let answer = || async {
        let to = sso::begin_login(app, sso::Realm::Account("saml-bench"), "/")
            .await
            .expect("begin");
        let relay = param(&to, "RelayState");
        let request_id = {
            let mut tx = app.store.begin().await.expect("tx");
            let row =
                store::sso::take_login(&mut tx, &atrium::services::credentials::sha256_hex(&relay))
                    .await
                    .expect("login")
                    .expect("the attempt");
            store::sso::insert_login(&mut tx, &row)
                .await
                .expect("put back");
            let _logins_only = tx.commit().await.expect("commit");
            row.nonce
        };
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = chrono::Utc::now();
        let (at, until) = (
            now.format("%Y-%m-%dT%H:%M:%SZ"),
            (now + chrono::Duration::minutes(5)).format("%Y-%m-%dT%H:%M:%SZ"),
        );
        let xml = format!(
            r##"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_r{i}" Version="2.0" IssueInstant="{at}" Destination="{acs}" InResponseTo="{request_id}"><saml:Issuer>urn:bench:idp</saml:Issuer><Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo><CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/><SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/><Reference URI="#_r{i}"><Transforms><Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/><Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></Transforms><DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><DigestValue/></Reference></SignedInfo><SignatureValue/><KeyInfo><X509Data/></KeyInfo></Signature><samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status><saml:Assertion Version="2.0" ID="_a{i}" IssueInstant="{at}"><saml:Issuer>urn:bench:idp</saml:Issuer><saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">carol@saml.bench.test</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="{until}" Recipient="{acs}" InResponseTo="{request_id}"/></saml:SubjectConfirmation></saml:Subject><saml:Conditions NotBefore="{at}" NotOnOrAfter="{until}"><saml:AudienceRestriction><saml:Audience>{entity}</saml:Audience></saml:AudienceRestriction></saml:Conditions><saml:AuthnStatement AuthnInstant="{at}"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement></saml:Assertion></samlp:Response>"##
        );
        let (input, output) = (
            dir.join(format!("in{i}.xml")),
            dir.join(format!("out{i}.xml")),
        );
        std::fs::write(&input, xml).expect("write");
        let out = Command::new("xmlsec1")
            .arg("--sign")
            .arg("--privkey-pem")
            .arg(format!("{},{}", key_pem.display(), cert_pem.display()))
            .args([
                "--id-attr:ID",
                "urn:oasis:names:tc:SAML:2.0:protocol:Response",
                "--output",
            ])
            .arg(&output)
            .arg(&input)
            .output()
            .expect("xmlsec1 (apt install xmlsec1)");
        let signed = std::fs::read(&output)
            .unwrap_or_else(|_| panic!("xmlsec1 signed: {}", String::from_utf8_lossy(&out.stderr)));
        let _ = (std::fs::remove_file(&input), std::fs::remove_file(&output));
        let post: sso::AcsPost = serde_json::from_value(json!({
            "SAMLResponse": base64::engine::general_purpose::STANDARD.encode(signed),
            "RelayState": relay,
        }))
        .expect("post");
        post
    };
    rt.block_on(async {
        let first = answer().await;
        sso::finish_saml(app, account, first, None, None)
            .await
            .expect("JIT SAML sign-in");
    });
    g.bench_function("saml_acs", |b| {
        b.to_async(rt).iter_custom(|iters| async move {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let post = answer().await;
                let t = Instant::now();
                sso::finish_saml(app, account, post, None, None)
                    .await
                    .expect("SAML sign-in");
                total += t.elapsed();
            }
            total
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
