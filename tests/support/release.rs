//! Releases for the `vpd update` tests (tests/update.rs, tests/tray.rs): the release
//! manager's tools run as they would be (`viewport-server release keygen|sign`,
//! `scripts/package-release.sh`), and a machine that installed a release as a person does.

use super::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository (the tests run from crates/vpd-e2e and from the top-level package).
pub fn repo() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors().find(|d| d.join("scripts/package-release.sh").is_file()).expect("the repository").to_path_buf()
}

pub const ARCH: &str = std::env::consts::ARCH;

/// The build's `vpd` and `vpd-daemon` reporting a higher version, and that version.
pub fn next_build() -> (PathBuf, String) {
    let dir = repo().join("target/next/debug");
    assert!(
        dir.join("vpd").is_file() && dir.join("vpd-daemon").is_file(),
        "{} has no higher-version build: run scripts/build-next.sh (scripts/test.sh does)",
        dir.display()
    );
    let v = version_of(&dir.join("vpd"));
    (dir, v)
}

pub fn version_of(bin: &Path) -> String {
    let out = Command::new(bin).arg("--version").output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap_or("").to_string()
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The release manager's key, made with `viewport-server release keygen`.
pub fn keygen(dir: &Path) -> PathBuf {
    run_ok(Command::new(bin("viewport-server")).args(["release", "keygen", "--out"]).arg(dir));
    dir.to_path_buf()
}

/// `scripts/package-release.sh`: an archive of `vpd` and `vpd-daemon` from `bindir`.
pub fn package(version: &str, bindir: &Path, out: &Path, arch: &str, files: &[&str]) {
    run_ok(Command::new(repo().join("scripts/package-release.sh")).arg(version).arg(bindir).arg(out).args(["linux", arch]).args(files));
}

pub fn sign(file: &Path, keys: &Path, version: &str, arch: &str) -> String {
    run_ok(Command::new(bin("viewport-server")).args(["release", "sign"]).arg(file).arg("--key").arg(keys.join("release.key")).args([
        "--version",
        version,
        "--os",
        "linux",
        "--arch",
        arch,
    ]));
    std::fs::read_to_string(format!("{}.minisig", file.display())).unwrap()
}

/// A machine whose `vpd` is installed from a release of this build, as a person does it:
/// unpack the archive, run its `./vpd install`. Returns it and the installed version.
pub fn installed_machine(work: &Path, files: &[&str]) -> (Machine, String) {
    let version = version_of(&bin("vpd"));
    let archive = work.join(format!("viewport-{version}-linux-{ARCH}.tar.gz"));
    package(&version, bin("vpd").parent().unwrap(), &archive, ARCH, files);
    let unpacked = work.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    run_ok(Command::new("tar").arg("-xzf").arg(&archive).arg("-C").arg(&unpacked));
    let mut m = Machine::new();
    m.vpd = Some(unpacked.join("vpd"));
    let done = m.ok(&["install", "--service", "none"]);
    let root = m.path(".local/share/viewport");
    assert_eq!(done["installedTo"], root.to_str().unwrap(), "{done}");
    assert_eq!(done["installedVersion"], version);
    let link = m.path(".local/bin/vpd");
    assert_eq!(std::fs::read_link(&link).unwrap(), root.join("current/vpd"));
    assert_eq!(std::fs::read_link(root.join("current")).unwrap(), Path::new("versions").join(&version));
    m.vpd = Some(link);
    // The daemon runs from the installation, not from where the archive was unpacked.
    let pid = m.daemon_pid().expect("a daemon");
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(), root.join("versions").join(&version).join("vpd-daemon"));
    (m, version)
}
