//! Sessions (SPEC section 9): one agent run on this machine. The binding is resolved once,
//! at start, and the session stays pinned to that pairing for its whole life; later edits
//! of `local.yaml`, rebinding or new pairings change nothing for it. Revoking or unpairing
//! the pinned org cuts it: remote streaming stops, unsent frames are dropped (never sent to
//! any other org), the local process goes on.

use crate::binding::Resolved;
use crate::error::{Error, ErrorCode, Result};
use crate::states::{CutReason, SessionState};
use serde::{Deserialize, Serialize};
use std::path::Path;
use vpd_core::Resolution;
use vpd_proto::limits;
use vpd_proto::relay::{DaemonMsg, FrameKind};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub session_id: String,
    pub name: Option<String>,
    pub agent: String,
    pub cwd: String,
    /// The org it streams to, fixed at start.
    pub org_id: Option<String>,
    /// The pairing (server and org) it streams to, fixed at start.
    #[serde(default)]
    pub pairing_id: Option<String>,
    pub org_name: Option<String>,
    /// What the relay sees: the bound directory's name plus the relative path.
    pub directory: String,
    /// `streaming`, `local only`, `cut (revoked)`, `cut (unpaired)`, `cut (re-paired)`,
    /// `cut (no pairing)`, `ended`.
    pub state: SessionState,
    /// Whether it streams now, and whether it was cut (the UI colours by these).
    #[serde(default)]
    pub streaming: bool,
    #[serde(default)]
    pub cut: bool,
    /// Why it runs local-only, if it does.
    pub local_reason: Option<String>,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub exit_code: Option<i32>,
    pub frames: u64,
}

impl SessionInfo {
    /// Moves to `state`, keeping `streaming` and `cut` in step.
    fn set_state(&mut self, state: SessionState) {
        self.state = state;
        self.streaming = state == SessionState::Streaming;
        self.cut = matches!(state, SessionState::Cut(_));
    }
}

pub struct Session {
    pub info: SessionInfo,
    next_seq: u64,
    /// Frames and the end taken for this session: a client that reattaches after a planned
    /// restart resends what comes after them.
    pub received: u64,
    /// The exact pairing it is pinned to (a re-pairing of the same org is another one).
    pub runtime_target_id: Option<String>,
    /// Held while a message of this session is numbered and handed to the bridge, so
    /// concurrent requests for one session cannot reorder its seqs.
    pub order: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Session {
    pub fn streaming(&self) -> bool {
        self.info.state == SessionState::Streaming
    }
}

/// Creates the session from its directory resolved once (`r`). Returns it and, when it
/// streams, the `session_start` message for its pairing's bridge.
pub fn start(r: Resolved, agent: &str, name: Option<String>) -> (Session, Option<DaemonMsg>) {
    let id = ulid::Ulid::new().to_string();
    let started_at = jiff::Timestamp::now().to_string();
    // SPEC A2/A11: cleaned and cut in bytes as the relay counts them, so it never refuses.
    let agent = limits::clean(agent, limits::AGENT);
    let pinned = r.pinned_pairing();
    let (org_id, org_name, directory, state, local_reason) = match (&r.resolution, pinned) {
        (Resolution::Pinned { org_id, binding_dir, .. }, Some(p)) => {
            (Some(org_id.clone()), Some(p.workspace_name.clone()), relay_directory(binding_dir, &r.dir), SessionState::Streaming, None)
        }
        (Resolution::Pinned { org_id, .. }, None) => {
            // Decided on a config that no longer names the pairing: nothing streams.
            let reason = vpd_core::LocalReason::NotPaired { org_id: org_id.clone() };
            (None, None, String::new(), SessionState::LocalOnly, Some(reason.code().to_string()))
        }
        (Resolution::LocalOnly { reason, .. }, _) => (None, None, String::new(), SessionState::LocalOnly, Some(reason.code().to_string())),
    };
    let start = org_id.as_ref().map(|_| DaemonMsg::SessionStart {
        session_id: id.clone(),
        agent: agent.clone(),
        directory: directory.clone(),
        started_at: started_at.clone(),
    });
    let info = SessionInfo {
        session_id: id,
        name,
        agent,
        cwd: r.dir.display().to_string(),
        org_id,
        pairing_id: pinned.filter(|_| state == SessionState::Streaming).map(|p| p.pairing_id.clone()),
        org_name,
        directory,
        streaming: state == SessionState::Streaming,
        cut: false,
        state,
        local_reason,
        started_at,
        ended_at: None,
        exit_code: None,
        frames: 0,
    };
    let runtime_target_id = info.pairing_id.as_ref().and(pinned).map(|p| p.runtime_target_id.clone());
    (Session { info, next_seq: 1, received: 0, runtime_target_id, order: Default::default() }, start)
}

/// `api/src` for a session in `~/work/api/src` bound at `~/work/api`: never a full path.
/// Cleaned and cut as the relay's rules say (a directory name may hold any byte but `/`).
pub fn relay_directory(binding_dir: &Path, cwd: &Path) -> String {
    let name = binding_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = match cwd.strip_prefix(binding_dir) {
        Ok(rest) if !rest.as_os_str().is_empty() && !name.is_empty() => format!("{name}/{}", rest.display()),
        Ok(rest) if !rest.as_os_str().is_empty() => rest.display().to_string(),
        _ => name,
    };
    limits::clean(&dir, limits::DIRECTORY)
}

/// A running session as a planned restart keeps it (`spool.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Kept {
    pub info: SessionInfo,
    pub next_seq: u64,
    pub received: u64,
    pub runtime_target_id: Option<String>,
}

