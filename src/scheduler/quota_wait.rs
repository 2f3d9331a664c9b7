//! The wait for a shared quota's answer: a job whose tenant falls under a quota kept in
//! Redis (`[quotas.NAME] backend = "redis"`) is admitted only once Redis has checked and
//! counted it there, on the server's clock, together with every other replica's jobs.
//!
//! The shell declares that it carries such quotas ([`Scheduler::require_shared_quotas`]).
//! From then on, a job that passes the in-process quotas at admission enters
//! `Stage::QuotaWait` and the next poll reports [`Event::QuotaWanted`]; the shell asks
//! Redis (many jobs in one round trip) and reports each answer here. The core decides
//! what it means for the job:
//!
//! * admitted: the in-process quotas are checked again and recorded (others may have
//!   been admitted meanwhile), the process's own copy of the shared quotas records it
//!   too, and the job joins its queue;
//! * refused with a retry time: exactly as an in-process refusal (wait for it within the
//!   job's wait timeout when it asked to, else `Skipped(QuotaExceeded)`);
//! * Redis could not answer: the strictest `on_failure` of the shared quotas decides:
//!   `fail_open` admits (counted by the shell), `fail_open_local` checks the process's own
//!   copy of the shared quotas instead, `fail_closed` waits (asking again) within the
//!   job's wait timeout when it waits for quota, else ends `Skipped(QuotaUnavailable)`.
//!
//! A job never waits for Redis past its wait deadline: a release timer at that instant
//! applies the failure policy as if Redis had not answered, and a late answer finds the
//! job gone (`CoreError::WrongStage`; the admission Redis recorded then stays counted
//! there, which errs on the side of the limit).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{BackendKind, QuotaConfig, SharedFailure};
use crate::job::{OutcomeKind, SkipReason, TenantId};
use crate::limit::quota::{QuotaRefusal, Quotas};

use super::entry::Stage;
use super::{CoreError, Event, JobKey, Scheduler};

/// How long a `fail_closed` job that waits for quota waits before its admission is
/// asked again while Redis cannot answer (the shell's own reconnect backoff spaces the
/// real attempts; this only bounds how stale a wait gets).
const ASK_AGAIN: Duration = Duration::from_millis(100);

/// The quotas kept in Redis, as the core sees them.
#[derive(Debug)]
pub(super) struct SharedQuotas {
    /// The same quotas kept in this process: what `fail_open_local` falls back to. Every
    /// admission of this process is recorded in it, so it knows this process's share.
    fallback: Quotas,
    /// The strictest `on_failure` among them (`fail_closed`, then `fail_open_local`,
    /// then `fail_open`): an admission Redis could not check passes only if every shared
    /// quota would let it.
    policy: SharedFailure,
    /// What a `QuotaUnavailable` skip names: `redis:` and the quota names.
    label: String,
}

/// What [`Scheduler::quota_unavailable`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedQuotaOutcome {
    /// Admitted without Redis's check (`fail_open`, or `fail_open_local` within the
    /// local limits): the shell counts it as a fail-open admission.
    AdmittedFailOpen,
    /// It waits (deferred to a retry time within its wait timeout); asked again then.
    Waits,
    /// It was refused; the next poll reports `Skipped`.
    Skipped,
}

impl SharedQuotas {
    pub(super) fn fallback_mut(&mut self) -> &mut Quotas {
        &mut self.fallback
    }

    pub(super) fn sweep(&mut self, now: Duration) {
        self.fallback.sweep(now);
    }
}

impl<T> Scheduler<T> {
    /// From now on the quotas configured with `backend = "redis"` are decided by the
    /// shell's Redis store: [`Scheduler::poll`] reports [`Event::QuotaWanted`] for each
    /// job that passed the in-process quotas, and the shell answers with
    /// [`Scheduler::quota_admitted`], [`Scheduler::quota_refused`] or
    /// [`Scheduler::quota_unavailable`]. Until it is called (the simulator, a shell
    /// without Redis), those quotas are kept in this process like the others. Call it
    /// before the first submission; false when no quota is Redis-backed.
    pub fn require_shared_quotas(&mut self) -> bool {
        let (shared, local): (BTreeMap<String, QuotaConfig>, BTreeMap<String, QuotaConfig>) = self
            .config
            .quotas
            .clone()
            .into_iter()
            .partition(|(_, q)| q.backend == BackendKind::Redis);
        if shared.is_empty() {
            return false;
        }
        let rank = |p: SharedFailure| match p {
            SharedFailure::FailClosed => 2,
            SharedFailure::FailOpenLocal => 1,
            SharedFailure::FailOpen => 0,
        };
        let policy = shared
            .values()
            .map(|q| q.on_failure)
            .max_by_key(|p| rank(*p))
            .unwrap_or_default();
        let names: Vec<&str> = shared.keys().map(String::as_str).collect();
        let label = format!("redis:{}", names.join(","));
        self.quotas = Quotas::new(&local);
        self.shared_quotas = Some(Box::new(SharedQuotas {
            fallback: Quotas::new(&shared),
            policy,
            label,
        }));
        true
    }

