//! An installation's `current`, which names the version that runs (`vpd update`): a symbolic
//! link replaced in one rename on Unix. On Windows a user cannot make symbolic links without
//! developer mode, so `current` is a directory junction, and a junction cannot be renamed
//! over another: the old one steps aside first (`current.old`), and [`recover`] puts it
//! back if the process stopped in between.

use std::io;
use std::path::{Path, PathBuf};

/// What `link` points at, if it is a pointer.
pub fn target(link: &Path) -> Option<PathBuf> {
    imp::target(link)
}

/// Whether `path` is a pointer (a symlink; a junction).
pub fn is_pointer(path: &Path) -> bool {
    imp::is_pointer(path)
}

/// Points `root/name` at `root/to` (`to` relative to `root`), replacing what it pointed at.
pub fn switch(root: &Path, name: &str, to: &Path) -> io::Result<()> {
    imp::switch(root, name, to)
}

/// Finishes a [`switch`] that stopped between its steps (Windows); nothing to do on Unix.
pub fn recover(root: &Path, name: &str) {
    imp::recover(root, name)
}

/// Makes `link` a link to the file `target` (the command on PATH). Windows has no such link
/// for a user: `Unsupported` (the installer puts the folder on PATH instead).
pub fn link_file(target: &Path, link: &Path) -> io::Result<()> {
    imp::link_file(target, link)
}

/// Where a person's shell finds commands they installed themselves, in the order the app's
/// "Install command line tool" tries them: `/usr/local/bin` on macOS when this user may
/// write it (as Tailscale's app does), then `~/.local/bin` (Linux, macOS); none on Windows,
/// where the installer puts its folder on PATH.
pub fn command_dirs() -> Vec<PathBuf> {
    imp::command_dirs()
}

#[cfg(unix)]
mod imp {
    use super::*;

    pub fn command_dirs() -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        let local = Path::new("/usr/local/bin");
        if cfg!(target_os = "macos") && local.is_dir() && tempfile::tempfile_in(local).is_ok() {
            dirs.push(local.to_path_buf());
        }
        dirs.extend(crate::home::user_home().map(|h| h.join(".local/bin")));
        dirs
    }

    pub fn target(link: &Path) -> Option<PathBuf> {
        std::fs::read_link(link).ok()
    }

    pub fn is_pointer(path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
    }

    pub fn switch(root: &Path, name: &str, to: &Path) -> io::Result<()> {
        let tmp = root.join(format!(".{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(to, &tmp)?;
        crate::failpoint("update-before-switch");
        std::fs::rename(&tmp, root.join(name))?;
        std::fs::File::open(root).and_then(|d| d.sync_all())
    }

    pub fn recover(_root: &Path, _name: &str) {}

    pub fn link_file(target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }
}

#[cfg(windows)]
mod imp {
    use super::*;

    pub fn command_dirs() -> Vec<PathBuf> {
        Vec::new()
    }

    pub fn target(link: &Path) -> Option<PathBuf> {
        junction::get_target(link).ok()
    }

    pub fn is_pointer(path: &Path) -> bool {
        junction::exists(path).unwrap_or(false)
    }

    pub fn switch(root: &Path, name: &str, to: &Path) -> io::Result<()> {
        let (link, old, tmp) = (root.join(name), root.join(format!("{name}.old")), root.join(format!(".{name}-{}", std::process::id())));
        let _ = junction::delete(&tmp).and_then(|_| std::fs::remove_dir(&tmp));
        junction::create(root.join(to), &tmp)?;
        crate::failpoint("update-before-switch");
        if link.exists() || is_pointer(&link) {
            std::fs::rename(&link, &old)?;
        }
        std::fs::rename(&tmp, &link)?;
        if is_pointer(&old) {
            let _ = junction::delete(&old);
            let _ = std::fs::remove_dir(&old);
        }
        Ok(())
    }

    pub fn recover(root: &Path, name: &str) {
        let (link, old) = (root.join(name), root.join(format!("{name}.old")));
        if !is_pointer(&link) && is_pointer(&old) {
            let _ = std::fs::rename(&old, &link);
        }
    }

    pub fn link_file(_target: &Path, _link: &Path) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "no links to files for users on Windows"))
    }
}