impl Session {
    /// What a planned restart keeps of it.
    pub fn keep(&self) -> Kept {
        Kept { info: self.info.clone(), next_seq: self.next_seq, received: self.received, runtime_target_id: self.runtime_target_id.clone() }
    }

    /// The session again, after a planned restart.
    pub fn from_kept(k: Kept) -> Session {
        Session { info: k.info, next_seq: k.next_seq, received: k.received, runtime_target_id: k.runtime_target_id, order: Default::default() }
    }

    /// The next frame of this session, if it streams.
    pub fn frame(&mut self, kind: FrameKind, data: String) -> Option<DaemonMsg> {
        self.info.frames += 1;
        if !self.streaming() {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let ts = jiff::Timestamp::now().round(jiff::Unit::Millisecond).unwrap_or_else(|_| jiff::Timestamp::now()).to_string();
        Some(DaemonMsg::Frame { session_id: self.info.session_id.clone(), seq, ts, kind, data })
    }

    /// Ends the session; the `session_end` message if it streams.
    pub fn end(&mut self, exit_code: Option<i32>, reason: &str) -> Option<DaemonMsg> {
        self.info.ended_at = Some(crate::now_rfc3339());
        self.info.exit_code = exit_code;
        let streaming = self.streaming();
        if matches!(self.info.state, SessionState::Streaming | SessionState::LocalOnly) {
            self.info.set_state(SessionState::Ended);
        }
        if !streaming {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Some(DaemonMsg::SessionEnd { session_id: self.info.session_id.clone(), seq, reason: limits::clean(reason, limits::REASON), exit_code })
    }

    /// Stops remote streaming for good (revoked or unpaired org).
    /// A session cut because its bridge was already gone (`no pairing`) learns the reason
    /// when it arrives (the revocation or unpair that ended the bridge).
    /// The relay refused this new session (quota): local-only from now on.
    pub fn refuse(&mut self) {
        if self.streaming() {
            self.info.set_state(SessionState::RefusedQuota);
        }
    }

    pub fn cut(&mut self, why: CutReason) {
        let provisional = self.info.state == SessionState::Cut(CutReason::NoPairing) && why != CutReason::NoPairing;
        if self.streaming() || provisional {
            self.info.set_state(SessionState::Cut(why));
        }
    }
}

/// Ended sessions kept for `vpd sessions` and the UI (the oldest go first).
const ENDED_KEPT: usize = 1000;

/// The sessions component: running and recently ended sessions by id. It owns the map and
/// its lock; the [`crate::backend::Backend`] numbers and routes their messages.
#[derive(Default)]
pub struct Sessions {
    map: std::sync::Mutex<std::collections::HashMap<String, Session>>,
}

impl Sessions {
    /// Adds a new session (and forgets the oldest ended ones beyond [`ENDED_KEPT`]).
    pub fn insert(&self, session: Session) {
        let mut all = self.map.lock().unwrap();
        let mut ended: Vec<(String, String)> = all.values().filter_map(|s| s.info.ended_at.clone().map(|e| (e, s.info.session_id.clone()))).collect();
        if ended.len() > ENDED_KEPT {
            ended.sort();
            for (_, id) in &ended[..ended.len() - ENDED_KEPT] {
                all.remove(id);
            }
        }
        all.insert(session.info.session_id.clone(), session);
    }

    /// Every running session, as a planned restart keeps them.
    pub fn keep_running(&self) -> Vec<Kept> {
        self.map.lock().unwrap().values().filter(|s| s.info.ended_at.is_none()).map(Session::keep).collect()
    }

    /// The ids of the running sessions.
    pub fn running(&self) -> Vec<String> {
        self.map.lock().unwrap().values().filter(|s| s.info.ended_at.is_none()).map(|s| s.info.session_id.clone()).collect()
    }

    /// Every session, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut list: Vec<SessionInfo> = self.map.lock().unwrap().values().map(|s| s.info.clone()).collect();
        list.sort_by(|a, b| a.started_at.cmp(&b.started_at));
        list
    }

    pub fn info(&self, id: &str) -> Option<SessionInfo> {
        self.map.lock().unwrap().get(id).map(|s| s.info.clone())
    }

    /// How many sessions stream to each pairing.
    pub fn streaming_by_pairing(&self) -> std::collections::HashMap<String, u32> {
        let mut out = std::collections::HashMap::new();
        for s in self.map.lock().unwrap().values() {
            if let (true, Some(org)) = (s.streaming(), &s.info.pairing_id) {
                *out.entry(org.clone()).or_default() += 1;
            }
        }
        out
    }

    /// The lock that orders one session's messages.
    pub fn order(&self, id: &str) -> Option<std::sync::Arc<tokio::sync::Mutex<()>>> {
        self.map.lock().unwrap().get(id).map(|s| s.order.clone())
    }

    /// Runs `f` on session `id`.
    pub fn with<T>(&self, id: &str, f: impl FnOnce(&mut Session) -> Result<T>) -> Result<T> {
        let mut all = self.map.lock().unwrap();
        let s = all.get_mut(id).ok_or_else(|| Error::new(ErrorCode::InvalidArgument, format!("no session {id}")))?;
        f(s)
    }

    /// Cuts one session: remote streaming stops for good.
    pub fn cut(&self, id: &str, why: CutReason) {
        if let Some(s) = self.map.lock().unwrap().get_mut(id) {
            s.cut(why);
        }
    }

    /// See [`Session::refuse`].
    pub fn refuse(&self, id: &str) {
        if let Some(s) = self.map.lock().unwrap().get_mut(id) {
            s.refuse();
        }
    }

    /// Cuts every session pinned to the pairing `pairing_id`.
    pub fn cut_pairing(&self, pairing_id: &str, why: CutReason) {
        for s in self.map.lock().unwrap().values_mut() {
            if s.info.pairing_id.as_deref() == Some(pairing_id) {
                s.cut(why);
            }
        }
    }

    /// Cuts every session of `pairing_id` pinned to its runtime target `runtime_target_id`
    /// (a re-pairing replaced it). Both must match: a runtime target id is the server's
    /// choice, and another server could repeat it.
    pub fn cut_runtime_target(&self, pairing_id: &str, runtime_target_id: &str, why: CutReason) {
        for s in self.map.lock().unwrap().values_mut() {
            if s.info.pairing_id.as_deref() == Some(pairing_id) && s.runtime_target_id.as_deref() == Some(runtime_target_id) {
                s.cut(why);
            }
        }
    }
}

/// Checks a session id from a client before it is used.
pub fn check_id(id: &str) -> Result<()> {
    if vpd_proto::is_ulid(id) {
        Ok(())
    } else {
        Err(Error::new(ErrorCode::InvalidArgument, format!("{id:?} is not a session id")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn relay_directory_never_has_the_full_path() {
        assert_eq!(relay_directory(Path::new("/home/u/work/api"), Path::new("/home/u/work/api/src/x")), "api/src/x");
        assert_eq!(relay_directory(Path::new("/home/u/work/api"), Path::new("/home/u/work/api")), "api");
        assert_eq!(relay_directory(Path::new("/"), Path::new("/srv")), "srv");
        assert_eq!(relay_directory(Path::new("/w/re\x1b[2Jpo"), Path::new("/w/re\x1b[2Jpo/a\nb")), "re[2Jpo/ab");
    }
}
