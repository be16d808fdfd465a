//! The daemon's cache of directory facts (issue 9, SPEC section 13's ≤ 10 µs warm
//! resolution). A session start resolves its directory from what this cache remembers of the
//! walk up to the root, instead of walking the file system again — but only while the cache
//! can prove nothing changed:
//!
//! - every directory of a cached walk (and each `.viewport` in it) is watched, and the watch
//!   is set *before* the directory is read, so no change can fall between the read and the
//!   watch;
//! - every lookup first drains the kernel's queue of changes, so a change finished before the
//!   session started is always seen, however recently — `vpd bind`, `unbind` and `trust`
//!   (which run in other processes) included;
//! - each cached `local.yaml` is checked on use by device, inode, size, modification and
//!   change time, and `config.json` and `directories.json` likewise;
//! - a directory on a file system that does not report every change (NFS, SMB, FUSE, 9p…) is
//!   never cached, and a lost change (the kernel's queue overflowed) or a system without
//!   change notification turns the cache off for the daemon's life: every resolution then
//!   walks the file system, as the CLI always does.
//!
//! What is cached are the facts [`walk`] gathers, and the last decision `vpd_core::resolve`
//! made on them, reused only while its other inputs (`config.json`, `directories.json`) are
//! the same files, unchanged.

use crate::binding::Resolved;
use crate::config::{self, Config};
use crate::error::Result;
use crate::home::Home;
use crate::records::{self, Directories};
use crate::walk;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use vpd_core::{DirFacts, FileRead, Resolution};

/// At most this many cached walks (session directories); past it the cache starts over.
const MAX_CHAINS: usize = 4096;

use watch::FileId;

/// One cached walk: the facts from a session directory up to the root, and the identity of
/// each `local.yaml` read on the way.
struct Chain {
    facts: Arc<Vec<DirFacts>>,
    locals: Vec<(PathBuf, FileId)>,
    /// The last decision on these facts, and the config and records it was made with.
    decided: Option<(Inputs, Resolution)>,
}

type Inputs = (Option<FileId>, Option<FileId>);

/// A home file parsed once and kept while its identity is unchanged.
struct Kept<T> {
    id: FileId,
    value: Arc<T>,
}

impl<T> Kept<T> {
    /// The value in `slot` while `path` is the same file, else `load`ed again (a missing
    /// file is always loaded: it has no identity to compare).
    fn fresh(slot: &mut Option<Kept<T>>, path: &Path, load: impl FnOnce() -> Result<T>) -> Result<Arc<T>> {
        let id = FileId::of(path);
        if let Some(k) = slot.as_ref().filter(|k| k.id == id && id != FileId::Missing) {
            return Ok(k.value.clone());
        }
        let value = Arc::new(load()?);
        *slot = Some(Kept { id, value: value.clone() });
        Ok(value)
    }
}

#[derive(Default)]
struct Inner {
    watcher: Option<watch::Watcher>,
    /// Why the cache is off, when it is.
    off: Option<String>,
    chains: HashMap<PathBuf, Chain>,
    /// Every directory that is part of a cached walk.
    dirs: HashSet<PathBuf>,
    config: Option<Kept<Config>>,
    directories: Option<Kept<Directories>>,
}

/// How the cache stands, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheState {
    On { walks: usize, directories: usize },
    Off { reason: String },
}

pub struct FactsCache {
    inner: Arc<Mutex<Inner>>,
}

impl FactsCache {
    /// A cache, on where the system can report changes. The kernel's queue is also drained
    /// in the background (so a busy directory cannot overflow it between session starts).
    pub fn new() -> FactsCache {
        FactsCache::with_drain_thread(true)
    }

