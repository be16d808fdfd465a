//! The status model (SPEC section 10) shared by `vpd status`, the web UI and the tray. Built
//! from the files, plus what the running daemon knows. `--json` prints it as is; its schema
//! is documented in docs/CLI.md and only grows.

use crate::config;
use crate::home::Home;
use crate::records;
use crate::states::{DirectoryState, Health, LinkHealth, PairingState, StoreKind};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub daemon: DaemonInfo,
    pub pairings: Vec<PairingInfo>,
    pub directories: Vec<DirectoryInfo>,
    /// Revocations and other events, newest last.
    #[serde(default)]
    pub activity: Vec<crate::activity::Activity>,
    /// Files that could not be read, with what to do.
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DaemonInfo {
    pub running: bool,
    pub pid: Option<u32>,
    pub version: String,
    pub machine_name: String,
    pub home: String,
    pub started_at: Option<String>,
    /// `keyring`, `file`, or `unknown` while the daemon is not running or still checking.
    pub credential_store: StoreKind,
    /// Why the keyring is not used, when it is not.
    pub keyring_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PairingInfo {
    #[serde(flatten)]
    pub org: crate::config::PairedOrg,
    /// `paired` (no relay bridge yet), `daemon not running`.
    pub state: PairingState,
    /// What the state means at a glance (the UI colours by it; absent from older daemons).
    #[serde(default)]
    pub health: LinkHealth,
    pub credential_store: StoreKind,
    pub insecure_http: bool,
    pub last_error: Option<String>,
    /// Stable code of `last_error` (see docs/CLI.md).
    #[serde(default)]
    pub last_error_code: Option<String>,
    pub connected_since: Option<String>,
    pub next_retry_at: Option<String>,
    pub sessions_streaming: u32,
    pub frames_sent: u64,
    pub frames_acked: u64,
    pub queued_bytes: u64,
    /// Frames dropped for overflow (each hole is a visible `gap` frame).
    #[serde(default)]
    pub frames_dropped: u64,
    /// The relay is pacing this machine (over its write budget, SPEC A8).
    #[serde(default)]
    pub throttled: bool,
    /// Send → ack time of recent frames, milliseconds.
    #[serde(default)]
    pub ack_latency_p50_ms: Option<f64>,
    #[serde(default)]
    pub ack_latency_p99_ms: Option<f64>,
}

impl std::ops::Deref for PairingInfo {
    type Target = crate::config::PairedOrg;
    fn deref(&self) -> &crate::config::PairedOrg {
        &self.org
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryInfo {
    pub directory: String,
    /// `~/work/api` form.
    pub display: String,
    pub org_id: String,
    pub org_name: Option<String>,
    /// The pairing it streams to, and its server (absent while that pairing does not exist).
    #[serde(default)]
    pub pairing_id: Option<String>,
    #[serde(default)]
    pub server: Option<String>,
    pub recursive: bool,
    /// `bound`; `changed` (the file was edited since: it grants nothing until trusted again);
    /// `missing` (the file is gone); `org_not_paired`; `waiting` (kept from a removed pairing,
    /// SPEC A3: inert until resumed).
    pub state: DirectoryState,
}

/// The worst state across pairings, for the tray icon and the UI's badge: `unpaired` (no
/// pairing), `connected` (all), `offline` (none connected, none trying), else `degraded`.
pub fn health(report: &StatusReport) -> Health {
    Health::of(report.pairings.iter().map(|p| p.state.health()))
}

/// What the running daemon adds to the files.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub pid: u32,
    pub started_at: String,
    pub credential_store: Option<crate::secrets::Store>,
    pub bridges: std::collections::HashMap<String, crate::bridge::BridgeStatus>,
    pub sessions_streaming: std::collections::HashMap<String, u32>,
    pub activity: Vec<crate::activity::Activity>,
}

/// Builds the report from the home's files and, if given, the running daemon.
pub fn collect(home: &Home, runtime: Option<&Runtime>) -> StatusReport {
    let mut problems = Vec::new();
    let config = config::read(home).unwrap_or_else(|e| {
        problems.push(e.message);
        config::Config::default()
    });
    let dirs = records::load_directories(home).unwrap_or_else(|e| {
        problems.push(e.message);
        records::Directories::default()
    });
    let pairings = config
        .pairings
        .iter()
        .map(|p| {
            let bridge = runtime.and_then(|r| r.bridges.get(&p.pairing_id)).cloned();
            let state = match (runtime, &bridge) {
                (None, _) => PairingState::DaemonNotRunning,
                (Some(_), Some(b)) => PairingState::Link(b.state.clone()),
                (Some(_), None) => PairingState::IdentityMissing,
            };
            let b = bridge.unwrap_or_default();
            PairingInfo {
                org: p.org.clone(),
                health: state.health(),
                state,
                credential_store: p.credential.store_kind(),
                insecure_http: p.insecure_http,
                last_error: b.last_error,
                last_error_code: b.last_error_code,
                connected_since: b.connected_since,
                next_retry_at: b.next_retry_at,
                sessions_streaming: runtime.and_then(|r| r.sessions_streaming.get(&p.pairing_id).copied()).unwrap_or(0),
                frames_sent: b.frames_sent,
                frames_acked: b.frames_acked,
                queued_bytes: b.queued_bytes,
                frames_dropped: b.frames_dropped,
                throttled: b.throttled,
                ack_latency_p50_ms: b.ack_latency_p50_ms,
                ack_latency_p99_ms: b.ack_latency_p99_ms,
            }
        })
        .collect();
    let user_home = crate::home::user_home();
    let directories = dirs
        .bindings
        .iter()
        .map(|b| {
            // The pairing the record was made for (SPEC A1). A record naming none never
            // streams (vpd_core::resolve), so it shows as waiting for a pairing.
            let pairing = b.pairing_id.as_deref().and_then(|id| config.by_id(id));
            let state = match crate::walk::read_local(&b.directory) {
                Ok(Some(bytes)) if vpd_core::file_hash(&bytes) == b.file_hash => {
                    if b.suspended {
                        DirectoryState::Waiting
                    } else if pairing.is_some() {
                        DirectoryState::Bound
                    } else {
                        DirectoryState::OrgNotPaired
                    }
                }
                Ok(Some(_)) | Err(_) => DirectoryState::Changed,
                Ok(None) => DirectoryState::Missing,
            };
            DirectoryInfo {
                directory: b.directory.display().to_string(),
                display: vpd_core::resolve::display_dir(&b.directory, user_home.as_deref()),
                org_id: b.org_id.clone(),
                org_name: pairing.map(|p| p.workspace_name.clone()).or_else(|| b.org_name.clone()),
                pairing_id: pairing.map(|p| p.pairing_id.clone()),
                server: pairing.map(|p| p.server.clone()).or_else(|| b.server.clone()),
                recursive: b.recursive,
                state,
            }
        })
        .collect();
    let (credential_store, keyring_error) = match runtime.and_then(|r| r.credential_store.as_ref()) {
        Some(s) => (s.kind(), s.fallback_reason().map(String::from)),
        None => (StoreKind::Unknown, None),
    };
    StatusReport {
        daemon: DaemonInfo {
            running: runtime.is_some(),
            pid: runtime.map(|r| r.pid),
            version: crate::VERSION.into(),
            machine_name: crate::home::machine_name(),
            home: home.root().display().to_string(),
            started_at: runtime.map(|r| r.started_at.clone()),
            credential_store,
            keyring_error,
        },
        pairings,
        directories,
        activity: runtime.map(|r| r.activity.clone()).unwrap_or_default(),
        problems,
    }
}
