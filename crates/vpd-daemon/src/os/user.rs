//! Who the current user is, and who owns a file: a uid on Unix, a SID on Windows.

use std::fmt;
use std::path::Path;

/// A user: `uid 1000`, or `S-1-5-21-…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(imp::Raw);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        imp::show(&self.0, f)
    }
}

/// The user this process runs as (the effective uid; the process token's user).
pub fn current() -> UserId {
    UserId(imp::current())
}

/// The owner of `path` itself (a link is not followed).
pub fn owner_of(path: &Path) -> std::io::Result<UserId> {
    imp::owner_of(path).map(UserId)
}

/// The system's own account (root; SYSTEM or the Administrators group), which may own the
/// folders users work in.
pub fn is_system(u: &UserId) -> bool {
    imp::is_system(&u.0)
}

#[cfg(unix)]
mod imp {
    pub type Raw = u32;
    pub fn show(uid: &u32, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "uid {uid}")
    }
    pub fn current() -> u32 {
        // SAFETY: geteuid cannot fail.
        unsafe { libc::geteuid() }
    }
    pub fn owner_of(path: &std::path::Path) -> std::io::Result<u32> {
        use std::os::unix::fs::MetadataExt;
        Ok(std::fs::symlink_metadata(path)?.uid())
    }
    pub fn is_system(uid: &u32) -> bool {
        *uid == 0
    }
    /// The uid, for the Unix-only checks that compare it with a socket's or a file's.
    pub fn raw(u: &super::UserId) -> u32 {
        u.0
    }
}

#[cfg(windows)]
mod imp {
    pub type Raw = String;
    pub fn show(sid: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(sid)
    }
    pub fn current() -> String {
        static ME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        ME.get_or_init(|| super::super::win::process_user(std::process::id()).unwrap_or_default()).clone()
    }
    pub fn owner_of(path: &std::path::Path) -> std::io::Result<String> {
        super::super::win::file_security(path).map(|s| s.owner)
    }
    pub fn is_system(sid: &str) -> bool {
        sid == "S-1-5-18" || sid == "S-1-5-32-544"
    }
}

#[cfg(unix)]
pub(crate) use imp::raw;

/// A user named by its raw id from the OS (a socket's peer, a connection's owner).
#[cfg(unix)]
pub(crate) fn from_raw(uid: u32) -> UserId {
    UserId(uid)
}
#[cfg(windows)]
pub(crate) fn from_raw(sid: String) -> UserId {
    UserId(sid)
}
