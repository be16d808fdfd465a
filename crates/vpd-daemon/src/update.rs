//! `vpd update` (issue 13, SPEC A10): which source and key this machine's user trusts, where
//! the installation is and whose it is, fetching and checking a release, and swapping the
//! whole set of binaries as one unit. The policy (what a signature must say, which version
//! is acceptable) is `vpd_core::release`; this module does the I/O around it.
//!
//! **Trust** is one (source, key) pair in `update.json` (0600), written only by `vpd update
//! --source URL --trust-key FILE` after the person confirmed the key's fingerprint. Without
//! that file the build's own pair holds (`VPD_BUILD_UPDATE_SOURCE` and
//! `VPD_BUILD_UPDATE_KEY` at build time). Nothing else sets it: no local-API request, web UI
//! action or environment variable read at run time, and nothing an org, platform or relay
//! sends.
//!
//! **An installation** is a directory the user owns holding `versions/<V>/` (one complete
//! set of binaries per version) and `current`, a symbolic link to one of them. The swap
//! replaces `current` in one rename, so every binary changes together; the previous version
//! stays for `--rollback`. Installed by a package manager (a `viewport-package.json` marker
//! beside the binaries, naming its command), it is never touched.

use crate::error::{Error, ErrorCode, Result};
use crate::home::Home;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;
use vpd_core::release::{self, Expect, Manifest, Offer, Release, ReleaseError, Version};

/// Beside the binaries of a release (and inside its archive): which release they are.
pub const RELEASE_MARKER: &str = "viewport-release.json";
/// Beside binaries a package manager installed: `{"manager": "apt", "command": "sudo apt
/// upgrade viewport"}`.
pub const PACKAGE_MARKER: &str = "viewport-package.json";
/// The trusted (source, key), in the home.
pub const TRUST_FILE: &str = "update.json";
/// What the last update did, for `--rollback`, in the home.
pub const STATE_FILE: &str = "update-state.json";

/// The binaries a release may ship (with the OS's suffix); `vpd` and `vpd-daemon` it must.
pub const SHIPPED: &[&str] = &["vpd", "vpd-daemon", "viewport-tray", "viewport-window"];
const REQUIRED: &[&str] = &["vpd", "vpd-daemon"];

/// Release archives are bounded: a source cannot fill the disk with a claimed size.
pub const MAX_ARCHIVE: u64 = 512 * 1024 * 1024;

fn exe_name(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

fn refused(e: ReleaseError) -> Error {
    Error::new(ErrorCode::UpdateRefused, format!("{e}; nothing was changed"))
}

// ---- trust --------------------------------------------------------------------------------

/// The update source and the key its releases must be signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    pub source: Url,
    /// The minisign public key (`.pub` text).
    pub key: String,
    /// Set by this machine's user (`vpd update --source`), not the build's own.
    pub custom: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TrustFile {
    version: u32,
    source: String,
    key: String,
}

/// The build's own source and key, if it was built with them.
pub fn builtin() -> Option<(&'static str, &'static str)> {
    match (option_env!("VPD_BUILD_UPDATE_SOURCE"), option_env!("VPD_BUILD_UPDATE_KEY")) {
        (Some(s), Some(k)) if !s.is_empty() && !k.is_empty() => Some((s, k)),
        _ => None,
    }
}

/// Checks an update source: `https`, or `http` to a loopback host only (no `--insecure-http`
/// here: a release is code this machine will run).
pub fn check_source(raw: &str) -> Result<Url> {
    let mut url = crate::platform::check_url(raw, false).map_err(|e| {
        if e.code == ErrorCode::InsecureUrl {
            Error::new(ErrorCode::InsecureUrl, format!("{}: an update source must be https (plain http only to this machine)", raw.trim()))
        } else {
            e
        }
    })?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(Error::new(ErrorCode::InvalidArgument, format!("{raw}: an update source is an https:// URL")));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(Error::new(ErrorCode::InvalidArgument, format!("{raw}: an update source has no query, fragment or credentials")));
    }
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

/// The trusted pair: the user's (`update.json`), else the build's.
pub fn trust(home: &Home) -> Result<Trust> {
    let path = home.root().join(TRUST_FILE);
    if let Some(bytes) = crate::store::read_bounded(&path, 64 * 1024)? {
        crate::store::check_private_file(&path)?;
        let f: TrustFile = crate::store::parse_json(&path, &bytes)?;
        if f.version != 1 {
            return Err(Error::file(&path, format!("is version {} (this vpd reads 1): written by a newer vpd", f.version)));
        }
        release::key_fingerprint(&f.key).map_err(|e| Error::file(&path, e.to_string()))?;
        return Ok(Trust { source: check_source(&f.source)?, key: f.key, custom: true });
    }
    match builtin() {
        Some((source, key)) => Ok(Trust { source: check_source(source)?, key: key.to_string(), custom: false }),
        None => Err(Error::new(
            ErrorCode::NotUpdatable,
            "this vpd was built without an update source; choose one you trust: `vpd update --source URL --trust-key release.pub`",
        )),
    }
}

/// Records the pair the user confirmed. Only `vpd update --source … --trust-key …` calls
/// this, writing the home's file directly.
pub fn save_trust(home: &Home, source: &Url, key: &str) -> Result<()> {
    release::key_fingerprint(key).map_err(refused)?;
    home.ensure()?;
    let f = TrustFile { version: 1, source: source.to_string(), key: key.trim().to_string() + "\n" };
    let bytes = serde_json::to_vec_pretty(&f).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
    let _l = crate::store::Lock::acquire(&home.lock_file())?;
    crate::store::write_atomic(&home.root().join(TRUST_FILE), &bytes)
}

// ---- the installation ---------------------------------------------------------------------

/// `viewport-release.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReleaseMarker {
    pub version: String,
    pub os: String,
    pub arch: String,
    pub files: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct PackageMarker {
    manager: String,
    command: String,
}

/// Where the running binaries are, and what `vpd update` may do there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Install {
    /// A user's installation: `root/versions/<version>/`, `root/current` pointing at one.
    Versioned { root: PathBuf, running: Version, current: Option<Version> },
    /// A package manager owns it; `command` updates it.
    Package { manager: String, command: String },
    /// Binaries somewhere else (a build directory, a copy): not updated in place.
    Plain { dir: PathBuf },
    /// An installation that belongs to another user (or the system).
    Foreign { root: PathBuf, owner: String },
}

