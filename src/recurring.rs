//! Recurring checks: each key runs every `every`, on instants aligned to multiples of
//! its interval (so checks with the same interval fall due together and can share a
//! downstream query).
//!
//! A run that falls due while the owner was late is not repeated: [`Recurring::poll`]
//! reports how many instants were missed and schedules the next one in the future, so a
//! stall never turns into a burst of catch-up runs.
//!
//! ```
//! use std::time::Duration;
//! use weir::engine::Recurring;
//!
//! let s = Duration::from_secs;
//! let mut checks = Recurring::new();
//! checks.insert("short-window rule", s(60), s(0));
//! checks.insert("day-window rule", s(300), s(0));
//! assert_eq!(checks.next_deadline(), Some(s(60)));
//! let mut due = Vec::new();
//! checks.poll(s(300), &mut due);
//! let keys: Vec<_> = due.iter().map(|d| (d.key, d.at, d.missed)).collect();
//! assert_eq!(keys, [("short-window rule", s(300), 4), ("day-window rule", s(300), 0)]);
//! assert_eq!(checks.next_deadline(), Some(s(360)));
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;
use std::time::Duration;

use slab::Slab;

/// One run that fell due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueRun<K> {
    /// Which check.
    pub key: K,
    /// The instant it was due (a multiple of its interval), at most `now`.
    pub at: Duration,
    /// Earlier due instants skipped because the poll came late.
    pub missed: u64,
}

#[derive(Debug)]
struct Entry<K> {
    key: K,
    every: Duration,
    next: Duration,
    generation: u64,
}

/// Keys that recur at their own intervals (see the module docs).
#[derive(Debug)]
pub struct Recurring<K> {
    entries: Slab<Entry<K>>,
    by_key: HashMap<K, usize>,
    /// (next, slab index, generation), earliest first; entries may be stale.
    heap: BinaryHeap<Reverse<(Duration, usize, u64)>>,
    generation: u64,
}

impl<K> Default for Recurring<K> {
    fn default() -> Self {
        Self {
            entries: Slab::new(),
            by_key: HashMap::new(),
            heap: BinaryHeap::new(),
            generation: 0,
        }
    }
}

/// The first multiple of `every` strictly after `now` (`every` of zero counts as 1 ms).
pub fn next_multiple(now: Duration, every: Duration) -> Duration {
    let every = every.max(Duration::from_millis(1)).as_nanos();
    let n = now.as_nanos() / every + 1;
    Duration::from_nanos(u64::try_from(n * every).unwrap_or(u64::MAX))
}

impl<K: Hash + Eq + Clone> Recurring<K> {
    /// No checks.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many checks recur.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when none do.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Runs `key` every `every` (at least 1 ms), first at the next multiple of `every`
    /// after `now`; replaces the key's previous schedule.
    pub fn insert(&mut self, key: K, every: Duration, now: Duration) {
        self.remove(&key);
        let every = every.max(Duration::from_millis(1));
        let next = next_multiple(now, every);
        self.generation += 1;
        let slot = self.entries.insert(Entry {
            key: key.clone(),
            every,
            next,
            generation: self.generation,
        });
        self.by_key.insert(key, slot);
        self.heap.push(Reverse((next, slot, self.generation)));
    }

    /// Stops `key`; true if it was scheduled.
    pub fn remove(&mut self, key: &K) -> bool {
        let Some(slot) = self.by_key.remove(key) else {
            return false;
        };
        self.entries.remove(slot);
        self.prune();
        true
    }

    /// Moves every run due at `now` into `out` (one per key, however late) and schedules
    /// each key's next run after `now`.
    pub fn poll(&mut self, now: Duration, out: &mut Vec<DueRun<K>>) {
        while let Some(&Reverse((next, slot, generation))) = self.heap.peek() {
            if next > now {
                break;
            }
            self.heap.pop();
            let Some(entry) = self.entries.get_mut(slot).filter(|e| e.generation == generation) else {
                continue;
            };
            let late = (now - next).as_nanos() / entry.every.as_nanos();
            let at = next + entry.every * u32::try_from(late).unwrap_or(u32::MAX);
            out.push(DueRun {
                key: entry.key.clone(),
                at,
                missed: u64::try_from(late).unwrap_or(u64::MAX),
            });
            entry.next = at + entry.every;
            self.heap.push(Reverse((entry.next, slot, generation)));
        }
        self.prune();
    }

    /// When the next run falls due, if any key recurs.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.heap.peek().map(|Reverse((next, _, _))| *next)
    }

    fn prune(&mut self) {
        while let Some(&Reverse((_, slot, generation))) = self.heap.peek() {
            if self.entries.get(slot).is_some_and(|e| e.generation == generation) {
                break;
            }
            self.heap.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn runs_are_aligned_and_never_repeat_an_instant() {
        let mut r = Recurring::new();
        r.insert(1, s(60), s(61));
        assert_eq!(r.next_deadline(), Some(s(120)));
        let mut out = Vec::new();
        for t in (0..=602).step_by(7) {
            r.poll(s(t), &mut out);
        }
        let ats: Vec<_> = out.iter().map(|d| d.at).collect();
        assert_eq!(ats, (2..=10).map(|m| s(60 * m)).collect::<Vec<_>>());
        assert!(out.iter().all(|d| d.missed == 0));
    }

    #[test]
    fn removed_and_replaced_keys_stop_their_old_schedule() {
        let mut r = Recurring::new();
        r.insert(1, s(10), s(0));
        r.insert(2, s(30), s(0));
        assert!(r.remove(&1));
        assert!(!r.remove(&1));
        assert_eq!(r.next_deadline(), Some(s(30)));
        r.insert(2, s(50), s(0));
        assert_eq!((r.len(), r.next_deadline()), (1, Some(s(50))));
        let mut out = Vec::new();
        r.poll(s(60), &mut out);
        assert_eq!(
            out,
            [DueRun {
                key: 2,
                at: s(50),
                missed: 0
            }]
        );
    }
}
