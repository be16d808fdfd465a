//! Rate limits. Pairing codes created or claimed per client and minute; the `/pair` page per
//! signed-in user. Sign-ins count **failures**, so no stranger can lock a user out:
//! - per (account, client): the next attempt waits once a client has failed too often for
//!   that account; another client is not affected;
//! - per client, across accounts (a spray from one place), at three times that rate;
//! - per account, from everywhere (distributed guessing), at five times that rate — except
//!   for a browser that holds a recent successful sign-in for that account (a known-device
//!   cookie), which is never slowed by other people's failures.
//!
//! A client is [`crate::client::key`] of its address (IPv6 by /64).

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Limits {
    pairing: DefaultKeyedRateLimiter<IpAddr>,
    pair_page: DefaultKeyedRateLimiter<String>,
    login_pair: Failures<(String, IpAddr)>,
    login_client: Failures<IpAddr>,
    login_account: Failures<String>,
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

/// Failures per key within the last minute (a sliding window), bounded in memory.
struct Failures<K> {
    max: usize,
    seen: Mutex<HashMap<K, VecDeque<Instant>>>,
}

const WINDOW: Duration = Duration::from_secs(60);

impl<K: Hash + Eq + Clone> Failures<K> {
    fn new(max: u32) -> Self {
        Failures { max: max.max(1) as usize, seen: Mutex::default() }
    }

    /// Whether `key` failed `max` times within the window.
    fn blocked(&self, key: &K) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get_mut(key) {
            Some(times) => {
                while times.front().is_some_and(|t| t.elapsed() > WINDOW) {
                    times.pop_front();
                }
                times.len() >= self.max
            }
            None => false,
        }
    }

    fn record(&self, key: K) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > 50_000 {
            seen.retain(|_, t| t.back().is_some_and(|t| t.elapsed() <= WINDOW));
        }
        let times = seen.entry(key).or_default();
        times.push_back(Instant::now());
        while times.len() > self.max {
            times.pop_front();
        }
    }
}

/// Why a sign-in must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginBlock {
    /// This client failed too often for this account.
    ClientAndAccount,
    /// This client failed too often, across accounts.
    Client,
    /// The account failed too often, from everywhere (and this browser is not a known one).
    Account,
}

impl Limits {
    pub fn new(pairing_per_minute: u32, login_per_minute: u32, pair_page_per_minute: u32) -> Limits {
        Limits {
            pairing: per_minute(pairing_per_minute),
            pair_page: per_minute(pair_page_per_minute),
            login_pair: Failures::new(login_per_minute),
            login_client: Failures::new(login_per_minute.saturating_mul(3)),
            login_account: Failures::new(login_per_minute.saturating_mul(5)),
        }
    }

    /// Creating or claiming a pairing code, by `client` ([`crate::client::key`]).
    pub fn allow_pairing(&self, client: IpAddr) -> bool {
        check(&self.pairing, &client)
    }

    /// Whether a sign-in for `email` from `client` must wait; `known_device` is a browser that
    /// signed in to that account recently.
    pub fn login_blocked(&self, email: &str, client: IpAddr, known_device: bool) -> Option<LoginBlock> {
        if self.login_pair.blocked(&(email.to_string(), client)) {
            Some(LoginBlock::ClientAndAccount)
        } else if self.login_client.blocked(&client) {
            Some(LoginBlock::Client)
        } else if !known_device && self.login_account.blocked(&email.to_string()) {
            Some(LoginBlock::Account)
        } else {
            None
        }
    }

    /// A failed sign-in for `email` from `client`.
    pub fn login_failed(&self, email: &str, client: IpAddr) {
        self.login_pair.record((email.to_string(), client));
        self.login_client.record(client);
        self.login_account.record(email.to_string());
    }

    /// A view or a submission of the `/pair` page by the signed-in user `user_id` (so one
    /// account cannot probe codes quickly).
    pub fn allow_pair_page(&self, user_id: &str) -> bool {
        check(&self.pair_page, &user_id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_slow_the_pair_not_the_account_for_others() {
        let l = Limits::new(30, 3, 30);
        let (a, b): (IpAddr, IpAddr) = ("203.0.113.5".parse().unwrap(), "198.51.100.7".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(l.login_blocked("u@x", a, false), None);
            l.login_failed("u@x", a);
        }
        assert_eq!(l.login_blocked("u@x", a, false), Some(LoginBlock::ClientAndAccount));
        assert_eq!(l.login_blocked("u@x", b, false), None, "another client is not affected");
        assert_eq!(l.login_blocked("v@x", a, false), None, "another account from the same client is not (yet)");
        // A spread of clients: the account ceiling (5 × 3), but not for a known browser.
        for i in 0..15u8 {
            l.login_failed("w@x", IpAddr::from([192, 0, 2, i]));
        }
        assert_eq!(l.login_blocked("w@x", b, false), Some(LoginBlock::Account));
        assert_eq!(l.login_blocked("w@x", b, true), None);
    }
}
