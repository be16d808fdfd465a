//! Every state and kind the daemon reports, defined once as closed enums. Their JSON is the
//! text the documented schemas have always carried (`"reconnecting (2/5)"`, `"cut (revoked)"`,
//! `"confirm_replace"`…); the categories that the tray and the web UI colour by
//! ([`LinkHealth`], [`Health`], a pair job's `running`, a session's `streaming`) are computed
//! here and served with the state, so no client keeps a copy of a state set.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Serializes a type as its `Display` text and parses it back with `FromStr`.
macro_rules! as_text {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(|_| serde::de::Error::custom(format!("unknown {}: {text:?}", stringify!($t))))
            }
        }
    };
}

/// What a pairing's link looks like at a glance: the tray's icon and the UI's colours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkHealth {
    Connected,
    /// Connecting, or retrying within the first attempts.
    Degraded,
    #[default]
    Offline,
}

/// The worst state across pairings (the tray icon, the UI's badge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// No pairing at all.
    Unpaired,
    /// Every pairing connected.
    Connected,
    /// Some connected, or some still trying.
    Degraded,
    /// None connected, none trying.
    Offline,
}

impl Health {
    /// The worst of the pairings' link states.
    pub fn of(links: impl IntoIterator<Item = LinkHealth>) -> Health {
        let (mut total, mut connected, mut trying) = (0, 0, 0);
        for l in links {
            total += 1;
            match l {
                LinkHealth::Connected => connected += 1,
                LinkHealth::Degraded => trying += 1,
                LinkHealth::Offline => {}
            }
        }
        match (total, connected) {
            (0, _) => Health::Unpaired,
            (t, c) if t == c => Health::Connected,
            (_, 0) if trying == 0 => Health::Offline,
            _ => Health::Degraded,
        }
    }
}

/// A relay bridge's connection state (SPEC section 5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum BridgeState {
    #[default]
    Connecting,
    Connected,
    /// Failed `attempt` times of the `of` quick retries.
    Reconnecting {
        attempt: u32,
        of: u32,
    },
    /// Past the quick retries; tries again at `next_try` (local time, as shown).
    Offline {
        next_try: String,
    },
    /// The org revoked this pairing.
    Revoked,
}

impl BridgeState {
    pub fn health(&self) -> LinkHealth {
        match self {
            BridgeState::Connected => LinkHealth::Connected,
            BridgeState::Connecting | BridgeState::Reconnecting { .. } => LinkHealth::Degraded,
            BridgeState::Offline { .. } | BridgeState::Revoked => LinkHealth::Offline,
        }
    }
}

impl fmt::Display for BridgeState {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            BridgeState::Connecting => f.write_str("connecting"),
            BridgeState::Connected => f.write_str("connected"),
            BridgeState::Reconnecting { attempt, of } => write!(f, "reconnecting ({attempt}/{of})"),
            BridgeState::Offline { next_try } => write!(f, "offline (next try {next_try})"),
            BridgeState::Revoked => f.write_str("revoked"),
        }
    }
}

impl FromStr for BridgeState {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "connecting" => BridgeState::Connecting,
            "connected" => BridgeState::Connected,
            "revoked" => BridgeState::Revoked,
            _ => {
                if let Some(n) = s.strip_prefix("reconnecting (").and_then(|r| r.strip_suffix(')')) {
                    let (a, b) = n.split_once('/').ok_or(())?;
                    BridgeState::Reconnecting { attempt: a.parse().map_err(|_| ())?, of: b.parse().map_err(|_| ())? }
                } else if let Some(t) = s.strip_prefix("offline (next try ").and_then(|r| r.strip_suffix(')')) {
                    BridgeState::Offline { next_try: t.to_string() }
                } else {
                    return Err(());
                }
            }
        })
    }
}
as_text!(BridgeState);

/// A pairing's state in `vpd status`: its bridge's, or why it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairingState {
    Link(BridgeState),
    /// Status read from the files alone.
    DaemonNotRunning,
    /// The daemon runs but has no bridge for it (its identity file is missing).
    IdentityMissing,
}

impl PairingState {
    pub fn health(&self) -> LinkHealth {
        match self {
            PairingState::Link(b) => b.health(),
            PairingState::DaemonNotRunning | PairingState::IdentityMissing => LinkHealth::Offline,
        }
    }
}

impl fmt::Display for PairingState {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            PairingState::Link(b) => b.fmt(f),
            PairingState::DaemonNotRunning => f.write_str("daemon not running"),
            PairingState::IdentityMissing => f.write_str("not connecting (identity missing; see vpd doctor)"),
        }
    }
}

impl FromStr for PairingState {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "daemon not running" => Ok(PairingState::DaemonNotRunning),
            "not connecting (identity missing; see vpd doctor)" => Ok(PairingState::IdentityMissing),
            _ => s.parse().map(PairingState::Link),
        }
    }
}
as_text!(PairingState);

/// Why a session stopped streaming for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutReason {
    /// The org revoked the pairing.
    Revoked,
    /// `vpd unpair`.
    Unpaired,
    /// The org was paired again: a session never moves to the new pairing.
    RePaired,
    /// Its pairing's bridge was gone when a message was routed.
    NoPairing,
    /// The relay refused one of its messages even in cut-down form (SPEC A2).
    Refused,
}

impl CutReason {
    fn text(self) -> &'static str {
        match self {
            CutReason::Revoked => "revoked",
            CutReason::Unpaired => "unpaired",
            CutReason::RePaired => "re-paired",
            CutReason::NoPairing => "no pairing",
            CutReason::Refused => "refused by the relay",
        }
    }
}

