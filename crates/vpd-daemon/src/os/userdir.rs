//! Writing inside a user's directory without following links (issue 10, item 4). `vpd bind`,
//! `unbind` and the removal of bindings open the directory once, check who may write it,
//! and then create, replace and remove `.viewport` and its files relative to that handle
//! (`openat`-style, never following a symbolic link, modes set on the open file — never a
//! chmod by path). Another local user who can write the directory cannot redirect a write or
//! a mode change to a file of theirs choosing by swapping in a link between two steps.
//!
//! Who may write the directory decides whether vpd touches it at all: owned by another user
//! (other than root), or writable by everyone without the sticky bit, it is refused; writable
//! by its group, it is used with a warning.
//!
//! On Windows there is no `openat`: every step checks that what it is about to use is not a
//! reparse point (a symlink or a junction) and is owned as expected, then works by path; a
//! folder another user may write is used with a warning (their junction could still be
//! swapped in between two steps; making one needs write access to the folder).

pub use imp::UserDir;

#[cfg(unix)]
mod imp {
    use crate::error::{Error, ErrorCode, Result};
    use rustix::fs::{AtFlags, Mode, OFlags};
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;
    use std::path::{Path, PathBuf};

    /// An open directory that vpd writes in.
    pub struct UserDir {
        fd: OwnedFd,
        path: PathBuf,
    }

    /// The `.viewport` directory inside a [`UserDir`].
    const VIEWPORT: &str = ".viewport";

    /// What is at `.viewport`.
    enum Found {
        Dir(UserDir),
        Missing,
        /// A link, a file or anything else: never followed.
        Other,
    }

    impl UserDir {
        /// Opens `dir` (canonical: no link on the way) for writing inside it, after checking who
        /// may write it. Returns a warning to show when a group other than the user's may.
        pub fn open(dir: &Path) -> Result<(UserDir, Option<String>)> {
            let d = UserDir::open_for_removal(dir)?;
            let warning = d.check_writers(&d.path)?;
            Ok((d, warning))
        }

        /// Opens `dir` only to remove what vpd wrote there: no check of who may write it (the
        /// removals never follow a link, so they cannot reach anything else).
        pub fn open_for_removal(dir: &Path) -> Result<UserDir> {
            let fd = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| Error::io(format!("opening {}", dir.display()), e.into()))?;
            Ok(UserDir { fd, path: dir.to_path_buf() })
        }

        pub fn path(&self) -> &Path {
            &self.path
        }

