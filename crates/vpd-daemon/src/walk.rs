//! Gathers the facts `vpd_core::resolve` and `vpd_core::hint::decide` need, walking from a
//! canonical directory up to the root. This is the only place that reads binding and hint
//! files; it reads nothing else. Per level it costs one `lstat` of `.viewport` (plus one of
//! `.git` until the nearest repository root is found) and reads files only where a
//! `.viewport` directory exists.

use crate::error::{Error, ErrorCode, Result};
use crate::store;
use std::path::{Path, PathBuf};
use vpd_core::{DirFacts, FileRead, MAX_BINDING_FILE};

/// The canonical form of `dir` (symlinks resolved), with errors that say what went wrong.
pub fn canonical(dir: &Path) -> Result<PathBuf> {
    let c = dunce::canonicalize(dir).map_err(|e| {
        let why = if crate::os::files::is_link(&e) { "a symlink loop".to_string() } else { e.to_string() };
        Error::new(ErrorCode::InvalidArgument, format!("cannot resolve {}: {why}", dir.display()))
    })?;
    if !c.is_dir() {
        return Err(Error::new(ErrorCode::InvalidArgument, format!("{} is not a directory", c.display())));
    }
    Ok(c)
}

/// Facts for `start` (canonical) and each of its ancestors, nearest first.
pub fn gather(start: &Path) -> Vec<DirFacts> {
    let mut out = Vec::with_capacity(16);
    let mut repo_found = false;
    let mut cur = Some(start);
    while let Some(dir) = cur {
        let vp = dir.join(".viewport");
        let (local, hint) = match std::fs::symlink_metadata(&vp) {
            Ok(m) if m.is_dir() => (read(&vp.join(LOCAL_FILE)), read(&vp.join(HINT_FILE))),
            Ok(_) => (
                FileRead::Unreadable(format!("{} is not a directory (a symlink or a file); vpd does not follow it", vp.display())),
                FileRead::Missing,
            ),
            Err(_) => (FileRead::Missing, FileRead::Missing),
        };
        let is_repo_root = !repo_found && std::fs::symlink_metadata(dir.join(".git")).is_ok();
        repo_found |= is_repo_root;
        out.push(DirFacts { dir: dir.to_path_buf(), is_repo_root, local, hint });
        cur = dir.parent();
    }
    out
}

/// The binding file of `dir`: `dir/.viewport/local.yaml`.
pub fn local_file(dir: &Path) -> PathBuf {
    dir.join(".viewport").join(LOCAL_FILE)
}

/// The committed hint of `dir`: `dir/.viewport/workspace.yaml`.
/// Directories a scan below a folder never enters (besides hidden ones).
const SCAN_SKIP: &[&str] = &["node_modules", "target", "vendor", "dist", "build", "__pycache__", "venv"];

/// Visits `folder` and the directories below it — not hidden, not [`SCAN_SKIP`], at most
/// `max_depth` down and `max_dirs` in all, never through a symlink — calling `f` on each;
/// `f` says whether to look below that one. The folder itself must be readable.
pub fn visit_below(folder: &Path, max_depth: usize, max_dirs: usize, mut f: impl FnMut(&Path) -> bool) -> std::io::Result<()> {
    std::fs::read_dir(folder)?;
    let mut stack = vec![(folder.to_path_buf(), 0usize)];
    let mut seen = 0usize;
    while let Some((dir, depth)) = stack.pop() {
        seen += 1;
        if seen > max_dirs {
            break;
        }
        if !f(&dir) || depth >= max_depth {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || SCAN_SKIP.contains(&name.as_ref()) {
                continue;
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((e.path(), depth + 1));
            }
        }
    }
    Ok(())
}

/// The repositories (directories with a `.git`) below `folder`, up to four levels down; a
/// repository's own subdirectories are not searched. Sorted.
pub fn repositories_below(folder: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let _ = visit_below(folder, 4, 20_000, |d| {
        if d != folder && std::fs::symlink_metadata(d.join(".git")).is_ok() {
            found.push(d.to_path_buf());
            return false;
        }
        true
    });
    found.sort();
    found
}

/// Whether `dir` is inside a repository (it or an ancestor has a `.git`).
pub fn inside_repository(dir: &Path) -> bool {
    dir.ancestors().any(|a| std::fs::symlink_metadata(a.join(".git")).is_ok())
}

pub fn hint_file(dir: &Path) -> PathBuf {
    dir.join(".viewport").join(HINT_FILE)
}

/// Reads the binding file of `dir` as [`gather`] does (bounded, never through a link);
/// `Ok(None)` when there is none. The only other reader of binding files.
pub fn read_local(dir: &Path) -> Result<Option<Vec<u8>>> {
    store::read_bounded(&local_file(dir), MAX_BINDING_FILE)
}

/// The binding file's name inside `.viewport` (for writers that work relative to it).
pub const LOCAL_FILE: &str = "local.yaml";
const HINT_FILE: &str = "workspace.yaml";

fn read(path: &Path) -> FileRead {
    match store::read_bounded(path, MAX_BINDING_FILE) {
        Ok(None) => FileRead::Missing,
        Ok(Some(bytes)) => FileRead::Bytes(bytes),
        Err(e) => FileRead::Unreadable(e.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_to_root_and_marks_only_the_nearest_repo() {
        let d = tempfile::tempdir().unwrap();
        let root = canonical(d.path()).unwrap();
        let inner = root.join("outer/inner/src");
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::create_dir_all(root.join("outer/.git")).unwrap();
        std::fs::write(root.join("outer/inner/.git"), "gitdir: x").unwrap();
        std::fs::create_dir_all(root.join("outer/.viewport")).unwrap();
        std::fs::write(root.join("outer/.viewport/workspace.yaml"), "org_id: x\n").unwrap();
        let facts = gather(&inner);
        assert_eq!(facts.last().unwrap().dir, Path::new("/"));
        let repo: Vec<_> = facts.iter().filter(|f| f.is_repo_root).map(|f| f.dir.clone()).collect();
        assert_eq!(repo, vec![root.join("outer/inner")]);
        let outer = facts.iter().find(|f| f.dir == root.join("outer")).unwrap();
        assert_eq!(outer.hint, FileRead::Bytes(b"org_id: x\n".to_vec()));
    }

    #[test]
    fn symlink_loops_and_odd_files_are_unreadable_not_fatal() {
        let d = tempfile::tempdir().unwrap();
        let root = canonical(d.path()).unwrap();
        std::fs::create_dir_all(root.join("a/.viewport")).unwrap();
        std::os::unix::fs::symlink(root.join("a/.viewport/local.yaml"), root.join("a/.viewport/local.yaml")).unwrap();
        let facts = gather(&root.join("a"));
        assert!(matches!(&facts[0].local, FileRead::Unreadable(m) if m.contains("not a regular file")));
        std::os::unix::fs::symlink(root.join("loop1"), root.join("loop2")).unwrap();
        std::os::unix::fs::symlink(root.join("loop2"), root.join("loop1")).unwrap();
        let err = canonical(&root.join("loop1")).unwrap_err();
        assert!(err.message.contains("symlink loop"), "{err}");
        std::fs::create_dir_all(root.join("b")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("b/.viewport")).unwrap();
        assert!(matches!(&gather(&root.join("b"))[0].local, FileRead::Unreadable(_)));
    }
}