/// Reads `root/current`: the version it points at.
pub fn current_version(root: &Path) -> Option<Version> {
    crate::os::pointer::recover(root, "current");
    let target = crate::os::pointer::target(&root.join("current"))?;
    let mut parts = target.components().rev();
    let v = parts.next()?.as_os_str().to_str()?.parse().ok()?;
    (parts.next()?.as_os_str() == "versions").then_some(v)
}

/// What kind of installation the binary `exe` runs from.
pub fn find_install(exe: &Path) -> Install {
    let exe = dunce::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
    let dir = exe.parent().unwrap_or(Path::new("/")).to_path_buf();
    if let Ok(bytes) = std::fs::read(dir.join(PACKAGE_MARKER)) {
        let m: Option<PackageMarker> = serde_json::from_slice(&bytes).ok();
        let (manager, command) =
            m.map(|m| (m.manager, m.command)).unwrap_or_else(|| ("a package manager".into(), "your package manager's upgrade".into()));
        return Install::Package { manager, command };
    }
    let versioned = (|| {
        let version: Version = dir.file_name()?.to_str()?.parse().ok()?;
        let versions = dir.parent()?;
        (versions.file_name()? == "versions").then_some(())?;
        let root = versions.parent()?.to_path_buf();
        crate::os::pointer::is_pointer(&root.join("current")).then_some(())?;
        Some((root, version))
    })();
    match versioned {
        Some((root, running)) => {
            let me = crate::os::user::current();
            let foreign =
                [root.clone(), root.join("versions"), dir.clone()].iter().find_map(|p| crate::os::user::owner_of(p).ok().filter(|o| *o != me));
            match foreign {
                Some(owner) => Install::Foreign { root, owner: owner.to_string() },
                None => Install::Versioned { current: current_version(&root), root, running },
            }
        }
        None => Install::Plain { dir },
    }
}

/// The path a binary should be started by, so that it follows updates: `root/current/NAME`
/// for a binary of `root/versions/<V>/`, the binary itself otherwise. The login item, the
/// systemd unit and a `vpd` that starts the daemon all use it.
pub fn stable_exe(exe: &Path) -> PathBuf {
    match find_install(exe) {
        Install::Versioned { root, .. } => match exe.file_name() {
            Some(name) => root.join("current").join(name),
            None => exe.to_path_buf(),
        },
        _ => exe.to_path_buf(),
    }
}