    fn with_drain_thread(drain_thread: bool) -> FactsCache {
        let inner = match watch::Watcher::new() {
            Ok(w) => Inner { watcher: Some(w), ..Inner::default() },
            Err(why) => {
                tracing::info!("directory facts are not cached: {why}");
                Inner { off: Some(why), ..Inner::default() }
            }
        };
        let inner = Arc::new(Mutex::new(inner));
        let fd = inner.lock().unwrap().watcher.as_ref().filter(|_| drain_thread).map(watch::Watcher::wait_handle);
        if let Some(fd) = fd {
            let weak = Arc::downgrade(&inner);
            let spawned = std::thread::Builder::new().name("vpd-facts-cache".into()).spawn(move || {
                loop {
                    // Long waits: an idle daemon wakes only when a watched directory changes.
                    let ready = fd.wait_readable(std::time::Duration::from_secs(60));
                    let Some(inner) = weak.upgrade() else { return };
                    if ready {
                        inner.lock().unwrap().drain();
                    }
                    if inner.lock().unwrap().watcher.is_none() {
                        return;
                    }
                }
            });
            if let Err(e) = spawned {
                inner.lock().unwrap().turn_off(format!("cannot start its thread: {e}"));
            }
        }
        FactsCache { inner }
    }

    /// A cache that is always off: every resolution walks the file system.
    pub fn off(reason: &str) -> FactsCache {
        FactsCache { inner: Arc::new(Mutex::new(Inner { off: Some(reason.into()), ..Inner::default() })) }
    }

    pub fn state(&self) -> CacheState {
        let i = self.inner.lock().unwrap();
        match &i.off {
            Some(reason) => CacheState::Off { reason: reason.clone() },
            None => CacheState::On { walks: i.chains.len(), directories: i.dirs.len() },
        }
    }

    /// Resolves `dir` as a session started there would be — the same answer as
    /// [`crate::binding::resolve`], from cached facts when they are still true.
    pub fn resolve(&self, home: &Home, dir: &Path) -> Result<Resolved> {
        let mut i = self.inner.lock().unwrap();
        i.drain();
        let config = i.config(home)?;
        let directories = i.directories(home)?;
        // What a decision depends on besides the facts: the pairings and the records.
        let inputs = (i.config.as_ref().map(|k| k.id), i.directories.as_ref().map(|k| k.id));
        let start = match i.lookup(dir) {
            Some(start) => start,
            None => {
                let canonical = walk::canonical(dir)?;
                match i.lookup(&canonical) {
                    Some(start) => start,
                    None => match i.fill(&canonical) {
                        Ok(start) => start,
                        Err(facts) => {
                            // Not cacheable: decided from this walk alone.
                            drop(i);
                            let resolution = vpd_core::resolve(&facts, &directories.records(), &config.refs());
                            return Ok(Resolved { dir: canonical, facts: Arc::new(facts), resolution, config, directories });
                        }
                    },
                }
            }
        };
        let chain = i.chains.get_mut(&start).expect("looked up or filled just now");
        let resolution = match &chain.decided {
            // Every input of the decision is proven unchanged: the same facts (watched and
            // checked), the same config.json and directories.json.
            Some((ids, r)) if *ids == inputs => r.clone(),
            _ => {
                let r = vpd_core::resolve(&chain.facts, &directories.records(), &config.refs());
                chain.decided = Some((inputs, r.clone()));
                r
            }
        };
        Ok(Resolved { dir: start, facts: chain.facts.clone(), resolution, config, directories })
    }
}

impl Default for FactsCache {
    fn default() -> Self {
        FactsCache::new()
    }
}

impl Inner {
    fn turn_off(&mut self, reason: String) {
        tracing::warn!("directory facts cache turned off: {reason}; every session start walks the file system");
        self.off = Some(reason);
        self.watcher = None;
        self.chains.clear();
        self.dirs.clear();
    }

    fn config(&mut self, home: &Home) -> Result<Arc<Config>> {
        Kept::fresh(&mut self.config, &home.config(), || config::read(home))
    }

    fn directories(&mut self, home: &Home) -> Result<Arc<Directories>> {
        Kept::fresh(&mut self.directories, &home.directories(), || records::load_directories(home))
    }

