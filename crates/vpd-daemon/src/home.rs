//! The vpd home: `$VIEWPORT_HOME`, else `$VPD_HOME`, else `~/.viewport` (SPEC section 2).

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// The home named by the environment. Does not create it.
    pub fn from_env() -> Result<Self> {
        for var in ["VIEWPORT_HOME", "VPD_HOME"] {
            if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
                let p = PathBuf::from(v);
                if !p.is_absolute() {
                    return Err(Error::new(crate::ErrorCode::InvalidArgument, format!("{var} must be an absolute path, not {}", p.display())));
                }
                return Ok(Self { root: p });
            }
        }
        let root = Self::default_root()
            .ok_or_else(|| Error::new(crate::ErrorCode::InvalidArgument, "cannot find your home directory: set HOME or VIEWPORT_HOME"))?;
        Ok(Self { root })
    }

    /// `explicit` (a `--home DIR` flag) when given, else [`Home::from_env`]. A relative
    /// directory is taken from the current one.
    pub fn resolve(explicit: Option<&Path>) -> Result<Self> {
        match explicit {
            Some(p) if p.as_os_str().is_empty() => Err(Error::new(crate::ErrorCode::InvalidArgument, "--home needs a directory")),
            Some(p) if p.is_absolute() => Ok(Self { root: p.to_path_buf() }),
            Some(p) => {
                let cwd = std::env::current_dir().map_err(|e| Error::io("the current directory", e))?;
                Ok(Self { root: cwd.join(p) })
            }
            None => Self::from_env(),
        }
    }

    /// `~/.viewport`: the home when no variable or flag names another.
    pub fn default_root() -> Option<PathBuf> {
        user_home().map(|h| h.join(".viewport"))
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
    pub fn identities(&self) -> PathBuf {
        self.root.join("relay-identities")
    }
    pub fn directories(&self) -> PathBuf {
        self.root.join("directories.json")
    }
    pub fn hint_declines(&self) -> PathBuf {
        self.root.join("hint-declines.json")
    }
    pub fn socket(&self) -> PathBuf {
        self.root.join("vpd.sock")
    }
    pub fn ui_token(&self) -> PathBuf {
        self.root.join("ui-token")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.root.join(".lock")
    }
    pub fn daemon_lock(&self) -> PathBuf {
        self.root.join("daemon.lock")
    }

    /// What identifies the home on disk while a daemon runs in it: the (device, inode) of
    /// its directory and of its daemon lock.
    pub fn identity(&self) -> Result<HomeIdentity> {
        let id = |p: &Path| crate::os::files::identity(p).map_err(|e| Error::io(format!("reading {}", p.display()), e));
        Ok(HomeIdentity { root: id(&self.root)?, lock: id(&self.daemon_lock())? })
    }

    /// Why the home a daemon started in is no longer there: its directory or its daemon lock
    /// is gone, or was replaced by another file. `None` while both are the same files, and
    /// on any other error (a passing I/O error is no reason to stop).
    pub fn gone(&self, then: &HomeIdentity) -> Option<String> {
        for (path, was) in [(self.root.clone(), then.root), (self.daemon_lock(), then.lock)] {
            match crate::os::files::identity(&path) {
                Ok(id) if id == was => {}
                Ok(_) => return Some(format!("{} was replaced by another file", path.display())),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
                    return Some(format!("{} was removed", path.display()))
                }
                Err(_) => {}
            }
        }
        None
    }

    /// Creates the home (0700) if missing, tightens it if looser, refuses one owned by
    /// someone else or that is not a directory.
    pub fn ensure(&self) -> Result<()> {
        ensure_private_dir(&self.root)?;
        Ok(())
    }
}

/// See [`Home::identity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HomeIdentity {
    root: (u64, u64),
    lock: (u64, u64),
}

/// Creates `dir` private to this user (0700; an owner-only DACL), parents as needed, or
/// tightens an existing one. Another user's directory, or something else than a directory,
/// is refused.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    use crate::os::{files, user};
    match std::fs::symlink_metadata(dir) {
        Ok(m) => {
            if !m.is_dir() || files::is_link_meta(&m) {
                return Err(Error::file(dir, "exists but is not a directory; move it away"));
            }
            let access = files::access(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
            let me = user::current();
            if access.owner != me {
                return Err(Error::file(dir, format!("is owned by {}, not by you ({me}); fix its owner", access.owner)));
            }
            if access.others {
                files::private_dir(dir, true).map_err(|e| Error::io(format!("making {} private", dir.display()), e))?;
                tracing::warn!(dir = %dir.display(), was = %access.shown, "made the directory private");
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            files::private_dir(dir, false).map_err(|e| Error::io(format!("creating {}", dir.display()), e))
        }
        Err(e) => Err(Error::io(format!("reading {}", dir.display()), e)),
    }
}

/// The user's home directory (`$HOME`, else the system's record of it).
pub fn user_home() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(h));
    }
    dirs::home_dir()
}

/// This machine's host name (the default machine name and the status line).
pub fn machine_name() -> String {
    let n = gethostname::gethostname().to_string_lossy().into_owned();
    let n = n.trim();
    if n.is_empty() {
        "this-machine".into()
    } else {
        n.chars().take(100).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_home_is_gone_when_removed_or_replaced_not_while_it_stays() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("home"));
        home.ensure().unwrap();
        std::fs::write(home.daemon_lock(), "1").unwrap();
        let id = home.identity().unwrap();
        assert_eq!(home.gone(&id), None);
        // Rewritten in place (the daemon writes its pid): the same file.
        std::fs::write(home.daemon_lock(), "2").unwrap();
        assert_eq!(home.gone(&id), None);
        // The lock replaced by another file (made while the old one exists: another inode).
        let other = home.root().join("lock.new");
        std::fs::write(&other, "3").unwrap();
        std::fs::rename(&other, home.daemon_lock()).unwrap();
        assert!(home.gone(&id).unwrap().contains("replaced"), "{:?}", home.gone(&id));
        // The lock removed.
        let id = home.identity().unwrap();
        std::fs::remove_file(home.daemon_lock()).unwrap();
        assert!(home.gone(&id).unwrap().contains("was removed"));
        std::fs::write(home.daemon_lock(), "3").unwrap();
        // The whole home moved away and another made in its place.
        let id = home.identity().unwrap();
        std::fs::rename(home.root(), dir.path().join("moved")).unwrap();
        assert!(home.gone(&id).unwrap().contains("was removed"));
        home.ensure().unwrap();
        std::fs::write(home.daemon_lock(), "4").unwrap();
        assert!(home.gone(&id).unwrap().contains("replaced"));
    }

    #[test]
    fn an_explicit_home_wins_and_relative_ones_are_taken_from_here() {
        assert_eq!(Home::resolve(Some(Path::new("/srv/vp"))).unwrap().root(), Path::new("/srv/vp"));
        let rel = Home::resolve(Some(Path::new("vp"))).unwrap();
        assert_eq!(rel.root(), std::env::current_dir().unwrap().join("vp"));
        assert!(Home::resolve(Some(Path::new(""))).is_err());
    }
}
