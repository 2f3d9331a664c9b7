//! Admission: submission, quotas (admit, settle), and the gates of guarded resources
//! (rate limit, breaker) in front of the grant.

use std::time::Duration;

use crate::guard::Gate;
use crate::job::{JobId, JobSpec, SkipReason, TenantId};
use crate::limit::quota::{JobQuota, QuotaRefusal, Quotas, UsageSnapshot};

use super::entry::{Entry, Stage};
use super::{CoreError, Event, JobKey, Scheduler};

impl<T> Scheduler<T> {
    /// Submits a job that may wait for a slot from `now`.
    pub fn submit(&mut self, spec: JobSpec, payload: T, now: Duration) -> JobKey {
        self.submit_at(spec, payload, now, now)
    }

    /// Submits a job that becomes eligible for a slot at `release_at` (fan-out batching);
    /// its wait timeout counts from then.
    pub fn submit_at(&mut self, spec: JobSpec, payload: T, release_at: Duration, now: Duration) -> JobKey {
        let r = self.resource_index(&spec.resource);
        let settings = self.resources[r as usize].settings;
        let id = JobId(self.next_id);
        self.next_id += 1;
        let entry = Entry {
            id,
            tenant: spec.tenant,
            resource: r,
            home: r,
            cost: spec.cost.max(1),
            lease: spec.options.lease.unwrap_or(settings.lease),
            lease_until: Duration::MAX,
            wait_timeout: Some(spec.options.wait_timeout.unwrap_or(settings.wait_timeout)),
            on_wait_timeout: spec.options.on_wait_timeout,
            stage: Stage::Deferred,
            epoch: 0,
            payload: Some(payload),
            quota: JobQuota {
                estimate: spec.estimated_cost,
                wait: spec.options.wait_for_quota,
                deadline: release_at
                    .saturating_add(spec.options.wait_timeout.unwrap_or(settings.wait_timeout)),
                ..JobQuota::default()
            },
            permit: None,
            attempts: 0,
            grant: 0,
            global_lease: false,
        };
        let release_at = match &mut self.resources[r as usize].guard {
            Some(guard) => release_at.max(now) + guard.stagger(),
            None => release_at,
        };
        let idx = self.jobs.insert(entry) as u32;
        let key = JobKey { idx, id };
        self.resources[r as usize].stats.submitted += 1;
        self.waiting += 1;
        if release_at <= now {
            if self.admit(key, now) {
                self.enqueue(key, now);
            }
        } else {
            self.resources[r as usize].deferred += 1;
            self.timers.push_release(release_at, key);
        }
        key
    }

    /// Checks a deferred job's quotas as it becomes eligible; true when it may now wait
    /// for a slot. A refused job is deferred to its retry time (when it waits for quota
    /// and that time is within its wait timeout) or ends `Skipped`, reported by `poll`.
    pub(super) fn admit(&mut self, key: JobKey, now: Duration) -> bool {
        if self.quotas.is_empty() && self.shared_quotas.is_none() {
            return true;
        }
        let entry = &mut self.jobs[key.idx as usize];
        if entry.quota.admitted {
            return true; // a retry: admitted (and reserved) once, settled once at its end
        }
        if self.shared_quotas.is_some() {
            // In-process quotas first (no round trip for what this process refuses);
            // recorded once Redis has admitted the job too.
            return match self.quotas.check(&entry.tenant, entry.quota.estimate, now) {
                Ok(()) => {
                    self.ask_shared_quota(key, now);
                    false
                }
                Err(refusal) => {
                    self.refuse_quota(key, refusal, now);
                    false
                }
            };
        }
        match self.quotas.admit(&entry.tenant, entry.quota.estimate, now) {
            Ok(()) => {
                entry.quota.admitted = true;
                true
            }
            Err(refusal) => {
                self.refuse_quota(key, refusal, now);
                false
            }
        }
    }

    /// A quota refused `key` (deferred, or waiting for a shared quota's answer): it is
    /// deferred to the retry time when it waits for quota and that time is within its
    /// wait timeout, else it ends `Skipped`, reported by the next poll.
    pub(super) fn refuse_quota(&mut self, key: JobKey, refusal: QuotaRefusal, now: Duration) {
        let entry = &self.jobs[key.idx as usize];
        if let QuotaRefusal::NotUntil { retry_after, .. } = &refusal {
            let retry_at = now.saturating_add(*retry_after);
            if entry.quota.wait && retry_at <= entry.quota.deadline {
                self.defer_for_quota(key, retry_at);
                return;
            }
        }
        self.skip_for_quota(key, SkipReason::from(refusal), now);
    }