/// Refuses what `vpd update` must not touch, saying what to do instead.
pub fn updatable(install: &Install) -> Result<(PathBuf, Version)> {
    match install {
        Install::Versioned { root, running, .. } => Ok((root.clone(), *running)),
        Install::Package { manager, command } => Err(Error::new(
            ErrorCode::NotUpdatable,
            format!("vpd was installed by {manager}; update it with `{command}` (vpd never overwrites a package's files)"),
        )),
        Install::Foreign { root, owner } => {
            Err(Error::new(ErrorCode::NotUpdatable, format!("{} belongs to another user ({owner}); only its owner can update it", root.display())))
        }
        Install::Plain { dir } => Err(Error::new(
            ErrorCode::NotUpdatable,
            format!(
                "vpd runs from {}, which is not an installation `vpd update` manages (a build directory, or copied binaries). \
                 Install a release (unpack it and run its `./vpd install`), or replace these files yourself",
                dir.display()
            ),
        )),
    }
}

// ---- finding and fetching a release -------------------------------------------------------

/// What the source offers.
#[derive(Debug, Clone)]
pub struct Found {
    pub installed: Version,
    pub offer: Offer,
    pub manifest: Manifest,
    /// Where the file is (checked: https, or loopback http).
    pub file_url: Url,
}

fn expect(installed: Version) -> Expect<'static> {
    Expect { os: std::env::consts::OS, arch: std::env::consts::ARCH, installed }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::new(ErrorCode::Internal, format!("starting the runtime: {e}")))
}

/// The manifest's address: `SOURCE/latest?os=OS&arch=ARCH` (a static host ignores the query;
/// docs/RELEASES.md).
pub fn manifest_url(source: &Url) -> Url {
    let mut u = source.join("latest").expect("a relative path joins");
    u.query_pairs_mut().append_pair("os", std::env::consts::OS).append_pair("arch", std::env::consts::ARCH);
    u
}

/// Asks the source for its newest release and checks what it says.
pub fn find(trust: &Trust, installed: Version) -> Result<Found> {
    runtime()?.block_on(find_async(trust, installed))
}

pub async fn find_async(trust: &Trust, installed: Version) -> Result<Found> {
    let url = manifest_url(&trust.source);
    let body = match crate::platform::get_bounded(&url, 256 * 1024, Some(Duration::from_secs(30)), &mut |_, _| {}).await? {
        Some(b) => b,
        None => {
            return Err(Error::new(
                ErrorCode::ServerRefused,
                format!("{url}: the source has no release for {} {}", std::env::consts::OS, std::env::consts::ARCH),
            ))
        }
    };
    let (manifest, offer) = release::check_manifest(&body, &trust.key, &expect(installed)).map_err(refused)?;
    let file_url = url
        .join(&manifest.url)
        .map_err(|e| Error::new(ErrorCode::BadServerResponse, format!("{url}: the manifest's url {:?}: {e}", manifest.url)))?;
    let file_url = crate::platform::check_url(file_url.as_str(), false)?;
    Ok(Found { installed, offer, manifest, file_url })
}

/// Downloads the offered file (`progress(bytes, of)` as it arrives) and checks it against
/// its signature and the trusted key.
pub fn download(trust: &Trust, found: &Found, progress: &mut dyn FnMut(u64, u64)) -> Result<(Vec<u8>, Release)> {
    runtime()?.block_on(async {
        let Offer::Newer(claimed) = &found.offer else {
            return Err(Error::new(ErrorCode::InvalidArgument, "nothing newer to download"));
        };
        if claimed.size > MAX_ARCHIVE {
            return Err(refused(ReleaseError::WrongFile(format!(
                "it claims {} bytes, more than the {MAX_ARCHIVE} a release may have",
                claimed.size
            ))));
        }
        let url = &found.file_url;
        let bytes = crate::platform::get_bounded(url, claimed.size, None, progress)
            .await?
            .ok_or_else(|| Error::new(ErrorCode::ServerRefused, format!("{url}: not found (the release was withdrawn?)")))?;
        if (bytes.len() as u64) < claimed.size {
            return Err(refused(ReleaseError::WrongFile(format!("the download ended after {} of {} bytes", bytes.len(), claimed.size))));
        }
        let r = release::verify(&bytes, &found.manifest.signature, &trust.key, &expect(found.installed)).map_err(refused)?;
        Ok((bytes, r))
    })
}

// ---- unpacking and swapping -----------------------------------------------------------------

fn io(what: impl std::fmt::Display, e: std::io::Error) -> Error {
    if crate::os::files::is_disk_full(&e) {
        return Error::new(ErrorCode::Io, format!("{what}: the disk is full; free some space and run `vpd update` again (nothing was changed)"));
    }
    Error::io(what, e)
}