    /// True when some quotas are decided by the shell's Redis store.
    pub fn requires_shared_quotas(&self) -> bool {
        self.shared_quotas.is_some()
    }

    /// Called by admission for a job that passed the in-process quotas: it waits for the
    /// shared store's answer.
    pub(super) fn ask_shared_quota(&mut self, key: JobKey, now: Duration) {
        let entry = &mut self.jobs[key.idx as usize];
        entry.stage = Stage::QuotaWait;
        let (tenant, estimate, deadline) = (entry.tenant.clone(), entry.quota.estimate, entry.quota.deadline);
        // Never past the job's wait deadline: the policy decides then. One timer per job
        // (each costs a heap entry until its deadline, even after the job ended).
        if !std::mem::replace(&mut entry.quota.deadline_timer, true) {
            self.timers.push_release(deadline.max(now), key);
        }
        self.pending.push(Event::QuotaWanted {
            key,
            tenant,
            estimate,
        });
        self.timers.set_pending(now);
    }

    fn quota_waiting(&self, key: JobKey) -> Result<(), CoreError> {
        match self.live(key).map(|e| &e.stage) {
            None => Err(CoreError::UnknownJob),
            Some(Stage::QuotaWait) => Ok(()),
            Some(_) => Err(CoreError::WrongStage("waiting for a shared quota")),
        }
    }

    /// Redis admitted `key` (and counted it there): it joins its queue, unless an
    /// in-process quota now refuses it (then as any refusal).
    pub fn quota_admitted(&mut self, key: JobKey, now: Duration) -> Result<(), CoreError> {
        self.quota_waiting(key)?;
        let entry = &self.jobs[key.idx as usize];
        let (tenant, estimate) = (entry.tenant.clone(), entry.quota.estimate);
        if let Err(refusal) = self.quotas.admit(&tenant, estimate, now) {
            self.refuse_quota(key, refusal, now);
            return Ok(());
        }
        if let Some(shared) = &mut self.shared_quotas {
            shared.fallback.record(&tenant, estimate, now);
        }
        let quota = &mut self.jobs[key.idx as usize].quota;
        quota.admitted = true;
        quota.shared = true;
        self.enqueue(key, now);
        Ok(())
    }

    /// Redis refused `key` (nothing was counted there): as an in-process refusal.
    pub fn quota_refused(
        &mut self,
        key: JobKey,
        refusal: QuotaRefusal,
        now: Duration,
    ) -> Result<(), CoreError> {
        self.quota_waiting(key)?;
        self.refuse_quota(key, refusal, now);
        Ok(())
    }

    /// Redis could not answer for `key` (down, timed out): the failure policy decides
    /// (see the module docs).
    pub fn quota_unavailable(&mut self, key: JobKey, now: Duration) -> Result<SharedQuotaOutcome, CoreError> {
        self.quota_waiting(key)?;
        Ok(self.apply_failure_policy(key, now))
    }

    fn apply_failure_policy(&mut self, key: JobKey, now: Duration) -> SharedQuotaOutcome {
        let shared = self
            .shared_quotas
            .as_mut()
            .expect("a job waits for shared quotas");
        let entry = &self.jobs[key.idx as usize];
        let (tenant, estimate) = (entry.tenant.clone(), entry.quota.estimate);
        match shared.policy {
            SharedFailure::FailOpen => {}
            SharedFailure::FailOpenLocal => {
                if let Err(refusal) = shared.fallback.check(&tenant, estimate, now) {
                    self.refuse_quota(key, refusal, now);
                    return self.outcome_of(key);
                }
            }
            SharedFailure::FailClosed => {
                let entry = &self.jobs[key.idx as usize];
                let deadline = entry.quota.deadline;
                if entry.quota.wait && now < deadline {
                    let at = now.saturating_add(ASK_AGAIN).min(deadline);
                    self.defer_for_quota(key, at);
                    return SharedQuotaOutcome::Waits;
                }
                let limit = shared.label.clone();
                self.skip_for_quota(key, SkipReason::QuotaUnavailable { limit }, now);
                return SharedQuotaOutcome::Skipped;
            }
        }
        if let Err(refusal) = self.quotas.admit(&tenant, estimate, now) {
            self.refuse_quota(key, refusal, now);
            return self.outcome_of(key);
        }
        if let Some(shared) = &mut self.shared_quotas {
            shared.fallback.record(&tenant, estimate, now);
        }
        tracing::warn!(job = key.id.0, %tenant, "redis unavailable: admitted without the shared quota check (fail-open)");
        self.jobs[key.idx as usize].quota.admitted = true;
        self.enqueue(key, now);
        SharedQuotaOutcome::AdmittedFailOpen
    }