    /// `dir` as a key of the cache, if its walk is cached (so it was canonical when cached,
    /// and nothing on its path changed since) and every `local.yaml` read on it is unchanged.
    fn lookup(&mut self, dir: &Path) -> Option<PathBuf> {
        let (start, chain) = self.chains.get_key_value(dir)?;
        if chain.locals.iter().all(|(path, id)| FileId::of(path) == *id) {
            return Some(start.clone());
        }
        self.forget(dir);
        None
    }

    /// Walks `dir` (canonical) and caches the walk when every directory on it can be watched
    /// (its key), or returns the facts uncached.
    fn fill(&mut self, dir: &Path) -> std::result::Result<PathBuf, Vec<DirFacts>> {
        let Some(watcher) = self.watcher.as_mut() else {
            return Err(walk::gather(dir));
        };
        if self.chains.len() >= MAX_CHAINS {
            self.chains.clear();
            self.dirs.clear();
        }
        // Watch first, then read: a change after this point is in the queue.
        let mut cacheable = true;
        for d in dir.ancestors() {
            if let Err(why) = watcher.watch_dir(d) {
                tracing::debug!("not caching {}: {why}", dir.display());
                cacheable = false;
                break;
            }
            let vp = d.join(".viewport");
            if std::fs::symlink_metadata(&vp).is_ok_and(|m| m.is_dir()) {
                if let Err(why) = watcher.watch_viewport(&vp) {
                    tracing::debug!("not caching {}: {why}", dir.display());
                    cacheable = false;
                    break;
                }
            }
        }
        // The watches are in place before the first identity is taken, and identities are
        // taken before the reads, so a file replaced in between fails the identity check.
        let locals: Vec<(PathBuf, FileId)> = dir
            .ancestors()
            .map(walk::local_file)
            .filter_map(|p| {
                let id = FileId::of(&p);
                (id != FileId::Missing).then_some((p, id))
            })
            .collect();
        let facts = walk::gather(dir);
        let read_locals = facts.iter().filter(|f| !matches!(f.local, FileRead::Missing)).count();
        if !cacheable || read_locals != locals.len() {
            return Err(facts);
        }
        self.dirs.extend(dir.ancestors().map(Path::to_path_buf));
        self.chains.insert(dir.to_path_buf(), Chain { facts: Arc::new(facts), locals, decided: None });
        Ok(dir.to_path_buf())
    }

    /// Forgets every cached walk that goes through `dir`.
    fn forget(&mut self, dir: &Path) {
        self.chains.retain(|start, _| !start.starts_with(dir));
        self.dirs.retain(|d| !d.starts_with(dir));
        // Directories still on another walk stay known.
        let still: Vec<PathBuf> = self.chains.keys().flat_map(|k| k.ancestors().map(Path::to_path_buf)).collect();
        self.dirs.extend(still);
    }

    /// Applies every change the kernel has queued.
    fn drain(&mut self) {
        let Some(watcher) = self.watcher.as_mut() else { return };
        let drained = watcher.drain();
        if let Some(reason) = drained.lost {
            self.turn_off(reason);
            return;
        }
        for change in drained.changes {
            match change {
                Change::Entry { dir, name } => {
                    if name == ".viewport" || name == ".git" {
                        self.forget(&dir);
                    } else {
                        let child = dir.join(&name);
                        if self.dirs.contains(&child) {
                            self.forget(&child);
                        }
                    }
                }
                Change::Inside { dir } | Change::Gone { dir } => self.forget(&dir),
            }
        }
    }
}

/// A change the system reported.
pub enum Change {
    /// An entry `name` of `dir` appeared, went, was renamed or changed its mode.
    Entry { dir: PathBuf, name: std::ffi::OsString },
    /// Something inside `dir/.viewport` changed.
    Inside { dir: PathBuf },
    /// `dir` itself was deleted or moved.
    Gone { dir: PathBuf },
}

