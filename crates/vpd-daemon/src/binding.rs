//! Directory bindings on the files (SPEC sections 7 and 8): `vpd bind`, `unbind`, `trust`,
//! resolution of a directory, and remembered hint declines. These run in whichever process
//! asks (CLI, daemon, tray), always under the home lock, so concurrent commands never lose a
//! record.

use crate::config::{self, Config};
use crate::error::{Error, ErrorCode, Result};
use crate::home::Home;
use crate::os::userdir::UserDir;
use crate::records::{self, DeclineRecord, Directories, DirectoryRecord};
use crate::walk;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vpd_core::files::{parse_local, render_local};
use vpd_core::hint::{self, HintAction, Question};
use vpd_core::{file_hash, DirFacts, Resolution};

const GITIGNORE_LINE: &str = "local.yaml";
const GITIGNORE: &str = ".gitignore";

/// Everything known about a directory: the walk, the decision, the hint.
pub struct Resolved {
    pub dir: PathBuf,
    pub facts: Arc<Vec<DirFacts>>,
    pub resolution: Resolution,
    pub config: Arc<Config>,
    pub directories: Arc<Directories>,
}

impl Resolved {
    /// The name of an org this machine is paired with (on any server), if it is.
    pub fn org_name(&self, org_id: &str) -> Option<&str> {
        self.config.of_org(org_id).first().map(|p| p.workspace_name.as_str())
    }

    /// The pairing a pinned resolution streams to.
    pub fn pinned_pairing(&self) -> Option<&crate::config::Pairing> {
        match &self.resolution {
            Resolution::Pinned { pairing_id, .. } => self.config.by_id(pairing_id),
            Resolution::LocalOnly { .. } => None,
        }
    }

    pub fn hint(&self, home: &Home) -> Result<HintAction> {
        let declines = records::load_declines(home)?.to_core();
        Ok(hint::decide(&self.facts, &self.resolution, &self.config.refs(), &declines))
    }
}

