//! HTTPS and WSS on the same port (issue 8 item 4): `serve --tls-cert FILE --tls-key FILE`.
//! rustls with a certificate resolver whose certificate is re-read when the files change, so
//! a renewed certificate needs no restart; a file that cannot be used keeps the old one (and
//! says why in the log). Handshakes run on their own tasks, so a slow client never holds up
//! another's connection.

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the certificate files are checked for a change.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// Reads a PEM certificate chain and its private key, and checks that they belong together.
pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading the certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate (expected PEM \"BEGIN CERTIFICATE\" blocks)", cert.display());
    }
    let key_der = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading the private key {} (PEM)", key.display()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .with_context(|| format!("{} is not a usable private key (RSA, ECDSA or Ed25519)", key.display()))?;
    let ck = CertifiedKey::new(certs, signer);
    if ck.keys_match().is_err() {
        bail!("the private key {} does not belong to the certificate {}", key.display(), cert.display());
    }
    Ok(Arc::new(ck))
}

/// The current certificate, replaced when the files change.
#[derive(Debug)]
struct Reloading {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap().clone())
    }
}

fn stamp(p: &Path) -> Option<(SystemTime, u64)> {
    std::fs::metadata(p).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
}

/// A TLS listener for `axum::serve` (wrap it with `.tap_io(|_| ())` to keep
/// `ConnectInfo<SocketAddr>`).
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Serves TLS on `tcp` with the certificate in `cert` and `key` (checked now: a missing,
    /// unreadable or mismatched pair is an error before anything listens).
    pub fn new(tcp: TcpListener, cert: PathBuf, key: PathBuf) -> anyhow::Result<TlsListener> {
        let first = load(&cert, &key)?;
        let resolver = Arc::new(Reloading { current: RwLock::new(first) });
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, addr) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("accepting a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        tokio::spawn(async move {
            let mut seen = (stamp(&cert), stamp(&key));
            loop {
                tokio::time::sleep(RELOAD_EVERY).await;
                let now = (stamp(&cert), stamp(&key));
                if now == seen {
                    continue;
                }
                seen = now;
                match load(&cert, &key) {
                    Ok(ck) => {
                        *resolver.current.write().unwrap() = ck;
                        tracing::info!("TLS certificate reloaded from {}", cert.display());
                    }
                    Err(e) => tracing::warn!("the TLS certificate files changed but cannot be used ({e:#}); still serving the previous certificate"),
                }
            }
        });
        Ok(TlsListener { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accepting task never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
