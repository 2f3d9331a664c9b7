//! The one table of everything in the core that falls due: what [`Scheduler::poll`]
//! must look at next, and when.
//!
//! Modelled on quinn-proto's `TimerTable` (connection/timer.rs): an enum of timer kinds
//! indexes the table and [`TimerTable::next_timeout`] answers "what is due next" in one
//! place. quinn keeps one instant per kind; the core keeps many deadlines per kind (one
//! per job), so each kind has a store suited to how its deadlines are set:
//!
//! * waits and leases are `now + d` for one of a handful of durations `d`, so they go in
//!   [`Deadlines`] (FIFOs by duration, O(1) push and pop, lazily deleted, stale fronts
//!   retired after every poll);
//! * releases and gate wake-ups are set at arbitrary instants (a fan-out batch, a quota
//!   retry, a backoff, a limiter refill), so they go in binary heaps;
//! * events decided between polls wait for the next poll, which is due at once.
//!
//! Every deadline is lazy: the owner checks, when one falls due, whether it still
//! applies to the job's current stage, so no stage change has to find and remove one.
//!
//! [`Scheduler::poll`]: super::Scheduler::poll

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use crate::job::JobId;
use crate::timers::Deadlines;

use super::JobKey;

/// The kinds of timer the core keeps; each names one store of [`TimerTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    /// Events decided between polls (a quota refusal at submission, an answer about a
    /// global lease) wait for the next poll, which is then due at once.
    Pending,
    /// A deferred job becomes eligible: a fan-out batch, a quota retry, a retry backoff.
    Release,
    /// A guarded resource may grant again: a limiter refill, a breaker cooldown.
    Gate,
    /// A job's wait timeout, for a slot in its queue or, after its local grant, for a
    /// global lease: both end at the same instant (`since + wait_timeout`), so one
    /// deadline serves both stages.
    Wait,
    /// A granted job's lease.
    Lease,
}

impl Timer {
    /// Every kind, for the minimum over the table.
    const ALL: [Timer; 5] = [
        Timer::Pending,
        Timer::Release,
        Timer::Gate,
        Timer::Wait,
        Timer::Lease,
    ];
}

/// Every deadline of the core, by [`Timer`] kind.
#[derive(Debug, Default)]
pub(super) struct TimerTable {
    /// Set by the first event queued since the last poll (the instant it was decided).
    pending: Option<Duration>,
    /// `(release at, job id, slab index)`: ties go to the older job.
    releases: BinaryHeap<Reverse<(Duration, u64, u32)>>,
    /// `(wake at, resource)`, deduplicated lazily through `Resource::gate_wake`.
    gates: BinaryHeap<Reverse<(Duration, u32)>>,
    waits: Deadlines<JobKey>,
    leases: Deadlines<JobKey>,
}

impl TimerTable {
    /// The earliest deadline of one kind, if any.
    #[inline]
    pub(super) fn get(&self, timer: Timer) -> Option<Duration> {
        match timer {
            Timer::Pending => self.pending,
            Timer::Release => self.releases.peek().map(|Reverse((at, _, _))| *at),
            Timer::Gate => self.gates.peek().map(|Reverse((at, _))| *at),
            Timer::Wait => self.waits.next(),
            Timer::Lease => self.leases.next(),
        }
    }

    /// The earliest deadline of any kind: when the core next needs a `poll`.
    #[inline]
    pub(super) fn next_timeout(&self) -> Option<Duration> {
        Timer::ALL.into_iter().filter_map(|t| self.get(t)).min()
    }

    /// An event was queued at `now` for the next poll (the first one sets the instant).
    #[inline]
    pub(super) fn set_pending(&mut self, now: Duration) {
        self.pending.get_or_insert(now);
    }

    /// The poll took the queued events.
    #[inline]
    pub(super) fn clear_pending(&mut self) {
        self.pending = None;
    }

    /// `key` becomes eligible at `at`.
    #[inline]
    pub(super) fn push_release(&mut self, at: Duration, key: JobKey) {
        self.releases.push(Reverse((at, key.id.0, key.idx)));
    }

