//! Cost over a sliding window: what one scope (a tenant, or everything) was charged, and
//! what the jobs it admitted and that have not ended yet have reserved.
//!
//! A job declares an estimated cost when it is admitted (reserved here) and reports its
//! actual cost when it ends (the reservation is released and the actual cost charged at
//! that instant). Admission asks whether `spent + reserved + estimate <= budget`, so the
//! budget can be overrun only by the difference between a job's actual cost and its
//! estimate, never by jobs admitted while others are still running.
//!
//! Memory: 16 bytes per charge inside the longest cost window (charges at the same
//! instant share one entry); the running sum is `u128`, so no sum of `u64` costs overflows.

use std::collections::VecDeque;

/// Charges of one scope, oldest first, and its open reservations.
#[derive(Debug, Default, Clone)]
pub(crate) struct CostLog {
    /// `(at_ns, amount)`.
    charges: VecDeque<(u64, u64)>,
    /// Sum of `charges`.
    total: u128,
    /// Estimates of admitted jobs that have not ended.
    pub(crate) reserved: u128,
}

/// Why a cost check refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CostWait {
    /// Passes after this many nanoseconds (if nothing else is admitted meanwhile and
    /// running jobs charge what they reserved).
    For(u64),
    /// The estimate alone is over the budget: it never passes.
    Never,
}

impl CostLog {
    /// Spent inside `(now - window_ns, now]`.
    pub(crate) fn spent(&self, window_ns: u64, now: u64) -> u128 {
        self.charges
            .iter()
            .rev()
            .take_while(|(t, _)| t.saturating_add(window_ns) > now)
            .map(|&(_, a)| u128::from(a))
            .sum()
    }

    /// Checks `estimate` against `budget` over `window_ns` at `now`.
    pub(crate) fn wait(&self, budget: u64, window_ns: u64, estimate: u64, now: u64) -> Option<CostWait> {
        if estimate > budget {
            return Some(CostWait::Never);
        }
        let spent = self.spent(window_ns, now);
        let wanted = spent + self.reserved + u128::from(estimate);
        let budget = u128::from(budget);
        if wanted <= budget {
            return None;
        }
        // Charges leave the window oldest first; find the one whose leaving makes room.
        let mut over = wanted - budget;
        for &(t, a) in &self.charges {
            let leaves_at = t.saturating_add(window_ns);
            if leaves_at <= now {
                continue;
            }
            if u128::from(a) >= over {
                return Some(CostWait::For(leaves_at - now));
            }
            over -= u128::from(a);
        }
        // What blocks is reservations of running jobs: when they end is unknown, so
        // assume they charge their estimates now; then everything has left the window
        // one window from now, and the estimate alone fits.
        Some(CostWait::For(window_ns.max(1)))
    }

    /// Reserves an admitted job's estimate.
    pub(crate) fn reserve(&mut self, estimate: u64) {
        self.reserved += u128::from(estimate);
    }

    /// A job ended: its reservation is released and `actual` is charged at `now`.
    pub(crate) fn settle(&mut self, estimate: u64, actual: u64, now: u64, longest_ns: u64) {
        self.reserved = self.reserved.saturating_sub(u128::from(estimate));
        if actual > 0 {
            let now = self.charges.back().map_or(now, |&(last, _)| now.max(last));
            match self.charges.back_mut() {
                Some((t, a)) if *t == now && a.checked_add(actual).is_some() => *a += actual,
                _ => self.charges.push_back((now, actual)),
            }
            self.total += u128::from(actual);
        }
        self.prune(now, longest_ns);
    }

    /// Forgets charges older than the longest cost window.
    pub(crate) fn prune(&mut self, now: u64, longest_ns: u64) {
        while let Some(&(t, a)) = self.charges.front() {
            if t.saturating_add(longest_ns) > now {
                break;
            }
            self.charges.pop_front();
            self.total -= u128::from(a);
        }
        if self.charges.is_empty() && self.charges.capacity() > 0 {
            self.charges = VecDeque::new();
        }
    }

    /// True when nothing is charged or reserved.
    pub(crate) fn is_empty(&self) -> bool {
        self.charges.is_empty() && self.reserved == 0
    }

    /// The newest charge, if any.
    pub(crate) fn last(&self) -> Option<u64> {
        self.charges.back().map(|&(t, _)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_counts_spent_and_reserved() {
        let mut log = CostLog::default();
        assert_eq!(log.wait(10, 100, 6, 0), None);
        log.reserve(6);
        // 6 reserved: another 6 would make 12.
        assert_eq!(log.wait(10, 100, 6, 1), Some(CostWait::For(100)));
        log.settle(6, 4, 10, 100); // cheaper than estimated
        assert_eq!(log.wait(10, 100, 6, 11), None);
        log.reserve(6);
        log.settle(6, 6, 20, 100);
        // Spent 10: the charge of 4 at 10 leaves at 110 and makes room for 4.
        assert_eq!(log.wait(10, 100, 4, 30), Some(CostWait::For(80)));
        assert_eq!(log.wait(10, 100, 5, 30), Some(CostWait::For(90)));
        assert_eq!(log.wait(10, 100, 11, 30), Some(CostWait::Never));
        log.prune(200, 100);
        assert!(log.is_empty());
    }
}
