//! A pairing the daemon runs on its own, for the web UI's Pair button and the tray's "Pair
//! with workspace…": one at a time, its progress is part of the UI state, and whoever
//! started it can go away (close the window) without cancelling it. `vpd pair` keeps its
//! own flow, tied to its connection (Ctrl-C cancels).

use crate::api::protocol::PairEvent;
use crate::error::{Error, ErrorCode, Result};
use crate::states::PairJobState;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use tokio::sync::{mpsc, watch};

/// What the UI shows of the current (or last) pairing.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PairView {
    /// `starting`, `waiting`, `confirm_replace`, `done`, `failed`, `cancelled`.
    pub state: PairJobState,
    /// Whether it still runs (`starting`, `waiting` or `confirm_replace`): the UI and the tray
    /// read this instead of keeping their own copy of that set.
    #[serde(default)]
    pub running: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The pairing made (`done`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairing_id: Option<String>,
    /// Directory bindings of that org on that server that wait for a yes to stream again
    /// (SPEC A3): the UI and the tray ask "Resume N directory bindings of …?".
    #[serde(default, skip_serializing_if = "is_zero")]
    pub waiting_bindings: usize,
    /// How many were resumed after that yes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_bindings: Option<usize>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl PairView {
    /// Moves to `state` (and keeps `running` in step).
    pub fn set_state(&mut self, state: PairJobState) {
        self.state = state;
        self.running = state.running();
    }
    fn running(&self) -> bool {
        self.state.running()
    }
}

struct PairJob {
    view: PairView,
    cancel: watch::Sender<bool>,
    confirm: Option<mpsc::Sender<bool>>,
    /// When it finished; a finished pairing stays in the UI state for [`SHOWN_AFTER_END`].
    ended_at: Option<std::time::Instant>,
}

/// How long the outcome of a pairing stays on screen.
const SHOWN_AFTER_END: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// The pair-job component: the current (or last) pairing started from the UI or the tray.
#[derive(Default)]
pub struct PairJobs {
    job: Mutex<Option<PairJob>>,
}

impl PairJobs {
    /// Records a new job, unless one is running; returns what it waits on: the cancel flag
    /// and the answer to "replace?".
    pub fn begin(&self) -> Result<(watch::Receiver<bool>, mpsc::Receiver<bool>)> {
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let (cf_tx, cf_rx) = mpsc::channel(1);
        let mut job = self.job.lock().unwrap();
        if job.as_ref().is_some_and(|j| j.view.running()) {
            return Err(Error::new(ErrorCode::Busy, "a pairing is already waiting for approval; finish or cancel it first"));
        }
        *job = Some(PairJob {
            view: PairView { state: PairJobState::Starting, running: true, ..Default::default() },
            cancel: cancel_tx,
            confirm: Some(cf_tx),
            ended_at: None,
        });
        Ok((cancel_rx, cf_rx))
    }

    /// What the UI shows: the running job, or the last one for a while after it ended.
    pub fn view(&self) -> Option<PairView> {
        let job = self.job.lock().unwrap();
        job.as_ref().filter(|j| j.ended_at.is_none_or(|t| t.elapsed() < SHOWN_AFTER_END)).map(|j| j.view.clone())
    }

    pub fn update(&self, f: impl FnOnce(&mut PairView)) {
        if let Some(j) = self.job.lock().unwrap().as_mut() {
            f(&mut j.view);
            if !j.view.running() && j.ended_at.is_none() {
                j.ended_at = Some(std::time::Instant::now());
            }
        }
    }

    /// A progress event of the running job.
    pub fn apply(&self, ev: PairEvent) {
        self.update(|v| apply(v, ev));
    }

    /// Cancels the running pairing (the code is cancelled on the platform).
    pub fn cancel(&self) -> Result<()> {
        let job = self.job.lock().unwrap();
        match job.as_ref() {
            Some(j) if j.view.running() => {
                let _ = j.cancel.send(true);
                Ok(())
            }
            _ => Err(Error::new(ErrorCode::Busy, "no pairing is running")),
        }
    }

    /// Answers "replace the existing pairing with this org?".
    pub fn confirm(&self, replace: bool) -> Result<()> {
        let tx = {
            let mut job = self.job.lock().unwrap();
            match job.as_mut() {
                Some(j) if j.view.state == PairJobState::ConfirmReplace => {
                    j.view.set_state(PairJobState::Starting);
                    j.confirm.take()
                }
                _ => None,
            }
        };
        match tx {
            Some(tx) => {
                let _ = tx.try_send(replace);
                Ok(())
            }
            None => Err(Error::new(ErrorCode::Busy, "no pairing is waiting for that answer")),
        }
    }
}

fn apply(v: &mut PairView, ev: PairEvent) {
    match ev {
        PairEvent::Code { code, url, expires_at, fingerprint, server_url } => {
            v.set_state(PairJobState::Waiting);
            (v.code, v.url, v.expires_at, v.fingerprint, v.server_url) =
                (Some(code), Some(url), Some(expires_at), Some(fingerprint), Some(server_url));
        }
        PairEvent::ConfirmReplace { workspace_name, .. } => {
            v.set_state(PairJobState::ConfirmReplace);
            v.workspace_name = Some(workspace_name);
        }
    }
}
