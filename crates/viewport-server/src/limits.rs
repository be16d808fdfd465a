//! Rate limits: pairing-code creation and claims per client IP, sign-in attempts per IP and
//! per email, the `/pair` page per signed-in user.

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;

pub struct Limits {
    pairing: DefaultKeyedRateLimiter<IpAddr>,
    login_ip: DefaultKeyedRateLimiter<IpAddr>,
    login_email: DefaultKeyedRateLimiter<String>,
    pair_page: DefaultKeyedRateLimiter<String>,
}

fn per_minute<K: Hash + Eq + Clone>(n: u32) -> DefaultKeyedRateLimiter<K> {
    RateLimiter::keyed(Quota::per_minute(NonZeroU32::new(n.max(1)).expect("n >= 1")))
}

fn check<K: Hash + Eq + Clone>(l: &DefaultKeyedRateLimiter<K>, key: &K) -> bool {
    if l.len() > 10_000 {
        l.retain_recent();
    }
    l.check_key(key).is_ok()
}

impl Limits {
    pub fn new(pairing_per_minute: u32, login_per_minute: u32, pair_page_per_minute: u32) -> Limits {
        Limits {
            pairing: per_minute(pairing_per_minute),
            login_ip: per_minute(login_per_minute),
            login_email: per_minute(login_per_minute),
            pair_page: per_minute(pair_page_per_minute),
        }
    }

    /// Creating or claiming a pairing code.
    pub fn allow_pairing(&self, ip: IpAddr) -> bool {
        check(&self.pairing, &ip)
    }

    /// A sign-in attempt; counts against both the IP and the email.
    pub fn allow_login(&self, ip: IpAddr, email: &str) -> bool {
        let by_ip = check(&self.login_ip, &ip);
        let by_email = check(&self.login_email, &email.to_string());
        by_ip && by_email
    }

    /// A view or a submission of the `/pair` page by the signed-in user `user_id` (so one
    /// account cannot probe codes quickly).
    pub fn allow_pair_page(&self, user_id: &str) -> bool {
        check(&self.pair_page, &user_id.to_string())
    }
}
