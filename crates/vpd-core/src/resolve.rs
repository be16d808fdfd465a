//! SPEC section 7: which binding a session started in a directory is pinned to.
//!
//! The caller walks from the session's canonical working directory up to the root and hands
//! over one [`DirFacts`] per directory, nearest first. The nearest *applicable*
//! `.viewport/local.yaml` decides; a file above the nearest repository root applies only when
//! it says `recursive: true`. It pins the session only when it is recorded in
//! `directories.json` (made on this machine, unchanged since), says `streaming: enabled` and
//! names a current pairing. Everything else is local-only, never streaming by accident.

use crate::files::{file_hash, parse_local, Streaming};
use std::path::{Path, PathBuf};

/// What the caller found for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRead {
    Missing,
    Bytes(Vec<u8>),
    /// Present but not usable: not a regular file, too large, unreadable, a symlink loop.
    Unreadable(String),
}

/// Facts about one directory on the walk up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirFacts {
    pub dir: PathBuf,
    /// The directory holds `.git` (a repository root). Callers may stop reporting this above
    /// the nearest one: only the nearest matters.
    pub is_repo_root: bool,
    pub local: FileRead,
    pub hint: FileRead,
}

/// A binding this machine made (`directories.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingRecord {
    pub directory: PathBuf,
    pub org_id: String,
    pub file_hash: String,
    /// The pairing (server and org, [`crate::origin::pairing_id`]) it was made for; `None`
    /// only in records older than SPEC A1 that could not be upgraded: they never stream.
    pub pairing_id: Option<String>,
    /// Kept from a pairing that was removed (unpaired or revoked, SPEC A3): inert until the
    /// user says yes to resuming it after pairing with that org on that server again.
    pub suspended: bool,
}

/// A current pairing, as far as policy needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairingRef<'a> {
    /// The local pairing id ([`crate::origin::pairing_id`]).
    pub id: &'a str,
    pub org_id: &'a str,
    pub name: &'a str,
    pub slug: &'a str,
    /// The server's origin.
    pub server: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Stream to this pairing for the session's whole life.
    Pinned { org_id: String, pairing_id: String, binding_dir: PathBuf, recursive: bool },
    /// Nothing leaves the machine.
    LocalOnly { reason: LocalReason, binding_dir: Option<PathBuf> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalReason {
    /// No applicable `local.yaml`.
    NoBinding,
    /// The nearest applicable file says `streaming: disabled`.
    StreamingDisabled,
    /// The file was not written by `vpd bind` on this machine, or was changed since.
    Untrusted { org_id: String },
    /// The file names an org this machine is not paired with.
    NotPaired { org_id: String },
    /// The binding outlived its pairing (SPEC A3) and waits for a yes to resume.
    Waiting { org_id: String },
    /// Inside a recursive binding to `binding_org`, a repository whose committed
    /// `workspace.yaml` names another org, `org_id` (SPEC A3): it runs local-only and the
    /// hint asks about `org_id` instead of streaming to the enclosing binding's org.
    HintNamesAnotherOrg { org_id: String, binding_org: String },
    /// The file could not be used; the message says why.
    Invalid { message: String },
}

impl LocalReason {
    /// Stable code for `--json` and the UI.
    pub fn code(&self) -> &'static str {
        match self {
            LocalReason::NoBinding => "no_binding",
            LocalReason::StreamingDisabled => "streaming_disabled",
            LocalReason::Untrusted { .. } => "binding_untrusted",
            LocalReason::NotPaired { .. } => "not_paired",
            LocalReason::Waiting { .. } => "binding_waiting",
            LocalReason::HintNamesAnotherOrg { .. } => "hint_names_another_org",
            LocalReason::Invalid { .. } => "binding_invalid",
        }
    }
}