/// What one drain of the queue found.
pub struct Drained {
    pub changes: Vec<Change>,
    /// Set when changes may have been lost.
    pub lost: Option<String>,
}

/// Change notification, one implementation per system.
#[cfg(target_os = "linux")]
mod watch {
    use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
    use std::collections::HashMap;
    use std::os::fd::{AsRawFd, RawFd};
    use std::path::{Path, PathBuf};

    pub use super::{Change, Drained};

    #[derive(Clone, Copy)]
    enum Kind {
        /// A directory on a walk: its entries.
        Dir,
        /// A `.viewport` directory: everything in it (the owner is its parent).
        Viewport,
    }

    pub struct Watcher {
        inotify: Inotify,
        watched: HashMap<WatchDescriptor, (PathBuf, Kind)>,
        buffer: Vec<u8>,
    }

    /// Enough of a file's metadata to notice any replacement or change of its content.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum FileId {
        Missing,
        Present { dev: u64, ino: u64, size: u64, mtime: (i64, i64), ctime: (i64, i64) },
    }

    impl FileId {
        pub fn of(path: &Path) -> FileId {
            use std::os::unix::fs::MetadataExt;
            match std::fs::symlink_metadata(path) {
                Ok(m) => FileId::Present {
                    dev: m.dev(),
                    ino: m.ino(),
                    size: m.size(),
                    mtime: (m.mtime(), m.mtime_nsec()),
                    ctime: (m.ctime(), m.ctime_nsec()),
                },
                Err(_) => FileId::Missing,
            }
        }
    }

    pub struct WaitHandle(RawFd);

    impl WaitHandle {
        /// Waits up to `timeout` for queued changes; true when there are some.
        pub fn wait_readable(&self, timeout: std::time::Duration) -> bool {
            let mut p = libc::pollfd { fd: self.0, events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd. The descriptor may have been closed when the cache
            // turned off; poll then reports POLLNVAL and the caller sees the cache is off.
            let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as libc::c_int) };
            n > 0 && p.revents & libc::POLLIN != 0
        }
    }

    /// File systems whose changes made elsewhere (another machine, a FUSE daemon) inotify
    /// does not see.
    const REMOTE_FS: [i64; 10] = [
        0x6969,      // NFS
        0x517B,      // SMB
        0xFF53_4D42, // CIFS
        0xFE53_4D42, // SMB2
        0x6573_5546, // FUSE
        0x0102_1997, // 9p
        0x5346_414F, // AFS
        0x00C3_6400, // Ceph
        0x7375_7245, // Coda
        0x0BD0_0BD0, // Lustre
    ];

    impl Watcher {
        pub fn new() -> Result<Watcher, String> {
            let inotify = Inotify::init().map_err(|e| format!("inotify is not available: {e}"))?;
            Ok(Watcher { inotify, watched: HashMap::new(), buffer: vec![0; 64 * 1024] })
        }

        pub fn wait_handle(&self) -> WaitHandle {
            WaitHandle(self.inotify.as_raw_fd())
        }

        pub fn watch_dir(&mut self, dir: &Path) -> Result<(), String> {
            let mask = WatchMask::CREATE
                | WatchMask::DELETE
                | WatchMask::MOVED_FROM
                | WatchMask::MOVED_TO
                | WatchMask::ATTRIB
                | WatchMask::DELETE_SELF
                | WatchMask::MOVE_SELF;
            self.add(dir, mask, Kind::Dir)
        }

        pub fn watch_viewport(&mut self, vp: &Path) -> Result<(), String> {
            let mask = WatchMask::CREATE
                | WatchMask::DELETE
                | WatchMask::MOVED_FROM
                | WatchMask::MOVED_TO
                | WatchMask::ATTRIB
                | WatchMask::MODIFY
                | WatchMask::CLOSE_WRITE
                | WatchMask::DELETE_SELF
                | WatchMask::MOVE_SELF;
            self.add(vp, mask, Kind::Viewport)
        }

        fn add(&mut self, path: &Path, mask: WatchMask, kind: Kind) -> Result<(), String> {
            if !reports_every_change(path) {
                return Err(format!("{} is on a file system that does not report every change", path.display()));
            }
            let wd = self
                .inotify
                .watches()
                .add(path, mask | WatchMask::ONLYDIR | WatchMask::DONT_FOLLOW)
                .map_err(|e| format!("cannot watch {}: {e}", path.display()))?;
            self.watched.insert(wd, (path.to_path_buf(), kind));
            Ok(())
        }

        pub fn drain(&mut self) -> Drained {
            let mut out = Drained { changes: Vec::new(), lost: None };
            loop {
                let events = match self.inotify.read_events(&mut self.buffer) {
                    Ok(events) => events,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return out,
                    Err(e) => {
                        out.lost = Some(format!("reading changes failed: {e}"));
                        return out;
                    }
                };
                let mut any = false;
                for e in events {
                    any = true;
                    if e.mask.contains(EventMask::Q_OVERFLOW) {
                        out.lost = Some("the kernel's queue of changes overflowed".into());
                        return out;
                    }
                    let Some((path, kind)) = self.watched.get(&e.wd).cloned() else { continue };
                    if e.mask.contains(EventMask::IGNORED) {
                        self.watched.remove(&e.wd);
                    }
                    let owner = match kind {
                        Kind::Dir => path.clone(),
                        Kind::Viewport => path.parent().map(Path::to_path_buf).unwrap_or_else(|| path.clone()),
                    };
                    let gone = e.mask.intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF | EventMask::IGNORED | EventMask::UNMOUNT);
                    out.changes.push(match (kind, gone, e.name) {
                        (Kind::Dir, true, _) => Change::Gone { dir: owner },
                        (Kind::Dir, false, Some(name)) => Change::Entry { dir: owner, name: name.to_os_string() },
                        (Kind::Dir, false, None) => Change::Gone { dir: owner },
                        (Kind::Viewport, _, _) => Change::Inside { dir: owner },
                    });
                }
                if !any {
                    return out;
                }
            }
        }
    }

    fn reports_every_change(path: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
        // SAFETY: a zeroed statfs is a valid out-parameter; `c` is NUL-terminated.
        let mut s: libc::statfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statfs(c.as_ptr(), &mut s) } != 0 {
            return false;
        }
        #[allow(clippy::unnecessary_cast)]
        let kind = s.f_type as i64;
        !is_remote(kind)
    }

    pub fn is_remote(f_type: i64) -> bool {
        REMOTE_FS.contains(&f_type)
    }
}

