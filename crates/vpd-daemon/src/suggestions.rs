//! Hint suggestions the daemon found (SPEC section 8, the tray's side): a directory with a
//! committed `.viewport/workspace.yaml` (or a `local.yaml` made elsewhere) and no binding.
//! They come from sessions started here, directories the shell hook reports and the watched
//! folders; the web UI lists them and the tray turns each new one into a notification.
//!
//! A "Never" goes to `hint-declines.json`, the same cache `vpd hint` uses; a "Not now" hides
//! the suggestion until the daemon restarts. Each suggestion is announced once per daemon run
//! and kind, and they are all looked at again whenever the pairings change. A "not paired"
//! one is said once per repository until the pairings change, across restarts, by the
//! terminal or the tray, whichever comes first ([`crate::binding::say_not_paired_once`]).

use crate::binding;
use crate::error::{Error, ErrorCode, Result};
use crate::home::Home;
use crate::states::SuggestionKind;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use vpd_core::hint::{HintAction, Question};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Suggestion {
    pub directory: String,
    pub display: String,
    pub org_id: String,
    /// The pairing a Bind binds to (SPEC A1: a hint never picks between two servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pairing_id: Option<String>,
    /// The server of that pairing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The pairing's name, or the label the hint file gives when not paired.
    pub org_name: String,
    /// `bind` (paired org), `trust` (a `local.yaml` made elsewhere), `pair` (not paired).
    pub kind: SuggestionKind,
    /// `session`, `shell` or `watched`.
    pub source: String,
    pub at: String,
}

/// What to do with a suggestion.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// Bind (or trust) the directory.
    Bind,
    /// Hide it until the daemon restarts.
    Dismiss,
    /// Never ask again for this directory and org (`hint-declines.json`).
    Decline,
}

#[derive(Debug, Default)]
pub struct Suggestions {
    pending: Vec<Suggestion>,
    /// (directory, org, kind) already announced or dismissed in this run: the same repo is
    /// announced again when what it asks changes (a "not paired" repo whose org was paired
    /// since now asks "Bind").
    seen: HashSet<(String, String, String)>,
    /// (directory, org) hidden with "Not now": until the daemon restarts.
    dismissed: HashSet<(String, String)>,
}

impl Suggestions {
    pub fn pending(&self) -> Vec<Suggestion> {
        self.pending.clone()
    }

    /// Adds `s` unless it was seen in this run. True when it is new (announce it).
    pub fn offer(&mut self, s: Suggestion) -> bool {
        if self.dismissed.contains(&(s.directory.clone(), s.org_id.clone())) {
            return false;
        }
        if !self.seen.insert((s.directory.clone(), s.org_id.clone(), s.kind.to_string())) {
            return false;
        }
        self.pending.retain(|p| !(p.directory == s.directory && p.org_id == s.org_id));
        self.pending.push(s);
        true
    }

    /// "Not now": hidden until the daemon restarts, whatever changes meanwhile.
    pub fn dismiss(&mut self, directory: &str, org_id: &str) {
        self.dismissed.insert((directory.to_string(), org_id.to_string()));
        self.remove(directory, org_id);
    }

    /// The pairings changed: what each directory asks may have changed, so anything not
    /// pending now may be announced again (a repository that asked "Bind" before an unpair
    /// and again after); a pending one is not announced twice.
    pub fn pairings_changed(&mut self) {
        let pending = &self.pending;
        self.seen.retain(|(d, o, k)| pending.iter().any(|p| &p.directory == d && &p.org_id == o && &p.kind.to_string() == k));
    }

    /// Forgets that (directory, org) was seen, so it is announced again (an undone "Never").
    pub fn forget(&mut self, directory: &str, org_id: &str) {
        self.seen.retain(|(d, o, _)| !(d == directory && o == org_id));
    }

    pub fn remove(&mut self, directory: &str, org_id: &str) -> Option<Suggestion> {
        let i = self.pending.iter().position(|s| s.directory == directory && s.org_id == org_id)?;
        Some(self.pending.remove(i))
    }
}

