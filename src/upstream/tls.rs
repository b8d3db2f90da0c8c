//! TLS to upstream Prefect servers: the client configuration of an `https://` upstream (the
//! system's roots or the upstream's own CA bundle, and an optional client certificate for mutual
//! TLS), the handshake with an error that names what failed, and the stream the gateway reads
//! and writes whichever the upstream speaks.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

/// How an `https://` upstream is reached.
pub struct TlsSettings {
    pub config: Arc<rustls::ClientConfig>,
    /// The name its certificate must be valid for (the URL's host).
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// The system's trusted roots, read once (`SSL_CERT_FILE`/`SSL_CERT_DIR` are honoured).
fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "reading the system's trusted certificates");
            }
            let mut roots = rustls::RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            if ignored > 0 {
                tracing::warn!(added, ignored, "some system certificates could not be used");
            }
            Arc::new(roots)
        })
        .clone()
}

/// Parses the certificates of a PEM bundle (at least one).
pub fn parse_certificates(what: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} is not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what} holds no CERTIFICATE block"));
    }
    Ok(certs)
}

/// Builds the client configuration: `ca_pem` replaces the system's roots when given; a client
/// certificate needs its key (and the other way round).
pub fn client_config(
    ca_pem: Option<&str>,
    client_cert_pem: Option<&str>,
    client_key_pem: Option<&str>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = match ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in parse_certificates("ca_certificates", pem)? {
                roots
                    .add(c)
                    .map_err(|e| format!("ca_certificates holds an unusable certificate: {e}"))?;
            }
            Arc::new(roots)
        }
        None => system_roots(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_root_certificates(roots);
    let mut config = match (client_cert_pem, client_key_pem) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = parse_certificates("client_certificate", cert)?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| format!("client_key is not a PEM private key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client_certificate and client_key do not fit: {e}"))?
        }
        _ => {
            return Err(
                "client_certificate and client_key go together: give both or neither".into(),
            )
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name an upstream's certificate must be valid for.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|_| format!("{host:?} is not a TLS server name"))
}

/// Runs the TLS handshake over `tcp`; the error says what failed (an unknown issuer, a name the
/// certificate is not valid for, a refused client certificate…).
pub async fn handshake(tls: &TlsSettings, tcp: TcpStream) -> Result<UpstreamStream, String> {
    let connector = tokio_rustls::TlsConnector::from(tls.config.clone());
    match tokio::time::timeout(
        super::CONNECT_TIMEOUT,
        connector.connect(tls.server_name.clone(), tcp),
    )
    .await
    {
        Ok(Ok(s)) => Ok(UpstreamStream::Tls(Box::new(s))),
        Ok(Err(e)) => Err(describe(&e)),
        Err(_) => Err("the TLS handshake timed out".into()),
    }
}

/// The TLS failure in an error's chain, in words, if there is one.
pub fn tls_reason(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(say(r));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(say(r));
            }
        }
        next = e.source();
    }
    None
}

/// A TLS failure in words: rustls's own error when there is one.
fn describe(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(r) => say(r),
        None => format!("TLS handshake failed: {e}"),
    }
}

fn say(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => {
            format!("the upstream's certificate was refused: {c:?}")
        }
        rustls::Error::AlertReceived(a) => format!(
            "the upstream ended the TLS session with the alert {a:?} (a server that requires a client certificate answers so when none or an unknown one is offered)"
        ),
        other => format!("TLS failed: {other}"),
    }
}

/// A connection to an upstream, plain or TLS.
pub enum UpstreamStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl UpstreamStream {
    /// False when the upstream closed an idle connection or sent something unasked. A TLS
    /// connection with unread bytes while idle is taken as closing (a close_notify alert): no
    /// request is sent on it.
    pub fn still_open(&self) -> bool {
        match self {
            UpstreamStream::Plain(s) => super::pool::still_open(s),
            UpstreamStream::Tls(s) => {
                let tcp = s.get_ref().0;
                let mut b = [0u8; 1];
                let waker = std::task::Waker::noop();
                let mut cx = Context::from_waker(waker);
                let mut buf = ReadBuf::new(&mut b);
                matches!(tcp.poll_peek(&mut cx, &mut buf), Poll::Pending)
            }
        }
    }
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamStream::Plain(s) => s.is_write_vectored(),
            UpstreamStream::Tls(s) => s.is_write_vectored(),
        }
    }
}
