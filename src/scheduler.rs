//! The scheduler core: slot pools, fair queues, fan-out release times, wait timeouts and
//! leases, as one state machine driven by calls that carry an explicit `now`.
//!
//! # Implementation details
//!
//! The runtime shell (the Supervisor actor) owns one `Scheduler` and is the only code that
//! calls it, so nothing here is shared between threads. A job moves through
//! `Deferred -> Waiting -> Running -> (Overdue) -> done`, or from `Running` to `Parked`
//! and back to `Waiting` when a parent gives its slot up while it waits for children.
//!
//! * A slot is taken only in [`Scheduler::poll`], only while the resource's pool has one
//!   free, and only for a job that is `Waiting`; it is returned only in
//!   [`Scheduler::complete`] or [`Scheduler::park`]. Lease expiry does **not** return the
//!   slot: it reports [`Event::LeaseExpired`] so the shell cancels the job, and the slot
//!   comes back when the shell confirms the job has stopped. A job that cannot be stopped
//!   (a blocking body) therefore keeps its slot, and the cap holds from the downstream's
//!   point of view.
//! * Wait timeouts and leases are lazy: an entry's deadline is checked against its current
//!   stage when it falls due, so a job that was granted before its wait timeout costs
//!   nothing to "unschedule".
//! * The core never sleeps: [`Scheduler::next_deadline`] says when it next needs a call.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use slab::Slab;

use crate::breaker::Permit;
use crate::config::{Config, ResourceSettings};
use crate::fair::FairQueue;
use crate::guard::{Gate, Guard};
use crate::hash::FastMap;
use crate::job::{JobId, JobSpec, OnWaitTimeout, OutcomeKind, ResourceId, SkipReason, TenantId};
use crate::limit::quota::{JobQuota, QuotaRefusal, Quotas, UsageSnapshot};
use crate::pool::SlotPool;
use crate::stats::{ResourceSnapshot, ResourceStats, StatsSnapshot};
use crate::tenant_ledger::TenantLedger;
use crate::timers::Deadlines;

/// Names one job's entry in the core; stale keys (of finished jobs) are recognised and
/// refused, because the slab slot is checked against the job id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct JobKey {
    idx: u32,
    id: JobId,
}

impl JobKey {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// A small dense index (reused after the job ends), for a shell's side tables.
    pub fn index(&self) -> usize {
        self.idx as usize
    }
}

/// A decision the shell must carry out, produced by [`Scheduler::poll`].
#[derive(Debug)]
pub enum Event<T> {
    /// Run this job now: a slot of its resource was granted to it.
    Granted {
        /// The job.
        key: JobKey,
        /// Its payload (for the shell: the job body or a parked parent's waker).
        payload: T,
        /// How long it may hold the slot.
        lease: Duration,
        /// How long it waited for the slot.
        waited: Duration,
        /// What is left of the job's own wait timeout (its option, else its resource's),
        /// for a shell that makes the job wait further before it starts (a slot shared
        /// through Redis); `None` when it has none or asked to be requeued instead.
        wait_left: Option<Duration>,
    },
    /// The job waited past its wait timeout and will not run.
    Skipped {
        /// The job.
        key: JobKey,
        /// Its payload.
        payload: T,
        /// Why.
        reason: SkipReason,
    },
    /// The job's lease expired: cancel it and call [`Scheduler::complete`] once it stopped.
    LeaseExpired {
        /// The job.
        key: JobKey,
    },
}

/// What [`Scheduler::cancel`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Cancelled<T> {
    /// The job had not started; it is removed and counted `Cancelled`.
    Removed(T),
    /// The job holds a slot or is parked; the shell must stop it and then call
    /// [`Scheduler::complete`] with [`OutcomeKind::Cancelled`].
    Running,
    /// No such job (it already ended).
    Unknown,
}

/// A refusal by the core (the shell's bug or a stale key), never a panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    /// The key names no live job.
    #[error("unknown or finished job")]
    UnknownJob,
    /// The job is not in the stage the call requires.
    #[error("job is not {0}")]
    WrongStage(&'static str),
}

#[derive(Debug)]
enum Stage {
    Deferred,
    Waiting { since: Duration },
    Running { granted_at: Duration },
    Overdue { granted_at: Duration },
    Parked,
}

#[derive(Debug)]
struct Entry<T> {
    id: JobId,
    tenant: TenantId,
    resource: u32,
    cost: u32,
    lease: Duration,
    /// When the current lease ends (set at grant, moved by [`Scheduler::renew`]); lease
    /// deadlines that fall due before it are stale.
    lease_until: Duration,
    wait_timeout: Option<Duration>,
    on_wait_timeout: OnWaitTimeout,
    stage: Stage,
    /// Bumped at every enqueue, so a queue position left behind by a requeue is stale.
    epoch: u32,
    payload: Option<T>,
    quota: JobQuota,
    /// The breaker permit of the running attempt (resources with a breaker).
    permit: Option<Permit>,
    /// Attempts granted so far (retries included).
    attempts: u32,
}