/// Unpacks a verified release archive into `root/versions/<V>/`, through a staging
/// directory: only regular files named in [`SHIPPED`] and the marker, no paths, no links.
/// The marker must name this release, and the new `vpd` and `vpd-daemon` must say they are
/// version V before the directory gets its name. Nothing outside `root/versions/` changes.
pub fn stage(root: &Path, archive: &[u8], r: &Release) -> Result<PathBuf> {
    staged(root, r.version, |staging| {
        unpack(archive, staging)?;
        check_staging(staging, r.version, &r.os, &r.arch)?;
        // Every binary installed now comes with the new version too (the tray's login item
        // names `current/viewport-tray`).
        if let Some(cur) = current_version(root) {
            for name in SHIPPED.iter().map(|n| exe_name(n)) {
                if root.join("versions").join(cur.to_string()).join(&name).is_file() && !staging.join(&name).is_file() {
                    return Err(refused(ReleaseError::WrongFile(format!("it does not ship {name}, which is installed now"))));
                }
            }
        }
        Ok(())
    })
}

/// Builds `root/versions/<version>/` through a staging directory that `fill` fills and checks;
/// a failure leaves nothing behind.
fn staged(root: &Path, version: Version, fill: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    let versions = root.join("versions");
    crate::home::ensure_private_dir(&versions)?;
    let dest = versions.join(version.to_string());
    let staging = versions.join(format!(".staging-{version}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging).map_err(|e| io(format!("creating {}", staging.display()), e))?;
    let result = (|| {
        fill(&staging)?;
        if dest.exists() {
            if current_version(root) == Some(version) {
                return Err(Error::new(ErrorCode::InvalidArgument, format!("{version} is the current version already")));
            }
            // Left by an update that did not finish: replaced by the checked one.
            std::fs::remove_dir_all(&dest).map_err(|e| io(format!("removing {}", dest.display()), e))?;
        }
        std::fs::rename(&staging, &dest).map_err(|e| io(format!("moving {} into place", dest.display()), e))?;
        Ok(dest.clone())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// The marker names this release, `vpd` and `vpd-daemon` are there, and both say they are
/// `version` when run.
fn check_staging(staging: &Path, version: Version, os: &str, arch: &str) -> Result<()> {
    let marker = read_marker(staging)?;
    if marker.version != version.to_string() || marker.os != os || marker.arch != arch {
        return Err(refused(ReleaseError::WrongFile(format!(
            "its {RELEASE_MARKER} says {} {} {}, the signature {version} {os} {arch}",
            marker.version, marker.os, marker.arch
        ))));
    }
    for name in REQUIRED {
        if !staging.join(exe_name(name)).is_file() {
            return Err(refused(ReleaseError::WrongFile(format!("the archive has no {}", exe_name(name)))));
        }
    }
    for name in REQUIRED {
        let said = reported_version(&staging.join(exe_name(name)))?;
        if said != version.to_string() {
            return Err(refused(ReleaseError::WrongFile(format!("its {} says it is version {said:?}, not {version}", exe_name(name)))));
        }
    }
    Ok(())
}

/// `dir/viewport-release.json`.
pub fn read_marker(dir: &Path) -> Result<ReleaseMarker> {
    std::fs::read(dir.join(RELEASE_MARKER))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| refused(ReleaseError::WrongFile(format!("{} has no readable {RELEASE_MARKER}", dir.display()))))
}

/// Where `vpd install` puts a release for this user: `$XDG_DATA_HOME/viewport`, else
/// `~/.local/share/viewport`.
pub fn default_root() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| crate::home::user_home().map(|h| h.join(".local/share")))
        .map(|d| d.join("viewport"))
}

/// `vpd install` run from an unpacked release (`src` holds the marker and the binaries):
/// copies it into `root/versions/<V>/` and points `current` at it. Returns the version.
pub fn install_release(src: &Path, root: &Path) -> Result<Version> {
    let marker = read_marker(src)?;
    let version: Version = marker.version.parse().map_err(|e: String| Error::file(&src.join(RELEASE_MARKER), e))?;
    crate::home::ensure_private_dir(root)?;
    if current_version(root) != Some(version) {
        staged(root, version, |staging| {
            for name in marker.files.iter().map(String::as_str).chain([RELEASE_MARKER]) {
                if !SHIPPED.iter().any(|s| exe_name(s) == name) && name != RELEASE_MARKER {
                    return Err(Error::file(&src.join(RELEASE_MARKER), format!("names {name:?}, which is not a file a release ships")));
                }
                let to = staging.join(name);
                std::fs::copy(src.join(name), &to).map_err(|e| io(format!("copying {} to {}", src.join(name).display(), to.display()), e))?;
            }
            check_staging(staging, version, &marker.os, &marker.arch)
        })?;
        switch(root, version)?;
    }
    Ok(version)
}

/// Makes `link` (`~/.local/bin/vpd`) point at `root/current/vpd`, unless something else is
/// there. Returns whether it points there now.
pub fn link_command(root: &Path, link: &Path) -> Result<bool> {
    link_to(&root.join("current").join(exe_name("vpd")), link, |old| old.starts_with(root))
}

/// Makes `link` a link to `target`: `Ok(true)` when it is one now, `Ok(false)` when a file,
/// or a link that `replaceable` refuses, stands there, or this OS gives users no such links.
fn link_to(target: &Path, link: &Path, replaceable: impl Fn(&Path) -> bool) -> Result<bool> {
    match std::fs::read_link(link) {
        Ok(t) if t == target => return Ok(true),
        Ok(t) if replaceable(&t) => {
            let _ = std::fs::remove_file(link);
        }
        Ok(_) => return Ok(false),
        Err(_) if std::fs::symlink_metadata(link).is_ok() => return Ok(false),
        Err(_) => {}
    }
    if let Some(dir) = link.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io(format!("creating {}", dir.display()), e))?;
    }
    match crate::os::pointer::link_file(target, link) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::Unsupported => Ok(false),
        Err(e) => Err(io(format!("creating {}", link.display()), e)),
    }
}

