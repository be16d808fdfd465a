//! The vpd home: `$VIEWPORT_HOME`, else `$VPD_HOME`, else `~/.viewport` (SPEC section 2).

use crate::error::{Error, Result};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
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
                    return Err(Error::new(
                        crate::ErrorCode::InvalidArgument,
                        format!("{var} must be an absolute path, not {}", p.display()),
                    ));
                }
                return Ok(Self { root: p });
            }
        }
        let user_home = user_home().ok_or_else(|| {
            Error::new(crate::ErrorCode::InvalidArgument, "cannot find your home directory: set HOME or VIEWPORT_HOME")
        })?;
        Ok(Self { root: user_home.join(".viewport") })
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

    /// Creates the home (0700) if missing, tightens it if looser, refuses one owned by
    /// someone else or that is not a directory.
    pub fn ensure(&self) -> Result<()> {
        ensure_private_dir(&self.root)?;
        Ok(())
    }
}

/// Creates `dir` with mode 0700 (parents as needed), or tightens an existing one.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) => {
            if !m.is_dir() {
                return Err(Error::file(dir, "exists but is not a directory; move it away"));
            }
            let uid = unsafe { libc::geteuid() };
            if m.uid() != uid {
                return Err(Error::file(dir, format!("is owned by uid {}, not by you (uid {uid}); fix with chown", m.uid())));
            }
            if m.mode() & 0o077 != 0 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(|e| Error::io(format!("tightening {} to 0700", dir.display()), e))?;
                tracing::warn!(dir = %dir.display(), "tightened permissions to 0700");
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            // DirBuilder applies the umask; make sure.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io(format!("setting {} to 0700", dir.display()), e))
        }
        Err(e) => Err(Error::io(format!("reading {}", dir.display()), e)),
    }
}

/// The user's home directory (`$HOME`, else the passwd entry).
pub fn user_home() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(h));
    }
    // SAFETY: getpwuid returns a pointer into static storage or null; read it at once.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if pw.is_null() || (*pw).pw_dir.is_null() {
            return None;
        }
        let dir = std::ffi::CStr::from_ptr((*pw).pw_dir);
        Some(PathBuf::from(std::ffi::OsStr::from_encoded_bytes_unchecked(dir.to_bytes())))
    }
}

/// This machine's host name (the default machine name and the status line).
pub fn machine_name() -> String {
    let n = gethostname::gethostname().to_string_lossy().into_owned();
    let n = n.trim();
    if n.is_empty() { "this-machine".into() } else { n.chars().take(100).collect() }
}
