//! Signed releases (issue 13 item 2, SPEC A10): what makes a downloaded binary one this
//! machine may run. A release file comes with a minisign signature (Ed25519, the format
//! Tauri's updater reads) whose *trusted* comment — covered by the signature — names exactly
//! `viewport-release version=V os=OS arch=ARCH sha256=HEX size=N`, parsed strictly. Trust is
//! one (source, key) pair the machine's user chose; this module checks a file against that
//! key and against what the machine expects (its OS and architecture, a version newer than
//! the one installed). Pure: bytes in, a verdict out.

use std::fmt;

/// The trusted comment's first word.
pub const TAG: &str = "viewport-release";

/// A release version: `MAJOR.MINOR.PATCH`, numbers only (no pre-release tags: an update
/// never goes sideways).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u64, pub u64, pub u64);

impl std::str::FromStr for Version {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('.').collect();
        let num = |p: &str| -> Result<u64, String> {
            if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) || (p.len() > 1 && p.starts_with('0')) {
                return Err(format!("{s:?} is not a version (MAJOR.MINOR.PATCH, digits only)"));
            }
            p.parse().map_err(|_| format!("{s:?} is not a version"))
        };
        match parts.as_slice() {
            [a, b, c] => Ok(Version(num(a)?, num(b)?, num(c)?)),
            _ => Err(format!("{s:?} is not a version (MAJOR.MINOR.PATCH)")),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// What a signature's trusted comment says about its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub version: Version,
    /// `linux`, `macos`, `windows` (Rust's `std::env::consts::OS`).
    pub os: String,
    /// `x86_64`, `aarch64` (Rust's `std::env::consts::ARCH`).
    pub arch: String,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    pub size: u64,
}

impl Release {
    /// Describes `file` as release `version` for `os`/`arch`.
    pub fn of(file: &[u8], version: Version, os: &str, arch: &str) -> Release {
        Release { version, os: os.into(), arch: arch.into(), sha256: sha256_hex(file), size: file.len() as u64 }
    }

    /// The trusted comment: `viewport-release version=… os=… arch=… sha256=… size=…`.
    pub fn trusted_comment(&self) -> String {
        format!("{TAG} version={} os={} arch={} sha256={} size={}", self.version, self.os, self.arch, self.sha256, self.size)
    }

    /// Parses a trusted comment: exactly the five fields, in that order, nothing else.
    pub fn parse(comment: &str) -> Result<Release, ReleaseError> {
        let bad = |why: &str| ReleaseError::BadComment(format!("{why}: {comment:?}"));
        let mut words = comment.split(' ');
        if words.next() != Some(TAG) {
            return Err(bad("not a Viewport release signature"));
        }
        let mut field = |key: &str| -> Result<String, ReleaseError> {
            let w = words.next().ok_or_else(|| bad(&format!("no {key}")))?;
            let v = w.strip_prefix(key).and_then(|r| r.strip_prefix('=')).ok_or_else(|| bad(&format!("expected {key}=…")))?;
            Ok(v.to_string())
        };
        let version = field("version")?.parse().map_err(|e: String| bad(&e))?;
        let os = field("os")?;
        let arch = field("arch")?;
        let sha256 = field("sha256")?;
        let size = field("size")?;
        if words.next().is_some() {
            return Err(bad("more than the five fields"));
        }
        let word_ok = |s: &str| !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !word_ok(&os) || !word_ok(&arch) {
            return Err(bad("os and arch are lowercase words"));
        }
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(bad("sha256 is 64 lowercase hex digits"));
        }
        if size.is_empty() || size.len() > 15 || !size.bytes().all(|b| b.is_ascii_digit()) || (size.len() > 1 && size.starts_with('0')) {
            return Err(bad("size is a number of bytes"));
        }
        Ok(Release { version, os, arch, sha256, size: size.parse().map_err(|_| bad("size"))? })
    }
}

/// What this machine expects of an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect<'a> {
    pub os: &'a str,
    pub arch: &'a str,
    /// The version installed now: only a newer one is taken.
    pub installed: Version,
}

