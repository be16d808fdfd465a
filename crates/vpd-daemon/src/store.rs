//! File primitives every writer under the home uses: atomic 0600 writes, bounded reads of
//! regular files, and the advisory lock that serialises read-modify-write cycles across
//! processes (the daemon, several `vpd` commands, the tray).

use crate::error::{Error, ErrorCode, Result};
use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

/// Writes `bytes` to `path` so that readers see the old content or the new, never a torn
/// file: a 0600 temporary file in the same directory, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().ok_or_else(|| Error::file(path, "has no parent directory"))?;
    let mut tmp = crate::os::files::temp_in(dir).map_err(|e| Error::io(format!("creating a temporary file in {}", dir.display()), e))?;
    tmp.write_all(bytes).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(format!("syncing {}", path.display()), e))?;
    tmp.persist(path).map_err(|e| Error::io(format!("replacing {}", path.display()), e.error))?;
    crate::os::files::sync_dir(dir).map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

/// Reads a regular file of at most `max` bytes. `Ok(None)` when it does not exist. Symlinks,
/// directories, FIFOs, devices and oversized files are errors that name the file. The file
/// is opened without following a symlink and without blocking, and checked on the open
/// descriptor, so a hostile directory cannot swap in a FIFO that hangs the reader.
pub fn read_bounded(path: &Path, max: u64) -> Result<Option<Vec<u8>>> {
    let not_regular = || Error::file(path, "is not a regular file (a symlink, directory, FIFO or device); move it away");
    let mut f = match crate::os::files::open_regular(path) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        Err(e) if crate::os::files::is_link(&e) => return Err(not_regular()),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let meta = f.metadata().map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if meta.len() > max {
        return Err(Error::file(
            path,
            format!("is {} bytes, more than the {max} allowed; it is not a vpd file or is corrupt — move it away", meta.len()),
        ));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    Read::by_ref(&mut f).take(max + 1).read_to_end(&mut buf).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if buf.len() as u64 > max {
        return Err(Error::file(path, format!("grew past the {max} bytes allowed while being read")));
    }
    Ok(Some(buf))
}

/// Checks a private file: ours, not group/world accessible. Tightens the mode if it is
/// looser (nothing is lost), refuses another owner.
pub fn check_private_file(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    if crate::os::files::is_link_meta(&meta) {
        return Err(Error::file(path, "is not a regular file (a symlink, directory, FIFO or device); move it away"));
    }
    let access = crate::os::files::access(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let me = crate::os::user::current();
    if access.owner != me {
        return Err(Error::file(path, format!("is owned by {}, not by you ({me}); fix its owner", access.owner)));
    }
    if access.others && meta.file_type().is_file() {
        crate::os::files::private_file(path).map_err(|e| Error::io(format!("making {} private", path.display()), e))?;
        tracing::warn!(file = %path.display(), was = %access.shown, "made the file private");
    }
    Ok(())
}

/// An exclusive advisory lock on a file, released on drop.
pub struct Lock {
    file: File,
}

impl Lock {
    /// Waits for the lock.
    pub fn acquire(path: &Path) -> Result<Lock> {
        let file = open_lock_file(path)?;
        file.lock().map_err(|e| Error::io(format!("locking {}", path.display()), e))?;
        Ok(Lock { file })
    }

    /// Takes the lock if free; `Ok(None)` when another process holds it.
    pub fn try_acquire(path: &Path) -> Result<Option<Lock>> {
        let file = open_lock_file(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Lock { file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(format!("locking {}", path.display()), e)),
        }
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    let mut o = crate::os::files::private_options();
    o.read(true).write(true).create(true).truncate(false);
    crate::os::files::open_private(&o, path).map_err(|e| Error::io(format!("opening lock {}", path.display()), e))
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// Removes temporary files a crash left behind (`.tmp-*`) in `dir`. Call with the home lock
/// held.
pub fn sweep_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Parses a versioned JSON file of the home (`{"version": N, …}`) read with
/// [`read_bounded`]: version `current` is read; a newer one is refused with
/// [`crate::ErrorCode::ConfigTooNew`] (upgrade vpd); anything else, or a body that does not
/// match `T`, is an error naming the file. The file is never touched.
pub fn parse_versioned<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8], current: u32) -> Result<T> {
    let value: serde_json::Value = parse_json(path, bytes)?;
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(v) if v == current as u64 => {}
        Some(v) if v > current as u64 => {
            return Err(Error::new(
                crate::ErrorCode::ConfigTooNew,
                format!(
                    "{} was written by a newer vpd (version {v}; this vpd {} reads version {current}). Upgrade vpd; the file was left untouched.",
                    path.display(),
                    crate::VERSION
                ),
            ))
        }
        _ => {
            return Err(Error::file(path, "has no valid \"version\"; it is not vpd's or is corrupt. It was left untouched; fix it or move it away."))
        }
    }
    serde_json::from_value(value).map_err(|e| Error::file(path, format!("is not valid: {e}. It was left untouched; fix it or move it away.")))
}

/// Parses JSON from a file read with [`read_bounded`], with an error that names the file.
pub fn parse_json<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        Error::new(
            ErrorCode::FileInvalid,
            format!("{} is not valid: {e}. It was left untouched; fix it or move it away (a backup is wise).", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_is_0600_and_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn bounded_read_refuses_odd_files() {
        let d = tempfile::tempdir().unwrap();
        let big = d.path().join("big");
        std::fs::write(&big, vec![b'x'; 2048]).unwrap();
        assert!(read_bounded(&big, 1024).unwrap_err().message.contains("more than the 1024"));
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&big, &link).unwrap();
        assert!(read_bounded(&link, 4096).unwrap_err().message.contains("not a regular file"));
        assert!(read_bounded(d.path(), 4096).unwrap_err().message.contains("not a regular file"));
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(read_bounded(&fifo, 4096).unwrap_err().message.contains("FIFO"), "a FIFO is refused without blocking");
        assert_eq!(read_bounded(&d.path().join("none"), 10).unwrap(), None);
    }

    #[test]
    fn loose_modes_are_tightened() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        check_private_file(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn try_lock_sees_a_holder() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let held = Lock::try_acquire(&p).unwrap().expect("free");
        assert!(Lock::try_acquire(&p).unwrap().is_none());
        drop(held);
        assert!(Lock::try_acquire(&p).unwrap().is_some());
    }
}
