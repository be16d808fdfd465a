//! Small helpers: time, randomness, hashing, encodings, input validation.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How long a pairing code lives.
pub const CODE_TTL_SECS: i64 = 15 * 60;

/// The name of the OS user running this process (from the user database, not `$USER`), or
/// `uid N` when it has none.
pub fn os_user_name() -> String {
    // SAFETY: getpwuid_r writes into the buffers we own and hands back a pointer into them.
    unsafe {
        let uid = libc::getuid();
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        if libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) == 0 && !out.is_null() && !pw.pw_name.is_null() {
            let name = std::ffi::CStr::from_ptr(pw.pw_name).to_string_lossy().into_owned();
            if !name.is_empty() {
                return name;
            }
        }
        format!("uid {uid}")
    }
}

/// Text stored from elsewhere (a machine's name, an agent, a directory), made safe to print on
/// a terminal: control characters (C0, DEL, C1; escape sequences start with one) and the
/// invisible format characters that reorder or hide text (bidi overrides and isolates,
/// zero-width characters, the BOM) are shown as `\u{1b}` escapes, everything else as is.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    fn hidden(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
    }
    if !s.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(s.chars().map(|c| if hidden(c) { c.escape_unicode().to_string() } else { c.to_string() }).collect())
}

pub fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Unix seconds → RFC 3339 (`2026-05-11T14:42:00Z`).
pub fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map(|t| t.to_string()).unwrap_or_default()
}

/// Unix seconds → `2026-05-11 14:42 UTC`, for pages.
pub fn human_time(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default()
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    b
}

/// A 256-bit secret, base64url without padding.
pub fn random_token() -> String {
    b64url(&random_bytes::<32>())
}

/// 8 characters drawn uniformly from `CODE_ALPHABET` (rejection sampling: no modulo bias).
pub fn random_code() -> String {
    let alphabet = vpd_proto::CODE_ALPHABET;
    let n = alphabet.len();
    let limit = 256 - (256 % n); // largest multiple of n that fits in a byte
    let mut out = String::with_capacity(vpd_proto::ids::CODE_LEN);
    while out.len() < vpd_proto::ids::CODE_LEN {
        for b in random_bytes::<16>() {
            if (b as usize) < limit && out.len() < vpd_proto::ids::CODE_LEN {
                out.push(alphabet[b as usize % n] as char);
            }
        }
    }
    out
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Constant-time check that `secret` hashes to `stored_hash`.
pub fn secret_matches(secret: &str, stored_hash: &[u8]) -> bool {
    let h = sha256(secret.as_bytes());
    stored_hash.len() == 32 && bool::from(h.ct_eq(stored_hash))
}

/// Constant-time string compare (compares SHA-256 digests, so lengths do not leak).
pub fn ct_str_eq(a: &str, b: &str) -> bool {
    bool::from(sha256(a.as_bytes()).ct_eq(&sha256(b.as_bytes())))
}

pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// Percent-encodes everything but unreserved characters (for `?next=`).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Lower-cased, trimmed email; `Err` with a message when it is not plausible.
pub fn normalize_email(email: &str) -> Result<String, String> {
    let e = email.trim().to_lowercase();
    let ok = e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(e.split_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty() && !d.contains('@'));
    if ok {
        Ok(e)
    } else {
        Err(format!("{email:?} is not a valid email address"))
    }
}

/// Slugs: 1–40 of `a-z 0-9 -`, starting with a letter or digit (never a ULID, which is
/// upper-case, so "ULID or slug" is unambiguous).
pub fn validate_slug(slug: &str) -> Result<(), String> {
    let ok = (1..=40).contains(&slug.len())
        && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && slug.as_bytes()[0] != b'-';
    if ok {
        Ok(())
    } else {
        Err(format!("slug {slug:?} must be 1-40 characters of a-z, 0-9 and '-', not starting with '-'"))
    }
}

/// Display names (orgs, machines): 1–100 characters, no control characters.
pub fn validate_name(what: &str, name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if n == 0 || n > 100 || name.trim().is_empty() {
        return Err(format!("{what} must be 1-100 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{what} must not contain control characters"));
    }
    Ok(())
}

pub fn validate_password(pw: &str) -> Result<(), String> {
    if pw.chars().count() < 8 {
        return Err("the password must be at least 8 characters".into());
    }
    if pw.len() > 1024 {
        return Err("the password must be at most 1024 bytes".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_control_characters_only() {
        assert_eq!(printable("plain é €"), "plain é €");
        assert!(matches!(printable("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(printable("a\x1b[31mb\x07\u{9b}c\x7f"), r"a\u{1b}[31mb\u{7}\u{9b}c\u{7f}");
        // A right-to-left override would show "exe.txt" for "txt.exe".
        assert_eq!(printable("evil\u{202e}txt.exe\u{200b}"), r"evil\u{202e}txt.exe\u{200b}");
    }

    #[test]
    fn codes_are_well_formed_and_vary() {
        let a = random_code();
        assert_eq!(a.len(), 8);
        assert_eq!(vpd_proto::normalize_code(&a).as_deref(), Some(a.as_str()));
        assert_ne!(a, random_code());
    }

    #[test]
    fn code_characters_are_roughly_uniform() {
        let mut counts = [0usize; 20];
        for _ in 0..2000 {
            for c in random_code().bytes() {
                counts[vpd_proto::CODE_ALPHABET.iter().position(|&x| x == c).unwrap()] += 1;
            }
        }
        // 16000 draws, 800 expected per letter.
        assert!(counts.iter().all(|&c| (600..1000).contains(&c)), "{counts:?}");
    }

    #[test]
    fn secrets_compare_by_hash() {
        let h = sha256(b"abc");
        assert!(secret_matches("abc", &h));
        assert!(!secret_matches("abd", &h));
        assert!(!secret_matches("abc", &h[..31]));
    }

    #[test]
    fn validation() {
        assert_eq!(normalize_email(" A@Example.COM ").unwrap(), "a@example.com");
        assert!(normalize_email("nope").is_err());
        assert!(validate_slug("acme-eng").is_ok());
        assert!(validate_slug("Acme").is_err());
        assert!(validate_slug("-x").is_err());
        assert!(validate_name("name", "box\n").is_err());
        assert!(validate_name("name", &"x".repeat(101)).is_err());
        assert_eq!(url_encode("/pair?code=AB"), "%2Fpair%3Fcode%3DAB");
    }
}
