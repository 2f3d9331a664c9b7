//! AIMD: additive increase while the limit is in use, multiplicative decrease on a drop
//! (the decrease is the caller's, shared by every rule: see the module above).
//!
//! The increase is `1 / limit` per completed call, so the limit grows by about one slot
//! per limit's worth of completions (once per round trip at full use), as TCP's
//! congestion avoidance does. Netflix's `AIMDLimit` adds a whole slot per sample and
//! relies on a window to smooth it; per call, that would overshoot a downstream's limit
//! within a few calls of every cut. A call that ended with fewer than half the limit in
//! flight says nothing about whether more would fit, and leaves the limit as it is.

/// The AIMD rule (no state of its own).
#[derive(Debug)]
pub(super) struct Aimd;

impl Aimd {
    /// The limit after a successful call that ended with `in_flight` calls in flight.
    pub(super) fn completed(&mut self, limit: f64, in_flight: u32) -> f64 {
        if f64::from(in_flight) * 2.0 < limit {
            return limit;
        }
        limit + 1.0 / limit.max(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_one_per_limit_of_calls_in_use_only() {
        let mut rule = Aimd;
        let mut limit = 10.0;
        for _ in 0..10 {
            limit = rule.completed(limit, 10);
        }
        assert!((10.9..11.0).contains(&limit), "{limit}");
        assert_eq!(rule.completed(limit, 2), limit);
    }
}
