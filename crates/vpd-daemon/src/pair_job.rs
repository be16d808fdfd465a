//! A pairing the daemon runs on its own, for the web UI's Pair button and the tray's "Pair
//! with workspace…": one at a time, its progress is part of the UI state, and whoever
//! started it can go away (close the window) without cancelling it. `vpd pair` keeps its
//! own flow, tied to its connection (Ctrl-C cancels).

use crate::api::protocol::{PairEvent, PairParams};
use crate::daemon::State;
use crate::error::{Error, ErrorCode, Result};
use crate::pairing::{self, PairUi};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// What the UI shows of the current (or last) pairing.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PairView {
    /// `starting`, `waiting`, `confirm_replace`, `done`, `failed`, `cancelled`.
    pub state: String,
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
}

impl PairView {
    fn running(&self) -> bool {
        matches!(self.state.as_str(), "starting" | "waiting" | "confirm_replace")
    }
}

pub struct PairJob {
    pub view: PairView,
    cancel: watch::Sender<bool>,
    confirm: Option<mpsc::Sender<bool>>,
    /// When it finished; a finished pairing stays in the UI state for [`SHOWN_AFTER_END`].
    ended_at: Option<std::time::Instant>,
}

/// How long the outcome of a pairing stays on screen.
const SHOWN_AFTER_END: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Starts a pairing unless one is running.
pub fn start(state: &Arc<State>, params: PairParams) -> Result<PairView> {
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let (cf_tx, cf_rx) = mpsc::channel(1);
    {
        let mut job = state.pair_job.lock().unwrap();
        if job.as_ref().is_some_and(|j| j.view.running()) {
            return Err(Error::new(ErrorCode::InvalidArgument, "a pairing is already waiting for approval; finish or cancel it first"));
        }
        *job = Some(PairJob {
            view: PairView { state: "starting".into(), ..Default::default() },
            cancel: cancel_tx,
            confirm: Some(cf_tx),
            ended_at: None,
        });
    }
    state.touch();
    let st = state.clone();
    tokio::spawn(async move {
        let (ev_tx, mut ev_rx) = mpsc::channel::<PairEvent>(8);
        let store = st.credential_store().await;
        let ui = PairUi { events: ev_tx, confirms: cf_rx, cancelled: cancel_rx };
        let flow = pairing::run(&st.home, &store, params, ui);
        tokio::pin!(flow);
        let result = loop {
            tokio::select! {
                Some(ev) = ev_rx.recv() => st.update_pair_view(|v| apply(v, ev)),
                r = &mut flow => break r,
            }
        };
        while let Ok(ev) = ev_rx.try_recv() {
            st.update_pair_view(|v| apply(v, ev));
        }
        match result {
            Ok(p) => {
                st.paired(&p);
                st.update_pair_view(|v| {
                    v.state = "done".into();
                    v.workspace_name = Some(p.workspace_name.clone());
                });
            }
            Err(e) => {
                let cancelled = e.code == ErrorCode::Cancelled;
                tracing::warn!(code = %e.code, error = %e.message, "pairing from the UI ended without a pairing");
                st.update_pair_view(|v| {
                    v.state = if cancelled { "cancelled" } else { "failed" }.into();
                    v.error = Some(e.message.clone());
                });
            }
        }
    });
    Ok(state.pair_view().unwrap_or_default())
}

fn apply(v: &mut PairView, ev: PairEvent) {
    match ev {
        PairEvent::Code { code, url, expires_at, fingerprint, server_url } => {
            v.state = "waiting".into();
            (v.code, v.url, v.expires_at, v.fingerprint, v.server_url) =
                (Some(code), Some(url), Some(expires_at), Some(fingerprint), Some(server_url));
        }
        PairEvent::ConfirmReplace { workspace_name, .. } => {
            v.state = "confirm_replace".into();
            v.workspace_name = Some(workspace_name);
        }
    }
}

/// Cancels the running pairing (the code is cancelled on the platform).
pub fn cancel(state: &State) -> Result<()> {
    let job = state.pair_job.lock().unwrap();
    match job.as_ref() {
        Some(j) if j.view.running() => {
            let _ = j.cancel.send(true);
            Ok(())
        }
        _ => Err(Error::new(ErrorCode::InvalidArgument, "no pairing is running")),
    }
}

/// Answers "replace the existing pairing with this org?".
pub fn confirm(state: &State, replace: bool) -> Result<()> {
    let tx = {
        let mut job = state.pair_job.lock().unwrap();
        match job.as_mut() {
            Some(j) if j.view.state == "confirm_replace" => {
                j.view.state = "starting".into();
                j.confirm.take()
            }
            _ => None,
        }
    };
    match tx {
        Some(tx) => {
            let _ = tx.try_send(replace);
            state.touch();
            Ok(())
        }
        None => Err(Error::new(ErrorCode::InvalidArgument, "no pairing is waiting for that answer")),
    }
}

impl State {
    pub fn pair_view(&self) -> Option<PairView> {
        let job = self.pair_job.lock().unwrap();
        job.as_ref().filter(|j| j.ended_at.is_none_or(|t| t.elapsed() < SHOWN_AFTER_END)).map(|j| j.view.clone())
    }

    fn update_pair_view(&self, f: impl FnOnce(&mut PairView)) {
        if let Some(j) = self.pair_job.lock().unwrap().as_mut() {
            f(&mut j.view);
            if !j.view.running() && j.ended_at.is_none() {
                j.ended_at = Some(std::time::Instant::now());
            }
        }
        self.touch();
    }
}
