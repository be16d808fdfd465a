//! OS notifications (SPEC section 12) for what the daemon reports as activity: pairing
//! completed, revocation, hint suggestions (with Bind / Not now / Never where the
//! notification server supports actions). Best-effort: a missing notification service is
//! logged, and the entry stays in the web UI's activity list.

use vpd_daemon::activity::Activity;
use vpd_daemon::states::{ActivityKind, SuggestionKind};

/// One notification to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub summary: String,
    pub body: String,
    /// (action key, label); empty when the notification has no buttons.
    pub actions: Vec<(&'static str, &'static str)>,
    /// Where clicking the notification itself leads in the UI.
    pub open: Option<String>,
}

/// The notification for an activity entry, if it deserves one. Pure.
pub fn note_for(a: &Activity) -> Option<Note> {
    match a.kind {
        ActivityKind::Paired => {
            Some(Note { summary: "Pairing completed".into(), body: a.message.clone(), actions: vec![], open: Some("/#/".into()) })
        }
        ActivityKind::Revoked => {
            Some(Note { summary: "Pairing revoked".into(), body: a.message.clone(), actions: vec![], open: Some("/#/activity".into()) })
        }
        ActivityKind::Suggestion => {
            let open = a
                .directory
                .as_ref()
                .map(|d| format!("/#/directories?suggest={}", url::form_urlencoded::byte_serialize(d.as_bytes()).collect::<String>()));
            let actions = match a.suggestion {
                Some(SuggestionKind::Bind) => vec![("bind", "Bind"), ("not_now", "Not now"), ("never", "Never")],
                Some(SuggestionKind::Trust) => vec![("bind", "Trust"), ("not_now", "Not now"), ("never", "Never")],
                Some(SuggestionKind::Pair) | None => vec![],
            };
            Some(Note { summary: "Viewport".into(), body: a.message.clone(), actions, open })
        }
        // Shown on the Activity page; a refused message is not worth interrupting for.
        ActivityKind::Unpaired | ActivityKind::Refused => None,
    }
}

/// Shows `note`; when the server supports actions, blocks until one is chosen (or the
/// notification closes) and returns its key (`default` for a click on the notification).
/// Linux and the BSDs (the freedesktop notification service, over D-Bus).
#[cfg(all(unix, not(target_os = "macos")))]
pub fn show(note: &Note) -> Result<Option<String>, String> {
    let caps = notify_rust::get_capabilities().map_err(|e| e.to_string())?;
    let with_actions = caps.iter().any(|c| c == "actions");
    let mut n = notify_rust::Notification::new();
    n.appname("Viewport").summary(&note.summary).body(&note.body).icon("dialog-information");
    if with_actions {
        if note.open.is_some() {
            n.action("default", "Open Viewport");
        }
        for (key, label) in &note.actions {
            n.action(key, label);
        }
    } else if !note.actions.is_empty() {
        // No buttons on this desktop: say where to answer.
        n.body(&format!("{}\nAnswer in Viewport (tray menu → Open Viewport → Directories).", note.body));
    }
    let handle = n.show().map_err(|e| e.to_string())?;
    if !with_actions || (note.actions.is_empty() && note.open.is_none()) {
        return Ok(None);
    }
    let mut chosen = None;
    handle.wait_for_action(|action| {
        if action != "__closed" {
            chosen = Some(action.to_string());
        }
    });
    Ok(chosen)
}

/// macOS and Windows: notify-rust shows the notification but offers no actions; the text
/// says where to answer. (Configured, not built here: see docs/PACKAGING.md.)
#[cfg(not(all(unix, not(target_os = "macos"))))]
pub fn show(note: &Note) -> Result<Option<String>, String> {
    let body =
        if note.actions.is_empty() { note.body.clone() } else { format!("{}\nAnswer in Viewport (Open Viewport → Directories).", note.body) };
    notify_rust::Notification::new().appname("Viewport").summary(&note.summary).body(&body).show().map(|_| None).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_get_actions_and_a_way_into_the_ui() {
        let a = Activity {
            kind: ActivityKind::Suggestion,
            message: "Bind ~/code/api to Acme?".into(),
            directory: Some("/home/u/code/api".into()),
            org_id: Some("01H".into()),
            suggestion: Some(SuggestionKind::Bind),
            ..Default::default()
        };
        let n = note_for(&a).unwrap();
        assert_eq!(n.actions.iter().map(|a| a.1).collect::<Vec<_>>(), ["Bind", "Not now", "Never"]);
        assert_eq!(n.open.as_deref(), Some("/#/directories?suggest=%2Fhome%2Fu%2Fcode%2Fapi"));
        let pair = Activity { suggestion: Some(SuggestionKind::Pair), ..a };
        assert!(note_for(&pair).unwrap().actions.is_empty());
        assert!(note_for(&Activity { kind: ActivityKind::Unpaired, ..Default::default() }).is_none());
        let r =
            note_for(&Activity { kind: ActivityKind::Revoked, message: "Acme revoked this machine's pairing".into(), ..Default::default() }).unwrap();
        assert_eq!(r.body, "Acme revoked this machine's pairing");
    }
}