/// Why a release is refused. Each message says what happened; none is a reason to retry
/// with another key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseError {
    /// The trusted key file cannot be read as a minisign public key.
    BadKey(String),
    /// The signature file cannot be read as a minisign signature.
    BadSignature(String),
    /// Signed by another key than the trusted one, or the file or its comment was changed.
    NotSigned(String),
    /// The trusted comment is not exactly a Viewport release's.
    BadComment(String),
    WrongPlatform {
        offered: String,
        here: String,
    },
    NotNewer {
        offered: Version,
        installed: Version,
    },
    /// The file is not the one the signature describes (cut short, or another file).
    WrongFile(String),
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReleaseError::BadKey(w) => write!(f, "the trusted release key cannot be read: {w}"),
            ReleaseError::BadSignature(w) => write!(f, "the release's signature cannot be read: {w}"),
            ReleaseError::NotSigned(w) => write!(f, "the release is not signed by the key this machine trusts ({w})"),
            ReleaseError::BadComment(w) => write!(f, "the release's signed description is not one vpd accepts ({w})"),
            ReleaseError::WrongPlatform { offered, here } => write!(f, "the release is for {offered}, not for this machine ({here})"),
            ReleaseError::NotNewer { offered, installed } => {
                write!(f, "the release is version {offered}, not newer than the installed {installed} (a downgrade or a replayed release)")
            }
            ReleaseError::WrongFile(w) => write!(f, "the downloaded file is not the signed release: {w}"),
        }
    }
}

impl std::error::Error for ReleaseError {}

/// Checks `file` against its minisign `signature` (the `.minisig` text), the trusted
/// `public_key` (the `.pub` text) and what this machine expects. The signature covers the
/// file and its trusted comment; the comment's size and digest must match the file too.
pub fn verify(file: &[u8], signature: &str, public_key: &str, expect: &Expect<'_>) -> Result<Release, ReleaseError> {
    let key = minisign_verify::PublicKey::decode(public_key.trim()).map_err(|e| ReleaseError::BadKey(e.to_string()))?;
    let sig = minisign_verify::Signature::decode(signature.trim()).map_err(|e| ReleaseError::BadSignature(e.to_string()))?;
    key.verify(file, &sig, false).map_err(|e| ReleaseError::NotSigned(e.to_string()))?;
    let release = Release::parse(sig.trusted_comment())?;
    if release.os != expect.os || release.arch != expect.arch {
        return Err(ReleaseError::WrongPlatform {
            offered: format!("{} {}", release.os, release.arch),
            here: format!("{} {}", expect.os, expect.arch),
        });
    }
    if release.version <= expect.installed {
        return Err(ReleaseError::NotNewer { offered: release.version, installed: expect.installed });
    }
    if release.size != file.len() as u64 {
        return Err(ReleaseError::WrongFile(format!("{} bytes, the signature says {}", file.len(), release.size)));
    }
    if sha256_hex(file) != release.sha256 {
        return Err(ReleaseError::WrongFile("its SHA-256 differs from the signed one".into()));
    }
    Ok(release)
}

/// SHA-256 as lowercase hex: [`crate::file_hash`] without its `sha256:` prefix.
fn sha256_hex(bytes: &[u8]) -> String {
    crate::file_hash(bytes).trim_start_matches("sha256:").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_strict_and_ordered() {
        assert_eq!("1.2.3".parse::<Version>(), Ok(Version(1, 2, 3)));
        assert!("0.10.0".parse::<Version>().unwrap() > "0.9.9".parse().unwrap());
        for bad in ["1.2", "1.2.3.4", "v1.2.3", "1.02.3", "1.2.3-rc1", "", "1..3", "1.2.x", " 1.2.3"] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_trusted_comment_round_trips_and_nothing_else_parses() {
        let r = Release::of(b"binary", Version(1, 2, 3), "linux", "x86_64");
        assert_eq!(Release::parse(&r.trusted_comment()), Ok(r.clone()));
        let c = r.trusted_comment();
        for bad in [
            c.replace(TAG, "other-release"),
            format!("{c} extra=1"),
            c.replace("os=linux arch=x86_64", "arch=x86_64 os=linux"),
            c.replace("os=linux", "os=Linux"),
            c.replace("size=6", "size=06"),
            c.replace("size=6", "size=-6"),
            c.replace(&r.sha256, &r.sha256.to_uppercase()),
            c.replace(&r.sha256, &r.sha256[..63]),
            c.replace("version=1.2.3", "version=1.2.3-beta"),
            c.replacen(' ', "  ", 1),
        ] {
            assert!(matches!(Release::parse(&bad), Err(ReleaseError::BadComment(_))), "{bad:?}");
        }
    }
}
