//! Who may use the loopback web UI (SPEC section 11): one-time login links, the session
//! cookie, CSRF tokens, and the Host and Origin allow-lists. Pure checks over a secret; the
//! only file it touches is `ui-token`, at load.

use crate::error::{Error, ErrorCode, Result};
use crate::home::Home;
use crate::store;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// A login link is good once, for this long.
pub const LINK_TTL: Duration = Duration::from_secs(120);
/// A session cookie is good for this long.
pub const SESSION_TTL_SECS: u64 = 12 * 3600;
pub const COOKIE: &str = "vpd_session";
/// Unredeemed links kept at most (older ones are dropped).
const MAX_LINKS: usize = 64;

pub struct Auth {
    key: [u8; 32],
    pub port: u16,
    /// sha256(token) → when it was issued.
    links: Mutex<HashMap<[u8; 32], Instant>>,
    /// Sessions ended with "log out" (until the daemon restarts; cookies expire anyway).
    ended: Mutex<HashSet<String>>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source works");
    b
}

/// Reads `ui-token`, creating it (0600) the first time.
fn load_key(home: &Home) -> Result<[u8; 32]> {
    let path = home.ui_token();
    let _lock = store::Lock::acquire(&home.lock_file())?;
    match store::read_bounded(&path, 1024)? {
        Some(bytes) => {
            store::check_private_file(&path)?;
            let text = String::from_utf8_lossy(&bytes);
            let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim()).ok();
            match decoded.and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok()) {
                Some(k) => Ok(k),
                None => Err(Error::new(
                    ErrorCode::FileInvalid,
                    format!(
                        "{} is not a vpd UI secret; delete it and restart the daemon (open UI sessions will have to log in again)",
                        path.display()
                    ),
                )),
            }
        }
        None => {
            let key = random::<32>();
            store::write_atomic(&path, format!("{}\n", b64(&key)).as_bytes())?;
            Ok(key)
        }
    }
}

impl Auth {
    pub fn load(home: &Home, port: u16) -> Result<Self> {
        Ok(Self::with_key(load_key(home)?, port))
    }

    pub fn with_key(key: [u8; 32], port: u16) -> Self {
        Self { key, port, links: Mutex::default(), ended: Mutex::default() }
    }

    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("any key length");
        for p in parts {
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// A new one-time login link's token.
    pub fn issue_link(&self) -> String {
        let token = random::<32>();
        let mut links = self.links.lock().unwrap();
        links.retain(|_, at| at.elapsed() < LINK_TTL);
        if links.len() >= MAX_LINKS {
            if let Some(oldest) = links.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k) {
                links.remove(&oldest);
            }
        }
        links.insert(Sha256::digest(token).into(), Instant::now());
        b64(&token)
    }

    /// Uses up a login link's token. False for unknown, used or expired ones.
    pub fn redeem(&self, token: &str) -> bool {
        let Ok(raw) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token) else { return false };
        let key: [u8; 32] = Sha256::digest(raw).into();
        matches!(self.links.lock().unwrap().remove(&key), Some(at) if at.elapsed() < LINK_TTL)
    }

    /// A new session cookie value: `v1.<issued>.<id>.<mac>`.
    pub fn new_session(&self) -> String {
        self.session_at(unix_now())
    }

    fn session_at(&self, issued: u64) -> String {
        let id = b64(&random::<18>());
        let issued = issued.to_string();
        let mac = self.mac(&[b"session", issued.as_bytes(), id.as_bytes()]);
        format!("v1.{issued}.{id}.{}", b64(&mac))
    }

    /// The session id of a valid cookie value.
    pub fn session(&self, cookie: &str) -> Option<String> {
        let mut parts = cookie.split('.');
        let (v, issued, id, mac) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if v != "v1" || parts.next().is_some() {
            return None;
        }
        let want = self.mac(&[b"session", issued.as_bytes(), id.as_bytes()]);
        let given = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(mac).ok()?;
        if !bool::from(given.ct_eq(&want)) {
            return None;
        }
        let age = unix_now().checked_sub(issued.parse().ok()?)?;
        if age > SESSION_TTL_SECS || self.ended.lock().unwrap().contains(id) {
            return None;
        }
        Some(id.to_string())
    }

    pub fn end_session(&self, id: &str) {
        self.ended.lock().unwrap().insert(id.to_string());
    }

    /// The CSRF token of a session.
    pub fn csrf(&self, session_id: &str) -> String {
        b64(&self.mac(&[b"csrf", session_id.as_bytes()]))
    }

    pub fn csrf_ok(&self, session_id: &str, given: &str) -> bool {
        bool::from(self.csrf(session_id).as_bytes().ct_eq(given.as_bytes()))
    }

    /// Loopback names with our port only (blocks DNS rebinding).
    pub fn host_ok(&self, host: &str) -> bool {
        let p = self.port;
        [format!("127.0.0.1:{p}"), format!("localhost:{p}"), format!("[::1]:{p}")].iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    pub fn origin_ok(&self, origin: &str) -> bool {
        origin.strip_prefix("http://").is_some_and(|h| self.host_ok(h))
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::with_key([7; 32], 7070)
    }

    #[test]
    fn links_work_once() {
        let a = auth();
        let t = a.issue_link();
        assert!(a.redeem(&t));
        assert!(!a.redeem(&t));
        assert!(!a.redeem("nope"));
        assert!(!a.redeem(""));
    }

    #[test]
    fn sessions_are_signed_and_expire() {
        let a = auth();
        let c = a.new_session();
        let id = a.session(&c).expect("valid");
        assert!(a.session(&c.replacen("v1", "v2", 1)).is_none());
        let mut tampered = c.clone();
        tampered.push('x');
        assert!(a.session(&tampered).is_none());
        assert!(Auth::with_key([8; 32], 7070).session(&c).is_none(), "another key");
        let old = a.session_at(unix_now() - SESSION_TTL_SECS - 5);
        assert!(a.session(&old).is_none(), "expired");
        assert!(a.csrf_ok(&id, &a.csrf(&id)));
        assert!(!a.csrf_ok(&id, "x"));
        assert!(!a.csrf_ok("other", &a.csrf(&id)));
        a.end_session(&id);
        assert!(a.session(&c).is_none(), "logged out");
    }

    #[test]
    fn hosts_and_origins() {
        let a = auth();
        for ok in ["127.0.0.1:7070", "localhost:7070", "LOCALHOST:7070", "[::1]:7070"] {
            assert!(a.host_ok(ok), "{ok}");
        }
        for bad in ["evil.example", "127.0.0.1:7071", "127.0.0.1", "127.0.0.1.evil.example:7070", "localhost.:7070", ""] {
            assert!(!a.host_ok(bad), "{bad}");
        }
        assert!(a.origin_ok("http://127.0.0.1:7070"));
        assert!(!a.origin_ok("https://127.0.0.1:7070"));
        assert!(!a.origin_ok("http://evil.example"));
        assert!(!a.origin_ok("null"));
    }
}
