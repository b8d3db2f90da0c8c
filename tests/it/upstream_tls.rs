//! `https://` upstreams (issue 19): the gateway verifies the upstream's certificate against the
//! system's roots or the upstream's own CA bundle, offers a client certificate when the upstream
//! requires one (mutual TLS), and answers a 502 that names the TLS failure. The TLS endpoint is
//! real: a rustls server made in the test with certificates from `openssl`, in front of the
//! recording upstream; both the fast path and the router path are driven.

use crate::gateway::{recording_upstream, setup};
use crate::support::*;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls;

/// A private CA, a server certificate for `localhost` (only) signed by it, and a client
/// certificate signed by a second CA (the one the server trusts for clients).
pub(crate) struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub(crate) fn make() -> Option<Pki> {
        let dir = tempfile::tempdir().expect("tempdir");
        let run = |args: &[&str]| {
            std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let ext = dir.path().join("san.ext");
        std::fs::write(&ext, "subjectAltName=DNS:localhost\n").expect("ext");
        std::fs::write(
            dir.path().join("client.ext"),
            "extendedKeyUsage=clientAuth\n",
        )
        .expect("ext");
        let ok = [
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=Atrium test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ][..],
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ],
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "san.ext",
                "-out",
                "server.pem",
            ],
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=Atrium client CA",
                "-keyout",
                "clientca.key",
                "-out",
                "clientca.pem",
            ],
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=atrium-gateway",
                "-keyout",
                "client.key",
                "-out",
                "client.csr",
            ],
            &[
                "x509",
                "-req",
                "-in",
                "client.csr",
                "-CA",
                "clientca.pem",
                "-CAkey",
                "clientca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "client.ext",
                "-out",
                "client.pem",
            ],
        ]
        .iter()
        .all(|a| run(a));
        if !ok {
            missing("openssl (to make the test certificates)");
            return None;
        }
        Some(Pki { dir })
    }

    pub(crate) fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).expect("pem")
    }

    pub(crate) fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
}

fn certs(path: &Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .expect("pem")
        .collect::<Result<_, _>>()
        .expect("certs")
}

