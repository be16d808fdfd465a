//! Private files: the home is 0700 and its files 0600 on Unix; on Windows the home carries a
//! protected DACL that lets only its owner in, which what is created inside inherits. Files
//! are opened without following a link (a reparse point on Windows); errors that mean "a
//! link" or "the disk is full" are told apart the same way everywhere.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Who may use a file or directory besides its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub owner: super::user::UserId,
    /// Anyone else is let in (group or other bits; another DACL entry).
    pub others: bool,
    /// As a person reads it: `mode 644`, or the DACL's other trustees.
    pub shown: String,
    /// What tightens it, for a message: `chmod 600 PATH`, or "vpd tightens it".
    pub fix: String,
}

/// Reads who may use `path` (a link is not followed).
pub fn access(path: &Path) -> io::Result<Access> {
    imp::access(path)
}

/// Creates `dir` (and its parents) private to this user, or makes an existing one private.
pub fn private_dir(dir: &Path, existed: bool) -> io::Result<()> {
    imp::private_dir(dir, existed)
}

/// Makes the file `path` private to this user (0600; an owner-only DACL).
pub fn private_file(path: &Path) -> io::Result<()> {
    imp::private_file(path)
}

/// Options that create a file private to this user and never open one through a link. (On
/// Windows the file gets its owner-only DACL from the home; [`open_private`] also sets it.)
pub fn private_options() -> OpenOptions {
    imp::private_options(0o600)
}

/// Opens (creating) `path` with `options` from [`private_options`], and makes sure it is
/// private to this user whatever the directory passes on.
pub fn open_private(options: &OpenOptions, path: &Path) -> io::Result<File> {
    let f = options.open(path)?;
    if access(path)?.others {
        private_file(path)?;
    }
    Ok(f)
}

/// Options that create an executable (a release's binary, 0755) without following a link.
pub fn executable_options() -> OpenOptions {
    imp::private_options(0o755)
}

/// Opens `path` for reading if it is a regular file, without following a link and without
/// blocking on a FIFO. `Ok(None)` when it does not exist; [`NotRegular`] when it is a link,
/// a directory or a device.
pub fn open_regular(path: &Path) -> io::Result<Option<File>> {
    imp::open_regular(path)
}

/// The error [`open_regular`] returns for anything but a regular file.
#[derive(Debug)]
pub struct NotRegular;
impl std::fmt::Display for NotRegular {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a regular file")
    }
}
impl std::error::Error for NotRegular {}

pub fn not_regular() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, NotRegular)
}

/// Whether `e` says a link was met where none may be (`ELOOP`, or [`NotRegular`]).
pub fn is_link(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|i| i.is::<NotRegular>()) || imp::is_loop(e)
}

/// Whether `e` says the disk (or the user's quota) is full.
pub fn is_disk_full(e: &io::Error) -> bool {
    imp::is_disk_full(e)
}

/// Whether `meta` (of `symlink_metadata`) is a link (a reparse point on Windows).
pub fn is_link_meta(meta: &std::fs::Metadata) -> bool {
    imp::is_link_meta(meta)
}

/// The file `path` itself (a link is not followed) as (device, file number): another file
/// made in its place has another identity.
pub fn identity(path: &Path) -> io::Result<(u64, u64)> {
    imp::identity(path)
}

/// A temporary file in `dir`, private to this user, for an atomic replace.
pub fn temp_in(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    imp::temp_in(dir)
}

/// Makes a rename in `dir` durable (fsync of the directory; NTFS journals it already).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    imp::sync_dir(dir)
}