/// `vpd` as the shell finds it on `PATH`, if it does.
pub fn command_on_path() -> Option<PathBuf> {
    let name = exe_name("vpd");
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(&name)).find(|p| p.is_file())
}

/// Whether the shell finds `vpd`, or "Install command line tool" already linked `vpd`.
pub fn command_line_tool_installed(vpd: &Path) -> bool {
    command_on_path().is_some()
        || crate::os::pointer::command_dirs().iter().any(|d| std::fs::read_link(d.join(exe_name("vpd"))).is_ok_and(|t| t == vpd))
}

/// The app's "Install command line tool" (issue 12 item 2, as Tailscale's app has): links
/// `vpd` (the one in the app, beside the tray) into a folder on the user's PATH. Returns the
/// link; a link already there is replaced, a file is never.
pub fn install_command_line_tool(vpd: &Path) -> Result<PathBuf> {
    for dir in crate::os::pointer::command_dirs() {
        let link = dir.join(exe_name("vpd"));
        if let Ok(true) = link_to(vpd, &link, |_| true) {
            return Ok(link);
        }
    }
    Err(Error::new(
        ErrorCode::Io,
        "no folder on PATH could take the `vpd` command (the Windows installer puts it on PATH; elsewhere link it by hand)",
    ))
}

fn unpack(archive: &[u8], into: &Path) -> Result<()> {
    let bad = |w: String| refused(ReleaseError::WrongFile(w));
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let entries = tar.entries().map_err(|e| bad(format!("not a .tar.gz archive: {e}")))?;
    let allowed: Vec<String> = SHIPPED.iter().map(|n| exe_name(n)).chain([RELEASE_MARKER.to_string()]).collect();
    let mut seen = std::collections::HashSet::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("the archive is damaged: {e}")))?;
        let path = entry.path().map_err(|e| bad(format!("the archive is damaged: {e}")))?.into_owned();
        let name = path.to_str().unwrap_or("").trim_start_matches("./").to_string();
        if entry.header().entry_type().is_dir() && (name.is_empty() || name == ".") {
            continue;
        }
        if !entry.header().entry_type().is_file() || !allowed.contains(&name) || !seen.insert(name.clone()) {
            return Err(bad(format!("the archive holds {path:?}, which is not one of the files a release ships")));
        }
        let target = into.join(&name);
        let mut f = crate::os::files::executable_options()
            .write(true)
            .create_new(true)
            .open(&target)
            .map_err(|e| io(format!("creating {}", target.display()), e))?;
        std::io::copy(&mut entry, &mut f).map_err(|e| io(format!("writing {}", target.display()), e))?;
        f.sync_all().map_err(|e| io(format!("writing {}", target.display()), e))?;
    }
    Ok(())
}

/// Runs `bin --version` and returns the version it names (`vpd 0.2.0` → `0.2.0`).
pub fn reported_version(bin: &Path) -> Result<String> {
    let out = std::process::Command::new(bin)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|e| refused(ReleaseError::WrongFile(format!("{} does not run here ({e})", bin.display()))))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split_whitespace().nth(1).unwrap_or("").to_string())
}

/// Points `root/current` at `versions/<to>` in one rename: every binary changes at once.
pub fn switch(root: &Path, to: Version) -> Result<()> {
    let target = PathBuf::from("versions").join(to.to_string());
    if !root.join(&target).join(exe_name("vpd")).is_file() {
        return Err(Error::new(ErrorCode::FileInvalid, format!("{} has no vpd", root.join(&target).display())));
    }
    crate::os::pointer::switch(root, "current", &target).map_err(|e| io(format!("replacing {}", root.join("current").display()), e))
}

