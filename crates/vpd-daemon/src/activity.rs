//! The activity list (what happened that a person should hear about: pairings, unpairings,
//! revocations, suggestions) and the daemon's one change signal. Both are components of the
//! [`crate::backend::Backend`]: they own their state and lock; nothing else touches them.

use crate::states::{ActivityKind, SuggestionKind};
use std::sync::Mutex;
use tokio::sync::{broadcast, watch};

/// An entry of the activity list (and, with the tray, a notification).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    /// Increasing within one daemon run.
    #[serde(default)]
    pub id: u64,
    pub at: String,
    /// `paired`, `unpaired`, `revoked`, `suggestion`.
    pub kind: ActivityKind,
    pub message: String,
    /// The directory a suggestion is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org_id: Option<String>,
    /// A suggestion's kind: `bind`, `trust` or `pair`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<SuggestionKind>,
}

/// How many entries are kept.
const KEPT: usize = 200;

/// The last [`KEPT`] entries, and a broadcast of each new one (the tray's notifications, the
/// local API's `events`).
pub struct ActivityLog {
    entries: Mutex<Vec<Activity>>,
    notices: broadcast::Sender<Activity>,
}

impl Default for ActivityLog {
    fn default() -> Self {
        ActivityLog { entries: Mutex::default(), notices: broadcast::channel(64).0 }
    }
}

impl ActivityLog {
    /// Adds an entry (its id and time are set here) and tells the listeners.
    pub fn record(&self, mut entry: Activity) -> Activity {
        {
            let mut a = self.entries.lock().unwrap();
            entry.id = a.last().map(|l| l.id + 1).unwrap_or(1);
            entry.at = crate::now_rfc3339();
            a.push(entry.clone());
            let excess = a.len().saturating_sub(KEPT);
            a.drain(..excess);
        }
        let _ = self.notices.send(entry.clone());
        entry
    }

    pub fn list(&self) -> Vec<Activity> {
        self.entries.lock().unwrap().clone()
    }

    /// The entries after `id`.
    pub fn since(&self, id: u64) -> Vec<Activity> {
        self.entries.lock().unwrap().iter().filter(|a| a.id > id).cloned().collect()
    }

    /// Every entry recorded from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Activity> {
        self.notices.subscribe()
    }
}

/// "Something a person can see changed": one counter that the web UI's event stream waits on.
pub struct Changes(watch::Sender<u64>);

impl Default for Changes {
    fn default() -> Self {
        Changes(watch::channel(0).0)
    }
}

impl Changes {
    pub fn touch(&self) {
        self.0.send_modify(|n| *n += 1);
    }
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_numbered_kept_bounded_and_broadcast() {
        let log = ActivityLog::default();
        let mut rx = log.subscribe();
        log.record(Activity { kind: ActivityKind::Paired, message: "first".into(), ..Default::default() });
        assert_eq!(rx.try_recv().unwrap().message, "first", "listeners hear each entry");
        for i in 1..(KEPT + 5) {
            log.record(Activity { kind: ActivityKind::Paired, message: format!("{i}"), ..Default::default() });
        }
        let all = log.list();
        assert_eq!(all.len(), KEPT);
        assert_eq!(all.last().unwrap().id, (KEPT + 5) as u64);
        assert_eq!(all.first().unwrap().id, 6, "the oldest went first");
        assert_eq!(log.since(all.last().unwrap().id - 2).len(), 2);
    }
}