    fn outcome_of(&self, key: JobKey) -> SharedQuotaOutcome {
        match self.live(key) {
            Some(_) => SharedQuotaOutcome::Waits,
            None => SharedQuotaOutcome::Skipped,
        }
    }

    /// A release timer found `key` still waiting for Redis: its wait deadline is here.
    pub(super) fn quota_wait_due(&mut self, key: JobKey, now: Duration) -> Option<SharedQuotaOutcome> {
        let entry = self.live(key)?;
        if now < entry.quota.deadline {
            return None; // an earlier timer (a retry) of a job that asked again since
        }
        tracing::info!(job = key.id.0, "no answer from redis within the wait timeout");
        Some(self.apply_failure_policy(key, now))
    }

    /// Defers `key` (deferred or waiting for quota) to `at`.
    pub(super) fn defer_for_quota(&mut self, key: JobKey, at: Duration) {
        let entry = &mut self.jobs[key.idx as usize];
        entry.stage = Stage::Deferred;
        self.resources[entry.resource as usize].deferred += 1;
        self.timers.push_release(at, key);
    }

    /// Ends a job that never got past admission as `Skipped(reason)`.
    pub(super) fn skip_for_quota(&mut self, key: JobKey, reason: SkipReason, now: Duration) {
        let entry = self.jobs.remove(key.idx as usize);
        self.waiting -= 1;
        let res = &mut self.resources[entry.resource as usize];
        res.stats.record_outcome(OutcomeKind::Skipped);
        tracing::info!(job = key.id.0, tenant = %entry.tenant, resource = %res.name, %reason, "skip: quota");
        self.pending.push(Event::Skipped {
            key,
            payload: entry.payload.expect("a job in admission has its payload"),
            resource: res.name.clone(),
            reason,
        });
        self.timers.set_pending(now);
    }

    /// Jobs admitted by the quotas so far (in-process and shared: each admitted job once).
    pub fn quota_admissions(&self) -> u64 {
        match &self.shared_quotas {
            // Every admission of this process is recorded in the shared quotas' own copy.
            Some(shared) => shared.fallback.admitted(),
            None => self.quotas.admitted(),
        }
    }

    /// `tenant`'s usage of the process's own copy of the shared quotas (what
    /// `fail_open_local` would decide with), if any quota is shared.
    pub fn shared_fallback_usage(&self, tenant: &TenantId, now: Duration) -> Option<crate::UsageSnapshot> {
        self.shared_quotas.as_ref().map(|s| s.fallback.usage(tenant, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::job::JobSpec;
    use crate::scheduler::tests::{ms, poll};

    /// `per_user`, 2 per minute, kept in Redis with `policy`.
    fn shared(policy: &str) -> Scheduler<u32> {
        let config = Config::from_toml_str(&format!(
            "[quotas.per_user]\nwindows = [{{ limit = 2, per = \"1m\" }}]\nbackend = \"redis\"\n\
             url = \"redis://127.0.0.1:1\"\non_failure = \"{policy}\"\n"
        ))
        .unwrap();
        let mut s = Scheduler::new(config);
        assert!(s.require_shared_quotas());
        s
    }

    fn wanted(events: &[Event<u32>]) -> Vec<JobKey> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::QuotaWanted { key, .. } => Some(*key),
                _ => None,
            })
            .collect()
    }

    fn granted(events: &[Event<u32>]) -> usize {
        events
            .iter()
            .filter(|e| matches!(e, Event::Granted { .. }))
            .count()
    }

    fn skipped(events: &[Event<u32>]) -> Vec<&SkipReason> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Skipped { reason, .. } => Some(reason),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_job_under_a_shared_quota_starts_only_once_the_store_admitted_it() {
        let mut s = shared("fail_closed");
        let key = s.submit(JobSpec::new("alice", "db"), 1, ms(0));
        let ev = poll(&mut s, ms(0));
        assert_eq!(wanted(&ev), vec![key]);
        assert_eq!(granted(&ev), 0, "no grant before the store answers");
        s.quota_admitted(key, ms(3)).unwrap();
        assert_eq!(granted(&poll(&mut s, ms(3))), 1);
        // A second answer for the same job is refused: it no longer waits.
        assert_eq!(
            s.quota_admitted(key, ms(4)),
            Err(CoreError::WrongStage("waiting for a shared quota"))
        );
    }

