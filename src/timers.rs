//! Deadlines for many entries, kept in FIFOs grouped by their duration.
//!
//! Written by hand rather than with a heap: a runtime sets almost every deadline as
//! `now + d` for one of a handful of durations `d` (the configured lease, wait timeout or
//! batch delay), and `now` only grows, so each group's FIFO is already sorted. Push and
//! pop are O(1) and the earliest deadline is the least of a few FIFO fronts. Entries are
//! never removed early: the owner checks, when one falls due, whether it still applies
//! (lazy deletion), which keeps cancellation O(1) too.

use std::collections::VecDeque;
use std::time::Duration;

/// Deadline FIFOs keyed by duration; `K` identifies what a deadline is for.
///
/// A deadline is kept as nanoseconds in a `u64` (584 years; later ones, and
/// `Duration::MAX`, read back as `Duration::MAX`), not as a 16-byte `Duration`: every
/// waiting job has one here, and a job key beside a `Duration` took 32 bytes, 24 beside
/// a `u64`.
#[derive(Debug)]
pub(crate) struct Deadlines<K> {
    groups: Vec<(Duration, VecDeque<(u64, K)>)>,
}

/// A deadline as stored: nanoseconds, saturating at `u64::MAX`.
fn to_nanos(at: Duration) -> u64 {
    u64::try_from(at.as_nanos()).unwrap_or(u64::MAX)
}

/// A stored deadline back as a `Duration` (`u64::MAX` is `Duration::MAX`: never).
fn from_nanos(at: u64) -> Duration {
    if at == u64::MAX {
        Duration::MAX
    } else {
        Duration::from_nanos(at)
    }
}

impl<K> Default for Deadlines<K> {
    fn default() -> Self {
        Self { groups: Vec::new() }
    }
}

impl<K: Copy> Deadlines<K> {
    /// Sets a deadline `after` from `now` for `key`.
    pub(crate) fn push(&mut self, now: Duration, after: Duration, key: K) {
        let at = to_nanos(now.saturating_add(after));
        let group = match self.groups.iter().position(|(d, _)| *d == after) {
            Some(i) => i,
            None => {
                self.groups.push((after, VecDeque::new()));
                self.groups.len() - 1
            }
        };
        let fifo = &mut self.groups[group].1;
        // `now` is monotone, so pushing at the back keeps the FIFO sorted; a caller that
        // steps back in time still gets a correct (if early-checked) queue because `pop_due`
        // scans every front.
        fifo.push_back((at, key));
    }

    /// Drops entries from the front of every group for as long as `stale(at, key)` says
    /// they no longer apply. Lazy deletion alone keeps an ended job's deadlines until they
    /// fall due: at a million jobs a second and a one-minute lease that is sixty million
    /// entries held for nothing. Since each group is in deadline order and jobs mostly
    /// end in the order they started, the fronts are where stale entries gather.
    pub(crate) fn retire_stale(&mut self, mut stale: impl FnMut(Duration, K) -> bool) {
        for (_, fifo) in &mut self.groups {
            while let Some(&(at, key)) = fifo.front() {
                if !stale(from_nanos(at), key) {
                    break;
                }
                fifo.pop_front();
            }
        }
    }

    /// The earliest pending deadline, if any.
    pub(crate) fn next(&self) -> Option<Duration> {
        self.groups
            .iter()
            .filter_map(|(_, fifo)| fifo.front().map(|&(at, _)| from_nanos(at)))
            .min()
    }

    /// Removes and returns one entry whose deadline is at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Duration) -> Option<(Duration, K)> {
        for (_, fifo) in &mut self.groups {
            if let Some(&(at, key)) = fifo.front() {
                if at <= to_nanos(now) {
                    fifo.pop_front();
                    return Some((from_nanos(at), key));
                }
            }
        }
        None
    }

    /// True when no entry is pending.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.groups.iter().all(|(_, f)| f.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn pops_in_deadline_order_across_groups() {
        let mut d = Deadlines::default();
        d.push(ms(0), ms(100), 'a');
        d.push(ms(10), ms(20), 'b');
        d.push(ms(20), ms(100), 'c');
        assert_eq!(d.next(), Some(ms(30)));
        assert_eq!(d.pop_due(ms(29)), None);
        assert_eq!(d.pop_due(ms(30)), Some((ms(30), 'b')));
        assert_eq!(d.next(), Some(ms(100)));
        assert_eq!(d.pop_due(ms(200)), Some((ms(100), 'a')));
        assert_eq!(d.pop_due(ms(200)), Some((ms(120), 'c')));
        assert!(d.is_empty());
    }

    /// A deadline that saturates (a wait timeout of `Duration::MAX`) stays "never": it
    /// reads back as `Duration::MAX` and is not due at any finite instant.
    #[test]
    fn a_saturated_deadline_reads_back_as_never() {
        let mut d = Deadlines::default();
        d.push(ms(5), Duration::MAX, 'a');
        assert_eq!(d.next(), Some(Duration::MAX));
        assert_eq!(d.pop_due(Duration::from_secs(3600 * 24 * 365 * 500)), None);
        assert_eq!(d.pop_due(Duration::MAX), Some((Duration::MAX, 'a')));
    }
}