/// Drops the suggestions that no longer apply (bound, declined or paired since, from any
/// process) and returns the rest. Reads files (call from a blocking context), without
/// holding the lock while it does.
/// A suggestion whose question changed (a "not paired" one whose org was paired since) is
/// returned in the second list, to be offered (and announced) again as it is now.
pub fn revalidate(list: &std::sync::Mutex<Suggestions>, home: &Home) -> (Vec<Suggestion>, Vec<Suggestion>) {
    let pending = list.lock().unwrap().pending();
    let mut stale = Vec::new();
    let mut changed = Vec::new();
    for s in &pending {
        match check(home, Path::new(&s.directory), &s.source) {
            Ok(Some(now)) if now.org_id == s.org_id && now.kind == s.kind => {}
            Ok(Some(now)) if now.org_id == s.org_id => {
                stale.push(s);
                changed.push(now);
            }
            _ => stale.push(s),
        }
    }
    let mut l = list.lock().unwrap();
    for s in &stale {
        l.remove(&s.directory, &s.org_id);
    }
    (l.pending(), changed)
}

/// The suggestion for `dir`, if its hint asks something. Reads files.
pub fn check(home: &Home, dir: &Path, source: &str) -> Result<Option<Suggestion>> {
    let r = binding::resolve(home, dir)?;
    let mut pairing = None;
    let (dir, org_id, org_name, kind) = match r.hint(home)? {
        HintAction::AskBind { dir, org_id, org_name, pairing_id, server } => {
            pairing = Some((pairing_id, server));
            (dir, org_id, org_name, SuggestionKind::Bind)
        }
        HintAction::AskTrust { dir, org_id, org_name } => (dir, org_id, org_name, SuggestionKind::Trust),
        HintAction::NotPaired { dir, org_id, label } => {
            // The terminal prints this each time (there is no question); the tray and UI
            // stop suggesting it once the user said "Never".
            let declined = crate::records::load_declines(home)?.declines.iter().any(|d| d.directory == dir && d.org_id == org_id);
            if declined {
                return Ok(None);
            }
            (dir, org_id, label, SuggestionKind::Pair)
        }
        // Several servers: the terminal says how to choose; nothing to click.
        HintAction::Quiet | HintAction::Warn { .. } | HintAction::Choose { .. } => return Ok(None),
    };
    let (pairing_id, server) = pairing.unzip();
    Ok(Some(Suggestion {
        display: vpd_core::resolve::display_dir(&dir, crate::home::user_home().as_deref()),
        directory: dir.display().to_string(),
        org_id,
        pairing_id,
        server,
        org_name,
        kind,
        source: source.into(),
        at: crate::now_rfc3339(),
    }))
}

/// A remembered "Never" as the window lists it (with Undo).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeclineView {
    pub directory: String,
    pub display: String,
    pub org_id: String,
    /// The org's name when it is paired.
    pub org_name: Option<String>,
    /// `bind` or `trust`.
    pub question: String,
    pub declined_at: String,
}

/// The "Never"s of `hint-declines.json` (the terminal's, the notifications' and the window's
/// alike), newest first.
/// `org_name` names a paired org.
pub fn declines(home: &Home, org_name: &dyn Fn(&str) -> Option<String>) -> Vec<DeclineView> {
    let user_home = crate::home::user_home();
    let mut out: Vec<DeclineView> = crate::records::load_declines(home)
        .map(|d| d.declines)
        .unwrap_or_default()
        .into_iter()
        .map(|d| DeclineView {
            display: vpd_core::resolve::display_dir(&d.directory, user_home.as_deref()),
            directory: d.directory.display().to_string(),
            org_name: org_name(&d.org_id),
            org_id: d.org_id,
            question: d.question,
            declined_at: d.declined_at,
        })
        .collect();
    out.reverse();
    out
}

