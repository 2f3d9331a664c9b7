//! Which thread runs a granted job's body: the supervisor's own, or a body thread.
//!
//! # Why bodies run on the supervisor's thread at all
//!
//! Handing a job to another thread and its end report back costs two cross-thread
//! wake-ups when that thread sleeps, tens of microseconds of CPU each on a VM: at cap 1,
//! empty jobs ran at 13 K/s on body threads against 769 K/s on the supervisor's thread
//! (issue 14). A body whose polls are short costs less than that hand-off, so it runs on
//! the supervisor's thread, where the grant is. A body that computes would hold back every
//! grant while it runs, so it must not.
//!
//! # How a resource is placed
//!
//! Polls are timed on the supervisor's thread only (see `poll_timer::timed_poll`); a poll longer than
//! `runtime.inline_poll_limit` is reported by its job's key. Per resource, a pure function
//! of its state and `now`:
//!
//! - **Untried** (at start): its next job runs on the supervisor's thread as a probe; the
//!   jobs granted while the probe runs go to body threads.
//! - **Probing**: the probe ended without a slow poll: **Inline**. A slow poll:
//!   **Offloaded**.
//! - **Inline**: every job runs on the supervisor's thread, until more than one in
//!   [`STRIKE_RATIO`] of the jobs it started there in the last two [`EPOCH`]s polled
//!   slow: **Offloaded**. One slow poll is not enough: a thread preempted by the kernel
//!   mid-poll looks slow too, and would send a resource of empty jobs to the far slower
//!   hand-off for a whole hold; a body that computes strikes on every poll.
//! - **Offloaded** until a deadline: every job runs on body threads; after the deadline the
//!   next job is a probe again. The hold starts at [`FIRST_HOLD`] and doubles with each
//!   failed probe up to [`LONGEST_HOLD`], so a resource whose bodies always compute costs
//!   the supervisor's thread one slow poll per minute at most.
//!
//! A job stays where it started (its future is not `Send`); a job already running on the
//! supervisor's thread when its resource is offloaded finishes there.
//!
//! A resource's `bodies` setting overrides all this: `"inline"` always runs its bodies on
//! the supervisor's thread, `"threads"` never (for bodies known to compute, or to keep
//! computing for a long life: those would otherwise stay where their probe started).
//! `runtime.inline_poll_limit = "0s"` sends every `"auto"` resource to body threads.

use std::time::Duration;

use weir::{Bodies, JobKey};

/// How long a resource stays offloaded after its first slow poll.
pub(crate) const FIRST_HOLD: Duration = Duration::from_secs(1);
/// The longest hold, reached after a run of failed probes.
pub(crate) const LONGEST_HOLD: Duration = Duration::from_secs(64);
/// An inline resource's slow polls are counted against its inline starts per epoch.
pub(crate) const EPOCH: Duration = Duration::from_millis(100);
/// An inline resource is offloaded once more than one in this many of its inline starts
/// (in this epoch and the last) polled slow.
pub(crate) const STRIKE_RATIO: u32 = 100;

/// Where one job's body runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// On the supervisor's thread.
    Inline,
    /// On a body thread.
    Threads,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State<K> {
    Untried,
    Probing { probe: K },
    Inline,
    Offloaded { until: Duration },
}

/// One resource's placement, `K` naming its jobs; see the module docs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placement<K = JobKey> {
    state: State<K>,
    /// The hold of the next offload.
    hold: Duration,
    /// Inline starts and slow polls, this epoch and the last.
    tally: Tally,
}

impl<K> Default for Placement<K> {
    fn default() -> Self {
        Self {
            state: State::Untried,
            hold: FIRST_HOLD,
            tally: Tally::default(),
        }
    }
}

/// Starts and strikes of an inline resource over two epochs (a sliding window, cheaply).
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    epoch: Duration,
    starts: u32,
    strikes: u32,
    last_starts: u32,
    last_strikes: u32,
}