/// Decides the binding for a session started at `facts[0].dir`.
pub fn resolve(facts: &[DirFacts], records: &[BindingRecord], pairings: &[PairingRef<'_>]) -> Resolution {
    let mut repo_root_below = false;
    // The committed `workspace.yaml` at the root of the repository the session is in (below
    // the binding), and the org it names.
    let mut hint_below: Option<(&Path, String)> = None;
    for f in facts {
        match &f.local {
            FileRead::Missing => {}
            FileRead::Unreadable(why) => {
                return local(LocalReason::Invalid { message: why.clone() }, &f.dir);
            }
            FileRead::Bytes(bytes) => {
                let file = match parse_local(bytes) {
                    Ok(file) => file,
                    Err(message) => return local(LocalReason::Invalid { message }, &f.dir),
                };
                if !repo_root_below || file.recursive {
                    let decided = decide(&f.dir, bytes, file, records, pairings);
                    // SPEC A3: a recursive binding covers the repositories below it, but not
                    // one that says (in its committed workspace.yaml) it belongs to another org.
                    if let (Resolution::Pinned { org_id: bound, .. }, Some((hint_dir, hinted))) = (&decided, &hint_below) {
                        if hinted != bound {
                            return Resolution::LocalOnly {
                                reason: LocalReason::HintNamesAnotherOrg { org_id: hinted.clone(), binding_org: bound.clone() },
                                binding_dir: Some(hint_dir.to_path_buf()),
                            };
                        }
                    }
                    return decided;
                }
            }
        }
        // Only the hint at the root of the repository the session is in counts.
        if f.is_repo_root && !repo_root_below {
            if let FileRead::Bytes(b) = &f.hint {
                if let Ok(h) = crate::files::parse_hint(b) {
                    hint_below = Some((&f.dir, h.org_id));
                }
            }
        }
        repo_root_below |= f.is_repo_root;
    }
    Resolution::LocalOnly { reason: LocalReason::NoBinding, binding_dir: None }
}

/// The bindings [`resolve`] walked past for a session started at `facts[0].dir`: a
/// `local.yaml` without `recursive: true` above the repository the session is in (SPEC §7).
/// Each is `(binding directory, the repository in between)`, nearest first; `vpd resolve`
/// names them so a folder of repositories bound without `--recursive` is not a mystery.
pub fn passed_over(facts: &[DirFacts]) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let mut repo: Option<&Path> = None;
    for f in facts {
        match &f.local {
            FileRead::Missing => {}
            FileRead::Unreadable(_) => return out,
            FileRead::Bytes(bytes) => match (parse_local(bytes), repo) {
                (Ok(file), Some(r)) if !file.recursive => out.push((f.dir.clone(), r.to_path_buf())),
                _ => return out,
            },
        }
        if f.is_repo_root && repo.is_none() {
            repo = Some(&f.dir);
        }
    }
    out
}

fn local(reason: LocalReason, dir: &Path) -> Resolution {
    Resolution::LocalOnly { reason, binding_dir: Some(dir.to_path_buf()) }
}

fn decide(dir: &Path, bytes: &[u8], file: crate::LocalFile, records: &[BindingRecord], pairings: &[PairingRef<'_>]) -> Resolution {
    if file.streaming == Streaming::Disabled {
        return local(LocalReason::StreamingDisabled, dir);
    }
    let hash = file_hash(bytes);
    let Some(record) = records.iter().find(|r| r.directory == dir && r.org_id == file.org_id && r.file_hash == hash) else {
        return local(LocalReason::Untrusted { org_id: file.org_id }, dir);
    };
    if record.suspended {
        return local(LocalReason::Waiting { org_id: file.org_id }, dir);
    }
    // SPEC A1: the pairing the binding was made for — that server's, never another server's
    // pairing with the same org id.
    // A record that names no pairing (one an older vpd left for an org that was not paired
    // when it upgraded) never streams: it would go to whichever server claims the org.
    let pairing = record.pairing_id.as_deref().and_then(|id| pairings.iter().find(|p| p.id == id && p.org_id == file.org_id));
    match pairing {
        Some(p) => {
            Resolution::Pinned { org_id: file.org_id, pairing_id: p.id.to_string(), binding_dir: dir.to_path_buf(), recursive: file.recursive }
        }
        None => local(LocalReason::NotPaired { org_id: file.org_id }, dir),
    }
}

/// Finds the pairing an `--org` argument names: a local pairing id, a workspace ULID, a
/// slug, or a name (case-insensitive), tried in that order. More than one match (the same org
/// paired on two servers, or a name shared by two orgs) is ambiguous, with the matches.
pub fn select_pairing<'a>(pairings: &[PairingRef<'a>], query: &str) -> Result<PairingRef<'a>, SelectError<'a>> {
    let q = query.trim();
    let tries: [&dyn Fn(&PairingRef<'a>) -> bool; 4] = [&|p| p.id == q, &|p| p.org_id == q, &|p| p.slug == q, &|p| p.name.eq_ignore_ascii_case(q)];
    for matches in tries {
        let found: Vec<PairingRef<'a>> = pairings.iter().filter(|p| matches(p)).copied().collect();
        match found.as_slice() {
            [] => continue,
            [one] => return Ok(*one),
            _ => return Err(SelectError::Ambiguous(found)),
        }
    }
    Err(SelectError::NotFound)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectError<'a> {
    NotFound,
    /// Every pairing the query matched.
    Ambiguous(Vec<PairingRef<'a>>),
}

/// `~/work/api` for paths under `home`, the path itself otherwise.
pub fn display_dir(path: &Path, home: Option<&Path>) -> String {
    if let Some(home) = home {
        if let Ok(rest) = path.strip_prefix(home) {
            if !home.as_os_str().is_empty() && home != Path::new("/") {
                return if rest.as_os_str().is_empty() { "~".into() } else { format!("~/{}", rest.display()) };
            }
        }
    }
    path.display().to_string()
}