/// The notification text of a new suggestion.
pub fn message(s: &Suggestion) -> String {
    match s.kind {
        SuggestionKind::Pair => format!("This repo suggests org {:?}, but you're not paired to it.", s.org_name),
        SuggestionKind::Trust => format!("{} has a binding to {} that was not made on this machine. Trust it?", s.display, s.org_name),
        // SPEC A1: every bind question names the server the sessions would stream to.
        SuggestionKind::Bind => match &s.server {
            Some(server) => format!("Bind {} to {} on {server}?", s.display, s.org_name),
            None => format!("Bind {} to {}?", s.display, s.org_name),
        },
    }
}

/// Carries out `answer` for the suggestion (directory, org, and the kind the user saw, if
/// known: a Bind must never turn into a Trust of a file that appeared since). Reads and
/// writes files.
pub fn answer(home: &Home, directory: &str, org_id: &str, kind: Option<SuggestionKind>, answer: Answer) -> Result<serde_json::Value> {
    let dir = PathBuf::from(directory);
    if !dir.is_absolute() {
        return Err(Error::new(ErrorCode::InvalidArgument, format!("{directory} is not an absolute path")));
    }
    if answer == Answer::Dismiss {
        return Ok(serde_json::json!({"ok": true}));
    }
    let current = check(home, &dir, "answer")?;
    let s = match current {
        Some(s) if s.org_id == org_id && s.directory == directory && kind.is_none_or(|k| k == s.kind) => s,
        _ => {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                format!("{directory} no longer suggests that org (it was bound, declined or changed); nothing to do"),
            ))
        }
    };
    match answer {
        Answer::Dismiss => Ok(serde_json::json!({"ok": true})),
        Answer::Decline => {
            let q = if s.kind == SuggestionKind::Trust { Question::Trust } else { Question::Bind };
            binding::decline(home, &dir, org_id, s.pairing_id.as_deref(), q)?;
            Ok(serde_json::json!({"ok": true}))
        }
        Answer::Bind => match s.kind {
            SuggestionKind::Bind => {
                let pairing = s.pairing_id.as_deref().unwrap_or(org_id);
                Ok(serde_json::to_value(binding::bind(home, &dir, pairing, false, false)?).unwrap_or_default())
            }
            SuggestionKind::Trust => Ok(serde_json::to_value(binding::trust(home, &dir)?).unwrap_or_default()),
            SuggestionKind::Pair => Err(Error::new(
                ErrorCode::NotPaired,
                format!("this machine is not paired with {}: pair with it first (Pair with workspace…)", s.org_name),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(dir: &str, kind: SuggestionKind) -> Suggestion {
        Suggestion {
            directory: dir.into(),
            display: dir.into(),
            org_id: "ORG".into(),
            pairing_id: None,
            server: None,
            org_name: "Acme".into(),
            kind,
            source: "watched".into(),
            at: "t".into(),
        }
    }

    #[test]
    fn announced_once_per_kind_dismissed_stays_hidden_and_pairings_reopen_only_what_is_gone() {
        let mut l = Suggestions::default();
        assert!(l.offer(s("/a", SuggestionKind::Pair)));
        assert!(!l.offer(s("/a", SuggestionKind::Pair)), "once");
        // The org was paired: the same repository now asks Bind, announced, replacing it.
        assert!(l.offer(s("/a", SuggestionKind::Bind)));
        assert_eq!(l.pending().len(), 1);
        assert_eq!(l.pending()[0].kind, SuggestionKind::Bind);
        // A pairing change does not announce a pending one twice.
        l.pairings_changed();
        assert!(!l.offer(s("/a", SuggestionKind::Bind)));
        // Bound (gone from pending), unpaired, paired again: announced again.
        l.remove("/a", "ORG");
        l.pairings_changed();
        assert!(l.offer(s("/a", SuggestionKind::Bind)));
        // Not now: hidden whatever changes, until the daemon restarts.
        l.dismiss("/a", "ORG");
        l.pairings_changed();
        assert!(!l.offer(s("/a", SuggestionKind::Pair)) && !l.offer(s("/a", SuggestionKind::Bind)));
        assert!(l.pending().is_empty());
    }
}