#[derive(Debug)]
struct Resource {
    name: ResourceId,
    settings: ResourceSettings,
    pool: SlotPool,
    queue: FairQueue<(JobKey, u32)>,
    queued: u64,
    deferred: u64,
    overdue: u64,
    stats: ResourceStats,
    dirty: bool,
    /// Per-tenant fairness accounting (Jain's index, worst p99 wait).
    tenants: TenantLedger,
    /// Rate limit, breaker, retries, fallback (see `guard.rs`); `None` for plain resources.
    guard: Option<Box<Guard>>,
    /// The wake-up already scheduled in `gates` for this resource, if any.
    gate_wake: Option<Duration>,
}

/// The pure scheduler: see the module docs.
#[derive(Debug)]
pub struct Scheduler<T> {
    config: Config,
    resources: Vec<Resource>,
    by_name: FastMap<ResourceId, u32>,
    jobs: Slab<Entry<T>>,
    waits: Deadlines<JobKey>,
    leases: Deadlines<JobKey>,
    releases: BinaryHeap<Reverse<(Duration, u64, u32)>>,
    /// When a guarded resource wants to be looked at again (limiter refill, breaker
    /// cooldown); lazily deduplicated through `Resource::gate_wake`.
    gates: BinaryHeap<Reverse<(Duration, u32)>>,
    dirty: Vec<u32>,
    next_id: u64,
    waiting: u64,
    quotas: Quotas,
    /// Jobs a quota refused outside `poll`, reported by the next `poll`, and since when.
    refused: Vec<Event<T>>,
    refused_at: Option<Duration>,
}