        /// Refuses a directory another user owns (root aside) or everyone may write without the
        /// sticky bit; a warning when its group may write it.
        fn check_writers(&self, shown: &Path) -> Result<Option<String>> {
            let st = rustix::fs::fstat(&self.fd).map_err(|e| Error::io(format!("checking {}", shown.display()), e.into()))?;
            let me = rustix::process::getuid().as_raw();
            let mode = st.st_mode as u32;
            if st.st_uid != me && st.st_uid != 0 {
                return Err(Error::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "{} belongs to another user (uid {}); vpd writes only in your own directories. Bind a directory you own.",
                        shown.display(),
                        st.st_uid
                    ),
                ));
            }
            if mode & 0o002 != 0 && mode & 0o1000 == 0 {
                return Err(Error::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "{} can be written by every user (mode {:o}, no sticky bit); another user could swap its files. Run `chmod o-w {}` first.",
                        shown.display(),
                        mode & 0o7777,
                        shown.display()
                    ),
                ));
            }
            // Group-writable for the user's own primary group is the norm where each user has a
            // group of their own (umask 002); another group is worth a warning.
            if mode & 0o020 != 0 && st.st_gid != rustix::process::getgid().as_raw() {
                return Ok(Some(format!(
                    "{} can be written by its group (mode {:o}); vpd writes there without following links, but its members can change the binding.",
                    shown.display(),
                    mode & 0o7777
                )));
            }
            Ok(None)
        }

        /// `.viewport` inside this directory, to write in: created (0755) when missing. A link, a
        /// file, or a directory that others may write is refused.
        pub fn viewport_for_writing(&self) -> Result<UserDir> {
            let path = self.path.join(VIEWPORT);
            let vp = match self.open_viewport(true)? {
                Found::Dir(vp) => vp,
                Found::Missing => return Err(Error::file(&path, "disappeared while being created; run the command again")),
                Found::Other => return Err(Error::file(&path, "exists but is not a directory (a symlink or a file); move it away first")),
            };
            if let Some(w) = vp.check_writers(&vp.path)? {
                // Inside a directory we write, a `.viewport` others may write is not ours to trust.
                return Err(Error::new(ErrorCode::InvalidArgument, format!("{w} Run `chmod g-w {}` first.", vp.path.display())));
            }
            Ok(vp)
        }

        /// `.viewport` inside this directory, to remove what vpd wrote: `None` when missing or
        /// not a directory (a link is never followed).
        pub fn viewport_for_removal(&self) -> Result<Option<UserDir>> {
            Ok(match self.open_viewport(false)? {
                Found::Dir(vp) => Some(vp),
                Found::Missing | Found::Other => None,
            })
        }

        fn open_viewport(&self, create: bool) -> Result<Found> {
            let path = self.path.join(VIEWPORT);
            let mut created = false;
            if create {
                match rustix::fs::mkdirat(&self.fd, VIEWPORT, Mode::from_raw_mode(0o755)) {
                    Ok(()) => created = true,
                    Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(Error::io(format!("creating {}", path.display()), e.into())),
                }
            }
            let fd = match rustix::fs::openat(
                &self.fd,
                VIEWPORT,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => return Ok(Found::Missing),
                Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => return Ok(Found::Other),
                Err(e) => return Err(Error::io(format!("opening {}", path.display()), e.into())),
            };
            let vp = UserDir { fd, path };
            if created {
                // The mode we meant, whatever the umask: on the open directory, not by path.
                rustix::fs::fchmod(&vp.fd, Mode::from_raw_mode(0o755)).map_err(|e| Error::io(format!("creating {}", vp.path.display()), e.into()))?;
            }
            Ok(Found::Dir(vp))
        }

        /// Reads the regular file `name` (at most `max` bytes); `None` when missing. A link or
        /// anything but a regular file is an error.
        pub fn read(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>> {
            let path = self.path.join(name);
            let fd = match rustix::fs::openat(&self.fd, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty()) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) => return Ok(None),
                Err(rustix::io::Errno::LOOP) => return Err(Error::file(&path, "is a symlink; vpd does not follow it — move it away")),
                Err(e) => return Err(Error::io(format!("reading {}", path.display()), e.into())),
            };
            let st = rustix::fs::fstat(&fd).map_err(|e| Error::io(format!("reading {}", path.display()), e.into()))?;
            if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
                return Err(Error::file(&path, "is not a regular file; move it away"));
            }
            let mut buf = Vec::new();
            std::fs::File::from(fd).take(max + 1).read_to_end(&mut buf).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            if buf.len() as u64 > max {
                return Err(Error::file(&path, format!("is more than the {max} bytes allowed")));
            }
            Ok(Some(buf))
        }

        /// Replaces `name` atomically with `bytes`, mode `mode`: a new file created next to it
        /// (never through a link), its mode set on the open file, synced, renamed over `name`
        /// (a link there is replaced, not followed), then the directory synced.
        pub fn write_atomic(&self, name: &str, bytes: &[u8], mode: u32) -> Result<()> {
            let path = self.path.join(name);
            let io = |e: rustix::io::Errno| Error::io(format!("writing {}", path.display()), e.into());
            let (tmp, fd) = loop {
                let tmp = format!(".tmp-{}-{}", name, super::random_suffix());
                match rustix::fs::openat(
                    &self.fd,
                    tmp.as_str(),
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                ) {
                    Ok(fd) => break (tmp, fd),
                    Err(rustix::io::Errno::EXIST) => continue,
                    Err(e) => return Err(io(e)),
                }
            };
            let written = (|| -> Result<()> {
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode as _)).map_err(io)?;
                let mut f = std::fs::File::from(fd);
                f.write_all(bytes).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
                f.sync_all().map_err(|e| Error::io(format!("syncing {}", path.display()), e))?;
                rustix::fs::renameat(&self.fd, tmp.as_str(), &self.fd, name).map_err(io)
            })();
            if let Err(e) = written {
                let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
                return Err(e);
            }
            rustix::fs::fsync(&self.fd).map_err(|e| Error::io(format!("syncing directory {}", self.path.display()), e.into()))
        }

        /// Removes the file (or link) `name`; nothing when it is missing.
        pub fn remove(&self, name: &str) -> Result<()> {
            match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
                Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
                Err(e) => Err(Error::io(format!("removing {}", self.path.join(name).display()), e.into())),
            }
        }

        /// Removes `.viewport` if it is empty.
        pub fn remove_viewport_if_empty(&self) {
            let _ = rustix::fs::unlinkat(&self.fd, VIEWPORT, AtFlags::REMOVEDIR);
        }
    }
}

#[cfg(windows)]
mod imp {
    use crate::error::{Error, ErrorCode, Result};
    use crate::os::files;
    use std::io::{Read, Write};
    use std::path::{Path, PathBuf};

    const VIEWPORT: &str = ".viewport";

    /// A directory that vpd writes in (checked, by path).
    pub struct UserDir {
        path: PathBuf,
    }

