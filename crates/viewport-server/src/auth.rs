//! Password hashing, web sessions (cookie ↔ hashed row) and CSRF tokens.
//!
//! * Signed-in forms carry a CSRF token derived from the session token
//!   (`SHA-256("csrf\n" + token)`), so it needs no storage and dies with the session.
//! * Anonymous forms (sign-in, setup) use a double-submit cookie: a random `vp_csrf` cookie
//!   whose value must come back in the form.
//!
//! Every comparison is constant-time.

use crate::store::User;
use crate::util;
use crate::AppState;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use std::sync::OnceLock;

pub const SESSION_COOKIE: &str = "vp_session";
pub const CSRF_COOKIE: &str = "vp_csrf";
pub const SESSION_SECS: i64 = 7 * 24 * 3600;
/// A browser that signed in to an account recently: the per-account sign-in ceiling does not
/// apply to it (other people's failures never lock its owner out).
pub const KNOWN_COOKIE: &str = "vp_known";
pub const KNOWN_SECS: i64 = 30 * 24 * 3600;

/// The known-device cookie for `user_id` (`{user}.{expiry}.{mac}`).
pub fn known_device_cookie(state: &AppState, user_id: &str) -> HeaderValue {
    let exp = util::now() + KNOWN_SECS;
    let msg = format!("{user_id}.{exp}");
    set_cookie(KNOWN_COOKIE, &format!("{msg}.{}", state.keys.device_mac(&msg)), KNOWN_SECS, state.secure_cookies())
}

/// Whether the request carries a valid, unexpired known-device cookie for `user_id`.
pub fn known_device(state: &AppState, headers: &HeaderMap, user_id: &str) -> bool {
    let Some(v) = cookie(headers, KNOWN_COOKIE) else { return false };
    let Some((msg, mac)) = v.rsplit_once('.') else { return false };
    let Some((user, exp)) = msg.split_once('.') else { return false };
    user == user_id && exp.parse::<i64>().is_ok_and(|e| e > util::now()) && util::ct_str_eq(&state.keys.device_mac(msg), mac)
}

pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::encode_b64(&util::random_bytes::<16>()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?.to_string())
}

/// Checks `password` against `hash`; with no hash (unknown user) it still does the work of a
/// verification, so response times do not tell which emails exist.
pub fn verify_password(password: &str, hash: Option<&str>) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("dummy password for timing").unwrap_or_default());
    let (h, real) = match hash {
        Some(h) => (h, true),
        None => (dummy.as_str(), false),
    };
    let ok = PasswordHash::new(h).map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()).unwrap_or(false);
    ok && real
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    vpd_proto::cookie(headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()), name)
}

/// `Set-Cookie` value: HttpOnly, SameSite=Lax, Path=/, Secure on https.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")).expect("cookie values are base64url")
}

pub fn csrf_for_session(session_token: &str) -> String {
    util::b64url(&util::sha256(format!("csrf\n{session_token}").as_bytes()))
}

/// The signed-in user, when the session cookie names a live session.
#[derive(Clone)]
pub struct Session {
    pub user: User,
    token: String,
}

impl Session {
    /// The signed-in user as the actor of a change (roles and the audit log).
    pub fn actor(&self) -> crate::roles::Actor {
        crate::roles::Actor::User { id: self.user.id.clone(), email: self.user.email.clone() }
    }
    /// The token signed-in forms must carry.
    pub fn csrf(&self) -> String {
        csrf_for_session(&self.token)
    }
    pub fn csrf_ok(&self, submitted: &str) -> bool {
        util::ct_str_eq(&self.csrf(), submitted)
    }
    pub fn token_hash(&self) -> [u8; 32] {
        util::sha256(self.token.as_bytes())
    }
}

/// Extractor: `Some(session)` when signed in.
pub struct MaybeSession(pub Option<Session>);

impl FromRequestParts<AppState> for MaybeSession {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE).map(str::to_string) else {
            return Ok(MaybeSession(None));
        };
        let hash = util::sha256(token.as_bytes());
        let user = state.db(move |s| s.web_session_user(&hash, util::now())).await.ok().flatten();
        Ok(MaybeSession(user.map(|user| Session { user, token })))
    }
}

/// Starts a session for `user_id`: stores the hashed token, returns the `Set-Cookie` value.
pub async fn start_session(state: &AppState, user_id: String) -> anyhow::Result<HeaderValue> {
    let token = util::random_token();
    let hash = util::sha256(token.as_bytes());
    let now = util::now();
    state.db(move |s| s.create_web_session(&hash, &user_id, now, now + SESSION_SECS)).await?;
    Ok(set_cookie(SESSION_COOKIE, &token, SESSION_SECS, state.secure_cookies()))
}

/// The anonymous CSRF token for this request: the existing cookie's, or a new one with the
/// `Set-Cookie` header to send.
pub fn anon_csrf(headers: &HeaderMap, secure: bool) -> (String, Option<(axum::http::HeaderName, HeaderValue)>) {
    match cookie(headers, CSRF_COOKIE).filter(|v| v.len() >= 32) {
        Some(v) => (v.to_string(), None),
        None => {
            let v = util::random_token();
            let c = set_cookie(CSRF_COOKIE, &v, 3600 * 12, secure);
            (v, Some((SET_COOKIE, c)))
        }
    }
}

pub fn anon_csrf_ok(headers: &HeaderMap, submitted: &str) -> bool {
    match cookie(headers, CSRF_COOKIE) {
        Some(c) if !c.is_empty() && !submitted.is_empty() => util::ct_str_eq(c, submitted),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", Some(&h)));
        assert!(!verify_password("wrong horse", Some(&h)));
        assert!(!verify_password("correct horse", None));
    }

    #[test]
    fn cookies_parse() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("a=1; vp_session=abc; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