/// Resolves `dir` as a session started there would be.
pub fn resolve(home: &Home, dir: &Path) -> Result<Resolved> {
    let dir = walk::canonical(dir)?;
    let config = config::read(home)?;
    let directories = records::load_directories(home)?;
    let facts = walk::gather(&dir);
    let resolution = vpd_core::resolve(&facts, &directories.records(), &config.refs());
    Ok(Resolved { dir, facts: Arc::new(facts), resolution, config: Arc::new(config), directories: Arc::new(directories) })
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BindOutcome {
    pub directory: PathBuf,
    pub org_id: String,
    pub org_name: String,
    pub recursive: bool,
    /// The org the directory was bound to before, if another.
    pub replaced: Option<String>,
    /// Something to tell the user (the directory's group may write it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// Everything to tell the user: `warning`, and that a folder of repositories bound
    /// without `--recursive` does not cover them (issue 11 item 2).
    pub warnings: Vec<String>,
    /// Repositories below the directory when it is a folder of repositories (not inside one).
    pub repositories_below: usize,
    /// What was bound and which sessions now stream, in one sentence (the CLI prints it;
    /// the web UI shows it).
    pub summary: String,
}

impl BindOutcome {
    fn summarize(&mut self, server: &str) {
        let shown = vpd_core::resolve::display_dir(&self.directory, crate::home::user_home().as_deref());
        let scope = match (self.recursive, self.repositories_below) {
            (true, 0) => " (and every repository below it)".to_string(),
            (true, 1) => " (and every repository below it: 1 today, and any cloned there later)".to_string(),
            (true, n) => format!(" (and every repository below it: {n} today, and any cloned there later)"),
            (false, _) => String::new(),
        };
        let streams = if !self.recursive && self.repositories_below > 0 {
            "Sessions started directly in it stream; sessions in the repositories below it stay local (see the warning)."
        } else {
            "Sessions started there stream."
        };
        self.summary = format!(
            "Bound {shown}{scope} → {} on {server}. {streams}{}",
            self.org_name,
            if self.replaced.is_some() { " The previous binding was replaced." } else { "" }
        );
    }
}

/// `vpd bind DIR --org ORG [--recursive]`. Replacing a binding to another org needs
/// `replace` (`--yes`).
pub fn bind(home: &Home, dir: &Path, org: &str, recursive: bool, replace: bool) -> Result<BindOutcome> {
    home.ensure()?;
    let dir = walk::canonical(dir)?;
    let config = config::load(home)?;
    let pairing = config.select(org)?.clone();
    // Everything written inside `dir` goes through this one handle (issue 10, item 4).
    let (target, warning) = UserDir::open(&dir)?;
    // Looked at before taking the home lock: the scan reads up to thousands of directories.
    let repos = if walk::inside_repository(&dir) { Vec::new() } else { walk::repositories_below(&dir) };
    records::update_directories(home, |dirs| {
        // Binding a directory whose binding waits (SPEC A3) resumes it as it was: a recursive
        // one stays recursive.
        let recursive = recursive || dirs.bindings.iter().any(|b| b.directory == dir && b.suspended && b.recursive);
        let mut replaced = None;
        match walk::read_local(&dir) {
            Ok(Some(bytes)) => match parse_local(&bytes) {
                Ok(f) if f.org_id == pairing.workspace_id => {}
                Ok(f) => replaced = Some(f.org_id),
                Err(_) => replaced = Some("an unreadable binding".into()),
            },
            Ok(None) => {}
            Err(e) => return Err(e),
        }
        if let (Some(old), false) = (&replaced, replace) {
            let old_name = config.of_org(old).first().map(|p| p.workspace_name.clone()).unwrap_or_else(|| old.clone());
            return Err(Error::new(
                ErrorCode::BindingExists,
                format!("{} is already bound to {old_name}. Pass --yes to bind it to {} instead.", dir.display(), pairing.workspace_name),
            ));
        }
        let vp = target.viewport_for_writing()?;
        // .gitignore first: when it cannot be written, no binding file is left behind.
        ensure_gitignore(&vp)?;
        let text = render_local(&pairing.workspace_id, &crate::now_rfc3339(), recursive);
        vp.write_atomic(walk::LOCAL_FILE, text.as_bytes(), 0o600)?;
        dirs.bindings.retain(|b| b.directory != dir);
        dirs.bindings.push(DirectoryRecord {
            directory: dir.clone(),
            org_id: pairing.workspace_id.clone(),
            pairing_id: Some(pairing.pairing_id.clone()),
            file_hash: file_hash(text.as_bytes()),
            bound_at: crate::now_rfc3339(),
            recursive,
            suspended: false,
            server: None,
            org_name: None,
        });
        let mut warnings: Vec<String> = warning.iter().cloned().collect();
        if !recursive && !repos.is_empty() {
            warnings.push(format!(
                "{} is not a repository and holds {} repositor{} below it; without --recursive, sessions started in them stay local. Bind it again with --recursive to include them (and repositories cloned there later).",
                dir.display(),
                repos.len(),
                if repos.len() == 1 { "y" } else { "ies" }
            ));
        }
        let mut outcome = BindOutcome {
            directory: dir.clone(),
            org_id: pairing.workspace_id.clone(),
            org_name: pairing.workspace_name.clone(),
            recursive,
            replaced,
            warning: warning.clone(),
            warnings,
            repositories_below: repos.len(),
            summary: String::new(),
        };
        outcome.summarize(&pairing.server);
        Ok(outcome)
    })
}

/// `.gitignore` is an ordinary repository file: atomic, but readable like its neighbours.
fn ensure_gitignore(vp: &UserDir) -> Result<()> {
    let current = vp.read(GITIGNORE, 1024 * 1024)?.map(|b| String::from_utf8_lossy(&b).into_owned());
    match current {
        Some(text) if text.lines().any(|l| l.trim() == GITIGNORE_LINE || l.trim() == "/local.yaml") => Ok(()),
        Some(mut text) => {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(GITIGNORE_LINE);
            text.push('\n');
            vp.write_atomic(GITIGNORE, text.as_bytes(), 0o644)
        }
        None => vp.write_atomic(GITIGNORE, format!("{GITIGNORE_LINE}\n").as_bytes(), 0o644),
    }
}

#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UnbindOutcome {
    pub directory: PathBuf,
    pub org_id: Option<String>,
}

/// The name (or id) of the org `dir`'s own binding file names, if it has one.
pub fn bound_org(home: &Home, dir: &Path) -> Option<String> {
    let dir = walk::canonical(dir).ok()?;
    let org = parse_local(&walk::read_local(&dir).ok()??).ok()?.org_id;
    let name = config::load(home).ok().and_then(|c| c.of_org(&org).first().map(|p| p.workspace_name.clone()));
    Some(name.unwrap_or(org))
}

