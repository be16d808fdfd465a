//! The relay bridges component: one running [`Bridge`] per pairing, by pairing id. It owns
//! the map and its lock; the [`crate::backend::Backend`] starts, replaces, stops and routes
//! through it.

use crate::bridge::{Bridge, BridgeStatus, Command, Control, Event};
use crate::config::Pairing;
use crate::identity::Identity;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::mpsc;

pub struct Bridges {
    map: Mutex<HashMap<String, Bridge>>,
    /// Every bridge reports here: refusals, and when it ends for good.
    events: mpsc::Sender<Event>,
}

impl Bridges {
    pub fn new(events: mpsc::Sender<Event>) -> Self {
        Bridges { map: Mutex::default(), events }
    }

    /// Starts the bridge of `pairing`, replacing a running one of the same pairing (org and server). Returns the
    /// runtime target of the replaced bridge when it served another pairing (whose sessions
    /// must be cut: they never move to the new one).
    pub fn start(&self, pairing: Pairing, identity: Identity, queued: Vec<vpd_proto::relay::DaemonMsg>) -> Option<String> {
        let key = pairing.pairing_id.clone();
        let b = Bridge::spawn(pairing, identity, self.events.clone(), queued);
        let new_rt = b.runtime_target_id.clone();
        let old = self.map.lock().unwrap().insert(key, b)?;
        let _ = old.ctl.send(Control::Stop);
        (old.runtime_target_id != new_rt).then_some(old.runtime_target_id)
    }

    /// Stops and forgets the bridge of `pairing_id`.
    pub fn stop(&self, pairing_id: &str) {
        if let Some(b) = self.map.lock().unwrap().remove(pairing_id) {
            let _ = b.ctl.send(Control::Stop);
        }
    }

    /// Forgets the bridge of `pairing_id` (it ended by itself: revoked).
    pub fn forget(&self, pairing_id: &str) {
        self.map.lock().unwrap().remove(pairing_id);
    }

    /// Stops every bridge (the daemon is stopping).
    pub fn stop_all(&self) {
        for b in self.map.lock().unwrap().values() {
            let _ = b.ctl.send(Control::Stop);
        }
    }

    /// Stops every bridge and returns, by pairing id, what the relay has not acked (a
    /// planned restart keeps it in the home).
    pub async fn stop_all_and_keep(&self, wait: std::time::Duration) -> HashMap<String, Vec<vpd_proto::relay::DaemonMsg>> {
        let all: Vec<(String, Bridge)> = self.map.lock().unwrap().drain().collect();
        let mut kept = HashMap::new();
        for (id, b) in all {
            let left = b.stop_and_keep(wait).await;
            if !left.is_empty() {
                kept.insert(id, left);
            }
        }
        kept
    }

    /// Asks the bridge of `pairing_id` to retry now; false when it has none.
    pub fn reconnect(&self, pairing_id: &str) -> bool {
        self.map.lock().unwrap().get(pairing_id).map(|b| b.ctl.send(Control::Reconnect)).is_some()
    }

    /// Asks every bridge to retry now.
    pub fn reconnect_all(&self) {
        for b in self.map.lock().unwrap().values() {
            let _ = b.ctl.send(Control::Reconnect);
        }
    }

    /// Each bridge's state, by pairing id.
    pub fn statuses(&self) -> HashMap<String, BridgeStatus> {
        self.map.lock().unwrap().iter().map(|(k, b)| (k.clone(), b.status())).collect()
    }

    /// Hands a message to the bridge of exactly the pairing `runtime_target_id` of
    /// `pairing_id`. False when that pairing has no bridge any more (unpaired, revoked or
    /// replaced).
    pub async fn route(&self, pairing_id: &str, runtime_target_id: &str, msg: vpd_proto::relay::DaemonMsg) -> bool {
        let tx = self.map.lock().unwrap().get(pairing_id).filter(|b| b.runtime_target_id == runtime_target_id).map(|b| b.tx.clone());
        match tx {
            Some(tx) => tx.send(Command::Send(msg)).await.is_ok(),
            None => false,
        }
    }
}
