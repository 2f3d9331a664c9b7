//! An exact sliding-window log: the admission times one scope (a tenant, or everything)
//! made, enough of them to answer every window of that scope exactly.
//!
//! # Why a log, and why one log for many windows
//!
//! A window "at most `limit` per `per`" holds at `now` if fewer than `limit` admissions
//! happened in `(now - per, now]`, which is the same as: the `limit`-th most recent
//! admission happened at or before `now - per`. Fixed buckets (or the two-bucket
//! approximation) cannot answer that exactly and let up to 2x through at a boundary; a
//! log of timestamps can, in O(1): index `len - limit` from the back. Every window of a
//! scope counts the same admissions, so one log, as long as the largest limit, serves
//! them all (10/min, 100/h and 500/day need the last 500 admissions, not 610).
//!
//! Memory: 8 bytes per retained admission (nanoseconds since the runtime started, as
//! `u64`), at most `max(limit)` of them, and none older than the longest window. A
//! refusal's retry time is exact for the same reason: the blocking admission leaves the
//! window at `t + per`, and one nanosecond earlier it is still inside.

use std::collections::VecDeque;

/// Admission timestamps of one scope, oldest first (nanoseconds since start).
#[derive(Debug, Default, Clone)]
pub(crate) struct WindowLog {
    times: VecDeque<u64>,
}

impl WindowLog {
    /// When a window `limit per per_ns` refuses an admission at `now`, the nanoseconds
    /// until it would pass (assuming no other admission meanwhile).
    pub(crate) fn wait(&self, limit: u32, per_ns: u64, now: u64) -> Option<u64> {
        let n = self.times.len();
        let limit = limit as usize;
        if n < limit {
            return None;
        }
        let leaves_at = self.times[n - limit].saturating_add(per_ns);
        (leaves_at > now).then(|| leaves_at - now)
    }

    /// Records an admission at `now` and forgets what no window can need any more: more
    /// than `keep` admissions back, or older than `longest_ns`.
    pub(crate) fn record(&mut self, now: u64, keep: usize, longest_ns: u64) {
        // A clock that steps back must not unsort the log: clamp to the newest time.
        let now = self.times.back().map_or(now, |&last| now.max(last));
        self.times.push_back(now);
        self.prune(now, keep, longest_ns);
    }

    /// Forgets admissions that no window of length `longest_ns` or limit `keep` can need.
    pub(crate) fn prune(&mut self, now: u64, keep: usize, longest_ns: u64) {
        while self.times.len() > keep {
            self.times.pop_front();
        }
        while self
            .times
            .front()
            .is_some_and(|&t| t.saturating_add(longest_ns) <= now)
        {
            self.times.pop_front();
        }
        if self.times.is_empty() && self.times.capacity() > 0 {
            self.times = VecDeque::new();
        }
    }

    /// Admissions inside `(now - per_ns, now]`.
    pub(crate) fn count(&self, per_ns: u64, now: u64) -> usize {
        let first = self.times.partition_point(|&t| t.saturating_add(per_ns) <= now);
        self.times.len() - first
    }

    /// Nanoseconds until the window of length `per_ns` is empty again.
    pub(crate) fn until_empty(&self, per_ns: u64, now: u64) -> u64 {
        self.times
            .back()
            .map_or(0, |&t| t.saturating_add(per_ns).saturating_sub(now))
    }

    /// True when nothing is retained.
    pub(crate) fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The newest admission, if any.
    pub(crate) fn last(&self) -> Option<u64> {
        self.times.back().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_th_most_recent_admission_decides() {
        let mut log = WindowLog::default();
        for t in [0, 10, 20] {
            assert_eq!(log.wait(3, 100, t), None);
            log.record(t, 3, 100);
        }
        // The admission at 0 leaves the window at 100.
        assert_eq!(log.wait(3, 100, 30), Some(70));
        assert_eq!(log.wait(3, 100, 99), Some(1));
        assert_eq!(log.wait(3, 100, 100), None);
        assert_eq!(log.count(100, 99), 3);
        assert_eq!(log.count(100, 100), 2);
    }

    #[test]
    fn pruning_keeps_only_what_a_window_can_need() {
        let mut log = WindowLog::default();
        for t in 0..10 {
            log.record(t, 4, 1_000);
        }
        assert_eq!(log.times.len(), 4);
        log.prune(2_000, 4, 1_000);
        assert!(log.is_empty());
    }
}
