//! Ids and codes: ULID checks (before any id becomes part of a path), pairing-code alphabet
//! and formatting, public-key fingerprints.

use base64::Engine;
use sha2::{Digest, Sha256};

const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// True when `s` is a canonical ULID: 26 upper-case Crockford base32 characters whose first
/// character is at most `7` (so the value fits 128 bits). Nothing else may become a path.
pub fn is_ulid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 26 && b[0] <= b'7' && b.iter().all(|c| CROCKFORD.contains(c))
}

/// Pairing codes use 20 consonants: no vowels (no words), no look-alikes (0/O, 1/I/L, 5/S
/// kept apart by having no digits at all).
pub const CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
pub const CODE_LEN: usize = 8;

/// Accepts `bcdf-ghjk`, `BCDFGHJK`, `BCDF GHJK`; returns the 8 canonical characters, or
/// `None` when the input is not a code.
pub fn normalize_code(input: &str) -> Option<String> {
    let s: String = input.chars().filter(|c| !matches!(c, '-' | ' ')).map(|c| c.to_ascii_uppercase()).collect();
    (s.len() == CODE_LEN && s.bytes().all(|c| CODE_ALPHABET.contains(&c))).then_some(s)
}

/// `BCDFGHJK` → `BCDF-GHJK` (input must be normalized).
pub fn format_code(code: &str) -> String {
    if code.len() == CODE_LEN {
        format!("{}-{}", &code[..4], &code[4..])
    } else {
        code.to_string()
    }
}

/// `SHA256:` + unpadded standard base64 of the SHA-256 of the raw public key: the same form
/// as OpenSSH fingerprints, shown by `vpd pair` and on the approval page so the user can
/// compare them.
pub fn fingerprint(public_key: &[u8]) -> String {
    let digest = Sha256::digest(public_key);
    format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulid_check_is_strict() {
        assert!(is_ulid("01J7M8N9P0Q1R2S3T4U5V6W7X8".replace('U', "V").as_str()));
        for bad in [
            "",
            "../../x",
            "01J7M8N9P0Q1R2S3T4V5V6W7X",   // 25
            "01J7M8N9P0Q1R2S3T4V5V6W7X89", // 27
            "81J7M8N9P0Q1R2S3T4V5V6W7X8",  // overflows 128 bits
            "01j7m8n9p0q1r2s3t4v5v6w7x8",  // not canonical
            "01J7M8N9P0Q1R2S3T4U5V6W7X8",  // U is not Crockford
            "01J7M8N9P0Q1R2S3T4V5V6W7/8",
            "01J7M8N9P0Q1R2S3T4V5V6W7\u{0}8",
        ] {
            assert!(!is_ulid(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn codes_normalize_and_format() {
        assert_eq!(normalize_code("bcdf-ghjk").as_deref(), Some("BCDFGHJK"));
        assert_eq!(normalize_code(" BCDF GHJK ").as_deref(), Some("BCDFGHJK"));
        assert_eq!(normalize_code("ABCD-EFGH"), None, "vowels are not in the alphabet");
        assert_eq!(normalize_code("BCDF-GHJ"), None);
        assert_eq!(normalize_code("BCDF-GHJ1"), None);
        assert_eq!(format_code("BCDFGHJK"), "BCDF-GHJK");
    }

    #[test]
    fn fingerprint_is_stable() {
        let fp = fingerprint(&[0u8; 32]);
        assert!(fp.starts_with("SHA256:"));
        assert_eq!(fp, fingerprint(&[0u8; 32]));
        assert_ne!(fp, fingerprint(&[1u8; 32]));
    }
}
