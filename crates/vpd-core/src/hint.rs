//! SPEC section 8: what `vpd hint` does when a directory is entered.
//!
//! A committed `.viewport/workspace.yaml` never grants anything; it only makes vpd ask. So
//! does a `local.yaml` that was not made on this machine (trusting it records it, like
//! `direnv allow`). Declined questions are remembered per directory and org.

use crate::files::parse_hint;
use crate::resolve::{DirFacts, FileRead, LocalReason, PairingRef, Resolution};
use std::path::{Path, PathBuf};

/// A remembered "no" (`hint-declines.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decline {
    pub directory: PathBuf,
    pub org_id: String,
    pub kind: Question,
    /// The pairing the declined question named (SPEC A1); `None`: any pairing of the org.
    pub pairing_id: Option<String>,
}

/// Which question was declined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Question {
    /// "Bind this directory to <org>?" from a `workspace.yaml`.
    Bind,
    /// "This directory has a binding file that was not made on this machine. Trust it?"
    Trust,
}

/// Whether a question (directory, org, kind, for which pairing) was declined.
type Declined<'a> = dyn Fn(&Path, &str, Question, Option<&str>) -> bool + 'a;

/// One pairing a hint could mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub pairing_id: String,
    pub org_name: String,
    pub server: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HintAction {
    /// Nothing to say: a binding applies, the user opted out, or already said no.
    Quiet,
    /// Ask "Bind this directory to <org_name> (<server>)? [Y/n]".
    AskBind { dir: PathBuf, org_id: String, org_name: String, pairing_id: String, server: String },
    /// The repository's org is paired on several servers: say so, and how to choose
    /// (`vpd bind DIR --org PAIRING_ID`); never pick one.
    Choose { dir: PathBuf, org_id: String, label: String, choices: Vec<Choice> },
    /// Ask "This directory has a binding file that was not made on this machine. Trust it? [y/N]".
    AskTrust { dir: PathBuf, org_id: String, org_name: String },
    /// "This repo suggests org <label>, but you're not paired to it. Run `vpd pair --org <label>`."
    NotPaired { dir: PathBuf, org_id: String, label: String },
    /// A file could not be used; say so (streaming stays off).
    Warn { dir: PathBuf, message: String },
}

/// Decides the hint for the directory whose walk produced `facts` and `resolution`.
pub fn decide(facts: &[DirFacts], resolution: &Resolution, pairings: &[PairingRef<'_>], declines: &[Decline]) -> HintAction {
    // A "no" to one server's pairing is not a "no" to another server's pairing of the org.
    let declined = |dir: &Path, org: &str, kind: Question, pairing: Option<&str>| {
        declines.iter().any(|d| {
            d.directory == dir
                && d.org_id == org
                && d.kind == kind
                && (d.pairing_id.is_none() || pairing.is_none() || d.pairing_id.as_deref() == pairing)
        })
    };
    let name_of = |org: &str| pairings.iter().find(|p| p.org_id == org).map(|p| p.name.to_string());
    match resolution {
        Resolution::Pinned { .. } => HintAction::Quiet,
        Resolution::LocalOnly { reason, binding_dir } => {
            let dir = binding_dir.clone().unwrap_or_default();
            match reason {
                // The user unpaired (or was revoked) and kept the binding: no question at each
                // `cd`; status and `vpd resolve` say it waits.
                LocalReason::StreamingDisabled | LocalReason::Waiting { .. } => HintAction::Quiet,
                LocalReason::Invalid { message } => HintAction::Warn { dir, message: message.clone() },
                LocalReason::Untrusted { org_id } | LocalReason::NotPaired { org_id } => match name_of(org_id) {
                    Some(_) if declined(&dir, org_id, Question::Trust, None) => HintAction::Quiet,
                    Some(org_name) if matches!(reason, LocalReason::Untrusted { .. }) => {
                        HintAction::AskTrust { dir, org_id: org_id.clone(), org_name }
                    }
                    _ => HintAction::NotPaired { dir, org_id: org_id.clone(), label: org_id.clone() },
                },
                // The repository's own hint asks about its org (SPEC A3).
                LocalReason::NoBinding | LocalReason::HintNamesAnotherOrg { .. } => from_workspace_hint(facts, pairings, &declined),
            }
        }
    }
}

fn from_workspace_hint(facts: &[DirFacts], pairings: &[PairingRef<'_>], declined: &Declined<'_>) -> HintAction {
    let Some(f) = facts.iter().find(|f| f.hint != FileRead::Missing) else {
        return HintAction::Quiet;
    };
    let bytes = match &f.hint {
        FileRead::Bytes(b) => b,
        FileRead::Unreadable(why) => return HintAction::Warn { dir: f.dir.clone(), message: format!("workspace.yaml: {why}") },
        FileRead::Missing => unreachable!(),
    };
    let hint = match parse_hint(bytes) {
        Ok(h) => h,
        Err(e) => return HintAction::Warn { dir: f.dir.clone(), message: format!("workspace.yaml: {e}") },
    };
    // SPEC A1: a hint that names its server matches only a pairing with that server.
    let matching: Vec<&PairingRef<'_>> =
        pairings.iter().filter(|p| p.org_id == hint.org_id && hint.server.as_deref().is_none_or(|s| s == p.server)).collect();
    match matching.as_slice() {
        [] => HintAction::NotPaired { dir: f.dir.clone(), label: hint.label().to_string(), org_id: hint.org_id },
        [p] if declined(&f.dir, &hint.org_id, Question::Bind, Some(p.id)) => HintAction::Quiet,
        [_, _, ..] if declined(&f.dir, &hint.org_id, Question::Bind, None) => HintAction::Quiet,
        [p] => HintAction::AskBind {
            dir: f.dir.clone(),
            org_id: hint.org_id.clone(),
            org_name: p.name.to_string(),
            pairing_id: p.id.to_string(),
            server: p.server.to_string(),
        },
        several => HintAction::Choose {
            dir: f.dir.clone(),
            label: hint.label().to_string(),
            org_id: hint.org_id.clone(),
            choices: several
                .iter()
                .map(|p| Choice { pairing_id: p.id.to_string(), org_name: p.name.to_string(), server: p.server.to_string() })
                .collect(),
        },
    }
}
