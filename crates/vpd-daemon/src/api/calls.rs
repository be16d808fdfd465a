//! The typed calls of the local API: each request type names its answer's type ([`Call`]),
//! which the daemon's reply and [`super::client::ask`] are both checked against. Apart from
//! the messages (`protocol.rs`) so that the messages stay below the daemon's components.

use super::protocol::*;
use serde::{Deserialize, Serialize};

/// A request whose answer has one type: the daemon answers it with `Response` and the client
/// reads a `Response` (`client::ask`), so the two sides cannot disagree on the shape. (The
/// streaming requests — `pair`, `events`, `session_stream` — have their own client functions.)
pub trait Call {
    type Response: Serialize + serde::de::DeserializeOwned;
    fn into_request(self) -> Request;
}

/// `{"ok": true}`: a request that only succeeds or fails.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ack {
    pub ok: bool,
}

impl Ack {
    pub const OK: Ack = Ack { ok: true };
}

/// `{"stopping": true}`: the daemon stops after answering.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stopping {
    pub stopping: bool,
}

/// Is a daemon there (and which)?
#[derive(Debug, Clone, Copy)]
pub struct Ping;
/// `vpd status`.
#[derive(Debug, Clone, Copy)]
pub struct GetStatus;
/// Stop the daemon.
#[derive(Debug, Clone, Copy)]
pub struct Shutdown;
/// `vpd sessions`.
#[derive(Debug, Clone, Copy)]
pub struct ListSessions;
/// The pair job's state, if any.
#[derive(Debug, Clone, Copy)]
pub struct GetPairJob;
/// Cancel the running pair job.
#[derive(Debug, Clone, Copy)]
pub struct CancelPairJob;
/// The watched folders changed in `config.json`: scan them again.
#[derive(Debug, Clone, Copy)]
pub struct WatchedChanged;
/// Start a pair job (the tray's "Pair with workspace…").
#[derive(Debug, Clone)]
pub struct StartPairJob(pub PairParams);

macro_rules! calls {
    ($($t:ty => $r:ty, |$p:pat_param| $req:expr;)*) => {$(
        impl Call for $t {
            type Response = $r;
            fn into_request(self) -> Request {
                let $p = self;
                $req
            }
        }
    )*};
}

calls! {
    Ping => Pong, |_| Request::Ping;
    GetStatus => crate::status::StatusReport, |_| Request::Status;
    Shutdown => Stopping, |_| Request::Shutdown;
    ListSessions => Vec<crate::sessions::SessionInfo>, |_| Request::Sessions;
    GetPairJob => Option<crate::pair_job::PairView>, |_| Request::PairJob;
    CancelPairJob => Ack, |_| Request::PairJobCancel;
    StartPairJob => crate::pair_job::PairView, |StartPairJob(p)| Request::PairJobStart(p);
    UnpairParams => Unpaired, |p| Request::Unpair(p);
    RenameParams => Renamed, |p| Request::Rename(p);
    ResumeBindingsParams => Vec<String>, |p| Request::ResumeBindings(p);
    WatchedChanged => Ack, |_| Request::WatchedChanged;
    ReconnectParams => Vec<String>, |p| Request::Reconnect(p);
    SessionStartParams => crate::sessions::SessionInfo, |p| Request::SessionStart(p);
    SessionFrameParams => Ack, |p| Request::SessionFrame(p);
    SessionEndParams => crate::sessions::SessionInfo, |p| Request::SessionEnd(p);
    UiLinkParams => UiLink, |p| Request::UiLink(p);
    HintReportParams => Ack, |p| Request::HintReport(p);
    // What a Bind answers differs (the binding made, the record trusted, or `{"ok": true}`).
    SuggestionAnswerParams => serde_json::Value, |p| Request::SuggestionAnswer(p);
}