/// Keeps `keep` (the current and the previous version) and removes every other version.
pub fn prune(root: &Path, keep: &[Version]) -> Vec<Version> {
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(root.join("versions")).into_iter().flatten().flatten() {
        let Some(v) = entry.file_name().to_str().and_then(|n| n.parse::<Version>().ok()) else { continue };
        if !keep.contains(&v) && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed.push(v);
        }
    }
    removed.sort();
    removed
}

// ---- the record for --rollback ------------------------------------------------------------

/// What the last update did: enough to undo it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub version: u32,
    pub from: String,
    pub to: String,
    /// `config.json` as it was before the update (`backups/config-before-<to>.json`).
    pub config_backup: Option<PathBuf>,
    pub at: String,
}

pub fn load_state(home: &Home) -> Result<Option<State>> {
    let path = home.root().join(STATE_FILE);
    match crate::store::read_bounded(&path, 64 * 1024)? {
        Some(b) => Ok(Some(crate::store::parse_json(&path, &b)?)),
        None => Ok(None),
    }
}

/// Copies `config.json` to `backups/config-before-<to>.json` (0600) and records the update.
pub fn record(home: &Home, from: Version, to: Version) -> Result<State> {
    let _l = crate::store::Lock::acquire(&home.lock_file())?;
    let backups = home.root().join("backups");
    crate::home::ensure_private_dir(&backups)?;
    let config_backup = match crate::store::read_bounded(&home.config(), 16 * 1024 * 1024)? {
        Some(bytes) => {
            let path = backups.join(format!("config-before-{to}.json"));
            crate::store::write_atomic(&path, &bytes)?;
            Some(path)
        }
        None => None,
    };
    let state = State { version: 1, from: from.to_string(), to: to.to_string(), config_backup, at: crate::now_rfc3339() };
    let bytes = serde_json::to_vec_pretty(&state).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
    crate::store::write_atomic(&home.root().join(STATE_FILE), &bytes)?;
    Ok(state)
}

/// The pairings in `config.json` now that the backup does not have: made since the update,
/// lost by a rollback. As `org on server` names.
pub fn pairings_since(home: &Home, state: &State) -> Result<Vec<String>> {
    let now = crate::config::read(home)?;
    let Some(path) = &state.config_backup else { return Ok(now.pairings.iter().map(name_of).collect()) };
    let bytes = crate::store::read_bounded(path, 16 * 1024 * 1024)?
        .ok_or_else(|| Error::file(path, "is missing: the backup taken before the update is gone"))?;
    let then: serde_json::Value = crate::store::parse_json(path, &bytes)?;
    let ids: Vec<&str> = then["pairings"].as_array().into_iter().flatten().filter_map(|p| p["pairingId"].as_str()).collect();
    Ok(now.pairings.iter().filter(|p| !ids.contains(&p.pairing_id.as_str())).map(name_of).collect())
}

fn name_of(p: &crate::config::Pairing) -> String {
    format!("{} on {}", p.workspace_name, p.server)
}

/// Puts the backup taken before the update back as `config.json`, and forgets the record.
pub fn restore(home: &Home, state: &State) -> Result<()> {
    let _l = crate::store::Lock::acquire(&home.lock_file())?;
    if let Some(path) = &state.config_backup {
        let bytes = crate::store::read_bounded(path, 16 * 1024 * 1024)?
            .ok_or_else(|| Error::file(path, "is missing: the backup taken before the update is gone"))?;
        crate::store::write_atomic(&home.config(), &bytes)?;
    }
    let _ = std::fs::remove_file(home.root().join(STATE_FILE));
    Ok(())
}

// ---- the whole update, as `vpd update` and the tray run it -------------------------------

/// Where an update is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Downloading {
        done: u64,
        of: u64,
    },
    /// The file matched its signature; unpacking and checking the new binaries.
    Checked,
    /// Stopping the daemon (it keeps running sessions for the new one) and switching.
    Restarting,
}

/// Who starts the new version once `current` points at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// This function: the daemon from the installation (`vpd update`).
    Daemon,
    /// The caller restarts itself into the new version, which runs the daemon (the tray).
    Caller,
}

/// What an update did.
#[derive(Debug, Clone)]
pub struct Updated {
    pub from: Version,
    pub to: Version,
    /// The new daemon, when this function started it.
    pub daemon: Option<crate::api::protocol::Pong>,
    /// Each pairing (`org on server`) and whether it is connected again.
    pub pairings: Vec<(String, bool)>,
    pub removed: Vec<Version>,
    pub config_backup: Option<PathBuf>,
}