impl Tally {
    fn roll(&mut self, now: Duration) {
        if now < self.epoch + EPOCH {
            return;
        }
        let next = now < self.epoch + EPOCH * 2;
        self.last_starts = if next { self.starts } else { 0 };
        self.last_strikes = if next { self.strikes } else { 0 };
        self.starts = 0;
        self.strikes = 0;
        self.epoch = now;
    }

    fn start(&mut self, now: Duration) {
        self.roll(now);
        self.starts = self.starts.saturating_add(1);
    }

    /// Counts a strike; true when strikes exceed one in [`STRIKE_RATIO`] starts.
    fn strike(&mut self, now: Duration) -> bool {
        self.roll(now);
        self.strikes = self.strikes.saturating_add(1);
        let strikes = self.strikes.saturating_add(self.last_strikes);
        let starts = self.starts.saturating_add(self.last_starts);
        u64::from(strikes) * u64::from(STRIKE_RATIO) > u64::from(starts)
    }
}

impl<K: Copy + PartialEq> Placement<K> {
    /// Where job `key`, granted at `now`, runs.
    pub(crate) fn place(&mut self, key: K, now: Duration) -> Place {
        match self.state {
            State::Inline => {
                self.tally.start(now);
                Place::Inline
            }
            State::Probing { .. } => Place::Threads,
            State::Offloaded { until } if now < until => Place::Threads,
            State::Untried | State::Offloaded { .. } => {
                self.state = State::Probing { probe: key };
                Place::Inline
            }
        }
    }

    /// A job of this resource polled longer than the limit on the supervisor's thread.
    pub(crate) fn slow(&mut self, now: Duration) {
        let hold = match self.state {
            // A probe failed: wait longer before the next one.
            State::Probing { .. } => {
                self.hold = (self.hold * 2).min(LONGEST_HOLD);
                self.hold
            }
            State::Inline if !self.tally.strike(now) => return,
            State::Inline | State::Untried => self.hold,
            // A job started inline before the offload: the hold runs from this poll.
            State::Offloaded { .. } => self.hold,
        };
        self.state = State::Offloaded { until: now + hold };
    }

    /// Job `key` of this resource ended; a probe that ends without a slow poll brings the
    /// resource inline.
    pub(crate) fn ended(&mut self, key: K) {
        if self.state == (State::Probing { probe: key }) {
            self.state = State::Inline;
            self.hold = FIRST_HOLD;
            self.tally = Tally::default();
        }
    }

    /// Whether the resource's next bodies go to body threads at `now` (while a probe runs,
    /// all but the probe do).
    pub(crate) fn on_threads(&self, now: Duration) -> bool {
        match self.state {
            State::Probing { .. } => true,
            State::Offloaded { until } => now < until,
            State::Untried | State::Inline => false,
        }
    }

    /// The job this resource waits on to decide, if one runs.
    pub(crate) fn probe(&self) -> Option<K> {
        match self.state {
            State::Probing { probe } => Some(probe),
            _ => None,
        }
    }
}

/// Every resource's placement, for the supervisor.
#[derive(Debug)]
pub(crate) struct Placements {
    mode: Mode,
    /// Indexed by the core's resource index, with the resource's `bodies` setting.
    by_resource: Vec<Option<(Bodies, Placement)>>,
    /// Probes running, with their resource's index (a stale one is dropped at its end).
    probes: Vec<(JobKey, usize)>,
    /// The last batch of slow polls, kept empty between batches for its capacity.
    slow: Vec<JobKey>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// No body threads: every body runs on the supervisor's thread.
    AllInline,
    /// `inline_poll_limit = 0s`: every `"auto"` resource's bodies run on body threads.
    AllThreads,
    /// See the module docs.
    Auto,
}

/// Where a resource's bodies run whatever their polls show, when its `bodies` setting or
/// the mode decides that; `None` when the poll times do.
fn decided(bodies: Bodies, mode: Mode) -> Option<Place> {
    match (bodies, mode) {
        (_, Mode::AllInline) | (Bodies::Inline, _) => Some(Place::Inline),
        (Bodies::Threads, _) | (Bodies::Auto, Mode::AllThreads) => Some(Place::Threads),
        (Bodies::Auto, Mode::Auto) => None,
    }
}

