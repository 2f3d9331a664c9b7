//! The wait for a global lease: a job granted a local slot of a resource whose slots are
//! shared across replicas (through Redis) starts only once it also holds a global lease.
//!
//! The shell declares such resources ([`Scheduler::require_global_lease`]); the grant
//! then puts the job in `Stage::LeaseWait` and reports [`Event::LeaseWanted`]. The shell
//! asks the shared pool and reports each answer here; the core decides what it means for
//! the job. The rules are the ones the shell applied before the core owned this stage:
//!
//! * the job holds its local slot while it waits, so it counts against the local cap;
//! * its own wait timeout bounds the wait (the deadline it had in the queue), and so does
//!   its lease, which runs from the local grant; either ends it `Skipped(NoSlot)`;
//! * a job that asked to be requeued on wait timeout is never skipped there, and neither
//!   is a parent resuming after a join (it has a live task and no wait timeout);
//! * the lease taken is the one of the resource the job was granted on, which after a
//!   fallback is the fallback.

use std::time::Duration;

use crate::job::{OnWaitTimeout, OutcomeKind, ResourceId, SkipReason};

use super::entry::Stage;
use super::{Cancelled, CoreError, Event, JobKey, Scheduler};

/// What [`Scheduler::lease_refused`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseRefusal {
    /// The job will not run: its slot returned, and the next [`Scheduler::poll`] reports
    /// [`Event::Skipped`] with [`SkipReason::NoSlot`] and its payload.
    Skipped,
    /// The job keeps waiting (it asked to be requeued on wait timeout, or it is a parent
    /// resuming after a join): the shell asks for a lease again.
    KeepsWaiting,
}

impl<T> Scheduler<T> {
    /// From now on, a job granted a local slot of `resource` waits for a global lease on
    /// it before it starts: [`Scheduler::poll`] reports [`Event::LeaseWanted`] instead of
    /// [`Event::Granted`], which follows [`Scheduler::lease_granted`]. For the shell that
    /// shares `resource`'s slots across replicas (a Redis backend it could start).
    pub fn require_global_lease(&mut self, resource: &ResourceId) {
        let r = self.resource_index(resource);
        self.resources[r as usize].global = true;
    }

    /// True when jobs granted a slot of `resource` wait for a global lease.
    pub fn requires_global_lease(&self, resource: &ResourceId) -> bool {
        self.by_name
            .get(resource)
            .is_some_and(|&r| self.resources[r as usize].global)
    }

    /// The shared pool granted `key` its global lease (or admitted it without one under a
    /// fail-open policy): the job starts, reported as [`Event::Granted`] by the next
    /// [`Scheduler::poll`], with what is left of its lease (it runs from the local grant)
    /// and the whole time it waited (queue and lease).
    ///
    /// Refused when the job no longer waits for a lease (it was skipped, cancelled or
    /// ended), or when its wait timeout or lease has run out and the next poll will skip
    /// it: the shell returns the lease at once.
    pub fn lease_granted(&mut self, key: JobKey, now: Duration) -> Result<(), CoreError> {
        let entry = Self::live_mut(&mut self.jobs, key).ok_or(CoreError::UnknownJob)?;
        let Stage::LeaseWait { since, resumed } = entry.stage else {
            return Err(CoreError::WrongStage("waiting for a global lease"));
        };
        let waited = now.saturating_sub(since);
        let wait_over = !resumed
            && entry.on_wait_timeout == OnWaitTimeout::Skip
            && entry.wait_timeout.is_some_and(|w| waited >= w);
        if wait_over || now >= entry.lease_until {
            // Its deadline is due (the timer table holds it): the next poll skips it.
            return Err(CoreError::WrongStage(
                "waiting for a global lease within its deadlines",
            ));
        }
        entry.stage = Stage::Running {
            granted_at: entry.granted_at(),
        };
        entry.global_lease = true;
        let wait_left = match entry.on_wait_timeout {
            OnWaitTimeout::Requeue => None,
            OnWaitTimeout::Skip => entry.wait_timeout.map(|w| w.saturating_sub(waited)),
        };
        let payload = entry
            .payload
            .take()
            .expect("a job waiting for a lease has its payload");
        let lease = entry.lease_until.saturating_sub(now);
        tracing::trace!(job = key.id.0, ?waited, "global lease granted");
        self.pending.push(Event::Granted {
            key,
            payload,
            lease,
            waited,
            wait_left,
        });
        self.timers.set_pending(now);
        Ok(())
    }

