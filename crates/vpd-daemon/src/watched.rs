//! Watched folders: the folders a person picks in the UI (for example `~/code`) so that
//! repositories with a committed `.viewport/workspace.yaml` are suggested without a
//! terminal. Each folder is scanned (a few levels deep, never following symlinks, skipping
//! dependency and build trees) when the daemon starts, when the list changes, and when
//! inotify reports a change in the folder, one of its children or a child's `.viewport`
//! (a fresh clone). Kept in `config.json` → `daemon.watchedFolders`.

use crate::config;
use crate::error::{Error, ErrorCode, Result};
use crate::home::Home;
use notify::Watcher;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How deep below a watched folder repositories are looked for (`~/code/org/repo` is 2).
const MAX_DEPTH: usize = 3;
/// Directories looked at per folder and scan, at most.
const MAX_DIRS: usize = 20_000;
/// Inotify watches per folder, at most.
const MAX_WATCHES: usize = 2_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WatchedFolder {
    pub path: String,
    pub display: String,
    /// Repositories with a `.viewport/workspace.yaml` found at the last scan.
    pub repositories: usize,
    pub error: Option<String>,
}

/// The repositories below `folder` that carry a workspace hint.
pub fn scan(folder: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    crate::walk::visit_below(folder, MAX_DEPTH, MAX_DIRS, |dir| {
        if std::fs::symlink_metadata(crate::walk::hint_file(dir)).is_ok_and(|m| m.is_file()) {
            found.push(dir.to_path_buf());
        }
        true
    })?;
    found.sort();
    Ok(found)
}

/// The directories whose changes can reveal a new repository: the folder, its children and
/// their `.viewport` directories.
fn watch_points(folder: &Path) -> Vec<PathBuf> {
    let mut out = vec![folder.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(folder) {
        for e in entries.flatten() {
            if out.len() >= MAX_WATCHES {
                break;
            }
            if !e.file_type().is_ok_and(|t| t.is_dir()) || e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            out.push(e.path());
            let vp = e.path().join(".viewport");
            if std::fs::symlink_metadata(&vp).is_ok_and(|m| m.is_dir()) {
                out.push(vp);
            }
        }
    }
    out
}

/// `~/code` → the canonical absolute directory, with an error that says what is wrong.
pub fn normalize(input: &str) -> Result<PathBuf> {
    crate::walk::canonical(&crate::folders::expand(input, "~/code")?)
}

/// Where people keep their code, below their home directory: on the tray's first start the
/// ones that exist become watched folders (issue 11 item 4).
pub const COMMON_FOLDERS: &[&str] =
    &["code", "Code", "src", "projects", "Projects", "dev", "work", "git", "repos", "Developer", "workspace", "source/repos", "go/src"];

/// The common code folders below `user_home` that exist (real directories, not links),
/// canonical, without duplicates (a case-insensitive file system names one folder twice).
pub fn common_folders(user_home: &Path) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in COMMON_FOLDERS {
        let p = user_home.join(name);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            if let Ok(c) = crate::walk::canonical(&p) {
                let c = c.display().to_string();
                if !out.contains(&c) {
                    out.push(c);
                }
            }
        }
    }
    out
}

/// Adds `folders` to the watched folders unless they are there; returns the list.
pub fn add_all(home: &Home, folders: &[String]) -> Result<Vec<String>> {
    config::update(home, |c| {
        for f in folders {
            if !c.daemon.watched_folders.contains(f) {
                c.daemon.watched_folders.push(f.clone());
            }
        }
        Ok(c.daemon.watched_folders.clone())
    })
}

pub fn add(home: &Home, input: &str) -> Result<Vec<String>> {
    let path = normalize(input)?.display().to_string();
    config::update(home, |c| {
        if !c.daemon.watched_folders.contains(&path) {
            c.daemon.watched_folders.push(path);
        }
        Ok(c.daemon.watched_folders.clone())
    })
}

pub fn remove(home: &Home, input: &str) -> Result<Vec<String>> {
    let canonical = normalize(input).ok().map(|p| p.display().to_string());
    config::update(home, |c| {
        let before = c.daemon.watched_folders.len();
        c.daemon.watched_folders.retain(|f| f != input && Some(f) != canonical.as_ref());
        if c.daemon.watched_folders.len() == before {
            return Err(Error::new(ErrorCode::InvalidArgument, format!("{input} is not a watched folder")));
        }
        Ok(c.daemon.watched_folders.clone())
    })
}

/// The watched-folders component: the folders as last scanned, and a signal that the list
/// changed (rescan now).
#[derive(Default)]
pub struct Watched {
    folders: std::sync::Mutex<Vec<WatchedFolder>>,
    changed: tokio::sync::Notify,
}

impl Watched {
    pub fn list(&self) -> Vec<WatchedFolder> {
        self.folders.lock().unwrap().clone()
    }
    pub fn set(&self, list: Vec<WatchedFolder>) {
        *self.folders.lock().unwrap() = list;
    }
    /// The list of folders changed: rescan.
    pub fn changed(&self) {
        self.changed.notify_one();
    }
    pub async fn wait_changed(&self) {
        self.changed.notified().await
    }
}

/// Watches the points of `folders` (see [`watch_points`]); each change sends on `events`.
/// `None` (logged) when inotify is not available: the folders are then scanned at start only.
pub fn watcher(folders: &[String], events: tokio::sync::mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let points: Vec<PathBuf> = folders.iter().flat_map(|f| watch_points(Path::new(f))).collect();
    let w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if ev.is_ok_and(|e| !matches!(e.kind, notify::EventKind::Access(_))) {
            let _ = events.try_send(());
        }
    });
    match w {
        Ok(mut w) => {
            for p in &points {
                let _ = w.watch(p, notify::RecursiveMode::NonRecursive);
            }
            Some(w)
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch folders for new repositories; they are scanned at start only");
            None
        }
    }
}

/// Scans every folder: what the UI shows of it, and the suggestions of its repositories.
pub fn scan_all(home: &Home, folders: &[String]) -> Vec<(WatchedFolder, Vec<crate::suggestions::Suggestion>)> {
    let user_home = crate::home::user_home();
    folders
        .iter()
        .map(|f| {
            let p = Path::new(f);
            let (repos, error) = match scan(p) {
                Ok(r) => (r, None),
                Err(e) => (Vec::new(), Some(format!("cannot read {f}: {e}"))),
            };
            let suggestions: Vec<_> = repos.iter().filter_map(|r| crate::suggestions::check(home, r, "watched").ok().flatten()).collect();
            let folder =
                WatchedFolder { path: f.clone(), display: vpd_core::resolve::display_dir(p, user_home.as_deref()), repositories: repos.len(), error };
            (folder, suggestions)
        })
        .collect()
}
