//! Signals to a resource's adaptive limit: the overload input, and the sample every
//! `complete` gives (see `crate::adaptive` for how the limit moves).

use std::time::Duration;

use crate::adaptive::Signal;
use crate::job::OutcomeKind;

use super::entry::{Resource, Stage};
use super::{CoreError, JobKey, Scheduler};

impl Resource {
    /// Feeds the signal of a call (its resource's grant number `grant`) that ended
    /// `outcome` after running from `granted_at` to `now`, with `in_flight` calls
    /// (itself included) in flight. Nothing for a resource with a fixed cap (one branch:
    /// `complete` stays cheap for them).
    #[inline]
    pub(super) fn adapt(
        &mut self,
        outcome: OutcomeKind,
        grant: u64,
        granted_at: Duration,
        in_flight: u32,
        now: Duration,
    ) {
        if self.adaptive.is_none() {
            return;
        }
        let signal = match outcome {
            OutcomeKind::Completed => Signal::Completed {
                rtt: now.saturating_sub(granted_at),
                in_flight,
            },
            // The lease ran out: the downstream is too slow for this many calls.
            OutcomeKind::TimedOut => Signal::Dropped { grant },
            // A failure that was not an overload says nothing about capacity; a
            // cancelled call ended for its caller's reasons.
            _ => return,
        };
        self.signal(signal, now);
    }

    /// Feeds one signal; a changed limit becomes the pool's cap (a lowered one takes no
    /// slot back) and a tracing event.
    #[cold]
    pub(super) fn signal(&mut self, signal: Signal, now: Duration) {
        let Some(adaptive) = &mut self.adaptive else {
            return;
        };
        if let Some(limit) = adaptive.observe(signal, self.pool.granted_total(), now) {
            let before = self.pool.cap();
            self.pool.set_cap(limit);
            tracing::debug!(resource = %self.name, limit, before, in_flight = self.pool.held(), "adaptive limit changed");
        }
    }
}

impl<T> Scheduler<T> {
    /// The job's downstream refused its call as over capacity (the body failed with
    /// `JobError::overload`: a 429, a RateLimitExceeded, SQLSTATE 53300): the adaptive
    /// limit of the resource the job holds a slot on is cut (once per generation of
    /// calls: see `crate::adaptive`). Call it before [`Scheduler::complete`] or
    /// [`Scheduler::retry`] for that attempt. Nothing changes on a resource with a fixed
    /// cap. Refused for a job that holds no slot.
    pub fn overloaded(&mut self, key: JobKey, now: Duration) -> Result<(), CoreError> {
        self.refused(key, None, now)
    }

    /// As [`Scheduler::overloaded`], for a refusal that asked callers to wait
    /// `retry_after` (a 429's Retry-After). Beyond the adaptive limit's cut, on a
    /// resource whose rate limit is adaptive (`rate_limit.adaptive`) the learned rate is
    /// cut (once per generation of grants) and no job of the resource is granted before
    /// `now + retry_after`. The refusal does not count in the resource's breaker unless
    /// `breaker.count_overload` says so (the attempt's outcome is then not recorded
    /// there by `complete` or `retry`).
    pub fn refused(
        &mut self,
        key: JobKey,
        retry_after: Option<Duration>,
        now: Duration,
    ) -> Result<(), CoreError> {
        let entry = Self::live_mut(&mut self.jobs, key).ok_or(CoreError::UnknownJob)?;
        if !matches!(
            entry.stage,
            Stage::Running { .. } | Stage::Overdue { .. } | Stage::LeaseWait { .. }
        ) {
            return Err(CoreError::WrongStage("running"));
        }
        let (r, grant) = (entry.resource as usize, entry.grant);
        let res = &mut self.resources[r];
        if let Some(guard) = &mut res.guard {
            let grants = res.pool.granted_total();
            entry.permit = guard.overloaded(entry.permit.take(), grant, grants, retry_after, now);
        }
        res.signal(Signal::Dropped { grant }, now);
        self.mark_dirty(r as u32);
        Ok(())
    }

    /// The limit the grant loop uses for `resource` now: its adaptive limit, or its cap
    /// (`None` for a resource never used).
    pub fn limit(&self, resource: &crate::job::ResourceId) -> Option<u32> {
        self.by_name
            .get(resource)
            .map(|&i| self.resources[i as usize].pool.cap())
    }
}