impl<T> Scheduler<T> {
    /// A scheduler with the given (validated) configuration.
    pub fn new(config: Config) -> Self {
        let config_quotas = config.quotas.clone();
        let mut s = Self {
            config,
            resources: Vec::new(),
            by_name: FastMap::default(),
            jobs: Slab::new(),
            waits: Deadlines::default(),
            leases: Deadlines::default(),
            releases: BinaryHeap::new(),
            gates: BinaryHeap::new(),
            dirty: Vec::new(),
            next_id: 0,
            waiting: 0,
            quotas: Quotas::new(&config_quotas),
            refused: Vec::new(),
            refused_at: None,
        };
        let names: Vec<String> = s.config.resources.keys().cloned().collect();
        for name in names {
            s.resource_index(&ResourceId::new(name));
        }
        for r in 0..s.resources.len() {
            let fallback = s.config.resources[s.resources[r].name.as_str()].fallback.clone();
            let fallback = fallback.and_then(|f| s.by_name.get(&ResourceId::new(f)).copied());
            if let Some(guard) = &mut s.resources[r].guard {
                guard.fallback = fallback;
            }
        }
        s
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Jobs waiting or deferred (what `max_queued` bounds).
    pub fn waiting(&self) -> u64 {
        self.waiting
    }

    /// Slots held now on `resource` (0 for a resource never used).
    pub fn in_flight(&self, resource: &ResourceId) -> u32 {
        self.by_name
            .get(resource)
            .map_or(0, |&i| self.resources[i as usize].pool.held())
    }

    fn resource_index(&mut self, name: &ResourceId) -> u32 {
        if let Some(&i) = self.by_name.get(name) {
            return i;
        }
        let settings = self.config.resource(name.as_str());
        let i = self.resources.len() as u32;
        self.resources.push(Resource {
            name: name.clone(),
            settings,
            pool: SlotPool::new(settings.max_concurrent),
            queue: FairQueue::new(self.config.scheduler.quantum),
            queued: 0,
            deferred: 0,
            overdue: 0,
            stats: ResourceStats::default(),
            dirty: false,
            tenants: TenantLedger::default(),
            guard: Guard::new(name, self.config.resources.get(name.as_str())),
            gate_wake: None,
        });
        self.by_name.insert(name.clone(), i);
        i
    }

    fn mark_dirty(&mut self, r: u32) {
        let res = &mut self.resources[r as usize];
        if !res.dirty {
            res.dirty = true;
            self.dirty.push(r);
        }
    }

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
            self.releases.push(Reverse((release_at, id.0, idx)));
        }
        key
    }

    /// Checks a deferred job's quotas as it becomes eligible; true when it may now wait
    /// for a slot. A refused job is deferred to its retry time (when it waits for quota
    /// and that time is within its wait timeout) or ends `Skipped`, reported by `poll`.
    fn admit(&mut self, key: JobKey, now: Duration) -> bool {
        if self.quotas.is_empty() {
            return true;
        }
        let entry = &mut self.jobs[key.idx as usize];
        if entry.quota.admitted {
            return true; // a retry: admitted (and reserved) once, settled once at its end
        }
        let refusal = match self.quotas.admit(&entry.tenant, entry.quota.estimate, now) {
            Ok(()) => {
                entry.quota.admitted = true;
                return true;
            }
            Err(refusal) => refusal,
        };
        if let QuotaRefusal::NotUntil { retry_after, .. } = &refusal {
            let retry_at = now.saturating_add(*retry_after);
            if entry.quota.wait && retry_at <= entry.quota.deadline {
                self.resources[entry.resource as usize].deferred += 1;
                self.releases.push(Reverse((retry_at, key.id.0, key.idx)));
                return false;
            }
        }
        let entry = self.jobs.remove(key.idx as usize);
        self.waiting -= 1;
        let res = &mut self.resources[entry.resource as usize];
        res.stats.record_outcome(OutcomeKind::Skipped);
        let reason = SkipReason::from(refusal);
        tracing::info!(job = key.id.0, tenant = %entry.tenant, resource = %res.name, %reason, "skip: quota");
        self.refused.push(Event::Skipped {
            key,
            payload: entry.payload.expect("a deferred job has its payload"),
            reason,
        });
        self.refused_at.get_or_insert(now);
        false
    }

    /// An ended job's quota reservation becomes its actual cost (the estimate when it ran
    /// and did not report one; nothing when it never ran).
    fn settle_quota(&mut self, tenant: &TenantId, quota: JobQuota, ran: bool, now: Duration) {
        if !quota.admitted {
            return;
        }
        match (ran, quota.actual) {
            (false, None) => self.quotas.release(tenant, quota.estimate),
            (_, actual) => self
                .quotas
                .settle(tenant, quota.estimate, actual.unwrap_or(quota.estimate), now),
        }
    }

    /// Records the actual cost a running job reports; charged when the job ends.
    pub fn report_cost(&mut self, key: JobKey, cost: u64) -> Result<(), CoreError> {
        let entry = self
            .jobs
            .get_mut(key.idx as usize)
            .filter(|e| e.id == key.id)
            .ok_or(CoreError::UnknownJob)?;
        entry.quota.actual = Some(cost);
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

    /// Puts a deferred or parked job into its tenant's queue.
    fn enqueue(&mut self, key: JobKey, now: Duration) {
        let entry = &mut self.jobs[key.idx as usize];
        entry.stage = Stage::Waiting { since: now };
        entry.epoch = entry.epoch.wrapping_add(1);
        let r = entry.resource;
        let weight = self.config.weight(entry.tenant.as_str());
        let (tenant, cost, wait, epoch) = (entry.tenant.clone(), entry.cost, entry.wait_timeout, entry.epoch);
        let res = &mut self.resources[r as usize];
        res.tenants.enqueued(&tenant, weight);
        res.queue.push(tenant, weight, cost, (key, epoch));
        res.queued += 1;
        if let Some(wait) = wait {
            self.waits.push(now, wait, key);
        }
        self.mark_dirty(r);
    }

    fn live(&self, key: JobKey) -> Option<&Entry<T>> {
        self.jobs.get(key.idx as usize).filter(|e| e.id == key.id)
    }

    /// Processes everything due at `now` (fan-out releases, wait timeouts, lease expiries)
    /// and grants every free slot it can; appends the shell's work to `out`.
    pub fn poll(&mut self, now: Duration, out: &mut Vec<Event<T>>) {
        while let Some(&Reverse((at, id, idx))) = self.releases.peek() {
            if at > now {
                break;
            }
            self.releases.pop();
            let key = JobKey { idx, id: JobId(id) };
            if matches!(self.live(key).map(|e| &e.stage), Some(Stage::Deferred)) {
                let r = self.jobs[idx as usize].resource;
                self.resources[r as usize].deferred -= 1;
                if self.admit(key, now) {
                    self.enqueue(key, now);
                }
            }
        }
        out.append(&mut self.refused);
        self.refused_at = None;
        self.quotas.sweep(now);
        while let Some(&Reverse((at, r))) = self.gates.peek() {
            if at > now {
                break;
            }
            self.gates.pop();
            let res = &mut self.resources[r as usize];
            if res.gate_wake.is_some_and(|w| w <= now) {
                res.gate_wake = None;
            }
            self.mark_dirty(r);
        }
        // Grant before expiring waits: a job whose slot frees at the instant its wait ends
        // is served, not skipped.
        self.grant(now, out);
        while let Some((_, key)) = self.waits.pop_due(now) {
            self.expire_wait(key, now, out);
        }
        while let Some((_, key)) = self.leases.pop_due(now) {
            self.expire_lease(key, now, out);
        }
        self.grant(now, out);
        self.retire_stale_deadlines();
    }

    /// Drops wait and lease deadlines that can no longer fire from the fronts of their
    /// FIFOs, so ended jobs do not leave them behind until they fall due. A deadline is
    /// stale exactly when `expire_wait` / `expire_lease` would ignore it at any later
    /// time: its job ended, left the stage it was set for, or set a newer one.
    fn retire_stale_deadlines(&mut self) {
        let jobs = &self.jobs;
        let live = |key: JobKey| jobs.get(key.idx as usize).filter(|e| e.id == key.id);
        self.waits.retire_stale(|at, key| {
            live(key).map_or(true, |e| match (&e.stage, e.wait_timeout) {
                // Requeued since: a newer deadline was set with the new `since`.
                (Stage::Waiting { since }, Some(wait)) => since.saturating_add(wait) != at,
                _ => true,
            })
        });
        self.leases.retire_stale(|at, key| {
            // Renewed or granted again since: `lease_until` moved past this deadline.
            live(key).map_or(true, |e| {
                !matches!(e.stage, Stage::Running { .. }) || e.lease_until > at
            })
        });
    }

    fn grant(&mut self, now: Duration, out: &mut Vec<Event<T>>) {
        while let Some(r) = self.dirty.pop() {
            self.resources[r as usize].dirty = false;
            if self.resources[r as usize].guard.is_some() {
                self.grant_guarded(r, now, out);
                continue;
            }
            while self.resources[r as usize].pool.has_free() {
                if !self.grant_next(r, None, now, out) {
                    break;
                }
            }
        }
    }

    /// Grants the next waiting job of resource `r` (a free slot was checked); false when
    /// none is waiting.
    fn grant_next(&mut self, r: u32, permit: Option<Permit>, now: Duration, out: &mut Vec<Event<T>>) -> bool {
        let res = &mut self.resources[r as usize];
        let jobs = &self.jobs;
        let next = res.queue.pop_live(|(k, epoch)| {
            jobs.get(k.idx as usize).is_some_and(|e| {
                e.id == k.id && e.epoch == *epoch && matches!(e.stage, Stage::Waiting { .. })
            })
        });
        let Some((_, (key, _))) = next else { return false };
        res.queued -= 1;
        let granted = res.pool.try_grant();
        debug_assert!(granted, "has_free was checked");
        let entry = &mut self.jobs[key.idx as usize];
        let Stage::Waiting { since } = entry.stage else {
            unreachable!("pop_live returns waiting jobs only")
        };
        let waited = now.saturating_sub(since);
        res.stats.record_wait(waited);
        res.tenants.granted(&entry.tenant, entry.cost, waited);
        entry.stage = Stage::Running { granted_at: now };
        entry.permit = permit;
        entry.attempts = entry.attempts.saturating_add(1);
        let wait_left = match entry.on_wait_timeout {
            OnWaitTimeout::Requeue => None,
            OnWaitTimeout::Skip => entry.wait_timeout.map(|w| w.saturating_sub(waited)),
        };
        let lease = entry.lease;
        entry.lease_until = now.saturating_add(lease);
        self.leases.push(now, lease, key);
        self.waiting -= 1;
        tracing::trace!(job = key.id.0, resource = %res.name, ?waited, "grant");
        let payload = entry.payload.take().expect("a waiting job has its payload");
        out.push(Event::Granted {
            key,
            payload,
            lease,
            waited,
            wait_left,
        });
        true
    }

    /// Grants on a resource with policies: each grant passes the breaker and the rate
    /// limit; a refusal schedules one wake-up at the instant the policy named (never a
    /// busy loop); an open breaker sends the waiting jobs to the fallback.
    fn grant_guarded(&mut self, r: u32, now: Duration, out: &mut Vec<Event<T>>) {
        loop {
            let res = &mut self.resources[r as usize];
            if res.queued == 0 {
                return;
            }
            let has_slot = res.pool.has_free();
            let guard = res.guard.as_mut().expect("called for guarded resources");
            match guard.gate(now, has_slot) {
                Gate::Pass(permit) => {
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
                Gate::Limited => return,
            }
        }
    }

    fn wake_at(&mut self, r: u32, at: Duration) {
        let res = &mut self.resources[r as usize];
        if res.gate_wake.is_some_and(|w| w <= at) {
            return;
        }
        res.gate_wake = Some(at);
        self.gates.push(Reverse((at, r)));
    }

    /// The usable fallback of `r` at `now`: configured, and its own breaker not open.
    fn usable_fallback(&mut self, r: u32, now: Duration) -> Option<u32> {
        let f = self.resources[r as usize].guard.as_ref()?.fallback?;
        let open = self.resources[f as usize]
            .guard
            .as_mut()
            .is_some_and(|g| g.is_open(now));
        (!open).then_some(f)
    }

    /// Moves every job waiting on `r` to its fallback (resumed parents stay: they hold
    /// work on `r` already). False when there is no usable fallback.
    fn route_to_fallback(&mut self, r: u32, now: Duration) -> bool {
        let Some(f) = self.usable_fallback(r, now) else {
            return false;
        };
        let mut moved = Vec::new();
        let res = &mut self.resources[r as usize];
        let jobs = &self.jobs;
        while let Some((_, (key, _))) = res.queue.pop_live(|(k, epoch)| {
            jobs.get(k.idx as usize).is_some_and(|e| {
                e.id == k.id && e.epoch == *epoch && matches!(e.stage, Stage::Waiting { .. })
            })
        }) {
            res.queued -= 1;
            moved.push(key);
        }
        for key in moved {
            let entry = &mut self.jobs[key.idx as usize];
            if entry.wait_timeout.is_none() {
                // A resumed parent keeps its place on `r` (without marking `r` dirty,
                // which would route again at once): it waits for the breaker.
                entry.epoch = entry.epoch.wrapping_add(1);
                let weight = self.config.weight(entry.tenant.as_str());
                let res = &mut self.resources[r as usize];
                res.queue
                    .push(entry.tenant.clone(), weight, entry.cost, (key, entry.epoch));
                res.queued += 1;
                continue;
            }
            entry.resource = f;
            let res = &mut self.resources[r as usize];
            res.guard.as_mut().expect("guarded").stats.fallbacks += 1;
            tracing::debug!(job = key.id.0, from = %res.name, "fallback");
            self.enqueue(key, now);
        }
        true
    }

    fn expire_wait(&mut self, key: JobKey, now: Duration, out: &mut Vec<Event<T>>) {
        let Some(entry) = self.jobs.get_mut(key.idx as usize).filter(|e| e.id == key.id) else {
            return;
        };
        let Stage::Waiting { since } = entry.stage else {
            return;
        };
        let Some(wait) = entry.wait_timeout else { return };
        if now.saturating_sub(since) < wait {
            return; // requeued since this deadline was set
        }
        if since == now && entry.on_wait_timeout == OnWaitTimeout::Requeue {
            // A zero wait timeout with Requeue: requeueing would set a deadline due at this
            // same instant and `poll` would never return (found by the fairness suite,
            // issue 4). Rejoining the back of the queue it just joined changes nothing, so
            // the job keeps its place and waits until granted.
            return;
        }
        let r = entry.resource as usize;
        self.resources[r].queued -= 1;
        self.resources[r].tenants.unqueued(&entry.tenant);
        if entry.on_wait_timeout == OnWaitTimeout::Requeue {
            // The old queue position goes stale (its epoch no longer matches); the job
            // rejoins at the back of its tenant's queue with a fresh wait timeout.
            self.enqueue(key, now);
            return;
        }
        let entry = self.jobs.remove(key.idx as usize);
        self.waiting -= 1;
        self.settle_quota(&entry.tenant, entry.quota, false, now);
        let res = &mut self.resources[r];
        res.stats.record_outcome(OutcomeKind::Skipped);
        tracing::info!(job = key.id.0, tenant = %entry.tenant, resource = %res.name, "skip: no slot within the wait timeout");
        out.push(Event::Skipped {
            key,
            payload: entry.payload.expect("a waiting job has its payload"),
            reason: SkipReason::NoSlot,
        });
    }

    fn expire_lease(&mut self, key: JobKey, now: Duration, out: &mut Vec<Event<T>>) {
        let Some(entry) = self.jobs.get_mut(key.idx as usize).filter(|e| e.id == key.id) else {
            return;
        };
        let Stage::Running { granted_at } = entry.stage else {
            return;
        };
        if now < entry.lease_until {
            // A stale deadline: the lease was renewed, or the job was parked and granted
            // again with a fresh lease, since this one was set.
            return;
        }
        entry.stage = Stage::Overdue { granted_at };
        let res = &mut self.resources[entry.resource as usize];
        res.overdue += 1;
        tracing::info!(job = key.id.0, tenant = %entry.tenant, resource = %res.name, "timeout: lease expired, cancelling");
        out.push(Event::LeaseExpired { key });
    }

    /// The job stopped (ran to an end, failed, was cancelled or timed out): its slot
    /// returns and its outcome is counted.
    pub fn complete(&mut self, key: JobKey, outcome: OutcomeKind, now: Duration) -> Result<(), CoreError> {
        let entry = self.live(key).ok_or(CoreError::UnknownJob)?;
        let (granted_at, overdue) = match entry.stage {
            Stage::Running { granted_at } => (Some(granted_at), false),
            Stage::Overdue { granted_at } => (Some(granted_at), true),
            Stage::Parked => (None, false),
            // A parent that resumed (unparked) and stopped before its slot came back.
            Stage::Waiting { .. } if entry.wait_timeout.is_none() => (None, false),
            _ => return Err(CoreError::WrongStage("running or parked")),
        };
        let was_waiting = matches!(entry.stage, Stage::Waiting { .. });
        if was_waiting {
            let r = entry.resource as usize;
            self.waiting -= 1;
            self.resources[r].queued -= 1;
        }
        let entry = self.jobs.remove(key.idx as usize);
        if was_waiting {
            self.resources[entry.resource as usize]
                .tenants
                .unqueued(&entry.tenant);
        }
        self.settle_quota(&entry.tenant, entry.quota, true, now);
        let r = entry.resource;
        let res = &mut self.resources[r as usize];
        if let Some(granted_at) = granted_at {
            res.tenants.released(&entry.tenant);
            res.pool.release().expect("a running job holds a slot");
            res.stats.record_run(now.saturating_sub(granted_at));
        }
        if overdue {
            res.overdue -= 1;
        }
        res.stats.record_outcome(outcome);
        if let Some(guard) = &mut res.guard {
            guard.on_outcome(entry.permit, outcome, now);
        }
        tracing::trace!(job = key.id.0, resource = %res.name, ?outcome, "release");
        self.mark_dirty(r);
        Ok(())
    }

    /// Renews a running job's lease: it now ends at `now + lease` (the job's own lease
    /// length), which this returns. Refused, changing nothing, once the lease has expired
    /// (the job is being stopped and its slot is not given back) or while the job holds
    /// no slot.
    pub fn renew(&mut self, key: JobKey, now: Duration) -> Result<Duration, crate::LeaseError> {
        let entry = self
            .jobs
            .get_mut(key.idx as usize)
            .filter(|e| e.id == key.id)
            .ok_or(crate::LeaseError::Ended)?;
        match entry.stage {
            Stage::Running { .. } if now < entry.lease_until => {}
            // Due but not yet polled: the lease is over even if the event is not out yet.
            Stage::Running { .. } | Stage::Overdue { .. } => return Err(crate::LeaseError::Expired),
            Stage::Parked | Stage::Waiting { .. } | Stage::Deferred => {
                return Err(crate::LeaseError::NotHeld)
            }
        }
        entry.lease_until = now.saturating_add(entry.lease);
        let (lease, until) = (entry.lease, entry.lease_until);
        self.leases.push(now, lease, key);
        Ok(until)
    }

    /// A running job's attempt failed and the shell can run it again: if its resource's
    /// retry policy has an attempt left, the failure is recorded in the breaker, the slot
    /// returns, and the job goes back to `Deferred` until its backoff ends (it holds no
    /// slot while it sleeps, and its wait timeout counts afresh from the release). If
    /// the breaker is open after this failure, the job moves to the fallback at once
    /// when one is usable, and otherwise is not retried.
    ///
    /// Returns the release instant, or gives `payload` back when the job will not run
    /// again: the shell then reports its final outcome with [`Scheduler::complete`].
    /// `retry_after` is the downstream's Retry-After from the failed attempt, if any.
    pub fn retry(
        &mut self,
        key: JobKey,
        payload: T,
        retry_after: Option<Duration>,
        now: Duration,
    ) -> Result<Duration, T> {
        let Some(entry) = self.jobs.get_mut(key.idx as usize).filter(|e| e.id == key.id) else {
            return Err(payload);
        };
        let (granted_at, overdue) = match entry.stage {
            Stage::Running { granted_at } => (granted_at, false),
            Stage::Overdue { granted_at } => (granted_at, true),
            _ => return Err(payload),
        };
        let r = entry.resource;
        let attempts = entry.attempts;
        let Some(guard) = self.resources[r as usize].guard.as_mut() else {
            return Err(payload);
        };
        let Some(delay) = guard.retry_delay(attempts, retry_after) else {
            return Err(payload);
        };
        // The failure counts now; `complete` will find no permit and not count it twice.
        guard.on_outcome(entry.permit.take(), OutcomeKind::Failed, now);
        let (target, release_at) = if guard.is_open(now) {
            match self.usable_fallback(r, now) {
                Some(f) => (f, now),
                None => return Err(payload),
            }
        } else {
            (r, now + delay)
        };
        let entry = &mut self.jobs[key.idx as usize];
        entry.stage = Stage::Deferred;
        entry.payload = Some(payload);
        entry.resource = target;
        self.waiting += 1;
        let res = &mut self.resources[r as usize];
        res.tenants.released(&entry.tenant);
        res.pool.release().expect("a running job holds a slot");
        res.stats.record_run(now.saturating_sub(granted_at));
        if overdue {
            res.overdue -= 1;
        }
        let guard = res.guard.as_mut().expect("checked above");
        guard.stats.retries += 1;
        if target != r {
            guard.stats.fallbacks += 1;
        }
        tracing::debug!(job = key.id.0, resource = %res.name, attempts, ?release_at, "retry");
        self.mark_dirty(r);
        if release_at <= now {
            self.enqueue(key, now);
        } else {
            self.resources[target as usize].deferred += 1;
            self.releases.push(Reverse((release_at, key.id.0, key.idx)));
        }
        Ok(release_at)
    }

    /// The resource a live job is on now (it differs from its spec's after a fallback).
    pub fn resource_of(&self, key: JobKey) -> Option<&ResourceId> {
        self.live(key).map(|e| &self.resources[e.resource as usize].name)
    }

    /// The tenant of a live job.
    pub fn tenant_of(&self, key: JobKey) -> Option<&TenantId> {
        self.live(key).map(|e| &e.tenant)
    }

    /// Attempts granted to a live job so far.
    pub fn attempts(&self, key: JobKey) -> Option<u32> {
        self.live(key).map(|e| e.attempts)
    }

    /// A running parent gives its slot up while it waits for its children.
    pub fn park(&mut self, key: JobKey, now: Duration) -> Result<(), CoreError> {
        let entry = self
            .jobs
            .get_mut(key.idx as usize)
            .filter(|e| e.id == key.id)
            .ok_or(CoreError::UnknownJob)?;
        let Stage::Running { granted_at } = entry.stage else {
            return Err(CoreError::WrongStage("running"));
        };
        entry.stage = Stage::Parked;
        let r = entry.resource;
        let permit = entry.permit.take();
        let res = &mut self.resources[r as usize];
        res.tenants.released(&entry.tenant);
        if let Some(guard) = &mut res.guard {
            guard.forget(permit);
        }
        res.pool.release().expect("a running job holds a slot");
        res.stats.record_run(now.saturating_sub(granted_at));
        self.mark_dirty(r);
        Ok(())
    }

    /// A parked parent asks for a slot again; it waits with no wait timeout (it already
    /// did work that a skip would waste) and is granted with a fresh lease. `payload` is
    /// what [`Event::Granted`] hands back (the shell's waker).
    pub fn unpark(&mut self, key: JobKey, payload: T, now: Duration) -> Result<(), CoreError> {
        let entry = self
            .jobs
            .get_mut(key.idx as usize)
            .filter(|e| e.id == key.id)
            .ok_or(CoreError::UnknownJob)?;
        if !matches!(entry.stage, Stage::Parked) {
            return Err(CoreError::WrongStage("parked"));
        }
        entry.payload = Some(payload);
        entry.wait_timeout = None;
        self.waiting += 1;
        self.enqueue(key, now);
        Ok(())
    }

    /// Cancels a job: removed at once if it has not started, else the shell must stop it.
    pub fn cancel(&mut self, key: JobKey) -> Cancelled<T> {
        let Some(entry) = self.live(key) else {
            return Cancelled::Unknown;
        };
        match entry.stage {
            // A resumed parent has a running task: the shell stops it and completes it.
            Stage::Waiting { .. } if entry.wait_timeout.is_none() => Cancelled::Running,
            Stage::Deferred | Stage::Waiting { .. } => {
                let entry = self.jobs.remove(key.idx as usize);
                self.waiting -= 1;
                if entry.quota.admitted {
                    self.quotas.release(&entry.tenant, entry.quota.estimate);
                }
                let res = &mut self.resources[entry.resource as usize];
                if matches!(entry.stage, Stage::Deferred) {
                    res.deferred -= 1;
                } else {
                    res.queued -= 1;
                    res.tenants.unqueued(&entry.tenant);
                }
                res.stats.record_outcome(OutcomeKind::Cancelled);
                Cancelled::Removed(entry.payload.expect("a waiting job has its payload"))
            }
            _ => Cancelled::Running,
        }
    }

    /// Cancels every job that has not started (shutdown); returns their payloads.
    pub fn cancel_waiting(&mut self) -> Vec<(JobKey, T)> {
        let keys: Vec<JobKey> = self
            .jobs
            .iter()
            .filter(|(_, e)| matches!(e.stage, Stage::Deferred | Stage::Waiting { .. }))
            .map(|(idx, e)| JobKey {
                idx: idx as u32,
                id: e.id,
            })
            .collect();
        keys.into_iter()
            .filter_map(|k| match self.cancel(k) {
                Cancelled::Removed(p) => Some((k, p)),
                _ => None,
            })
            .collect()
    }

    /// Jobs whose task is alive: holding a slot, overdue, parked, or resumed and waiting
    /// for their slot back (what shutdown must stop).
    pub fn started(&self) -> Vec<JobKey> {
        self.jobs
            .iter()
            .filter(|(_, e)| match e.stage {
                Stage::Running { .. } | Stage::Overdue { .. } | Stage::Parked => true,
                // A resumed parent waiting for its slot back still has a live task.
                Stage::Waiting { .. } => e.wait_timeout.is_none(),
                Stage::Deferred => false,
            })
            .map(|(idx, e)| JobKey {
                idx: idx as u32,
                id: e.id,
            })
            .collect()
    }

    /// Jobs not yet ended, in any stage.
    pub fn live_jobs(&self) -> usize {
        self.jobs.len()
    }

    /// The next instant at which [`Scheduler::poll`] has something to do, if any.
    pub fn next_deadline(&self) -> Option<Duration> {
        let release = self.releases.peek().map(|Reverse((at, _, _))| *at);
        let gate = self.gates.peek().map(|Reverse((at, _))| *at);
        [
            release,
            self.waits.next(),
            self.leases.next(),
            self.refused_at,
            gate,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Statistics per resource at `now`.
    pub fn snapshot(&self, now: Duration) -> StatsSnapshot {
        let mut snap = StatsSnapshot {
            at: now,
            ..StatsSnapshot::default()
        };
        for res in &self.resources {
            snap.resources.insert(
                res.name.to_string(),
                ResourceSnapshot {
                    cap: res.pool.cap(),
                    in_flight: res.pool.held(),
                    peak_in_flight: res.pool.peak(),
                    queued: res.queued,
                    deferred: res.deferred,
                    overdue: res.overdue,
                    submitted: res.stats.submitted,
                    outcomes: crate::stats::OutcomeCounts::from_array(res.stats.outcomes),
                    wait: res.stats.wait(),
                    run: res.stats.run(),
                    fairness: res.tenants.snapshot(),
                    resilience: res.guard.as_ref().map(|g| g.snapshot(now)).unwrap_or_default(),
                },
            );
        }
        snap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn granted(events: &mut Vec<Event<u32>>) -> Vec<(JobKey, u32)> {
        events
            .drain(..)
            .filter_map(|e| match e {
                Event::Granted { key, payload, .. } => Some((key, payload)),
                _ => None,
            })
            .collect()
    }

    fn core(cap: u32, lease: Duration) -> Scheduler<u32> {
        let mut config = Config::default();
        config.scheduler.max_concurrent = cap;
        config.scheduler.slot_lease_timeout = lease;
        Scheduler::new(config)
    }

    #[test]
    fn a_lease_deadline_of_an_earlier_grant_does_not_expire_a_regrant() {
        let mut s = core(1, ms(100));
        let mut ev = Vec::new();
        let key = s.submit(JobSpec::new("t", "r"), 1, ms(0));
        s.poll(ms(0), &mut ev);
        assert_eq!(granted(&mut ev).len(), 1);
        s.park(key, ms(10)).unwrap();
        s.unpark(key, 2, ms(50)).unwrap();
        s.poll(ms(50), &mut ev);
        assert_eq!(granted(&mut ev), vec![(key, 2)]);
        // The first grant's deadline (100 ms) passes: the regrant (lease until 150 ms) stands.
        s.poll(ms(120), &mut ev);
        assert!(ev.is_empty(), "{ev:?}");
        s.poll(ms(150), &mut ev);
        assert!(matches!(ev.as_slice(), [Event::LeaseExpired { key: k }] if *k == key));
    }

    #[test]
    fn lease_expiry_keeps_the_slot_until_the_job_stops() {
        let mut s = core(1, ms(100));
        let mut ev = Vec::new();
        let first = s.submit(JobSpec::new("t", "r"), 1, ms(0));
        s.submit(JobSpec::new("t", "r").wait_timeout(ms(1000)), 2, ms(0));
        s.poll(ms(0), &mut ev);
        ev.clear();
        s.poll(ms(100), &mut ev);
        assert!(matches!(ev.as_slice(), [Event::LeaseExpired { .. }]));
        ev.clear();
        s.poll(ms(200), &mut ev);
        assert!(
            granted(&mut ev).is_empty(),
            "no second grant while the first has not stopped"
        );
        s.complete(first, OutcomeKind::TimedOut, ms(250)).unwrap();
        s.poll(ms(250), &mut ev);
        assert_eq!(granted(&mut ev).len(), 1);
        assert_eq!(
            s.complete(first, OutcomeKind::Completed, ms(260)),
            Err(CoreError::UnknownJob)
        );
    }

    #[test]
    fn wait_timeout_skips_and_requeue_keeps_waiting() {
        let mut s = core(1, ms(10_000));
        let mut ev = Vec::new();
        s.submit(JobSpec::new("t", "r"), 1, ms(0));
        s.submit(JobSpec::new("t", "r").wait_timeout(ms(100)), 2, ms(0));
        s.submit(
            JobSpec::new("t", "r")
                .wait_timeout(ms(100))
                .requeue_on_wait_timeout(),
            3,
            ms(0),
        );
        s.poll(ms(0), &mut ev);
        ev.clear();
        s.poll(ms(100), &mut ev);
        assert!(matches!(
            ev.as_slice(),
            [Event::Skipped {
                payload: 2,
                reason: SkipReason::NoSlot,
                ..
            }]
        ));
        assert_eq!(s.waiting(), 1, "the requeued job still waits");
        let snap = s.snapshot(ms(100));
        assert_eq!(snap.resources["r"].outcomes.skipped, 1);
        assert_eq!(snap.resources["r"].queued, 1);
    }
}