    /// An ended job's quota reservation becomes its actual cost (the estimate when it ran
    /// and did not report one; nothing when it never ran). A job that ran and reported a
    /// cost other than the estimate Redis charged is settled there too
    /// (`Event::QuotaSettled`); a job that never ran stays charged its estimate in Redis
    /// (on the side of the limit).
    pub(super) fn settle_quota(
        &mut self,
        key: JobKey,
        tenant: &TenantId,
        quota: JobQuota,
        ran: bool,
        now: Duration,
    ) {
        if !quota.admitted {
            return;
        }
        if let (true, true, Some(actual)) = (quota.shared, ran, quota.actual()) {
            if actual != quota.estimate {
                self.pending.push(Event::QuotaSettled {
                    key,
                    tenant: tenant.clone(),
                    estimate: quota.estimate,
                    actual,
                });
                self.timers.set_pending(now);
            }
        }
        if ran || quota.actual().is_some() {
            let charged = quota.actual().unwrap_or(quota.estimate);
            self.cost_charged = self.cost_charged.saturating_add(charged);
        }
        let local = self.quotas.is_empty();
        let fallback = self.shared_quotas.as_mut().map(|s| s.fallback_mut());
        for quotas in std::iter::once(&mut self.quotas)
            .filter(|_| !local)
            .chain(fallback)
        {
            match (ran, quota.actual()) {
                (false, None) => quotas.release(tenant, quota.estimate),
                (_, actual) => quotas.settle(tenant, quota.estimate, actual.unwrap_or(quota.estimate), now),
            }
        }
    }

    /// Cost charged against the cost budgets so far: each admitted job's actual cost (its
    /// estimate when it ran without reporting one), once per job however many quotas
    /// apply; a job that never ran and reported nothing is charged nothing.
    pub fn quota_cost_charged(&self) -> u64 {
        self.cost_charged
    }

    /// Records the actual cost a running job reports; charged when the job ends.
    pub fn report_cost(&mut self, key: JobKey, cost: u64) -> Result<(), CoreError> {
        let entry = Self::live_mut(&mut self.jobs, key).ok_or(CoreError::UnknownJob)?;
        entry.quota.report(cost);
        Ok(())
    }

    /// `tenant`'s usage of its quotas and of the global ones at `now`.
    pub fn usage(&self, tenant: &TenantId, now: Duration) -> UsageSnapshot {
        self.quotas.usage(tenant, now)
    }

    /// The quotas and what every tenant has used of them.
    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    /// Grants on a resource with policies: each grant passes the breaker and the rate
    /// limit; a refusal schedules one wake-up at the instant the policy named (never a
    /// busy loop); an open breaker sends the waiting jobs to the fallback.
    pub(super) fn grant_guarded(&mut self, r: u32, now: Duration, out: &mut Vec<Event<T>>) {
        loop {
            // Its own queue first; then what it lent its fallback, oldest first.
            let lent = if self.resources[r as usize].queued == 0 {
                match self.next_to_take_back(r, now) {
                    Some(key) => Some(key),
                    None => return,
                }
            } else {
                None
            };
            let res = &mut self.resources[r as usize];
            let has_slot = res.pool.has_free();
            let guard = res.guard.as_mut().expect("called for guarded resources");
            match guard.gate(now, has_slot) {
                Gate::Pass(permit) => {
                    if let Some(key) = lent {
                        self.take_back(r, key);
                    }
                    let granted = self.grant_next(r, permit, now, out);
                    debug_assert!(granted, "queued counts live waiting jobs");
                }
                Gate::Open(until) => {
                    self.route_to_fallback(r, now);
                    if self.resources[r as usize].queued > 0 {
                        self.wake_at(r, until);
                    }
                    return;
                }
                Gate::Wait(at) => {
                    if let Some(at) = at {
                        self.wake_at(r, at);
                    }
                    return;
                }
                // The wake-up asked for with the refusal may have been dropped for an
                // earlier one (`wake_at` keeps the earliest): ask again, or a resource
                // whose earlier wake found it still limited would never wake (issue 26).
                Gate::Limited(until) => {
                    self.wake_at(r, until);
                    return;
                }
            }
        }
    }

    pub(super) fn wake_at(&mut self, r: u32, at: Duration) {
        let res = &mut self.resources[r as usize];
        if res.gate_wake.is_some_and(|w| w <= at) {
            return;
        }
        res.gate_wake = Some(at);
        self.timers.push_gate(at, r);
    }
}
