//! SPEC section 5 (relay tokens) and `POST /api/runtime/unpair`; the relay-token JWT claims.

use crate::Secret;
use serde::{Deserialize, Serialize};

/// The JWT audience of relay tokens.
pub const RELAY_AUDIENCE: &str = "viewport-relay";
/// Longest lifetime of a relay token, in seconds.
pub const RELAY_TOKEN_MAX_SECS: i64 = 600;

/// Body of `POST /api/runtime/relay-token` and of `POST /api/runtime/unpair`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeCredential {
    pub workspace_id: String,
    pub runtime_target_id: String,
    /// The pairing's issue token.
    pub credential: Secret,
}

/// Body of `POST /api/runtime/rename`: a machine renames itself in one org (issue 11 item 7).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RenameMachine {
    #[serde(flatten)]
    pub credential: RuntimeCredential,
    /// The new name, 1-100 characters, no control characters.
    pub name: String,
}

/// 200 reply of `POST /api/runtime/relay-token`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RelayToken {
    pub relay_token: Secret,
    /// RFC 3339.
    pub expires_at: String,
    pub relay_endpoint: String,
}

/// Claims of the relay token (EdDSA JWT).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RelayClaims {
    pub iss: String,
    pub aud: String,
    /// The runtime target id.
    pub sub: String,
    pub workspace_id: String,
    pub machine_id: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    /// Base64url of the pairing's Ed25519 public key.
    pub public_key: String,
}

/// Error codes of the runtime endpoints (`{"error": …}`).
pub mod errors {
    pub const INVALID_CREDENTIAL: &str = "invalid_credential";
    pub const REVOKED: &str = "revoked";
    pub const WORKSPACE_NOT_FOUND: &str = "workspace_not_found";
}
