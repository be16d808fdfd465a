//! Write budgets (SPEC A8): bytes per minute per machine and per org, as token buckets that
//! may go into debt. The relay charges every stored batch; while a machine's or its org's
//! bucket is in debt, it holds that connection's acks (and its next messages) and says
//! `throttle` at least every [`vpd_proto::relay::THROTTLE_EVERY_SECS`], so the daemon keeps
//! the connection and holds back. A busy org's debt never slows another org.
//!
//! The counters live in this process: with several instances (issue 14) each would need its
//! share of the budget, or counters in the database.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One bucket: `capacity` bytes (one minute's worth), refilled continuously.
#[derive(Debug, Clone)]
struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant, per_min: u64) {
        let rate = per_min as f64 / 60.0;
        self.level = (self.level + now.saturating_duration_since(self.at).as_secs_f64() * rate).min(per_min as f64);
        self.at = now;
    }

    /// How long until the bucket is out of debt.
    fn wait(&self, per_min: u64) -> Duration {
        if self.level >= 0.0 || per_min == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(-self.level / (per_min as f64 / 60.0))
    }
}

/// Bytes per minute each machine, and each org, may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteBudget {
    pub machine_per_min: u64,
    pub org_per_min: u64,
}

#[derive(Default)]
pub struct Budgets {
    buckets: Mutex<HashMap<(bool, String), Bucket>>,
}

impl Budgets {
    /// Charges `bytes` written by `machine_id` of `org_id` at `now`; returns how long the
    /// connection must wait before its acks (zero within budget).
    pub fn charge(&self, machine_id: &str, org_id: &str, bytes: u64, budget: WriteBudget, now: Instant) -> Duration {
        self.apply(machine_id, org_id, bytes, budget, now)
    }

    /// How long the connection must still wait at `now` (zero when both are out of debt).
    pub fn wait(&self, machine_id: &str, org_id: &str, budget: WriteBudget, now: Instant) -> Duration {
        self.apply(machine_id, org_id, 0, budget, now)
    }

    fn apply(&self, machine_id: &str, org_id: &str, bytes: u64, budget: WriteBudget, now: Instant) -> Duration {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = Duration::ZERO;
        for (is_org, id, per_min) in [(false, machine_id, budget.machine_per_min), (true, org_id, budget.org_per_min)] {
            let b = map.entry((is_org, id.to_string())).or_insert(Bucket { level: per_min as f64, at: now });
            b.refill(now, per_min);
            b.level -= bytes as f64;
            wait = wait.max(b.wait(per_min));
        }
        // Full buckets carry no information: forget them so the map stays small.
        if map.len() > 4096 {
            map.retain(|(is_org, _), b| b.level < if *is_org { budget.org_per_min } else { budget.machine_per_min } as f64);
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: WriteBudget = WriteBudget { machine_per_min: 6000, org_per_min: 60_000 };

    #[test]
    fn within_budget_no_wait_then_debt_is_paid_at_the_rate() {
        let b = Budgets::default();
        let t0 = Instant::now();
        // A minute's worth at once is fine.
        assert_eq!(b.charge("m", "o", 6000, B, t0), Duration::ZERO);
        // 1000 bytes more: at 100 bytes/s, ten seconds of debt.
        let w = b.charge("m", "o", 1000, B, t0);
        assert!((w.as_secs_f64() - 10.0).abs() < 0.01, "{w:?}");
        // Five seconds later, five remain; after ten, none.
        let w = b.wait("m", "o", B, t0 + Duration::from_secs(5));
        assert!((w.as_secs_f64() - 5.0).abs() < 0.01, "{w:?}");
        assert_eq!(b.wait("m", "o", B, t0 + Duration::from_secs(10)), Duration::ZERO);
    }

    #[test]
    fn one_machine_in_debt_does_not_slow_another_org() {
        let b = Budgets::default();
        let t0 = Instant::now();
        assert!(b.charge("busy", "o1", 60_000, B, t0) > Duration::ZERO);
        assert_eq!(b.charge("other", "o2", 1000, B, t0), Duration::ZERO);
        // The org budget is shared by its machines.
        for i in 0..9 {
            b.charge(&format!("m{i}"), "o3", 6000, B, t0);
        }
        assert_eq!(b.charge("m9", "o3", 6000, B, t0), Duration::ZERO, "exactly the org's minute");
        assert!(b.charge("m10", "o3", 6000, B, t0) > Duration::ZERO, "the org is over, though this machine is not");
    }
}