    fn plain_dir(path: &Path) -> Result<bool> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if files::is_link_meta(&m) => Err(Error::file(path, "is a link (a symlink or a junction); vpd does not follow it — move it away")),
            Ok(m) => Ok(m.is_dir()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(format!("checking {}", path.display()), e)),
        }
    }

    impl UserDir {
        pub fn open(dir: &Path) -> Result<(UserDir, Option<String>)> {
            let d = UserDir::open_for_removal(dir)?;
            let warning = d.check_writers()?;
            Ok((d, warning))
        }

        pub fn open_for_removal(dir: &Path) -> Result<UserDir> {
            if !plain_dir(dir)? {
                return Err(Error::file(dir, "is not a directory"));
            }
            Ok(UserDir { path: dir.to_path_buf() })
        }

        pub fn path(&self) -> &Path {
            &self.path
        }

        /// Refuses a directory another user owns (the system aside); a warning when another
        /// account may use it.
        fn check_writers(&self) -> Result<Option<String>> {
            let me = crate::os::user::current();
            let owner = crate::os::user::owner_of(&self.path).map_err(|e| Error::io(format!("checking {}", self.path.display()), e))?;
            if owner != me && !crate::os::user::is_system(&owner) {
                return Err(Error::new(
                    ErrorCode::InvalidArgument,
                    format!(
                        "{} belongs to another user ({owner}); vpd writes only in your own directories. Bind a directory you own.",
                        self.path.display()
                    ),
                ));
            }
            let access = files::access(&self.path).map_err(|e| Error::io(format!("checking {}", self.path.display()), e))?;
            Ok(access.others.then(|| {
                format!("{} is {}; vpd checks every step for links, but those accounts can change the binding.", self.path.display(), access.shown)
            }))
        }

        pub fn viewport_for_writing(&self) -> Result<UserDir> {
            let path = self.path.join(VIEWPORT);
            if !plain_dir(&path)? {
                match std::fs::create_dir(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Error::io(format!("creating {}", path.display()), e)),
                }
                if !plain_dir(&path)? {
                    return Err(Error::file(&path, "exists but is not a directory (a link or a file); move it away first"));
                }
            }
            Ok(UserDir { path })
        }

        pub fn viewport_for_removal(&self) -> Result<Option<UserDir>> {
            let path = self.path.join(VIEWPORT);
            Ok(match plain_dir(&path) {
                Ok(true) => Some(UserDir { path }),
                _ => None,
            })
        }

        pub fn read(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>> {
            let path = self.path.join(name);
            let f = match files::open_regular(&path) {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(None),
                Err(e) if files::is_link(&e) => {
                    return Err(Error::file(&path, "is a link or not a regular file; vpd does not follow it — move it away"))
                }
                Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
            };
            let mut buf = Vec::new();
            f.take(max + 1).read_to_end(&mut buf).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            if buf.len() as u64 > max {
                return Err(Error::file(&path, format!("is more than the {max} bytes allowed")));
            }
            Ok(Some(buf))
        }

        pub fn write_atomic(&self, name: &str, bytes: &[u8], _mode: u32) -> Result<()> {
            let path = self.path.join(name);
            if !plain_dir(&self.path)? {
                return Err(Error::file(&self.path, "is no longer a directory"));
            }
            let (tmp, mut f) = loop {
                let tmp = self.path.join(format!(".tmp-{name}-{}", super::random_suffix()));
                match files::private_options().write(true).create_new(true).open(&tmp) {
                    Ok(f) => break (tmp, f),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(Error::io(format!("writing {}", path.display()), e)),
                }
            };
            let written = f.write_all(bytes).and_then(|_| f.sync_all());
            drop(f);
            let done = written.and_then(|_| std::fs::rename(&tmp, &path));
            if let Err(e) = done {
                let _ = std::fs::remove_file(&tmp);
                return Err(Error::io(format!("writing {}", path.display()), e));
            }
            Ok(())
        }

        pub fn remove(&self, name: &str) -> Result<()> {
            let path = self.path.join(name);
            match std::fs::symlink_metadata(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                // A link is removed itself, never what it points at.
                Ok(m) if files::is_link_meta(&m) && m.is_dir() => {
                    std::fs::remove_dir(&path).map_err(|e| Error::io(format!("removing {}", path.display()), e))
                }
                _ => std::fs::remove_file(&path).map_err(|e| Error::io(format!("removing {}", path.display()), e)),
            }
        }

        pub fn remove_viewport_if_empty(&self) {
            let _ = std::fs::remove_dir(self.path.join(VIEWPORT));
        }
    }
}

fn random_suffix() -> String {
    let mut b = [0u8; 6];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