/// Systems without a change-notification implementation here: the cache stays off.
#[cfg(not(target_os = "linux"))]
#[allow(dead_code)]
mod watch {
    use std::path::Path;

    /// Never used to keep anything: every file counts as changed.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum FileId {
        Missing,
    }

    impl FileId {
        pub fn of(_: &Path) -> FileId {
            FileId::Missing
        }
    }

    pub use super::Drained;

    pub struct Watcher;

    pub struct WaitHandle;

    impl WaitHandle {
        pub fn wait_readable(&self, _: std::time::Duration) -> bool {
            false
        }
    }

    impl Watcher {
        pub fn new() -> Result<Watcher, String> {
            Err("this system's change notification is not used yet".into())
        }
        pub fn wait_handle(&self) -> WaitHandle {
            WaitHandle
        }
        pub fn watch_dir(&mut self, _: &Path) -> Result<(), String> {
            Err("unsupported".into())
        }
        pub fn watch_viewport(&mut self, _: &Path) -> Result<(), String> {
            Err("unsupported".into())
        }
        pub fn drain(&mut self) -> Drained {
            Drained { changes: Vec::new(), lost: None }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::binding;
    use vpd_core::files::render_local;

    const ORG: &str = "01J7M8N9P0Q1R2S3T4V5V6W7X8";

    struct World {
        _tmp: tempfile::TempDir,
        home: Home,
        root: PathBuf,
    }

    fn world() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap().join("code");
        let home = Home::at(tmp.path().join("home"));
        home.ensure().unwrap();
        config::update(&home, |c| {
            c.pairings.push(config::test_pairing(ORG));
            Ok(())
        })
        .unwrap();
        for d in ["a/c/e", "a/d", "b/c"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        World { _tmp: tmp, home, root }
    }

    /// The cache answers exactly what a fresh walk answers.
    fn same(cache: &FactsCache, w: &World, dir: &Path) {
        let fresh = binding::resolve(&w.home, dir);
        let cached = cache.resolve(&w.home, dir);
        match (fresh, cached) {
            (Ok(f), Ok(c)) => {
                assert_eq!((&c.dir, &c.resolution), (&f.dir, &f.resolution), "at {}", dir.display());
                assert_eq!(*c.facts, *f.facts, "facts at {}", dir.display());
            }
            (Err(f), Err(c)) => assert_eq!(c.code, f.code),
            (f, c) => panic!("at {}: fresh {:?} but cached {:?}", dir.display(), f.map(|r| r.resolution), c.map(|r| r.resolution)),
        }
    }

    fn pinned(cache: &FactsCache, w: &World, dir: &Path) -> bool {
        matches!(cache.resolve(&w.home, dir).unwrap().resolution, Resolution::Pinned { .. })
    }

    #[test]
    fn a_warm_lookup_walks_nothing_and_answers_as_the_walk_does() {
        let w = world();
        let cache = FactsCache::new();
        binding::bind(&w.home, &w.root.join("a"), ORG, true, false).unwrap();
        let e = w.root.join("a/c/e");
        same(&cache, &w, &e);
        assert!(matches!(cache.state(), CacheState::On { walks: 1, .. }), "{:?}", cache.state());
        same(&cache, &w, &e);
        assert!(pinned(&cache, &w, &e));
        assert!(matches!(cache.state(), CacheState::On { walks: 1, .. }), "the second lookup was a hit");
    }

    #[test]
    fn changes_made_through_vpd_and_by_hand_are_seen_at_once() {
        let w = world();
        let cache = FactsCache::new();
        let (a, e) = (w.root.join("a"), w.root.join("a/c/e"));
        assert!(!pinned(&cache, &w, &e));
        binding::bind(&w.home, &a, ORG, true, false).unwrap();
        assert!(pinned(&cache, &w, &e), "vpd bind is seen by the next session start");
        // A nearer binding made by hand grants nothing and hides the one above.
        std::fs::create_dir_all(w.root.join("a/c/.viewport")).unwrap();
        std::fs::write(walk::local_file(&w.root.join("a/c")), render_local(ORG, "2026-01-01T00:00:00Z", true)).unwrap();
        assert!(!pinned(&cache, &w, &e), "a hand-made nearer local.yaml is seen");
        same(&cache, &w, &e);
        std::fs::remove_dir_all(w.root.join("a/c/.viewport")).unwrap();
        assert!(pinned(&cache, &w, &e));
        // local.yaml edited in place (same inode): streaming turned off.
        let text = std::fs::read_to_string(walk::local_file(&a)).unwrap();
        let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(walk::local_file(&a)).unwrap();
        std::io::Write::write_all(&mut f, text.replace("streaming: enabled", "streaming: disabled").as_bytes()).unwrap();
        drop(f);
        assert!(!pinned(&cache, &w, &e), "an edit in place is seen");
        same(&cache, &w, &e);
        binding::unbind(&w.home, &a).unwrap();
        binding::bind(&w.home, &a, ORG, true, false).unwrap();
        assert!(pinned(&cache, &w, &e));
        binding::unbind(&w.home, &a).unwrap();
        assert!(!pinned(&cache, &w, &e), "vpd unbind is seen by the next session start");
        // A directory on the path replaced by a link to elsewhere.
        binding::bind(&w.home, &a, ORG, true, false).unwrap();
        assert!(pinned(&cache, &w, &e));
        std::fs::rename(w.root.join("a/c"), w.root.join("a-c-away")).unwrap();
        std::fs::create_dir_all(w.root.join("b/c/e")).unwrap();
        std::os::unix::fs::symlink(w.root.join("b/c"), w.root.join("a/c")).unwrap();
        assert!(!pinned(&cache, &w, &e), "the session directory now is {}/b/c/e", w.root.display());
        same(&cache, &w, &e);
    }

    /// Random changes, and after each, the cache and a fresh walk agree everywhere — with no
    /// pause between the change and the lookup.
    #[test]
    fn random_changes_never_make_the_cache_disagree_with_the_walk() {
        let w = world();
        let cache = FactsCache::new();
        let dirs = ["", "a", "a/c", "a/c/e", "a/d", "b", "b/c"];
        let mut seed: u64 = 0x5eed_1234_abcd_ef01;
        let mut next = |n: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as usize) % n
        };
        for step in 0..400 {
            let d = w.root.join(dirs[next(dirs.len())]);
            let vp = d.join(".viewport");
            match next(8) {
                0 => drop(binding::bind(&w.home, &d, ORG, next(2) == 0, true)),
                1 => drop(binding::unbind(&w.home, &d)),
                2 => {
                    let _ = std::fs::create_dir_all(&vp);
                    let _ = std::fs::write(walk::local_file(&d), render_local(ORG, "2026-01-01T00:00:00Z", next(2) == 0));
                }
                3 => drop(std::fs::remove_dir_all(&vp)),
                4 => {
                    let git = d.join(".git");
                    if git.exists() {
                        let _ = std::fs::remove_dir(&git);
                    } else {
                        let _ = std::fs::create_dir(&git);
                    }
                }
                5 => drop(std::fs::write(walk::local_file(&d), b"org_id: [broken")),
                6 => drop(binding::trust(&w.home, &d)),
                _ => {
                    // Move a subtree away and back (a rename on the path of cached walks).
                    let away = w.root.join(format!("away-{step}"));
                    if d != w.root && std::fs::rename(&d, &away).is_ok() {
                        for start in dirs {
                            same(&cache, &w, &w.root.join(start));
                        }
                        std::fs::rename(&away, &d).unwrap();
                    }
                }
            }
            for start in dirs {
                same(&cache, &w, &w.root.join(start));
            }
        }
        assert!(matches!(cache.state(), CacheState::On { .. }), "{:?}", cache.state());
    }

    #[test]
    fn lost_changes_turn_the_cache_off() {
        let w = world();
        let cache = FactsCache::with_drain_thread(false);
        binding::bind(&w.home, &w.root.join("a"), ORG, true, false).unwrap();
        let e = w.root.join("a/c/e");
        assert!(pinned(&cache, &w, &e));
        // More changes in a watched directory than the kernel queues (16384 by default).
        let limit: usize = std::fs::read_to_string("/proc/sys/fs/inotify/max_queued_events").unwrap().trim().parse().unwrap();
        for i in 0..=limit {
            std::fs::File::create(e.join(format!("f{i}"))).unwrap();
        }
        same(&cache, &w, &e);
        assert!(matches!(cache.state(), CacheState::Off { .. }), "{:?}", cache.state());
        binding::unbind(&w.home, &w.root.join("a")).unwrap();
        assert!(!pinned(&cache, &w, &e), "off means every lookup walks");
        same(&cache, &w, &e);
    }

    #[test]
    fn network_file_systems_are_not_cached() {
        assert!(watch::is_remote(0x6969), "NFS");
        assert!(watch::is_remote(0x6573_5546), "FUSE");
        assert!(!watch::is_remote(0xEF53), "ext4");
        assert!(!watch::is_remote(0x0102_1994), "tmpfs");
    }
}