#[cfg(unix)]
mod imp {
    use super::*;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};

    pub fn identity(path: &Path) -> io::Result<(u64, u64)> {
        let m = std::fs::symlink_metadata(path)?;
        Ok((m.dev(), m.ino()))
    }

    pub fn temp_in(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
        tempfile::Builder::new().prefix(".tmp-").permissions(std::fs::Permissions::from_mode(0o600)).tempfile_in(dir)
    }

    pub fn sync_dir(dir: &Path) -> io::Result<()> {
        File::open(dir).and_then(|d| d.sync_all())
    }

    pub fn access(path: &Path) -> io::Result<Access> {
        let m = std::fs::symlink_metadata(path)?;
        let mode = m.mode() & 0o777;
        let want = if m.is_dir() { 700 } else { 600 };
        Ok(Access {
            owner: crate::os::user::from_raw(m.uid()),
            others: mode & 0o077 != 0,
            shown: format!("mode {mode:o}"),
            fix: format!("chmod {want} {}", path.display()),
        })
    }

    pub fn private_dir(dir: &Path, existed: bool) -> io::Result<()> {
        if !existed {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(dir)?;
        }
        // DirBuilder applies the umask; an existing one may be looser.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }

    pub fn private_file(path: &Path) -> io::Result<()> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }

    pub fn private_options(mode: u32) -> OpenOptions {
        let mut o = OpenOptions::new();
        o.mode(mode).custom_flags(libc::O_NOFOLLOW);
        o
    }

    pub fn open_regular(path: &Path) -> io::Result<Option<File>> {
        let f = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(not_regular()),
            Err(e) => return Err(e),
        };
        if !f.metadata()?.file_type().is_file() {
            return Err(not_regular());
        }
        Ok(Some(f))
    }

    pub fn is_loop(e: &io::Error) -> bool {
        e.raw_os_error() == Some(libc::ELOOP)
    }

    pub fn is_disk_full(e: &io::Error) -> bool {
        matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
    }

    pub fn is_link_meta(meta: &std::fs::Metadata) -> bool {
        meta.file_type().is_symlink()
    }
}

#[cfg(windows)]
mod imp {
    use super::*;
    use crate::os::win;
    use std::os::windows::fs::{MetadataExt, OpenOptionsExt};
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Storage::FileSystem::{
        GetFileInformationByHandle, BY_HANDLE_FILE_INFORMATION, FILE_ATTRIBUTE_REPARSE_POINT, FILE_FLAG_BACKUP_SEMANTICS,
        FILE_FLAG_OPEN_REPARSE_POINT,
    };

    pub fn identity(path: &Path) -> io::Result<(u64, u64)> {
        // Directories open only with backup semantics; a reparse point is opened itself.
        let f = OpenOptions::new().read(true).custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT).open(path)?;
        let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: fills `info` for a handle we own.
        if unsafe { GetFileInformationByHandle(f.as_raw_handle().cast(), &mut info) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((info.dwVolumeSerialNumber as u64, ((info.nFileIndexHigh as u64) << 32) | info.nFileIndexLow as u64))
    }

    /// Given the owner-only DACL itself before anything is written to it (what the home
    /// passes on to new files is not relied on: not every system applies it).
    pub fn temp_in(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
        let t = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
        private_file(t.path())?;
        Ok(t)
    }

    pub fn sync_dir(_dir: &Path) -> io::Result<()> {
        Ok(())
    }

    pub fn access(path: &Path) -> io::Result<Access> {
        let s = win::file_security(path)?;
        let me = crate::os::user::current().to_string();
        let others = s.others(&me);
        Ok(Access {
            owner: crate::os::user::from_raw(s.owner.clone()),
            others: !others.is_empty(),
            shown: if others.is_empty() { "only its owner".into() } else { format!("also open to {}", others.join(", ")) },
            fix: "vpd makes it private to you when it next writes it (an owner-only DACL)".into(),
        })
    }

    pub fn private_dir(dir: &Path, existed: bool) -> io::Result<()> {
        if !existed {
            std::fs::create_dir_all(dir)?;
        }
        win::OwnerOnly::new(&crate::os::user::current().to_string(), true)?.apply(dir)
    }

    pub fn private_file(path: &Path) -> io::Result<()> {
        win::OwnerOnly::new(&crate::os::user::current().to_string(), false)?.apply(path)
    }

    /// Files created in the home inherit its owner-only DACL; the mode has no meaning here.
    pub fn private_options(_mode: u32) -> OpenOptions {
        let mut o = OpenOptions::new();
        o.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
        o
    }

    pub fn open_regular(path: &Path) -> io::Result<Option<File>> {
        let f = match OpenOptions::new().read(true).custom_flags(FILE_FLAG_OPEN_REPARSE_POINT).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let m = f.metadata()?;
        if m.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0 || !m.is_file() {
            return Err(not_regular());
        }
        Ok(Some(f))
    }

    pub fn is_loop(_e: &io::Error) -> bool {
        false
    }

    pub fn is_disk_full(e: &io::Error) -> bool {
        // ERROR_HANDLE_DISK_FULL, ERROR_DISK_FULL, ERROR_DISK_QUOTA_EXCEEDED.
        matches!(e.raw_os_error(), Some(39) | Some(112) | Some(1295))
    }

    pub fn is_link_meta(meta: &std::fs::Metadata) -> bool {
        meta.file_attributes() & FILE_ATTRIBUTE_REPARSE_POINT != 0
    }
}
