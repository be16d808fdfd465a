//! Counters shared by every process on the database (issue 14): sign-in and pairing limits
//! and write budgets hold across instances instead of being multiplied by their number.
//! Fixed windows: `key` and the window's start name one counter.

use super::sql::p;
use super::{Result, Store};

impl Store {
    /// Adds `n` to the counter `key` of the window starting at `window_start` and returns its
    /// new value. Windows that ended before `forget_before` are deleted now and then.
    pub fn count_add(&self, key: &str, window_start: i64, n: i64, forget_before: i64) -> Result<i64> {
        self.write(|tx| {
            let total = tx.query_one(
                "INSERT INTO rate_counters (key, window_start, count) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key, window_start) DO UPDATE SET count = rate_counters.count + excluded.count
                 RETURNING count",
                p![key, window_start, n],
                |r| r.get::<i64>(0),
            )?;
            // One write in 64 sweeps old windows (the counters of a minute ago are no use).
            if total % 64 == 1 {
                tx.execute("DELETE FROM rate_counters WHERE window_start < ?1", p![forget_before])?;
            }
            Ok(total)
        })
    }

    /// The counter's value (0 when nothing was counted).
    pub fn count_of(&self, key: &str, window_start: i64) -> Result<i64> {
        self.read(|tx| {
            Ok(tx
                .query_opt("SELECT count FROM rate_counters WHERE key = ?1 AND window_start = ?2", p![key, window_start], |r| r.get(0))?
                .unwrap_or(0))
        })
    }
}