impl Placements {
    /// Placements for a supervisor with (or without) body threads and `limit` as its
    /// `runtime.inline_poll_limit`.
    pub(crate) fn new(body_threads: bool, limit: Duration) -> Self {
        let mode = match (body_threads, limit.is_zero()) {
            (false, _) => Mode::AllInline,
            (true, true) => Mode::AllThreads,
            (true, false) => Mode::Auto,
        };
        Self {
            mode,
            by_resource: Vec::new(),
            probes: Vec::new(),
            slow: Vec::new(),
        }
    }

    /// Whether polls on the supervisor's thread must be timed.
    pub(crate) fn times_polls(&self) -> bool {
        self.mode == Mode::Auto
    }

    /// Forgets what was learnt and each resource's setting (a new configuration): every
    /// resource starts over with a probe.
    pub(crate) fn reset(&mut self) {
        self.by_resource.clear();
        self.probes.clear();
    }

    /// Where job `key`, granted at `now`, runs. `resource` gives its resource's index
    /// (asked only when there are body threads; a job the core no longer knows goes to body
    /// threads), and `bodies` the resource's setting the first time it is seen.
    pub(crate) fn place(
        &mut self,
        key: JobKey,
        now: Duration,
        resource: impl FnOnce() -> Option<usize>,
        bodies: impl FnOnce() -> Bodies,
    ) -> Place {
        if self.mode == Mode::AllInline {
            return Place::Inline;
        }
        let Some(resource) = resource() else {
            return Place::Threads;
        };
        if self.by_resource.len() <= resource {
            self.by_resource.resize_with(resource + 1, || None);
        }
        let (bodies, placement) =
            self.by_resource[resource].get_or_insert_with(|| (bodies(), Placement::default()));
        if let Some(place) = decided(*bodies, self.mode) {
            return place;
        }
        let place = placement.place(key, now);
        if placement.probe() == Some(key) && place == Place::Inline {
            self.probes.push((key, resource));
        }
        place
    }

