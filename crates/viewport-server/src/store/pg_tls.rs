//! TLS to PostgreSQL, from the `--db` URL's libpq parameters:
//!
//! - no `sslmode`, or `sslmode=disable`: no TLS (a Unix socket, or a private network);
//! - `sslmode=require`, `verify-ca` or `verify-full`: TLS, and always with the server's
//!   certificate checked against the trusted roots and the host name (libpq checks nothing
//!   under `require`; a database reached over a network it does not trust deserves the check);
//! - `sslrootcert=FILE`: the CA certificates (PEM) that are trusted, instead of the
//!   operating system's (`sslrootcert=system`, as in libpq 16, names those); it implies
//!   `sslmode=require`;
//! - `sslmode=prefer` or `allow` are refused: each may fall back to plain text without a word.
//!
//! tokio-postgres knows none of `verify-*` or `sslrootcert`, so they are taken out of the URL
//! it is given.

use super::{Result, StoreError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

/// What `--db` says about TLS.
pub struct Tls {
    /// The URL for tokio-postgres: `verify-*` become `require`, `sslrootcert` is gone.
    pub url: String,
    /// The connector, when TLS is asked for.
    pub connector: Option<MakeRustlsConnect>,
}

/// Reads the TLS parameters of `url` and builds the connector; the errors say what to write.
pub fn from_url(url: &str) -> Result<Tls> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => return Ok(Tls { url: url.to_string(), connector: None }),
    };
    let (mut mode, mut root, mut kept) = (None::<String>, None::<String>, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        // tokio-postgres decodes names too: `ssl%6Dode` is `sslmode`.
        let key = percent_encoding::percent_decode_str(k).decode_utf8_lossy().into_owned();
        let value = percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned();
        match key.as_str() {
            "sslmode" => mode = Some(value),
            "sslrootcert" => root = Some(value),
            _ => kept.push(pair.to_string()),
        }
    }
    let tls = match mode.as_deref() {
        None => root.is_some(),
        Some("disable") if root.is_some() => {
            return Err(StoreError::Unsupported("--db: sslrootcert names a CA for TLS, but sslmode=disable turns TLS off; drop one of them".into()))
        }
        Some("disable") => false,
        Some("require" | "verify-ca" | "verify-full") => true,
        Some(m @ ("prefer" | "allow")) => {
            return Err(StoreError::Unsupported(format!(
                "--db: sslmode={m} may fall back to an unencrypted connection without saying so; use sslmode=require (encrypted, the certificate checked) or sslmode=disable"
            )))
        }
        Some(other) => {
            return Err(StoreError::Unsupported(format!("--db: sslmode={other} is not a TLS mode; use sslmode=require, verify-full or disable")));
        }
    };
    if tls {
        kept.push("sslmode=require".into());
    } else if mode.is_some() {
        kept.push("sslmode=disable".into());
    }
    let url = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    let root = root.filter(|r| r != "system");
    let connector = if tls { Some(MakeRustlsConnect::new(client_config(root.as_deref())?)) } else { None };
    Ok(Tls { url, connector })
}

fn client_config(root: Option<&str>) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match root {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<std::result::Result<_, _>>())
                .map_err(|e| StoreError::Unsupported(format!("--db: cannot read sslrootcert={path} (PEM certificates): {e}")))?;
            if certs.is_empty() {
                return Err(StoreError::Unsupported(format!("--db: sslrootcert={path} holds no PEM certificate")));
            }
            for c in certs {
                roots.add(c).map_err(|e| StoreError::Unsupported(format!("--db: sslrootcert={path}: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                // One unreadable system certificate does not stop the others.
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(StoreError::Unsupported(
                    "--db: TLS asked for, but this system has no trusted certificates; name the database's CA with sslrootcert=FILE".into(),
                ));
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Unsupported(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_of(u: &str) -> String {
        from_url(u).map(|t| t.url).unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn modes_are_read_and_rewritten_for_tokio_postgres() {
        assert_eq!(url_of("postgres://h/db"), "postgres://h/db");
        assert_eq!(url_of("postgres://h/db?sslmode=disable&application_name=x"), "postgres://h/db?application_name=x&sslmode=disable");
        assert!(from_url("postgres://h/db?sslmode=disable").unwrap().connector.is_none());
        for refused in ["prefer", "allow", "bogus"] {
            let e = url_of(&format!("postgres://h/db?sslmode={refused}"));
            assert!(e.starts_with("error:") && e.contains("sslmode=require"), "{e}");
        }
        assert!(url_of("postgres://h/db?sslmode=disable&sslrootcert=/x.pem").contains("drop one of them"));
        // verify-full is tokio-postgres's require, checked by rustls (the system's roots here).
        assert_eq!(url_of("postgres://u@h/db?sslmode=verify-full"), "postgres://u@h/db?sslmode=require");
        assert_eq!(url_of("postgres://h/db?sslrootcert=system"), "postgres://h/db?sslmode=require", "the OS's roots");
        // A name written encoded is still the name tokio-postgres would read.
        assert!(url_of("postgres://h/db?ssl%6Dode=prefer").starts_with("error:"));
        let missing = url_of("postgres://h/db?sslmode=verify-full&sslrootcert=%2Fno%2Fsuch.pem");
        assert!(missing.contains("cannot read sslrootcert=/no/such.pem"), "decoded: {missing}");
    }
}