/// A session's state (SPEC section 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Streaming,
    LocalOnly,
    Cut(CutReason),
    /// The relay did not take it: its machine's or org's stored-bytes quota is used up (SPEC
    /// A8). It runs local-only and is never sent again.
    RefusedQuota,
    Ended,
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            SessionState::Streaming => f.write_str("streaming"),
            SessionState::LocalOnly => f.write_str("local only"),
            SessionState::Cut(r) => write!(f, "cut ({})", r.text()),
            SessionState::RefusedQuota => f.write_str("refused (quota)"),
            SessionState::Ended => f.write_str("ended"),
        }
    }
}

impl FromStr for SessionState {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "streaming" => SessionState::Streaming,
            "local only" => SessionState::LocalOnly,
            "refused (quota)" => SessionState::RefusedQuota,
            "ended" => SessionState::Ended,
            _ => {
                let r = s.strip_prefix("cut (").and_then(|r| r.strip_suffix(')')).ok_or(())?;
                let reason = [CutReason::Revoked, CutReason::Unpaired, CutReason::RePaired, CutReason::NoPairing, CutReason::Refused]
                    .into_iter()
                    .find(|c| c.text() == r)
                    .ok_or(())?;
                SessionState::Cut(reason)
            }
        })
    }
}
as_text!(SessionState);

/// A pairing run by the daemon for the web UI or the tray.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairJobState {
    #[default]
    Starting,
    /// The code is shown; waiting for approval in the browser.
    Waiting,
    /// Approved for an org already paired: replace it?
    ConfirmReplace,
    Done,
    Failed,
    Cancelled,
}

impl PairJobState {
    /// Still running (the UI shows Cancel; another pairing cannot start).
    pub fn running(self) -> bool {
        matches!(self, PairJobState::Starting | PairJobState::Waiting | PairJobState::ConfirmReplace)
    }
}

/// What an activity entry is about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityKind {
    #[default]
    Paired,
    Unpaired,
    Revoked,
    Suggestion,
    /// The relay refused a session's message; what the daemon sent instead.
    Refused,
}

/// What a hint suggestion asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionKind {
    /// A paired org's repository: bind it?
    Bind,
    /// A `local.yaml` made elsewhere: trust it?
    Trust,
    /// An org this machine is not paired with: pair?
    Pair,
}

impl fmt::Display for SuggestionKind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            SuggestionKind::Bind => "bind",
            SuggestionKind::Trust => "trust",
            SuggestionKind::Pair => "pair",
        })
    }
}

/// How bad a `vpd doctor` finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckLevel {
    Ok,
    Warning,
    Error,
}

/// Where issue tokens are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    Keyring,
    File,
    /// Not known (yet): the keyring probe has not finished, or no daemon runs.
    Unknown,
}

/// A bound directory's state in `vpd status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryState {
    /// The file is as written and its org is paired.
    Bound,
    /// The file was edited since (it grants nothing).
    Changed,
    /// The file is gone.
    Missing,
    /// The org is not paired (now).
    OrgNotPaired,
    /// Kept from a removed pairing (SPEC A3): inert until the user resumes it after pairing
    /// that org on that server again.
    Waiting,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + fmt::Debug>(v: T, json: &str) {
        assert_eq!(serde_json::to_string(&v).unwrap(), json);
        assert_eq!(serde_json::from_str::<T>(json).unwrap(), v);
    }

    #[test]
    fn states_keep_the_documented_json() {
        round_trip(BridgeState::Connecting, r#""connecting""#);
        round_trip(BridgeState::Reconnecting { attempt: 2, of: 5 }, r#""reconnecting (2/5)""#);
        round_trip(BridgeState::Offline { next_try: "14:02:07".into() }, r#""offline (next try 14:02:07)""#);
        round_trip(PairingState::Link(BridgeState::Connected), r#""connected""#);
        round_trip(PairingState::IdentityMissing, r#""not connecting (identity missing; see vpd doctor)""#);
        round_trip(PairingState::DaemonNotRunning, r#""daemon not running""#);
        round_trip(SessionState::Cut(CutReason::RePaired), r#""cut (re-paired)""#);
        round_trip(SessionState::Cut(CutReason::NoPairing), r#""cut (no pairing)""#);
        round_trip(SessionState::LocalOnly, r#""local only""#);
        round_trip(PairJobState::ConfirmReplace, r#""confirm_replace""#);
        round_trip(DirectoryState::OrgNotPaired, r#""org_not_paired""#);
        round_trip(DirectoryState::Waiting, r#""waiting""#);
        round_trip(StoreKind::Keyring, r#""keyring""#);
        assert!(serde_json::from_str::<SessionState>(r#""cut (bored)""#).is_err());
        assert!(serde_json::from_str::<BridgeState>(r#""reconnecting (x/5)""#).is_err());
    }

    #[test]
    fn health_is_the_worst_link() {
        use LinkHealth::*;
        assert_eq!(Health::of([]), Health::Unpaired);
        assert_eq!(Health::of([Connected, Connected]), Health::Connected);
        assert_eq!(Health::of([Connected, Offline]), Health::Degraded);
        assert_eq!(Health::of([Degraded, Offline]), Health::Degraded);
        assert_eq!(Health::of([Offline, Offline]), Health::Offline);
        assert!(PairJobState::Waiting.running() && !PairJobState::Done.running());
    }
}
