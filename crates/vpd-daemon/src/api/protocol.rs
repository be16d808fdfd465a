//! Messages of the local API. A client connects, writes one [`Request`] line and reads
//! [`Reply`] lines until a `result` or an `error`. During pairing the daemon may send
//! `event` lines first, and, after a `confirm_replace` event, reads one [`Confirm`] line.

use crate::error::ErrorCode;
use serde::{Deserialize, Serialize};

/// Longest line either side accepts.
pub const MAX_LINE: usize = 1024 * 1024;

/// The version of this protocol, in every `ping` answer (issue 13 item 4). A change that an
/// older peer cannot read raises it; adding a request or a field does not. A daemon from
/// before the field answers without it: version 1.
pub const PROTOCOL: u32 = 2;

fn protocol_one() -> u32 {
    1
}

/// `Ok` when a daemon answering `pong` can serve this vpd; else what to do, naming which of
/// the two to update or restart.
pub fn check_protocol(pong: &Pong) -> crate::error::Result<()> {
    use crate::error::{Error, ErrorCode};
    match pong.protocol.cmp(&PROTOCOL) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Less => Err(Error::new(
            ErrorCode::VersionMismatch,
            format!(
                "the running daemon (vpd {}, pid {}) is older than this vpd ({}): stop it with `vpd daemon stop` and run the command again, which starts the new one",
                pong.version,
                pong.pid,
                crate::VERSION
            ),
        )),
        std::cmp::Ordering::Greater => Err(Error::new(
            ErrorCode::VersionMismatch,
            format!(
                "the running daemon (vpd {}) is newer than this vpd ({}); use the vpd installed with it (an older copy is first on PATH?)",
                pong.version,
                crate::VERSION
            ),
        )),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
pub enum Request {
    Ping,
    Status,
    Pair(PairParams),
    Unpair(UnpairParams),
    Shutdown,
    /// Retry the relay connection of one org (or all) now.
    Reconnect(ReconnectParams),
    /// Start a session: the binding is resolved now, once.
    SessionStart(SessionStartParams),
    /// Append one frame to a session.
    SessionFrame(SessionFrameParams),
    SessionEnd(SessionEndParams),
    /// Turn this connection into a stream of [`StreamItem`] lines for one session (what
    /// `vpd run` uses); the daemon answers once, after the `end` item or the connection's end.
    SessionStream(SessionRef),
    /// After a planned restart of the daemon: continue a session's stream on this
    /// connection. The daemon answers [`Reattached`] (how many items it has), then reads
    /// [`StreamItem`] lines as for [`Request::SessionStream`].
    SessionReattach(SessionRef),
    Sessions,
    /// A one-time login link of the web UI (`vpd ui`, the tray's "Open Viewport").
    UiLink(UiLinkParams),
    /// Turn this connection into a stream of activity entries as they happen (one JSON
    /// line each): what the tray turns into notifications.
    Events(EventsParams),
    /// The shell hook saw a directory whose hint was not answered in the terminal: the
    /// daemon offers it as a suggestion (tray notification, web UI).
    HintReport(HintReportParams),
    /// Start a pairing the daemon runs on its own (the tray's "Pair with workspace…"); its
    /// progress is [`Request::PairJob`].
    PairJobStart(PairParams),
    PairJob,
    PairJobCancel,
    /// Bind / Not now / Never for a suggestion (the tray's notification actions).
    SuggestionAnswer(SuggestionAnswerParams),
    /// Rename this machine in one org (`vpd rename`, the window's pairing page).
    Rename(RenameParams),
    /// "Resume N directory bindings of …?" answered yes (the tray's notification).
    ResumeBindings(ResumeBindingsParams),
    /// `config.json`'s watched folders changed (the tray's first start): scan them again.
    WatchedChanged,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ResumeBindingsParams {
    pub pairing_id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RenameParams {
    /// The pairing (`--org`): may be left out when one org is paired.
    #[serde(default)]
    pub org: Option<String>,
    pub name: String,
}

/// This machine's new name in one org, as the platform now shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Renamed {
    pub pairing_id: String,
    pub workspace_name: String,
    pub server: String,
    pub machine_id: String,
    pub name: String,
    pub previous: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UiLinkParams {
    /// Where to land, e.g. `/#/directories`.
    #[serde(default)]
    pub next: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EventsParams {
    /// First replay the kept entries with a larger id (what happened before the listener
    /// connected, or while it reconnected).
    #[serde(default)]
    pub since: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HintReportParams {
    pub dir: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SuggestionAnswerParams {
    pub directory: String,
    pub org_id: String,
    /// The kind the user saw (`bind`, `trust`, `pair`): refused if it changed since.
    #[serde(default)]
    pub kind: Option<crate::states::SuggestionKind>,
    pub answer: crate::suggestions::Answer,
}

/// Result of [`Request::UiLink`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UiLink {
    pub url: String,
    pub port: u16,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ReconnectParams {
    #[serde(default)]
    pub org: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionStartParams {
    pub cwd: String,
    pub agent: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionRef {
    pub session_id: String,
}

/// The answer to [`Request::SessionReattach`]: the session's items (frames and its end) this
/// daemon has; the client resends the ones after them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Reattached {
    pub received: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionFrameParams {
    pub session_id: String,
    pub kind: vpd_proto::relay::FrameKind,
    /// Base64 (standard) of the bytes.
    pub data: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionEndParams {
    pub session_id: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// A line of a session stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum StreamItem {
    Frame { kind: vpd_proto::relay::FrameKind, data: String },
    End { end: SessionEndItem },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionEndItem {
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PairParams {
    /// Platform URL; `None` uses the saved default, else the hosted platform.
    #[serde(default)]
    pub server: Option<String>,
    /// Only accept an approval for this org (ULID, slug or name).
    #[serde(default)]
    pub org: Option<String>,
    /// Machine name shown to the approver; defaults to the host name.
    #[serde(default)]
    pub name: Option<String>,
    /// A code from the platform's "Add machine" page.
    #[serde(default)]
    pub code: Option<String>,
    /// Replace an existing pairing with the same org without asking.
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub insecure_http: bool,
    /// PEM of a CA to trust for this server and its relay, besides the system's
    /// (`vpd pair --ca-file`); stored with the pairing.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// The proxy variables of the shell `vpd pair` ran in, recorded for a daemon started
    /// without them (at login).
    #[serde(default)]
    pub proxy: Option<crate::proxy::ProxyEnv>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UnpairParams {
    pub org: String,
    /// Leave the org's directory bindings (records and `local.yaml` files) in place
    /// (`vpd uninstall --purge` when the user keeps the binding files).
    #[serde(default)]
    pub keep_bindings: bool,
    /// Remove the org's directory bindings (`vpd unpair --forget-bindings`). Without either
    /// flag they stay, inert, waiting for the org to be paired again (SPEC A3).
    #[serde(default)]
    pub forget_bindings: bool,
}

impl UnpairParams {
    pub fn after(&self) -> crate::binding::AfterUnpair {
        use crate::binding::AfterUnpair;
        match (self.keep_bindings, self.forget_bindings) {
            (true, _) => AfterUnpair::Leave,
            (false, true) => AfterUnpair::Forget,
            (false, false) => AfterUnpair::Suspend,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    Result { result: serde_json::Value },
    Error { code: ErrorCode, message: String },
    Event { event: PairEvent },
}

/// Progress of a pairing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PairEvent {
    /// The code exists: show it and open the URL.
    Code { code: String, url: String, expires_at: String, fingerprint: String, server_url: String },
    /// Approved for an org this machine is already paired with on the same server: replace
    /// it? Both servers are named (SPEC A1; they are the same — another server's pairing is
    /// never replaced).
    ConfirmReplace {
        workspace_id: String,
        workspace_name: String,
        #[serde(default)]
        old_server: String,
        #[serde(default)]
        new_server: String,
    },
}

/// The client's answer to `confirm_replace`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confirm {
    pub confirm: bool,
}

/// Result of a pairing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Paired {
    #[serde(flatten)]
    pub org: crate::config::PairedOrg,
    pub credential_store: crate::states::StoreKind,
    /// Whether this pairing replaced an older one with the same org.
    pub replaced: bool,
}

impl std::ops::Deref for Paired {
    type Target = crate::config::PairedOrg;
    fn deref(&self) -> &crate::config::PairedOrg {
        &self.org
    }
}

/// Result of an unpair.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Unpaired {
    #[serde(default)]
    pub pairing_id: String,
    #[serde(default)]
    pub server: String,
    pub workspace_id: String,
    pub workspace_name: String,
    /// Directories whose bindings to this org were removed (`--forget-bindings`).
    pub unbound: Vec<String>,
    /// Directories whose bindings stay, inert, waiting for this org on this server (SPEC A3).
    #[serde(default)]
    pub waiting: Vec<String>,
    /// Whether the platform was told (best-effort).
    pub server_notified: bool,
    /// Why it could not be told, if not.
    pub server_error: Option<String>,
    /// Local clean-up steps that failed (the pairing itself is gone).
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Result of a ping.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Pong {
    pub pid: u32,
    pub version: String,
    /// [`PROTOCOL`] of the daemon (1 when absent: a daemon from before it).
    #[serde(default = "protocol_one")]
    pub protocol: u32,
    pub home: String,
    /// The proxies this daemon uses, described (`vpd doctor` shows it).
    #[serde(default)]
    pub proxy: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protocol_mismatch_names_which_side_to_update() {
        let pong = |protocol| Pong { pid: 7, version: "9.9.9".into(), protocol, home: "h".into(), proxy: None };
        assert!(check_protocol(&pong(PROTOCOL)).is_ok());
        let older = check_protocol(&pong(PROTOCOL - 1)).unwrap_err();
        assert!(older.message.contains("older than this vpd") && older.message.contains("vpd daemon stop"), "{}", older.message);
        let newer = check_protocol(&pong(PROTOCOL + 1)).unwrap_err();
        assert!(newer.message.contains("newer than this vpd") && newer.code == crate::error::ErrorCode::VersionMismatch, "{}", newer.message);
        // A daemon from before the field: version 1.
        let old: Pong = serde_json::from_str(r#"{"pid":1,"version":"0.0.9","home":"h"}"#).unwrap();
        assert_eq!(old.protocol, 1);
    }
}
