//! One TLS configuration for everything the daemon says to a platform and its relay (issue 10
//! item 6): the system's trust store (so a company's TLS-inspecting proxy or internal CA that
//! the system trusts is trusted), plus the CA a pairing was made with (`vpd pair --ca-file`),
//! used alike by the HTTP client (pairing, relay tokens, unpair) and the relay's WebSocket.

use crate::error::{Error, ErrorCode, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::sync::{Arc, OnceLock};

/// The certificates in a PEM text (a `--ca-file`); an error when there are none.
pub fn parse_ca(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::new(ErrorCode::InvalidArgument, format!("the CA file is not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::new(ErrorCode::InvalidArgument, "the CA file holds no certificate (expected PEM \"BEGIN CERTIFICATE\" blocks)"));
    }
    Ok(certs)
}

/// The system's trust anchors, read once.
fn system_roots() -> &'static Vec<CertificateDer<'static>> {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!("reading the system's certificates: {e}");
        }
        found.certs
    })
}

/// The client configuration: the system's roots plus `extra_ca` (PEM), if any. The one
/// without an extra CA is built once (every platform call and relay connection asks).
pub fn client_config(extra_ca: Option<&str>) -> Result<Arc<rustls::ClientConfig>> {
    static SYSTEM_ONLY: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    match extra_ca {
        None => {
            if let Some(c) = SYSTEM_ONLY.get() {
                return Ok(c.clone());
            }
            let built = build(None)?;
            Ok(SYSTEM_ONLY.get_or_init(|| built).clone())
        }
        Some(_) => build(extra_ca),
    }
}

fn build(extra_ca: Option<&str>) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(pem) = extra_ca {
        for c in parse_ca(pem)? {
            roots.add(c).map_err(|e| Error::new(ErrorCode::InvalidArgument, format!("the CA file's certificate cannot be used: {e}")))?;
        }
    } else if added == 0 {
        tracing::warn!("no system certificates were found: https servers can only be reached with `vpd pair --ca-file`");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorCode::Internal, format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
