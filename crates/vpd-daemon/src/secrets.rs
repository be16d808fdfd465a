//! Where issue tokens live (SPEC section 2): the OS keyring when a write-read round trip
//! succeeds at startup, otherwise `config.json` (0600). Never a silent in-memory store: the
//! keyring crate is built with an explicit platform backend, and the round trip proves it.

use crate::error::{Error, ErrorCode, Result};
use std::time::Duration;
use vpd_proto::Secret;

const SERVICE: &str = "dev.viewport.vpd";
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The store chosen at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    Keyring,
    /// The keyring is not usable; the reason is shown by `vpd status` and `vpd doctor`.
    File {
        reason: String,
    },
}

impl Store {
    pub fn kind(&self) -> crate::states::StoreKind {
        match self {
            Store::Keyring => crate::states::StoreKind::Keyring,
            Store::File { .. } => crate::states::StoreKind::File,
        }
    }
    pub fn fallback_reason(&self) -> Option<&str> {
        match self {
            Store::Keyring => None,
            Store::File { reason } => Some(reason),
        }
    }
}

/// Chooses the store: `VPD_KEYRING=off` forces the file store; otherwise a keyring
/// write-read-delete round trip must succeed within a few seconds.
pub fn probe() -> Store {
    if std::env::var("VPD_KEYRING").is_ok_and(|v| v == "off" || v == "0") {
        return Store::File { reason: "disabled by VPD_KEYRING=off".into() };
    }
    let mut nonce = [0u8; 16];
    let _ = getrandom::fill(&mut nonce);
    let value: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let user = format!("probe-{value}");
    let result = run_with_timeout(move || {
        let entry = keyring::Entry::new(SERVICE, &user).map_err(|e| e.to_string())?;
        entry.set_password(&value).map_err(|e| format!("write failed: {e}"))?;
        let back = entry.get_password().map_err(|e| format!("read-back failed: {e}"));
        let _ = entry.delete_credential();
        match back {
            Ok(v) if v == value => Ok(()),
            Ok(_) => Err("read back a different value".to_string()),
            Err(e) => Err(e),
        }
    });
    match result {
        Ok(()) => Store::Keyring,
        Err(reason) => Store::File { reason: format!("keyring unavailable: {reason}") },
    }
}

/// Keyring backends may block (D-Bus); run them on their own thread with a deadline, never
/// on the async runtime.
fn run_with_timeout<T: Send + 'static>(f: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("keyring".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| e.to_string())?;
    rx.recv_timeout(PROBE_TIMEOUT).map_err(|_| "the keyring did not answer in time".to_string())?
}

fn keyring_err(what: &str, e: String) -> Error {
    Error::new(ErrorCode::Keyring, format!("{what} the issue token in the OS keyring failed: {e}. Unlock the keyring, or run `vpd doctor`."))
}

/// Stores the issue token of a pairing (keyed by its runtime target id, unique per pairing).
pub fn put(runtime_target_id: &str, token: &Secret) -> Result<()> {
    let (user, token) = (runtime_target_id.to_string(), token.clone());
    run_with_timeout(move || keyring::Entry::new(SERVICE, &user).and_then(|e| e.set_password(token.expose())).map_err(|e| e.to_string()))
        .map_err(|e| keyring_err("saving", e))
}

pub fn get(runtime_target_id: &str) -> Result<Secret> {
    let user = runtime_target_id.to_string();
    run_with_timeout(move || keyring::Entry::new(SERVICE, &user).and_then(|e| e.get_password()).map(Secret::new).map_err(|e| e.to_string()))
        .map_err(|e| keyring_err("reading", e))
}

/// Deletes the entry; a missing entry is fine.
pub fn delete(runtime_target_id: &str) -> Result<()> {
    let user = runtime_target_id.to_string();
    run_with_timeout(move || match keyring::Entry::new(SERVICE, &user).and_then(|e| e.delete_credential()) {
        Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
        Err(e) => Err(e.to_string()),
    })
    .map_err(|e| keyring_err("deleting", e))
}