/// `vpd unbind DIR`: removes `DIR/.viewport/local.yaml`, our `.gitignore` and the record.
pub fn unbind(home: &Home, dir: &Path) -> Result<UnbindOutcome> {
    let dir = walk::canonical(dir)?;
    records::update_directories(home, |dirs| {
        let had_record = dirs.bindings.iter().any(|b| b.directory == dir);
        let org_id = match walk::read_local(&dir) {
            Ok(Some(bytes)) => parse_local(&bytes).ok().map(|f| f.org_id),
            Ok(None) if had_record => None,
            Ok(None) => {
                let hint = match resolve_binding_dir(home, &dir) {
                    Some(p) if p != dir => format!(" The binding that applies here is {}; run `vpd unbind {}`.", p.display(), p.display()),
                    _ => String::new(),
                };
                return Err(Error::new(ErrorCode::NotBound, format!("{} is not bound (no .viewport/local.yaml).{hint}", dir.display())));
            }
            Err(e) => return Err(e),
        };
        remove_binding_files(&dir)?;
        dirs.bindings.retain(|b| b.directory != dir);
        Ok(UnbindOutcome { directory: dir.clone(), org_id })
    })
}

fn resolve_binding_dir(home: &Home, dir: &Path) -> Option<PathBuf> {
    let config = config::load(home).ok()?;
    let dirs = records::load_directories(home).ok()?;
    match vpd_core::resolve(&walk::gather(dir), &dirs.records(), &config.refs()) {
        Resolution::Pinned { binding_dir, .. } => Some(binding_dir),
        Resolution::LocalOnly { binding_dir, .. } => binding_dir,
    }
}

/// Removes `dir/.viewport/local.yaml`, our `.gitignore`, and `.viewport` if now empty —
/// relative to handles, so a link swapped in never leads a removal elsewhere.
fn remove_binding_files(dir: &Path) -> Result<()> {
    let target = UserDir::open_for_removal(dir)?;
    let Some(vp) = target.viewport_for_removal()? else { return Ok(()) };
    vp.remove(walk::LOCAL_FILE)?;
    if let Ok(Some(b)) = vp.read(GITIGNORE, 4096) {
        if String::from_utf8_lossy(&b).trim() == GITIGNORE_LINE {
            vp.remove(GITIGNORE)?;
        }
    }
    target.remove_viewport_if_empty();
    Ok(())
}

/// What becomes of a removed pairing's directory bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterUnpair {
    /// Kept, inert, waiting for a yes after pairing that org on that server again (SPEC A3).
    Suspend,
    /// Removed, with the binding files still as written (`vpd unpair --forget-bindings`).
    Forget,
    /// Left as they are (`vpd uninstall --purge --keep-bindings`: the home goes anyway).
    Leave,
}

/// On unpair and revocation, the bindings made here for `pairing` — never those of the same
/// org on another server — are suspended (kept, inert), removed (the records, and the
/// `local.yaml` files still exactly as written), or left as they are. Returns the
/// directories affected.
pub fn after_unpair(home: &Home, pairing: &crate::config::Pairing, after: AfterUnpair) -> Result<Vec<PathBuf>> {
    let of_pairing = |b: &DirectoryRecord| match &b.pairing_id {
        Some(id) => *id == pairing.pairing_id,
        None => b.org_id == pairing.workspace_id,
    };
    match after {
        AfterUnpair::Leave => Ok(Vec::new()),
        AfterUnpair::Forget => remove_bindings_where(home, of_pairing),
        AfterUnpair::Suspend => records::update_directories(home, |dirs| {
            let mut kept = Vec::new();
            // A record naming no pairing (left by an older vpd) is inert already, and could
            // never be resumed by pairing id: left as it is.
            for b in dirs.bindings.iter_mut().filter(|b| b.pairing_id.as_deref() == Some(pairing.pairing_id.as_str())) {
                b.suspended = true;
                b.server = Some(pairing.server.clone());
                b.org_name = Some(pairing.workspace_name.clone());
                kept.push(b.directory.clone());
            }
            Ok(kept)
        }),
    }
}

/// Whether `b` is a binding kept from the earlier pairing `pairing_id` (SPEC A3).
fn waits_for(b: &DirectoryRecord, pairing_id: &str) -> bool {
    b.suspended && b.pairing_id.as_deref() == Some(pairing_id)
}

