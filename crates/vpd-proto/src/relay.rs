//! SPEC sections 5 and 9: the relay WebSocket between a pairing's bridge and its org's relay.
//!
//! Connect: `GET {relayEndpoint}?role=workspace-daemon&workspaceId=…&runtimeTargetId=…` with
//! `Authorization: Bearer <relay token>`. The relay speaks first with a [`RelayMsg::Challenge`];
//! the daemon answers [`DaemonMsg::Proof`] (Ed25519 over [`proof_message`]); the relay answers
//! [`RelayMsg::Ready`] with the last stored `seq` of each session it knows. Then the daemon
//! sends session messages and the relay acks each one after storing it.
//!
//! Every message is one JSON text frame. Bytes (terminal output) travel base64-encoded.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const ROLE: &str = "workspace-daemon";
/// Largest WebSocket message either side accepts.
pub const MAX_MESSAGE: usize = 1024 * 1024;
/// The relay closes a connection that sends no proof within this many seconds.
pub const PROOF_TIMEOUT_SECS: u64 = 10;

/// What the daemon signs to prove it holds the pairing's key. Binding the org, the runtime
/// target and the relay endpoint makes a proof useless anywhere else.
pub fn proof_message(workspace_id: &str, runtime_target_id: &str, relay_endpoint: &str, nonce: &str) -> String {
    format!("viewport-relay-auth-v1\n{workspace_id}\n{runtime_target_id}\n{relay_endpoint}\n{nonce}")
}

/// Close codes (SPEC section 5).
pub mod close {
    /// Reason `expired`, `invalid` or `revoked`.
    pub const INVALID_TOKEN: u16 = 4401;
    pub const WORKSPACE_NOT_FOUND: u16 = 4403;
    pub const MALFORMED: u16 = 4400;
    pub const NO_PROOF: u16 = 4408;
    pub const REPLACED: u16 = 4409;
    pub const GOING_AWAY: u16 = 1001;
    pub const TOO_LARGE: u16 = 1009;
    pub const REASON_EXPIRED: &str = "expired";
    pub const REASON_INVALID: &str = "invalid";
    pub const REASON_REVOKED: &str = "revoked";
}

/// Relay → daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RelayMsg {
    /// 32 random bytes, base64url.
    Challenge { nonce: String },
    /// Proof accepted; for each session the relay has, the last `seq` it stored
    /// (`session_start` counts as seq 0).
    Ready { resume: BTreeMap<String, u64> },
    /// Stored: everything of `session_id` up to `seq` is safe.
    Ack {
        #[serde(rename = "sessionId")]
        session_id: String,
        seq: u64,
    },
    /// Message `seq` of `session_id` breaks a rule of [`crate::limits`] and was not stored
    /// (SPEC amendments A2 and A11). The relay takes nothing more of that session until a
    /// message with this seq comes again; the daemon sends a cut-down form of it or a gap,
    /// never the same message. The connection stays open: other sessions go on.
    Refused {
        #[serde(rename = "sessionId")]
        session_id: String,
        seq: u64,
        reason: String,
    },
    /// The connection is over its write budget (SPEC A8): acks are paced. Sent at least every
    /// [`THROTTLE_EVERY_SECS`] while it lasts, so the daemon keeps the connection; the daemon
    /// holds new messages for `retry_after_ms` (they wait in its buffer, which turns the
    /// oldest into gap frames when full) and never blocks the session that makes them.
    Throttle {
        #[serde(rename = "retryAfterMs")]
        retry_after_ms: u64,
    },
    /// The relay does not take this new session (SPEC A8; `error` is `quota_exceeded` when
    /// the machine's or the org's stored-bytes quota is used up). The daemon runs it
    /// local-only and never sends it again; other sessions go on.
    SessionRefused {
        #[serde(rename = "sessionId")]
        session_id: String,
        error: String,
    },
}

/// The `features` query parameter a daemon sends when it understands `throttle` and
/// `session_refused` (a daemon from before SPEC A8 does not, and fails on an unknown message:
/// the relay then paces it with acks alone and does not apply stored quotas to it).
pub const FEATURES: &str = "quota";

/// While throttling, the relay says so (a `throttle` or an ack) at least this often.
pub const THROTTLE_EVERY_SECS: u64 = 5;
/// `session_refused` `error` for a used-up stored-bytes quota.
pub const QUOTA_EXCEEDED: &str = "quota_exceeded";

/// Daemon → relay.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DaemonMsg {
    /// Ed25519 signature over [`proof_message`], base64url.
    Proof { signature: String },
    /// A session begins (acked as seq 0).
    SessionStart {
        #[serde(rename = "sessionId")]
        session_id: String,
        agent: String,
        /// The bound directory's name plus the relative path: never a full home path.
        directory: String,
        #[serde(rename = "startedAt")]
        started_at: String,
    },
    Frame {
        #[serde(rename = "sessionId")]
        session_id: String,
        seq: u64,
        /// RFC 3339 with milliseconds.
        ts: String,
        kind: FrameKind,
        /// Base64 (standard) of the bytes; for `resize` the bytes of `COLSxROWS`; for `gap`
        /// the bytes of `FROM-TO`, the seqs that were dropped.
        data: String,
    },
    SessionEnd {
        #[serde(rename = "sessionId")]
        session_id: String,
        seq: u64,
        reason: String,
        #[serde(rename = "exitCode")]
        exit_code: Option<i32>,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FrameKind {
    Output,
    Input,
    Resize,
    Event,
    /// Frames `from..=to` were dropped because the unacked buffer overflowed. A gap frame
    /// carries `seq = to` and `data` = base64 of `FROM-TO`; the relay accepts it when
    /// `from == last stored seq + 1` and continues from `to`.
    Gap,
}

impl DaemonMsg {
    /// The session and seq this message is acked under, if any.
    pub fn position(&self) -> Option<(&str, u64)> {
        match self {
            DaemonMsg::Proof { .. } => None,
            DaemonMsg::SessionStart { session_id, .. } => Some((session_id, 0)),
            DaemonMsg::Frame { session_id, seq, .. } | DaemonMsg::SessionEnd { session_id, seq, .. } => Some((session_id, *seq)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_messages_are_as_spec_a8_words_them() {
        let m: RelayMsg = serde_json::from_str(r#"{"type":"throttle","retryAfterMs":1500}"#).unwrap();
        assert_eq!(m, RelayMsg::Throttle { retry_after_ms: 1500 });
        let m: RelayMsg = serde_json::from_str(r#"{"type":"session_refused","sessionId":"S","error":"quota_exceeded"}"#).unwrap();
        assert_eq!(m, RelayMsg::SessionRefused { session_id: "S".into(), error: QUOTA_EXCEEDED.into() });
    }

    #[test]
    fn messages_are_tagged_json() {
        let m: RelayMsg = serde_json::from_str(r#"{"type":"ack","sessionId":"S","seq":3}"#).unwrap();
        assert_eq!(m, RelayMsg::Ack { session_id: "S".into(), seq: 3 });
        let f = DaemonMsg::Frame { session_id: "S".into(), seq: 1, ts: "t".into(), kind: FrameKind::Output, data: "aGk=".into() };
        let j = serde_json::to_string(&f).unwrap();
        assert!(j.contains(r#""type":"frame""#) && j.contains(r#""sessionId":"S""#) && j.contains(r#""kind":"output""#));
        assert_eq!(f.position(), Some(("S", 1)));
        assert!(proof_message("W", "R", "wss://r/ws", "N").starts_with("viewport-relay-auth-v1\nW\nR\nwss://r/ws\nN"));
    }
}