    /// For each resource seen so far (by index), whether its bodies go to body threads at
    /// `now`; nothing without body threads (no resource is kept then).
    pub(crate) fn on_threads(&self, now: Duration) -> impl Iterator<Item = (usize, bool)> + '_ {
        let mode = self.mode;
        self.by_resource.iter().enumerate().filter_map(move |(i, entry)| {
            let (bodies, placement) = entry.as_ref()?;
            let threads = decided(*bodies, mode)
                .map_or_else(|| placement.on_threads(now), |place| place == Place::Threads);
            Some((i, threads))
        })
    }

    /// Job `key` ended (called for every job; cheap while no probe runs).
    pub(crate) fn ended(&mut self, key: JobKey) {
        if let Some(i) = self.probes.iter().position(|(k, _)| *k == key) {
            let (_, resource) = self.probes.swap_remove(i);
            if let Some(Some((_, placement))) = self.by_resource.get_mut(resource) {
                placement.ended(key);
            }
        }
    }

    /// Takes in the slow polls on this thread since the last call, at `now`; `resource_of`
    /// gives a live job's resource index.
    pub(crate) fn take_slow(
        &mut self,
        now: impl FnOnce() -> Duration,
        resource_of: impl Fn(JobKey) -> Option<usize>,
    ) {
        if self.mode != Mode::Auto {
            return;
        }
        crate::poll_timer::take_slow(&mut self.slow);
        if self.slow.is_empty() {
            return;
        }
        let now = now();
        for key in self.slow.drain(..) {
            let Some(resource) = resource_of(key) else {
                continue;
            };
            if let Some(Some((Bodies::Auto, placement))) = self.by_resource.get_mut(resource) {
                let was_offloaded = matches!(placement.state, State::Offloaded { .. });
                placement.slow(now);
                if !was_offloaded {
                    tracing::debug!(
                        job = key.id().0,
                        resource,
                        "a body polled too long on the supervisor's thread; its resource's bodies move to body threads"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Jobs are named by plain numbers here.
    fn key(i: u64) -> u64 {
        i
    }

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn the_first_job_probes_while_the_others_wait_on_threads() {
        let mut p = Placement::<u64>::default();
        assert_eq!(p.place(key(1), s(0)), Place::Inline);
        assert_eq!(p.probe(), Some(key(1)));
        assert_eq!(p.place(key(2), s(0)), Place::Threads);
        p.ended(key(2));
        assert_eq!(p.place(key(3), s(0)), Place::Threads, "only the probe decides");
        p.ended(key(1));
        assert_eq!(p.probe(), None);
        assert_eq!(p.place(key(4), s(0)), Place::Inline);
        assert_eq!(p.place(key(5), s(0)), Place::Inline);
    }

    /// A resource brought inline by a good probe.
    fn inline() -> Placement<u64> {
        let mut p = Placement::<u64>::default();
        p.place(key(0), s(0));
        p.ended(key(0));
        p
    }

    #[test]
    fn an_inline_resource_shrugs_off_a_rare_slow_poll_but_not_a_run_of_them() {
        let mut p = inline();
        let now = s(5);
        for i in 1..=300 {
            assert_eq!(p.place(key(i), now), Place::Inline);
        }
        p.slow(now);
        p.slow(now);
        assert_eq!(p.place(key(301), now), Place::Inline, "2 in 301: preempted, say");
        p.slow(now);
        p.slow(now);
        assert_eq!(p.place(key(302), now), Place::Threads, "4 in 301: it computes");
    }

    #[test]
    fn strikes_count_against_the_last_two_epochs_only() {
        let mut p = inline();
        for i in 1..=200 {
            p.place(key(i), s(5));
        }
        p.slow(s(5));
        p.slow(s(5) + EPOCH);
        assert_eq!(p.place(key(201), s(5) + EPOCH), Place::Inline, "2 in 201");
        // Two epochs on, the 200 starts have aged out: two strikes in one start.
        p.place(key(202), s(5) + EPOCH * 3);
        p.slow(s(5) + EPOCH * 3);
        p.slow(s(5) + EPOCH * 3);
        assert_eq!(p.place(key(203), s(5) + EPOCH * 3), Place::Threads);
    }

    #[test]
    fn a_slow_poll_of_a_long_idle_inline_resource_offloads_it() {
        let mut p = inline();
        p.slow(s(10));
        assert_eq!(p.place(key(1), s(10)), Place::Threads);
    }

    #[test]
    fn a_slow_poll_offloads_until_the_hold_ends_then_one_job_probes() {
        let mut p = inline();
        assert!(!p.on_threads(s(10)));
        p.slow(s(10));
        assert!(p.on_threads(s(10)));
        assert!(!p.on_threads(s(10) + FIRST_HOLD), "the next job probes inline");
        assert_eq!(p.place(key(2), s(10)), Place::Threads);
        assert_eq!(
            p.place(key(3), s(10) + FIRST_HOLD - Duration::from_nanos(1)),
            Place::Threads
        );
        assert_eq!(p.place(key(4), s(11)), Place::Inline, "the probe");
        assert_eq!(p.place(key(5), s(11)), Place::Threads);
        p.ended(key(4));
        assert_eq!(p.place(key(6), s(11)), Place::Inline);
    }

    #[test]
    fn failed_probes_double_the_hold_up_to_the_longest_and_a_good_one_resets_it() {
        let mut p = Placement::<u64>::default();
        let mut now = s(0);
        let mut holds = Vec::new();
        for i in 0..10 {
            assert_eq!(p.place(key(i), now), Place::Inline, "probe {i}");
            p.slow(now);
            let State::Offloaded { until } = p.state else {
                panic!("offloaded after a slow probe")
            };
            holds.push(until - now);
            now = until;
        }
        assert_eq!(&holds[..4], &[s(2), s(4), s(8), s(16)]);
        assert_eq!(holds[9], LONGEST_HOLD);
        assert_eq!(p.place(key(20), now), Place::Inline);
        p.ended(key(20));
        p.slow(now);
        assert_eq!(
            p.state,
            State::Offloaded {
                until: now + FIRST_HOLD
            }
        );
    }
}
