//! Wire formats shared by `vpd` and `viewport-server`.
//!
//! This crate is the only place that knows the JSON shapes of the platform API (SPEC sections
//! 4 and 5): pairing codes, their status, relay tokens, unpair, health and error bodies. It
//! does no I/O. Secrets travel in [`Secret`], whose `Debug` never prints the value.

pub mod ids;
pub mod limits;
pub mod pairing;
pub mod relay;
pub mod runtime;
mod secret;

pub use ids::{fingerprint, format_code, is_ulid, normalize_code, CODE_ALPHABET};
pub use secret::Secret;

use serde::{Deserialize, Serialize};

/// The error body every API endpoint answers with on a non-2xx status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiError {
    /// Stable machine-readable code, e.g. `revoked`, `invalid_credential`, `not_found`.
    pub error: String,
    /// Human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ApiError {
    pub fn new(error: impl Into<String>, message: impl Into<String>) -> Self {
        Self { error: error.into(), message: Some(message.into()) }
    }
}

/// `GET /api/health`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// API paths, so that client and server never disagree on a route.
pub mod paths {
    pub const PAIRING_CODES: &str = "/api/pairing-codes";
    pub fn pairing_status(code: &str) -> String {
        format!("/api/pairing-codes/{code}/status")
    }
    /// `POST` with the status token: the daemon gave up waiting (Ctrl-C); the code can no
    /// longer be approved.
    pub fn pairing_cancel(code: &str) -> String {
        format!("/api/pairing-codes/{code}/cancel")
    }
    pub fn pairing_claim(code: &str) -> String {
        format!("/api/pairing-codes/{code}/claim")
    }
    pub const RELAY_TOKEN: &str = "/api/runtime/relay-token";
    pub const UNPAIR: &str = "/api/runtime/unpair";
    pub const RENAME: &str = "/api/runtime/rename";
    pub const JWKS: &str = "/api/.well-known/jwks.json";
    pub const HEALTH: &str = "/api/health";
    pub const PAIRING_TOKEN_HEADER: &str = "X-Viewport-Pairing-Token";
}

/// The value of cookie `name` among `Cookie` header values (`a=1; b=2`), as both HTTP
/// servers (the platform's pages and the daemon's web UI) read their own cookie.
pub fn cookie<'a>(header_values: impl IntoIterator<Item = &'a str>, name: &str) -> Option<&'a str> {
    header_values.into_iter().flat_map(|v| v.split(';')).filter_map(|kv| kv.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

#[cfg(test)]
mod cookie_tests {
    #[test]
    fn finds_a_cookie_among_headers_and_pairs() {
        let h = ["a=1; vp_session=abc", "b=2;c=3"];
        assert_eq!(super::cookie(h, "vp_session"), Some("abc"));
        assert_eq!(super::cookie(h, "c"), Some("3"));
        assert_eq!(super::cookie(h, "vp"), None);
        assert_eq!(super::cookie(["novalue; x=y=z"], "x"), Some("y=z"));
    }
}