    /// The shared pool gave up on `key`'s request for a global lease (no lease within
    /// the deadline it was given). The core decides: a fresh job that skips on wait
    /// timeout ends `Skipped(NoSlot)` now (its slot returns; the next poll reports it);
    /// a job that asked to be requeued, or a resuming parent, keeps waiting.
    pub fn lease_refused(&mut self, key: JobKey, now: Duration) -> Result<LeaseRefusal, CoreError> {
        let entry = self.live(key).ok_or(CoreError::UnknownJob)?;
        let Stage::LeaseWait { resumed, .. } = entry.stage else {
            return Err(CoreError::WrongStage("waiting for a global lease"));
        };
        if resumed || entry.on_wait_timeout == OnWaitTimeout::Requeue {
            return Ok(LeaseRefusal::KeepsWaiting);
        }
        let (tenant, r) = (entry.tenant.clone(), entry.resource as usize);
        let payload = self.end_lease_wait(key, OutcomeKind::Skipped, now);
        let resource = &self.resources[r].name;
        tracing::info!(job = key.id.0, %tenant, %resource, "skip: no global lease");
        self.pending.push(Event::Skipped {
            key,
            payload,
            resource: resource.clone(),
            reason: SkipReason::NoSlot,
        });
        self.timers.set_pending(now);
        Ok(LeaseRefusal::Skipped)
    }

    /// `key`'s global lease was lost (it expired on the server before it was renewed):
    /// `Ok` when the job held one, and the shell must then stop it (it ends `Failed`,
    /// reported with [`Scheduler::complete`]); refused when it held none (it never got
    /// one, gave it back, or already lost it).
    pub fn lease_lost(&mut self, key: JobKey, now: Duration) -> Result<(), CoreError> {
        let entry = Self::live_mut(&mut self.jobs, key).ok_or(CoreError::UnknownJob)?;
        if !entry.global_lease {
            return Err(CoreError::WrongStage("holding a global lease"));
        }
        entry.global_lease = false;
        tracing::warn!(job = key.id.0, ?now, "global lease lost: stopping the job");
        Ok(())
    }

    /// Like [`Scheduler::cancel`], and a fresh job waiting for a global lease is ended
    /// at once too: its local slot returns, it is counted `Cancelled`, and its payload is
    /// returned as [`Cancelled::Removed`] (it never started). A resuming parent waiting
    /// for its lease has a live task: [`Cancelled::Running`].
    pub fn cancel_at(&mut self, key: JobKey, now: Duration) -> Cancelled<T> {
        match self.live(key).map(|e| &e.stage) {
            Some(Stage::LeaseWait { resumed: false, .. }) => {
                Cancelled::Removed(self.end_lease_wait(key, OutcomeKind::Cancelled, now))
            }
            _ => self.cancel(key),
        }
    }

    /// Like [`Scheduler::cancel_waiting`] (shutdown), and every fresh job waiting for a
    /// global lease is ended `Cancelled` too (see [`Scheduler::cancel_at`]).
    pub fn cancel_waiting_at(&mut self, now: Duration) -> Vec<(JobKey, T)> {
        let mut cancelled = self.cancel_waiting();
        let lease_waits: Vec<JobKey> = self
            .jobs
            .iter()
            .filter(|(_, e)| matches!(e.stage, Stage::LeaseWait { resumed: false, .. }))
            .map(|(idx, e)| JobKey {
                idx: idx as u32,
                id: e.id,
            })
            .collect();
        for key in lease_waits {
            cancelled.push((key, self.end_lease_wait(key, OutcomeKind::Cancelled, now)));
        }
        cancelled
    }