    #[test]
    fn a_refusal_from_the_store_defers_a_waiting_job_to_its_retry_time_and_asks_again() {
        let mut s = shared("fail_closed");
        let spec = JobSpec::new("alice", "db")
            .wait_for_quota()
            .wait_timeout(ms(10_000));
        let key = s.submit(spec, 1, ms(0));
        poll(&mut s, ms(0));
        let refusal = QuotaRefusal::NotUntil {
            limit: "per_user/1m".into(),
            retry_after: ms(500),
        };
        s.quota_refused(key, refusal, ms(10)).unwrap();
        assert!(wanted(&poll(&mut s, ms(509))).is_empty());
        assert_eq!(
            wanted(&poll(&mut s, ms(510))),
            vec![key],
            "asked again at the retry time"
        );
    }

    #[test]
    fn fail_closed_refuses_with_a_typed_reason_when_redis_cannot_answer() {
        let mut s = shared("fail_closed");
        let key = s.submit(JobSpec::new("alice", "db"), 1, ms(0));
        poll(&mut s, ms(0));
        assert_eq!(s.quota_unavailable(key, ms(1)), Ok(SharedQuotaOutcome::Skipped));
        let ev = poll(&mut s, ms(1));
        assert_eq!(
            skipped(&ev),
            vec![&SkipReason::QuotaUnavailable {
                limit: "redis:per_user".into()
            }]
        );
    }

    #[test]
    fn fail_closed_waits_for_redis_within_the_wait_timeout_then_skips() {
        let mut s = shared("fail_closed");
        let spec = JobSpec::new("alice", "db").wait_for_quota().wait_timeout(ms(250));
        let key = s.submit(spec, 1, ms(0));
        poll(&mut s, ms(0));
        assert_eq!(s.quota_unavailable(key, ms(1)), Ok(SharedQuotaOutcome::Waits));
        assert_eq!(wanted(&poll(&mut s, ms(101))), vec![key], "asked again");
        // No answer at all this time: at its wait deadline the policy decides by itself.
        let ev = poll(&mut s, ms(250));
        assert_eq!(skipped(&ev).len(), 1, "{ev:?}");
        assert_eq!(s.live_jobs(), 0);
    }

    #[test]
    fn fail_open_admits_without_the_check() {
        let mut s = shared("fail_open");
        let keys: Vec<JobKey> = (0..3)
            .map(|i| s.submit(JobSpec::new("alice", "db"), i, ms(0)))
            .collect();
        poll(&mut s, ms(0));
        for key in keys {
            assert_eq!(
                s.quota_unavailable(key, ms(1)),
                Ok(SharedQuotaOutcome::AdmittedFailOpen)
            );
        }
        assert_eq!(
            granted(&poll(&mut s, ms(1))),
            3,
            "over the 2/min: nobody could check"
        );
    }

    #[test]
    fn fail_open_local_falls_back_to_the_same_limits_kept_in_this_process() {
        let mut s = shared("fail_open_local");
        let first = s.submit(JobSpec::new("alice", "db"), 0, ms(0));
        poll(&mut s, ms(0));
        s.quota_admitted(first, ms(1)).unwrap();
        let keys: Vec<JobKey> = (1..3)
            .map(|i| s.submit(JobSpec::new("alice", "db"), i, ms(2)))
            .collect();
        poll(&mut s, ms(2));
        // The process's own copy knows the admission Redis made: one more fits its 2/min.
        assert_eq!(
            s.quota_unavailable(keys[0], ms(3)),
            Ok(SharedQuotaOutcome::AdmittedFailOpen)
        );
        assert_eq!(
            s.quota_unavailable(keys[1], ms(3)),
            Ok(SharedQuotaOutcome::Skipped)
        );
        let ev = poll(&mut s, ms(3));
        assert!(
            matches!(skipped(&ev).as_slice(), [SkipReason::QuotaExceeded { limit, .. }] if limit == "per_user/1m"),
            "{ev:?}"
        );
    }

    #[test]
    fn without_a_shell_that_carries_them_shared_quotas_are_kept_in_process() {
        let config = Config::from_toml_str(
            "[quotas.per_user]\nwindows = [{ limit = 1, per = \"1m\" }]\nbackend = \"redis\"\nurl = \"redis://h\"\n",
        )
        .unwrap();
        let mut s: Scheduler<u32> = Scheduler::new(config);
        s.submit(JobSpec::new("alice", "db"), 0, ms(0));
        s.submit(JobSpec::new("alice", "db"), 1, ms(0));
        let ev = poll(&mut s, ms(0));
        assert_eq!((granted(&ev), skipped(&ev).len()), (1, 1));
    }
}
