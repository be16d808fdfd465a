//! SPEC amendment A1: an org is (server, workspaceId). The server is named by the origin the
//! daemon itself contacted, normalised, and a pairing by a local id derived from both — never
//! by an id the server chose.

use sha2::{Digest, Sha256};

/// The origin of `url`: scheme, lower-case host without a trailing dot, and the port unless
/// it is the scheme's default. `https://Example.COM.:443/x` → `https://example.com`.
pub fn server_origin(url: &str) -> Result<String, String> {
    let u = url::Url::parse(url.trim()).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("{url:?} is not an http(s) URL"));
    }
    let host = u.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("{url:?} has no host"))?;
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    Ok(match u.port() {
        Some(p) => format!("{}://{host}:{p}", u.scheme()),
        None => format!("{}://{host}", u.scheme()),
    })
}

/// The local id of the pairing with org `workspace_id` on the server at `origin`: what names
/// its identity file, keyring entry and binding records. `p` and 32 hex digits.
pub fn pairing_id(origin: &str, workspace_id: &str) -> String {
    let digest = Sha256::digest(format!("{origin}\n{workspace_id}").as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("p{hex}")
}

/// Whether `s` has the form of a [`pairing_id`].
pub fn is_pairing_id(s: &str) -> bool {
    s.len() == 33 && s.starts_with('p') && s[1..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised() {
        assert_eq!(server_origin("https://Example.COM.:443/api/").unwrap(), "https://example.com");
        assert_eq!(server_origin("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(server_origin("http://example.com:80").unwrap(), "http://example.com");
        assert_eq!(server_origin("https://example.com:8443").unwrap(), "https://example.com:8443");
        assert_eq!(server_origin("http://[::1]:9/").unwrap(), "http://[::1]:9");
        assert!(server_origin("file:///etc/passwd").is_err());
        assert!(server_origin("nonsense").is_err());
    }

    #[test]
    fn pairing_ids_differ_by_server_and_org() {
        let a = pairing_id("https://a.example", "01J7M8N9P0Q1R2S3T4V5V6W7X8");
        assert!(is_pairing_id(&a), "{a}");
        assert_eq!(a, pairing_id("https://a.example", "01J7M8N9P0Q1R2S3T4V5V6W7X8"));
        assert_ne!(a, pairing_id("https://b.example", "01J7M8N9P0Q1R2S3T4V5V6W7X8"));
        assert_ne!(a, pairing_id("https://a.example", "01J7M8N9P0Q1R2S3T4V5V6W7X9"));
        assert!(!is_pairing_id("../x") && !is_pairing_id("01J7M8N9P0Q1R2S3T4V5V6W7X8"));
    }
}