    /// Ends a job waiting for a global lease with `outcome`, returning its payload. It
    /// holds its local slot as a running job does, so it ends the way the shell ended it
    /// before the core owned this stage: as [`Scheduler::complete`] ends a running job
    /// (the slot returns, the time since the local grant counts as its run).
    pub(super) fn end_lease_wait(&mut self, key: JobKey, outcome: OutcomeKind, now: Duration) -> T {
        let payload = self.jobs[key.idx as usize]
            .payload
            .take()
            .expect("a job waiting for a lease has its payload");
        self.complete(key, outcome, now)
            .expect("a job waiting for a lease holds its slot");
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::job::JobSpec;
    use crate::scheduler::tests::{ms, poll};
    use crate::scheduler::timers::Timer;

    /// One shared resource `r` with `cap` local slots.
    fn shared(cap: u32, lease: Duration) -> Scheduler<u32> {
        let mut config = Config::default();
        config.scheduler.max_concurrent = cap;
        config.scheduler.slot_lease_timeout = lease;
        let mut s = Scheduler::new(config);
        s.require_global_lease(&"r".into());
        s
    }

    fn wanted(events: &[Event<u32>]) -> Vec<JobKey> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::LeaseWanted { key, .. } => Some(*key),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_local_grant_waits_for_the_global_lease_then_starts() {
        let mut s = shared(1, ms(1_000));
        assert!(s.requires_global_lease(&"r".into()));
        assert!(!s.requires_global_lease(&"other".into()));
        let key = s.submit(JobSpec::new("t", "r"), 7, ms(0));
        let second = s.submit(JobSpec::new("t", "r"), 8, ms(0));
        let ev = poll(&mut s, ms(0));
        assert!(
            matches!(ev.as_slice(), [Event::LeaseWanted { key: k, resource, .. }] if *k == key && resource.as_str() == "r"),
            "{ev:?}"
        );
        // The local slot is held while it waits: the second job waits for it.
        assert_eq!(s.in_flight(&"r".into()), 1);
        assert_eq!(s.waiting(), 1);
        assert!(s.started().is_empty(), "no task yet");
        assert_eq!(s.renew(key, ms(5)), Err(crate::LeaseError::NotHeld));
        s.lease_granted(key, ms(30)).unwrap();
        assert_eq!(
            s.next_deadline(),
            Some(ms(30)),
            "the Granted event is due at once"
        );
        let ev = poll(&mut s, ms(30));
        assert!(
            matches!(ev.as_slice(), [Event::Granted { key: k, payload: 7, lease, waited, .. }]
                if *k == key && *lease == ms(970) && *waited == ms(30)),
            "{ev:?}"
        );
        assert_eq!(
            s.lease_granted(key, ms(31)),
            Err(CoreError::WrongStage("waiting for a global lease"))
        );
        s.complete(key, OutcomeKind::Completed, ms(40)).unwrap();
        assert_eq!(wanted(&poll(&mut s, ms(40))), vec![second]);
    }

    #[test]
    fn the_jobs_own_wait_timeout_bounds_its_wait_for_a_global_lease() {
        let mut s = shared(1, ms(10_000));
        let first = s.submit(JobSpec::new("t", "r").wait_timeout(ms(100)), 1, ms(0));
        let second = s.submit(JobSpec::new("t", "r").wait_timeout(ms(300)), 2, ms(0));
        assert_eq!(wanted(&poll(&mut s, ms(0))), vec![first]);
        assert_eq!(s.next_deadline(), Some(ms(100)));
        assert!(poll(&mut s, ms(99)).is_empty());
        // Skipped at its wait deadline; its slot goes to the next job in the same poll,
        // which waits for its lease until what is left of its own timeout (300 ms).
        let ev = poll(&mut s, ms(100));
        assert!(
            matches!(&ev[..], [Event::Skipped { key, payload: 1, reason: SkipReason::NoSlot, .. }, Event::LeaseWanted { key: k2, .. }]
                if *key == first && *k2 == second),
            "{ev:?}"
        );
        let snap = s.snapshot(ms(100));
        assert_eq!(snap.resources["r"].outcomes.skipped, 1);
        assert_eq!(snap.resources["r"].in_flight, 1);
        assert!(
            s.lease_granted(first, ms(100)).is_err(),
            "the shell returns a late lease"
        );
        assert!(poll(&mut s, ms(299)).is_empty());
        // A lease answered after the deadline but before the poll is refused too.
        assert!(s.lease_granted(second, ms(300)).is_err());
        let ev = poll(&mut s, ms(300));
        assert!(matches!(&ev[..], [Event::Skipped { payload: 2, .. }]), "{ev:?}");
        assert_eq!(s.in_flight(&"r".into()), 0);
        assert_eq!(s.live_jobs(), 0);
    }

    #[test]
    fn the_lease_bounds_the_wait_for_a_global_lease_too() {
        let mut s = shared(1, ms(50));
        let key = s.submit(JobSpec::new("t", "r").wait_timeout(ms(1_000)), 1, ms(0));
        assert_eq!(wanted(&poll(&mut s, ms(0))), vec![key]);
        let ev = poll(&mut s, ms(50));
        assert!(
            matches!(
                &ev[..],
                [Event::Skipped {
                    payload: 1,
                    reason: SkipReason::NoSlot,
                    ..
                }]
            ),
            "{ev:?}"
        );
        assert_eq!(s.in_flight(&"r".into()), 0);
    }

    #[test]
    fn a_job_that_asked_to_be_requeued_is_never_skipped_waiting_for_a_lease() {
        let mut s = shared(1, ms(10_000));
        let key = s.submit(
            JobSpec::new("t", "r")
                .wait_timeout(ms(100))
                .requeue_on_wait_timeout(),
            1,
            ms(0),
        );
        assert_eq!(wanted(&poll(&mut s, ms(0))), vec![key]);
        assert!(poll(&mut s, ms(500)).is_empty());
        assert_eq!(s.lease_refused(key, ms(500)), Ok(LeaseRefusal::KeepsWaiting));
        s.lease_granted(key, ms(600)).unwrap();
        let ev = poll(&mut s, ms(600));
        assert!(
            matches!(
                &ev[..],
                [Event::Granted {
                    payload: 1,
                    wait_left: None,
                    ..
                }]
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn a_refused_lease_skips_a_fresh_job_and_frees_its_slot() {
        let mut s = shared(1, ms(10_000));
        let first = s.submit(JobSpec::new("t", "r"), 1, ms(0));
        let second = s.submit(JobSpec::new("t", "r"), 2, ms(0));
        assert_eq!(wanted(&poll(&mut s, ms(0))), vec![first]);
        assert_eq!(s.lease_refused(first, ms(20)), Ok(LeaseRefusal::Skipped));
        assert_eq!(s.in_flight(&"r".into()), 0);
        assert_eq!(s.next_deadline(), Some(ms(20)));
        let ev = poll(&mut s, ms(20));
        assert!(
            matches!(&ev[..], [Event::Skipped { key, payload: 1, reason: SkipReason::NoSlot, .. }, Event::LeaseWanted { key: k2, .. }]
                if *key == first && *k2 == second),
            "{ev:?}"
        );
        assert_eq!(s.snapshot(ms(20)).resources["r"].outcomes.skipped, 1);
        assert_eq!(s.lease_refused(first, ms(21)), Err(CoreError::UnknownJob));
    }

    #[test]
    fn a_lost_lease_stops_only_a_job_that_holds_one() {
        let mut s = shared(1, ms(10_000));
        let key = s.submit(JobSpec::new("t", "r"), 1, ms(0));
        poll(&mut s, ms(0));
        // Its queue wait deadline bounds the lease wait, so it is kept...
        assert!(s.timers.get(Timer::Wait).is_some());
        assert!(s.lease_lost(key, ms(1)).is_err(), "waiting: it holds none");
        s.lease_granted(key, ms(2)).unwrap();
        poll(&mut s, ms(2));
        // ...and retired once the job starts, not held until it falls due.
        assert_eq!(s.timers.get(Timer::Wait), None);
        assert_eq!(s.lease_lost(key, ms(3)), Ok(()));
        assert!(s.lease_lost(key, ms(4)).is_err(), "lost once");
        s.complete(key, OutcomeKind::Failed, ms(5)).unwrap();
        assert_eq!(s.in_flight(&"r".into()), 0);
    }

    #[test]
    fn a_resuming_parent_waits_for_a_lease_again_with_no_wait_timeout() {
        let mut s = shared(1, ms(1_000));
        let parent = s.submit(JobSpec::new("t", "r").wait_timeout(ms(10)), 1, ms(0));
        poll(&mut s, ms(0));
        s.lease_granted(parent, ms(0)).unwrap();
        poll(&mut s, ms(0));
        s.park(parent, ms(5)).unwrap();
        assert!(
            s.lease_lost(parent, ms(5)).is_err(),
            "parking gave the lease back"
        );
        s.unpark(parent, 2, ms(50)).unwrap();
        assert_eq!(wanted(&poll(&mut s, ms(50))), vec![parent]);
        assert_eq!(s.started(), vec![parent], "its task is alive");
        assert_eq!(s.lease_refused(parent, ms(60)), Ok(LeaseRefusal::KeepsWaiting));
        assert!(poll(&mut s, ms(500)).is_empty(), "no wait timeout");
        assert_eq!(s.cancel_at(parent, ms(500)), Cancelled::Running);
        s.lease_granted(parent, ms(600)).unwrap();
        let ev = poll(&mut s, ms(600));
        assert!(
            matches!(&ev[..], [Event::Granted { key, payload: 2, lease, .. }] if *key == parent && *lease == ms(450)),
            "{ev:?}"
        );
    }

    #[test]
    fn a_resuming_parent_whose_lease_ends_while_it_waits_is_stopped() {
        let mut s = shared(1, ms(100));
        let parent = s.submit(JobSpec::new("t", "r"), 1, ms(0));
        poll(&mut s, ms(0));
        s.lease_granted(parent, ms(0)).unwrap();
        poll(&mut s, ms(0));
        s.park(parent, ms(5)).unwrap();
        s.unpark(parent, 2, ms(10)).unwrap();
        assert_eq!(wanted(&poll(&mut s, ms(10))), vec![parent]);
        let ev = poll(&mut s, ms(110));
        assert!(
            matches!(&ev[..], [Event::LeaseExpired { key }] if *key == parent),
            "{ev:?}"
        );
        assert!(s.lease_granted(parent, ms(111)).is_err());
        assert_eq!(s.in_flight(&"r".into()), 1, "kept until the task stops");
        s.complete(parent, OutcomeKind::TimedOut, ms(120)).unwrap();
        assert_eq!(s.in_flight(&"r".into()), 0);
    }

    #[test]
    fn cancel_at_ends_a_job_waiting_for_a_lease_and_cancel_waiting_at_ends_them_all() {
        let mut s = shared(2, ms(10_000));
        let a = s.submit(JobSpec::new("t", "r"), 1, ms(0));
        let b = s.submit(JobSpec::new("t", "r"), 2, ms(0));
        let c = s.submit(JobSpec::new("t", "r"), 3, ms(0));
        assert_eq!(wanted(&poll(&mut s, ms(0))), vec![a, b]);
        // `cancel` cannot return a slot without a `now`.
        assert_eq!(s.cancel(a), Cancelled::Running);
        assert_eq!(s.cancel_at(a, ms(10)), Cancelled::Removed(1));
        assert_eq!(s.in_flight(&"r".into()), 1);
        let mut cancelled = s.cancel_waiting_at(ms(20));
        cancelled.sort_by_key(|(_, p)| *p);
        assert_eq!(cancelled, vec![(b, 2), (c, 3)]);
        let snap = s.snapshot(ms(20));
        assert_eq!(snap.resources["r"].outcomes.cancelled, 3);
        assert_eq!(snap.resources["r"].in_flight, 0);
        assert_eq!(s.live_jobs(), 0);
    }

    #[test]
    fn the_lease_taken_after_a_fallback_is_the_fallbacks() {
        let config = Config::from_toml_str(
            r#"
[resources.primary]
max_concurrent = 1
slot_wait_timeout = "1h"
fallback = "secondary"
breaker = { error_rate = 0.5, window = "60s", min_calls = 1, cooldown = "30s", half_open_probes = 1, half_open_timeout = "10s" }

[resources.secondary]
max_concurrent = 1
slot_wait_timeout = "1h"
"#,
        )
        .unwrap();
        let mut s: Scheduler<u32> = Scheduler::new(config);
        s.require_global_lease(&"secondary".into());
        let first = s.submit(JobSpec::new("t", "primary"), 1, ms(0));
        let second = s.submit(JobSpec::new("t", "primary"), 2, ms(0));
        assert!(matches!(
            &poll(&mut s, ms(0))[..],
            [Event::Granted { payload: 1, .. }]
        ));
        // One failure opens primary's breaker: the waiting job moves to the fallback,
        // whose slots are shared, and it wants the fallback's lease.
        s.complete(first, OutcomeKind::Failed, ms(10)).unwrap();
        let ev = poll(&mut s, ms(10));
        assert!(
            matches!(&ev[..], [Event::LeaseWanted { key, resource, .. }] if *key == second && resource.as_str() == "secondary"),
            "{ev:?}"
        );
    }
}