/// The binary `name` of the installation's current version.
pub fn current_bin(root: &Path, name: &str) -> PathBuf {
    root.join("current").join(exe_name(name))
}

/// Starts the daemon from the installation's `current` and checks it says `version`.
pub fn start_daemon(home: &Home, root: &Path, version: Version) -> Result<crate::api::protocol::Pong> {
    // Under its systemd unit when it has one (the unit names `current/vpd`).
    if crate::service::start_unit(home) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline && crate::api::client::ask(home, crate::api::calls::Ping, Duration::from_secs(1)).is_err() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let pong = crate::api::client::ensure_daemon(home, &current_bin(root, "vpd"))?;
    if pong.version != version.to_string() {
        return Err(Error::new(ErrorCode::UpdateRefused, format!("the daemon that started says it is {}, not {version}", pong.version)));
    }
    Ok(pong)
}

/// Installs the newer release `found` offers into the installation at `root`: download and
/// check, unpack and check, back up the configuration, stop the daemon (a planned stop: it
/// keeps running sessions and unacked messages), switch `current`, and (with
/// [`Restart::Daemon`]) start the new daemon and wait for the pairings. A new version that
/// does not start is switched back, with the configuration, before the error is returned.
pub fn install(
    home: &Home,
    trust: &Trust,
    root: &Path,
    found: &Found,
    from: Version,
    restart: Restart,
    step: &mut dyn FnMut(Step),
) -> Result<Updated> {
    let Offer::Newer(claimed) = &found.offer else {
        return Err(Error::new(ErrorCode::InvalidArgument, format!("{from} is the newest release; nothing to install")));
    };
    let to = claimed.version;
    let (archive, release) = download(trust, found, &mut |done, of| step(Step::Downloading { done, of }))?;
    step(Step::Checked);
    stage(root, &archive, &release)?;
    drop(archive);
    let state = record(home, from, to)?;
    step(Step::Restarting);
    let was_running = crate::daemon::running_pid(home).is_some();
    if was_running {
        crate::api::client::stop_daemon(home)?;
    }
    switch(root, to)?;
    let daemon = match restart {
        Restart::Caller => None,
        Restart::Daemon => match start_daemon(home, root, to) {
            Ok(p) => Some(p),
            Err(e) => {
                let _ = crate::api::client::stop_daemon(home);
                switch(root, from)?;
                restore(home, &state)?;
                let back = if was_running && start_daemon(home, root, from).is_ok() { "; the daemon runs it again" } else { "" };
                return Err(Error::new(ErrorCode::UpdateRefused, format!("vpd {to} did not start ({}); {from} is installed again{back}", e.message)));
            }
        },
    };
    let removed = prune(root, &[to, from]);
    let pairings = if daemon.is_some() { wait_connected(home, Duration::from_secs(30)) } else { Vec::new() };
    Ok(Updated { from, to, daemon, pairings, removed, config_backup: state.config_backup })
}

