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
    /// The source's manifest is not one this vpd reads.
    BadManifest(String),
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
            ReleaseError::BadManifest(w) => write!(f, "the update source's answer cannot be used: {w}"),
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

/// The minisign public key in a `.pub` file's text: its key id and Ed25519 key.
struct Key {
    id: [u8; 8],
    key: ed25519_dalek::VerifyingKey,
}

fn b64(line: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(line.trim()).ok()
}

fn parse_key(public_key: &str) -> Result<Key, ReleaseError> {
    let bad = |w: &str| ReleaseError::BadKey(w.to_string());
    let mut lines = public_key.trim().lines();
    let first = lines.next().ok_or_else(|| bad("it is empty"))?;
    // A `.pub` file is a comment line and the key; the key alone is accepted too.
    let line = if first.starts_with("untrusted comment:") { lines.next().ok_or_else(|| bad("no key after the comment line"))? } else { first };
    let bin = b64(line).filter(|b| b.len() == 42 && &b[..2] == b"Ed").ok_or_else(|| bad("not a minisign Ed25519 public key"))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(bin[10..42].try_into().unwrap()).map_err(|_| bad("not an Ed25519 key"))?;
    Ok(Key { id: bin[2..10].try_into().unwrap(), key })
}

/// The key's fingerprint, as a person compares it before trusting it: minisign's key id
/// (what `minisign -V` and the `.pub` file's comment print) and the SHA-256 of the key.
pub fn key_fingerprint(public_key: &str) -> Result<String, ReleaseError> {
    let k = parse_key(public_key)?;
    let id: String = k.id.iter().rev().map(|b| format!("{b:02X}")).collect();
    let digest = sha256_hex(k.key.as_bytes());
    let groups: Vec<&str> = (0..digest.len()).step_by(4).map(|i| &digest[i..i + 4]).collect();
    Ok(format!("key ID {id}, SHA-256 {}", groups.join(" ")))
}

/// What a signature says about its file, checked before the file is fetched: the trusted
/// comment is covered by minisign's global signature (over the file's signature and the
/// comment), which needs only the key. [`verify`] checks the file itself afterwards.
pub fn describe(signature: &str, public_key: &str) -> Result<Release, ReleaseError> {
    let key = parse_key(public_key)?;
    let bad = |w: &str| ReleaseError::BadSignature(w.to_string());
    let mut lines = signature.trim().lines();
    let _untrusted = lines.next().ok_or_else(|| bad("it is empty"))?;
    let sig = lines.next().and_then(b64).filter(|b| b.len() == 74).ok_or_else(|| bad("no minisign signature line"))?;
    let comment = lines.next().and_then(|l| l.strip_prefix("trusted comment: ")).ok_or_else(|| bad("no trusted comment"))?;
    let global = lines.next().and_then(b64).filter(|b| b.len() == 64).ok_or_else(|| bad("no global signature"))?;
    if &sig[..2] != b"ED" {
        return Err(bad("not a prehashed Ed25519 minisign signature"));
    }
    if sig[2..10] != key.id {
        return Err(ReleaseError::NotSigned("signed by another key".into()));
    }
    let mut signed = sig[10..74].to_vec();
    signed.extend_from_slice(comment.as_bytes());
    let global = ed25519_dalek::Signature::from_bytes(global[..].try_into().unwrap());
    key.key.verify_strict(&signed, &global).map_err(|_| ReleaseError::NotSigned("the signed description does not match its signature".into()))?;
    Release::parse(comment)
}

/// What a signature *claims* about its file, not checked against any key: for the server,
/// which publishes releases without holding a key (machines check with theirs).
pub fn claimed(signature: &str) -> Result<Release, ReleaseError> {
    let sig = minisign_verify::Signature::decode(signature.trim()).map_err(|e| ReleaseError::BadSignature(e.to_string()))?;
    Release::parse(sig.trusted_comment())
}

/// The update source's answer to `latest?os=&arch=` (docs/RELEASES.md): the newest release
/// for one platform. Only `signature` is believed; the other fields must repeat what it
/// signs, and `url` (relative to the manifest's address, or absolute) is where the file is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub version: String,
    pub os: String,
    pub arch: String,
    pub url: String,
    /// The release file's `.minisig` text.
    pub signature: String,
}

/// The manifest format this build reads.
pub const MANIFEST_FORMAT: u32 = 1;

/// What a manifest offers this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// A newer release for this machine, its signed description checked.
    Newer(Release),
    /// The installed version is the newest.
    UpToDate(Release),
}

/// Checks a manifest's bytes: JSON of this format, its signature by the trusted key, its
/// unsigned fields equal to the signed ones, for this OS and architecture, and not older
/// than the installed version (an older one is a downgrade or a replay: refused).
pub fn check_manifest(body: &[u8], public_key: &str, expect: &Expect<'_>) -> Result<(Manifest, Offer), ReleaseError> {
    let m: Manifest = serde_json::from_slice(body).map_err(|e| {
        let start = String::from_utf8_lossy(&body[..body.len().min(64)]).trim_start().to_ascii_lowercase();
        if start.starts_with('<') {
            ReleaseError::BadManifest("the source answered with a web page, not a release manifest: is the URL right?".into())
        } else {
            ReleaseError::BadManifest(format!("not a release manifest: {e}"))
        }
    })?;
    if m.format != MANIFEST_FORMAT {
        return Err(ReleaseError::BadManifest(format!("manifest format {} (this vpd reads {MANIFEST_FORMAT}): update vpd by hand", m.format)));
    }
    let r = describe(&m.signature, public_key)?;
    if m.version != r.version.to_string() || m.os != r.os || m.arch != r.arch {
        return Err(ReleaseError::BadManifest(format!(
            "the manifest says {} {} {} but its signature says {} {} {}",
            m.version, m.os, m.arch, r.version, r.os, r.arch
        )));
    }
    if r.os != expect.os || r.arch != expect.arch {
        return Err(ReleaseError::WrongPlatform { offered: format!("{} {}", r.os, r.arch), here: format!("{} {}", expect.os, expect.arch) });
    }
    if r.version < expect.installed {
        return Err(ReleaseError::NotNewer { offered: r.version, installed: expect.installed });
    }
    let offer = if r.version == expect.installed { Offer::UpToDate(r) } else { Offer::Newer(r) };
    Ok((m, offer))
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
