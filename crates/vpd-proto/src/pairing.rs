//! SPEC section 4: `POST /api/pairing-codes`, `GET /api/pairing-codes/{code}/status`,
//! `POST /api/pairing-codes/{code}/claim`.

use crate::Secret;
use serde::{Deserialize, Serialize};

/// Only Ed25519 keys are accepted.
pub const KEY_ALGORITHM: &str = "ed25519";
/// Longest a status long-poll may wait, in seconds.
pub const MAX_WAIT_SECS: u64 = 25;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
}

/// Body of `POST /api/pairing-codes` (and of `…/claim`, where `requested_org` is ignored).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CreatePairingCode {
    /// Machine name shown on the approval page.
    pub name: String,
    /// Base64url (unpadded) of the 32-byte Ed25519 public key of this pairing.
    pub public_key: String,
    pub key_algorithm: String,
    pub daemon_version: String,
    pub platform: Platform,
    /// ULID, slug or name of the org the user asked for with `--org`; pre-selects it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_org: Option<String>,
}

/// 201 reply of `POST /api/pairing-codes`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PairingCodeCreated {
    /// `XXXX-XXXX`.
    pub code: String,
    /// 256-bit secret for the status endpoint, sent as `X-Viewport-Pairing-Token`.
    pub status_token: Secret,
    /// RFC 3339.
    pub expires_at: String,
    /// `{app}/pair?code=XXXX-XXXX`.
    pub verification_url: String,
}

/// Reply of the status long-poll and of a claim.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PairingStatus {
    Pending,
    Denied,
    Expired,
    Approved(Box<Approved>),
}

/// What an approval hands the daemon, exactly once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Approved {
    pub workspace_id: String,
    pub workspace_name: String,
    pub workspace_slug: String,
    pub install_id: String,
    pub runtime_target_id: String,
    pub machine_id: String,
    pub machine_name: String,
    /// The issue token: this pairing's credential for relay tokens.
    pub token: Secret,
    pub relay_endpoint: String,
    pub server_url: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_tagged_by_status() {
        let s: PairingStatus = serde_json::from_str(r#"{"status":"pending"}"#).unwrap();
        assert_eq!(s, PairingStatus::Pending);
        let json = r#"{"status":"approved","workspace_id":"W","workspace_name":"Acme",
            "workspace_slug":"acme","install_id":"I","runtime_target_id":"R","machine_id":"M",
            "machine_name":"box","token":"t","relay_endpoint":"ws://x/ws","server_url":"http://x"}"#;
        match serde_json::from_str::<PairingStatus>(json).unwrap() {
            PairingStatus::Approved(a) => {
                assert_eq!(a.workspace_slug, "acme");
                assert_eq!(a.token.expose(), "t");
                assert!(!format!("{a:?}").contains("\"t\""));
            }
            other => panic!("{other:?}"),
        }
        assert!(serde_json::from_str::<PairingStatus>(r#"{"status":"approved"}"#).is_err());
    }
}
