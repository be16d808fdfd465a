//! SPEC sections 5 and 6 as pure decisions: what a relay or platform answer means for a
//! pairing (revoked, renew the token, or try again later), and when to try again.

/// What to do after a failed or ended connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The org revoked this machine: delete the pairing, cut its sessions.
    Revoked,
    /// The relay token expired: fetch a new one and reconnect now, without counting a failure.
    RenewToken,
    /// Anything else: back off and retry. Never deletes anything.
    Transient,
}

/// A WebSocket close from the relay. Only `4401 revoked` and `4403` revoke.
pub fn on_close(code: u16, reason: &str) -> Verdict {
    match (code, reason) {
        (4401, "revoked") => Verdict::Revoked,
        (4403, _) => Verdict::Revoked,
        (4401, "expired") => Verdict::RenewToken,
        _ => Verdict::Transient,
    }
}

/// An answer of `POST /api/runtime/relay-token`: only `403 revoked` and
/// `404 workspace_not_found` revoke; a bare status, a 401, a 5xx or no answer are transient.
pub fn on_token_error(status: u16, error: &str) -> Verdict {
    match (status, error) {
        (403, "revoked") => Verdict::Revoked,
        (404, "workspace_not_found") => Verdict::Revoked,
        _ => Verdict::Transient,
    }
}

/// Retries after a failure: about 1, 2, 4, 8, 16 s (`reconnecting (n/5)`), then every 60 s
/// (`offline`). `jitter` in [0, 1) spreads retries of many machines; it changes a delay by
/// at most ±20 %.
pub fn retry_delay_ms(failures: u32, jitter: f64) -> u64 {
    let base: u64 = match failures {
        0 => 0,
        1..=5 => 1000 << (failures - 1),
        _ => 60_000,
    };
    let factor = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
    (base as f64 * factor) as u64
}

/// Failures after which a pairing is shown `offline` rather than `reconnecting (n/5)`.
pub const RECONNECT_ATTEMPTS: u32 = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_explicit_answers_revoke() {
        let table: &[(u16, &str, Verdict)] = &[
            (4401, "revoked", Verdict::Revoked),
            (4403, "workspace_not_found", Verdict::Revoked),
            (4403, "", Verdict::Revoked),
            (4401, "expired", Verdict::RenewToken),
            (4401, "invalid", Verdict::Transient),
            (4401, "", Verdict::Transient),
            (4409, "replaced", Verdict::Transient),
            (1001, "", Verdict::Transient),
            (1006, "", Verdict::Transient),
            (4400, "malformed", Verdict::Transient),
        ];
        for (code, reason, want) in table {
            assert_eq!(on_close(*code, reason), *want, "{code} {reason}");
        }
        let table: &[(u16, &str, Verdict)] = &[
            (403, "revoked", Verdict::Revoked),
            (404, "workspace_not_found", Verdict::Revoked),
            (404, "not_found", Verdict::Transient),
            (403, "forbidden", Verdict::Transient),
            (401, "invalid_credential", Verdict::Transient),
            (500, "", Verdict::Transient),
            (502, "revoked", Verdict::Transient),
        ];
        for (status, error, want) in table {
            assert_eq!(on_token_error(*status, error), *want, "{status} {error}");
        }
    }

    #[test]
    fn backoff_schedule() {
        let mid: Vec<u64> = (1..=7).map(|n| retry_delay_ms(n, 0.5)).collect();
        assert_eq!(mid, vec![1000, 2000, 4000, 8000, 16000, 60000, 60000]);
        assert_eq!(retry_delay_ms(1, 0.0), 800);
        assert_eq!(retry_delay_ms(1, 0.999_999), 1199);
        assert_eq!(retry_delay_ms(0, 0.5), 0);
    }
}