/// A TLS terminator in front of `backend` (plain HTTP); with `client_ca`, it requires a client
/// certificate signed by it. Returns its port.
pub(crate) async fn tls_front(pki: &Pki, backend: u16, client_ca: bool) -> u16 {
    use rustls::pki_types::pem::PemObject;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(pki.path("server.key")).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions");
    let builder = if client_ca {
        let mut roots = rustls::RootCertStore::empty();
        for c in certs(&pki.path("clientca.pem")) {
            roots.add(c).expect("client CA");
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("verifier");
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(certs(&pki.path("server.pem")), key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    port
}

/// Binds the workspace's upstream with `body` (a PUT), answering the status and JSON.
async fn bind(
    t: &TestApp,
    s: &crate::gateway::Setup,
    body: serde_json::Value,
) -> (S, serde_json::Value) {
    t.call(
        M::PUT,
        &format!("/api/accounts/{}/workspaces/{}/upstream", s.account, s.ws),
        Some(&s.owner.key),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn https_upstreams_are_verified_against_their_ca_and_failures_name_the_tls_problem() {
    let Some(pki) = Pki::make() else { return };
    let pki = Arc::new(pki);
    each_db_and_transport(|t| {
        let pki = pki.clone();
        async move {
            let backend = recording_upstream().await;
            let s = setup(&t, backend, "tls").await;
            let front = tls_front(&pki, backend, false).await;
            let url = format!("https://localhost:{front}/api");
            let flows = s.path("flows/filter");

            // The system's roots do not know the private CA: a 502 naming the certificate problem.
            let (st, v) = bind(&t, &s, json!({"url": url})).await;
            assert_eq!(st, S::OK, "{v}");
            assert_eq!(v["ca_certificates"], serde_json::Value::Null);
            let (st, v) = t.call(M::POST, &flows, Some(&s.owner.key), Some(json!({}))).await;
            assert_eq!(st, S::BAD_GATEWAY, "{v}");
            let detail = v["detail"].as_str().unwrap_or("");
            assert!(detail.contains("TLS") && detail.contains("UnknownIssuer"), "{detail}");

            // With the CA bundle the call goes through, over TLS, with the upstream's auth string.
            let (st, v) = bind(&t, &s, json!({"url": url, "ca_certificates": pki.read("ca.pem")})).await;
            assert_eq!(st, S::OK, "{v}");
            assert!(v["ca_certificates"].as_str().unwrap_or("").contains("BEGIN CERTIFICATE"));
            for _ in 0..3 {
                let (st, v) = t.call(M::POST, &flows, Some(&s.owner.key), Some(json!({"limit": 1}))).await;
                assert_eq!(st, S::OK, "{v}");
                assert_eq!(v["path"], "/api/flows/filter");
                assert_eq!(v["headers"]["host"], format!("localhost:{front}"));
                assert!(v["headers"]["authorization"].as_str().unwrap_or("").starts_with("Basic "));
            }

            // The same server reached by an address its certificate does not name is refused,
            // and the answer says so.
            let by_ip = format!("https://127.0.0.1:{front}/api");
            let (st, v) = bind(&t, &s, json!({"url": by_ip})).await;
            assert_eq!(st, S::OK, "{v}");
            let (st, v) = t.call(M::POST, &flows, Some(&s.owner.key), Some(json!({}))).await;
            assert_eq!(st, S::BAD_GATEWAY, "{v}");
            assert!(v["detail"].as_str().unwrap_or("").contains("NotValidForName"), "{v}");
            let (st, v) = bind(&t, &s, json!({"url": url})).await;
            assert_eq!(st, S::OK, "{v}");

            // Bad settings are refused before anything is kept.
            for (body, why) in [
                (json!({"url": url, "ca_certificates": "not pem"}), "ca_certificates"),
                (json!({"url": url, "ca_certificates": pki.read("ca.pem"), "client_certificate": pki.read("client.pem")}), "go together"),
                (json!({"url": url, "ca_certificates": pki.read("ca.pem"), "client_certificate": pki.read("client.pem"), "client_key": pki.read("server.key")}), "do not fit"),
                (json!({"url": format!("http://127.0.0.1:{backend}/api"), "ca_certificates": pki.read("ca.pem")}), "https:// upstreams only"),
            ] {
                let (st, v) = bind(&t, &s, body).await;
                assert_eq!(st, S::UNPROCESSABLE_ENTITY, "{v}");
                assert!(v["detail"].as_str().unwrap_or("").contains(why), "{why}: {v}");
            }
            let (_, v) = t.call(M::GET, &format!("/api/accounts/{}/workspaces/{}/upstream", s.account, s.ws), Some(&s.owner.key), None).await;
            assert_eq!(v["url"], url, "the refused changes left the binding as it was: {v}");
        }
    })
    .await;
}

#[tokio::test]
async fn an_upstream_that_requires_a_client_certificate_gets_the_configured_one() {
    let Some(pki) = Pki::make() else { return };
    let pki = Arc::new(pki);
    each_db_and_transport(|t| {
        let pki = pki.clone();
        async move {
            let backend = recording_upstream().await;
            let s = setup(&t, backend, "mtls").await;
            let front = tls_front(&pki, backend, true).await;
            let url = format!("https://localhost:{front}/api");
            let flows = s.path("flows/filter");
            let (st, v) = bind(&t, &s, json!({"url": url, "ca_certificates": pki.read("ca.pem")})).await;
            assert_eq!(st, S::OK, "{v}");
            let (st, v) = t.call(M::POST, &flows, Some(&s.owner.key), Some(json!({}))).await;
            assert_eq!(st, S::BAD_GATEWAY, "without a client certificate: {v}");
            assert!(v["detail"].as_str().unwrap_or("").contains("TLS"), "{v}");

            let (st, v) = bind(&t, &s, json!({"url": url, "client_certificate": pki.read("client.pem"), "client_key": pki.read("client.key")})).await;
            assert_eq!(st, S::OK, "{v}");
            assert!(!v.to_string().contains("PRIVATE KEY"), "the key is never returned: {v}");
            assert!(v["ca_certificates"].as_str().is_some(), "omitted fields keep their value");
            let (st, v) = t.call(M::POST, &flows, Some(&s.owner.key), Some(json!({}))).await;
            assert_eq!(st, S::OK, "{v}");
            assert_eq!(v["path"], "/api/flows/filter");
            // The audit record says TLS settings changed, never what the key is.
            let (st, events) = t.call(M::POST, &format!("/api/accounts/{}/events/filter", s.account), Some(&s.owner.key), Some(json!({}))).await;
            assert_eq!(st, S::OK, "{events}");
            let text = events.to_string();
            assert!(text.contains("\"client_certificate\":true"), "{text}");
            assert!(!text.contains("PRIVATE KEY"));
        }
    })
    .await;
}