/// The bindings kept from an earlier pairing `pairing_id` that wait for a yes (SPEC A3).
pub fn waiting_bindings(home: &Home, pairing_id: &str) -> Result<Vec<PathBuf>> {
    Ok(records::load_directories(home)?.bindings.into_iter().filter(|b| waits_for(b, pairing_id)).map(|b| b.directory).collect())
}

/// The yes: the bindings kept for `pairing_id` stream again (new sessions only). Returns the
/// directories resumed.
pub fn resume_bindings(home: &Home, pairing_id: &str) -> Result<Vec<PathBuf>> {
    records::update_directories(home, |dirs| {
        let mut resumed = Vec::new();
        for b in dirs.bindings.iter_mut().filter(|b| waits_for(b, pairing_id)) {
            b.suspended = false;
            b.server = None;
            resumed.push(b.directory.clone());
        }
        Ok(resumed)
    })
}

/// Removes every binding made here, whatever its org (`vpd uninstall --purge`): the records,
/// and the binding files that are still exactly as written.
pub fn remove_all_bindings(home: &Home) -> Result<Vec<PathBuf>> {
    remove_bindings_where(home, |_| true)
}

fn remove_bindings_where(home: &Home, which: impl Fn(&DirectoryRecord) -> bool) -> Result<Vec<PathBuf>> {
    records::update_directories(home, |dirs| {
        let mut removed = Vec::new();
        for b in dirs.bindings.iter().filter(|b| which(b)) {
            if let Ok(Some(bytes)) = walk::read_local(&b.directory) {
                if file_hash(&bytes) == b.file_hash {
                    remove_binding_files(&b.directory)?;
                }
            }
            removed.push(b.directory.clone());
        }
        dirs.bindings.retain(|b| !which(b));
        Ok(removed)
    })
}

/// `vpd pair --server NEW --move-bindings-from OLD` (SPEC A1): the records made for pairing
/// `from` now name pairing `to` (the same org on the new server). The binding files do not
/// change (they name the org, not the server). Returns the directories moved.
pub fn move_bindings(home: &Home, from: &str, to: &str) -> Result<Vec<PathBuf>> {
    records::update_directories(home, |dirs| {
        let mut moved = Vec::new();
        for b in dirs.bindings.iter_mut().filter(|b| b.pairing_id.as_deref() == Some(from)) {
            b.pairing_id = Some(to.to_string());
            moved.push(b.directory.clone());
        }
        Ok(moved)
    })
}

/// `vpd trust DIR`: records the `local.yaml` that applies to DIR but was not made here.
pub fn trust(home: &Home, dir: &Path) -> Result<DirectoryRecord> {
    let r = resolve(home, dir)?;
    let (binding_dir, org_id) = match &r.resolution {
        Resolution::LocalOnly { reason: vpd_core::LocalReason::Untrusted { org_id }, binding_dir: Some(d) } => (d.clone(), org_id.clone()),
        Resolution::Pinned { binding_dir, .. } => {
            return Err(Error::new(ErrorCode::InvalidArgument, format!("{} is already trusted (bound here by vpd)", binding_dir.display())))
        }
        _ => return Err(Error::new(ErrorCode::NotBound, format!("no untrusted .viewport/local.yaml applies to {}", r.dir.display()))),
    };
    // SPEC A1: the record names the pairing it trusts the file for; with the org paired on
    // several servers, the user says which (`vpd bind DIR --org PAIRING_ID`).
    let pairing_id = match r.config.of_org(&org_id).as_slice() {
        [] => {
            return Err(Error::new(
                ErrorCode::NotPaired,
                format!(
                "{} names org {org_id}, which this machine is not paired with; pair with it first (`vpd pair --org {org_id}`), then trust the file",
                walk::local_file(&binding_dir).display()
            ),
            ))
        }
        [one] => Some(one.pairing_id.clone()),
        several => {
            let flags: Vec<_> =
                several.iter().map(|p| format!("`vpd bind {} --org {}` ({})", binding_dir.display(), p.pairing_id, p.label())).collect();
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                format!(
                    "{} names org {org_id}, which this machine is paired with on {} servers; bind it to one: {}",
                    walk::local_file(&binding_dir).display(),
                    several.len(),
                    flags.join(", ")
                ),
            ));
        }
    };
    let local = walk::local_file(&binding_dir);
    records::update_directories(home, |dirs| {
        let bytes = walk::read_local(&binding_dir)?.ok_or_else(|| Error::file(&local, "disappeared"))?;
        let f = parse_local(&bytes).map_err(|e| Error::file(&local, e))?;
        if f.org_id != org_id {
            return Err(Error::file(&local, "changed while being trusted; run the command again"));
        }
        let rec = DirectoryRecord {
            directory: binding_dir.clone(),
            org_id: org_id.clone(),
            pairing_id: pairing_id.clone(),
            file_hash: file_hash(&bytes),
            bound_at: crate::now_rfc3339(),
            recursive: f.recursive,
            suspended: false,
            server: None,
            org_name: None,
        };
        dirs.bindings.retain(|b| b.directory != binding_dir);
        dirs.bindings.push(rec.clone());
        Ok(rec)
    })
}

