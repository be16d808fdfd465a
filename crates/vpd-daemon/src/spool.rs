//! `spool.json` (0600): what a planned stop keeps for the next daemon (SPEC A10, issue 13
//! item 4). Every running session (its pinned pairing, its next seq, how many of its items
//! were taken) and, per pairing, the messages the relay had not acked. The next daemon takes
//! it once at start: sessions come back, a `vpd run` that was streaming reattaches and resends
//! what came after `received`, and the kept messages go out first from the relay's resume
//! point, so nothing is lost or stored twice.

use crate::error::Result;
use crate::home::Home;
use crate::sessions::Kept;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use vpd_proto::relay::DaemonMsg;

pub const FILE: &str = "spool.json";
const VERSION: u32 = 1;
/// Bounded like the outboxes it holds (16 MiB each, a few pairings).
const MAX: u64 = 256 * 1024 * 1024;

#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Spool {
    pub version: u32,
    pub sessions: Vec<Kept>,
    /// By pairing id, oldest first.
    pub unacked: BTreeMap<String, Vec<DaemonMsg>>,
}

impl Spool {
    pub fn new(sessions: Vec<Kept>, unacked: BTreeMap<String, Vec<DaemonMsg>>) -> Spool {
        Spool { version: VERSION, sessions, unacked }
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.unacked.is_empty()
    }
}

/// Writes the spool (atomically, 0600).
pub fn save(home: &Home, spool: &Spool) -> Result<()> {
    let bytes = serde_json::to_vec(spool).map_err(|e| crate::Error::new(crate::ErrorCode::Internal, e.to_string()))?;
    crate::store::write_atomic(&home.root().join(FILE), &bytes)
}

/// Takes the spool a previous daemon left, if any: read, then removed. One that cannot be
/// read is moved aside (`spool.json.unreadable`) and said in the log, never silently lost.
pub fn take(home: &Home) -> Option<Spool> {
    let path = home.root().join(FILE);
    let read = crate::store::read_bounded(&path, MAX).and_then(|b| match b {
        Some(b) => crate::store::parse_versioned::<Spool>(&path, &b, VERSION).map(Some),
        None => Ok(None),
    });
    match read {
        Ok(Some(s)) => {
            let _ = std::fs::remove_file(&path);
            Some(s)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "the spool of the previous daemon cannot be read; kept as spool.json.unreadable");
            let _ = std::fs::rename(&path, home.root().join("spool.json.unreadable"));
            None
        }
    }
}