/// Each pairing (`org on server`) and whether it is connected, waiting at most `wait` until
/// all are.
pub fn wait_connected(home: &Home, wait: Duration) -> Vec<(String, bool)> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let report = crate::api::client::ask(home, crate::api::calls::GetStatus, Duration::from_secs(5)).ok();
        let answered = report.is_some();
        // No answer yet: every pairing in the files counts as not connected.
        let list: Vec<(String, bool)> = match report {
            Some(r) => r
                .pairings
                .iter()
                .map(|p| (format!("{} on {}", p.org.workspace_name, p.org.server), p.health == crate::states::LinkHealth::Connected))
                .collect(),
            None => crate::config::read(home).map(|c| c.pairings.iter().map(|p| (name_of(p), false)).collect()).unwrap_or_default(),
        };
        if (answered && list.iter().all(|(_, c)| *c)) || std::time::Instant::now() >= deadline {
            return list;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (name, kind, body) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(body.len() as u64);
            h.set_mode(0o755);
            if *kind == tar::EntryType::Symlink {
                h.set_link_name("/etc/passwd").unwrap();
            }
            // Written raw so that a hostile name ("../x") reaches the reader as it is.
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            h.set_cksum();
            b.append(&h, *body).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn an_archive_holding_anything_but_the_release_files_is_refused_and_leaves_nothing() {
        let file = tar::EntryType::Regular;
        for (what, entries) in [
            ("a path out", vec![("../vpd", file, &b"x"[..])]),
            ("a subdirectory", vec![("bin/vpd", file, &b"x"[..])]),
            ("a link", vec![("vpd", tar::EntryType::Symlink, &b""[..])]),
            ("a stranger", vec![("vpd", file, &b"x"[..]), ("install.sh", file, &b"rm -rf ~"[..])]),
            ("a file twice", vec![("vpd", file, &b"x"[..]), ("vpd", file, &b"y"[..])]),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let e = unpack(&archive(&entries), dir.path()).unwrap_err();
            assert_eq!(e.code, ErrorCode::UpdateRefused, "{what}: {e:?}");
            assert!(!dir.path().parent().unwrap().join("vpd").exists(), "{what}: nothing written outside");
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(unpack(b"not gzip at all", dir.path()).is_err());
        // Through `stage`: the staging directory goes with the refusal.
        let root = tempfile::tempdir().unwrap();
        let r = Release::of(b"x", Version(9, 0, 0), std::env::consts::OS, std::env::consts::ARCH);
        assert!(stage(root.path(), &archive(&[("../vpd", file, b"x")]), &r).is_err());
        assert_eq!(std::fs::read_dir(root.path().join("versions")).unwrap().count(), 0);
        // Release files but no marker: refused too.
        let e = stage(root.path(), &archive(&[("vpd", file, b"#!/bin/sh\n"), ("vpd-daemon", file, b"#!/bin/sh\n")]), &r).unwrap_err();
        assert!(e.message.contains(RELEASE_MARKER), "{e:?}");
        assert_eq!(std::fs::read_dir(root.path().join("versions")).unwrap().count(), 0);
    }

    #[test]
    fn a_full_disk_says_so() {
        use std::io::Write;
        let mut full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let e = full.write_all(&[0; 4096]).and_then(|_| full.flush()).unwrap_err();
        let e = io("writing vpd", e);
        assert!(e.message.contains("disk is full") && e.message.contains("nothing was changed"), "{e:?}");
    }

    fn fake_install(root: &Path, versions: &[&str], current: &str) {
        for v in versions {
            let d = root.join("versions").join(v);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("vpd"), "").unwrap();
        }
        std::os::unix::fs::symlink(Path::new("versions").join(current), root.join("current")).unwrap();
    }

    #[test]
    fn installations_are_told_apart_and_started_through_current() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("viewport");
        fake_install(&root, &["1.2.3", "1.3.0"], "1.3.0");
        let old = root.join("versions/1.2.3/vpd");
        assert_eq!(find_install(&old), Install::Versioned { root: root.clone(), running: Version(1, 2, 3), current: Some(Version(1, 3, 0)) });
        assert_eq!(stable_exe(&old), root.join("current/vpd"), "an old vpd starts the current daemon");
        let plain = t.path().join("bin/vpd");
        std::fs::create_dir_all(plain.parent().unwrap()).unwrap();
        std::fs::write(&plain, "").unwrap();
        assert!(matches!(find_install(&plain), Install::Plain { .. }));
        assert_eq!(stable_exe(&plain), plain);
        std::fs::write(t.path().join("bin").join(PACKAGE_MARKER), r#"{"manager":"Homebrew","command":"brew upgrade viewport"}"#).unwrap();
        let e = updatable(&find_install(&plain)).unwrap_err();
        assert!(e.message.contains("brew upgrade viewport") && e.code == ErrorCode::NotUpdatable, "{e:?}");
    }

    #[test]
    fn switching_moves_current_in_one_rename_and_pruning_keeps_two() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fake_install(root, &["1.0.0", "1.1.0", "1.2.0"], "1.1.0");
        switch(root, Version(1, 2, 0)).unwrap();
        assert_eq!(current_version(root), Some(Version(1, 2, 0)));
        assert!(switch(root, Version(7, 0, 0)).is_err(), "no such version");
        assert_eq!(current_version(root), Some(Version(1, 2, 0)), "unchanged after a refusal");
        assert_eq!(prune(root, &[Version(1, 2, 0), Version(1, 1, 0)]), vec![Version(1, 0, 0)]);
        assert!(!root.join(".current-".to_string() + &std::process::id().to_string()).exists());
    }

    #[test]
    fn a_source_is_https_or_this_machine() {
        assert_eq!(check_source("https://r.example/viewport").unwrap().as_str(), "https://r.example/viewport/");
        assert!(check_source("http://127.0.0.1:9/api/releases").is_ok());
        assert_eq!(check_source("http://r.example/").unwrap_err().code, ErrorCode::InsecureUrl);
        for bad in ["ftp://r.example/", "https://u:p@r.example/", "https://r.example/?x=1", "not a url"] {
            assert!(check_source(bad).is_err(), "{bad}");
        }
        let m = manifest_url(&check_source("https://r.example/rel").unwrap());
        assert_eq!(m.as_str(), format!("https://r.example/rel/latest?os={}&arch={}", std::env::consts::OS, std::env::consts::ARCH));
    }
}