/// Remembers a "no" so the question is not asked again on every `cd`.
pub fn decline(home: &Home, dir: &Path, org_id: &str, pairing_id: Option<&str>, question: Question) -> Result<()> {
    records::update_declines(home, |d| {
        let q = match question {
            Question::Bind => "bind",
            Question::Trust => "trust",
        };
        d.declines.retain(|x| !(x.directory == dir && x.org_id == org_id && x.question == q && x.pairing_id.as_deref() == pairing_id));
        d.declines.push(DeclineRecord {
            directory: dir.to_path_buf(),
            org_id: org_id.into(),
            pairing_id: pairing_id.map(String::from),
            question: q.into(),
            declined_at: crate::now_rfc3339(),
        });
        Ok(())
    })
}

/// Most "not paired" notices kept: the oldest go first.
const MAX_NOTICES: usize = 500;

/// "This repo suggests org X, but you're not paired to it" is said once per repository and
/// org until the pairings change (SPEC A4), by whichever says it first — the terminal's
/// `vpd hint` or the tray's notification (`surface`, kept for the record): true (and
/// remembered) when it should be said now. Declined ones are never said. The window lists the
/// suggestion either way.
pub fn say_not_paired_once(home: &Home, dir: &Path, org_id: &str, surface: &str) -> Result<bool> {
    let mut ids: Vec<String> = config::load(home)?.pairings.into_iter().map(|p| p.org.pairing_id).collect();
    ids.sort();
    let pairings = ids.join(",");
    let said = |d: &records::Declines| d.notices.iter().any(|n| n.directory == dir && n.org_id == org_id && n.pairings == pairings);
    let declined = |d: &records::Declines| d.declines.iter().any(|x| x.directory == dir && x.org_id == org_id);
    let now = records::load_declines(home)?;
    if said(&now) || declined(&now) {
        return Ok(false);
    }
    records::update_declines(home, |d| {
        if said(d) || declined(d) {
            return Ok(false);
        }
        d.notices.retain(|n| !(n.directory == dir && n.org_id == org_id));
        d.notices.push(records::NoticeRecord {
            directory: dir.to_path_buf(),
            org_id: org_id.into(),
            pairings: pairings.clone(),
            surface: surface.into(),
            said_at: crate::now_rfc3339(),
        });
        let extra = d.notices.len().saturating_sub(MAX_NOTICES);
        d.notices.drain(..extra);
        Ok(true)
    })
}

/// Forgets one "no" (the window's Undo): the question may be asked again. Returns whether
/// there was one.
pub fn undo_decline(home: &Home, dir: &Path, org_id: &str) -> Result<bool> {
    records::update_declines(home, |d| {
        let before = d.declines.len();
        d.declines.retain(|x| !(x.directory == dir && x.org_id == org_id));
        d.notices.retain(|n| !(n.directory == dir && n.org_id == org_id));
        Ok(d.declines.len() != before)
    })
}

/// `vpd hint --reset [DIR]`: forgets the declines for DIR and everything below it (all of
/// them with `None`). Returns how many were forgotten.
pub fn reset_declines(home: &Home, dir: Option<&Path>) -> Result<usize> {
    let dir = dir.map(walk::canonical).transpose()?;
    records::update_declines(home, |d| {
        let before = d.declines.len();
        match &dir {
            None => {
                d.declines.clear();
                d.notices.clear();
            }
            Some(dir) => {
                d.declines.retain(|x| !(x.directory.starts_with(dir) || dir.starts_with(&x.directory)));
                // What was said there may be said again, too.
                d.notices.retain(|x| !(x.directory.starts_with(dir) || dir.starts_with(&x.directory)));
            }
        }
        Ok(before - d.declines.len())
    })
}