    /// One job whose release is due at `now`, earliest first.
    #[inline]
    pub(super) fn pop_release(&mut self, now: Duration) -> Option<JobKey> {
        let &Reverse((at, id, idx)) = self.releases.peek()?;
        if at > now {
            return None;
        }
        self.releases.pop();
        Some(JobKey { idx, id: JobId(id) })
    }

    /// Resource `r` wants to be looked at again at `at`.
    #[inline]
    pub(super) fn push_gate(&mut self, at: Duration, r: u32) {
        self.gates.push(Reverse((at, r)));
    }

    /// One resource whose gate wake-up is due at `now`.
    #[inline]
    pub(super) fn pop_gate(&mut self, now: Duration) -> Option<u32> {
        let &Reverse((at, r)) = self.gates.peek()?;
        if at > now {
            return None;
        }
        self.gates.pop();
        Some(r)
    }

    /// `key`'s wait timeout: `after` from `now`.
    #[inline]
    pub(super) fn push_wait(&mut self, now: Duration, after: Duration, key: JobKey) {
        self.waits.push(now, after, key);
    }

    /// One job whose wait deadline is due at `now`.
    #[inline]
    pub(super) fn pop_wait(&mut self, now: Duration) -> Option<JobKey> {
        self.waits.pop_due(now).map(|(_, key)| key)
    }

    /// `key`'s lease: `after` from `now`.
    #[inline]
    pub(super) fn push_lease(&mut self, now: Duration, after: Duration, key: JobKey) {
        self.leases.push(now, after, key);
    }

    /// One job whose lease deadline is due at `now`.
    #[inline]
    pub(super) fn pop_lease(&mut self, now: Duration) -> Option<JobKey> {
        self.leases.pop_due(now).map(|(_, key)| key)
    }

    /// Drops wait and lease deadlines that can no longer fire from the fronts of their
    /// FIFOs (see [`Deadlines::retire_stale`]); the predicates say, for a deadline due
    /// `at` for a job, whether it is stale. Releases and gates need no retiring: a
    /// release is pushed once per deferral and a gate once per resource and instant.
    #[inline]
    pub(super) fn retire_stale(
        &mut self,
        wait_stale: impl FnMut(Duration, JobKey) -> bool,
        lease_stale: impl FnMut(Duration, JobKey) -> bool,
    ) {
        self.waits.retire_stale(wait_stale);
        self.leases.retire_stale(lease_stale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn key(i: u32) -> JobKey {
        JobKey {
            idx: i,
            id: JobId(u64::from(i)),
        }
    }

    #[test]
    fn next_timeout_is_the_least_over_every_kind() {
        let mut t = TimerTable::default();
        assert_eq!(t.next_timeout(), None);
        t.push_lease(ms(0), ms(500), key(1));
        t.push_wait(ms(0), ms(400), key(2));
        t.push_gate(ms(300), 0);
        t.push_release(ms(200), key(3));
        assert_eq!(t.next_timeout(), Some(ms(200)));
        t.set_pending(ms(50));
        t.set_pending(ms(60)); // the first event's instant stands
        assert_eq!(t.get(Timer::Pending), Some(ms(50)));
        assert_eq!(t.next_timeout(), Some(ms(50)));
        t.clear_pending();
        assert_eq!(t.pop_release(ms(199)), None);
        assert_eq!(t.pop_release(ms(200)), Some(key(3)));
        assert_eq!(t.pop_gate(ms(300)), Some(0));
        assert_eq!(t.next_timeout(), Some(ms(400)));
        assert_eq!(t.pop_wait(ms(400)), Some(key(2)));
        assert_eq!(t.pop_lease(ms(499)), None);
        assert_eq!(t.next_timeout(), Some(ms(500)));
        assert_eq!(t.pop_lease(ms(500)), Some(key(1)));
        assert_eq!(t.next_timeout(), None);
    }

    #[test]
    fn releases_at_one_instant_go_oldest_job_first() {
        let mut t = TimerTable::default();
        t.push_release(ms(10), key(7));
        t.push_release(ms(10), key(3));
        assert_eq!(t.pop_release(ms(10)), Some(key(3)));
        assert_eq!(t.pop_release(ms(10)), Some(key(7)));
    }
}
