//! The scheduler core: slot pools, fair queues, fan-out release times, wait timeouts and
//! leases, as one state machine driven by calls that carry an explicit `now`.
//!
//! # Implementation details
//!
//! The runtime shell (the Supervisor actor) owns one `Scheduler` and is the only code that
//! calls it, so nothing here is shared between threads. A job moves through
//! `Deferred -> Waiting -> Running -> (Overdue) -> done`, or from `Running` to `Parked`
//! and through `Resuming` back to `Running` when a parent gives its slot up while it
//! waits for children. On a resource whose slots are shared across replicas, a granted
//! job passes through `LeaseWait` (holding its local slot) until it holds a global lease
//! (`lease_wait.rs`). `entry.rs` documents each stage.
//!
//! * A slot is taken only in [`Scheduler::poll`], only while the resource's pool has one
//!   free, and only for a job that is `Waiting` or `Resuming`; it is returned only in
//!   [`Scheduler::complete`] or [`Scheduler::park`]. Lease expiry does **not** return the
//!   slot: it reports [`Event::LeaseExpired`] so the shell cancels the job, and the slot
//!   comes back when the shell confirms the job has stopped. A job that cannot be stopped
//!   (a blocking body) therefore keeps its slot, and the cap holds from the downstream's
//!   point of view.
//! * Wait timeouts and leases are lazy: an entry's deadline is checked against its current
//!   stage when it falls due, so a job that was granted before its wait timeout costs
//!   nothing to "unschedule".
//! * The core never sleeps: [`Scheduler::next_deadline`] says when it next needs a call,
//!   the least deadline of one timer table (`timers.rs`) for every kind of deadline.

mod adaptive;
mod admission;
mod entry;
mod grant;
mod lease_wait;
mod lifecycle;
mod limits;
mod quota_wait;
mod reconfigure;
#[cfg(test)]
mod refusal_tests;
mod routing;
#[cfg(test)]
mod tests;
mod timers;

use std::time::Duration;

use slab::Slab;

use crate::adaptive::AdaptiveLimit;
use crate::config::Config;
use crate::fair::FairQueue;
use crate::guard::Guard;
use crate::hash::FastMap;
use crate::job::{JobId, OnWaitTimeout, ResourceId, SkipReason, TenantId};
use crate::limit::quota::Quotas;
use crate::pool::SlotPool;
use crate::stats::{ResourceSnapshot, ResourceStats, StatsSnapshot};
use crate::tenant_ledger::TenantLedger;

use entry::{Entry, Resource, Stage};
pub use lease_wait::LeaseRefusal;
pub use quota_wait::SharedQuotaOutcome;
use timers::TimerTable;

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
        /// Its resource (the job's entry is gone by now, so the shell cannot ask).
        resource: ResourceId,
        /// Why.
        reason: SkipReason,
    },
    /// The job was granted a local slot of a resource whose slots are shared across
    /// replicas ([`Scheduler::require_global_lease`]) and must hold a global lease on
    /// `resource` before it starts: ask the shared pool, then report its answer with
    /// [`Scheduler::lease_granted`] (an [`Event::Granted`] follows), [`Scheduler::lease_refused`]
    /// or, later, [`Scheduler::lease_lost`]. The job holds its local slot meanwhile and the
    /// core keeps its payload. The core ends the wait itself: at the job's own wait timeout
    /// or at the end of its lease (which runs from the local grant) it reports
    /// [`Event::Skipped`] with [`SkipReason::NoSlot`] (a resuming parent is never skipped:
    /// at its lease's end it reports [`Event::LeaseExpired`]); the shell then forgets its
    /// request for a lease.
    LeaseWanted {
        /// The job.
        key: JobKey,
        /// The resource whose lease to take: the one the job was granted on, which after
        /// a fallback is not the one it was submitted to.
        resource: ResourceId,
        /// A parked parent resuming after a join (it left the queue long ago), not a
        /// fresh job that leaves it now.
        resumed: bool,
    },
    /// The job passed the in-process quotas and waits for the quotas shared through
    /// Redis ([`Scheduler::require_shared_quotas`]): ask the shared store whether
    /// `tenant` may be admitted with `estimate` (counting it there when it may), then
    /// report the answer with [`Scheduler::quota_admitted`], [`Scheduler::quota_refused`]
    /// or [`Scheduler::quota_unavailable`]. The core keeps the payload; at the job's wait
    /// deadline it stops waiting by itself (the failure policy decides).
    QuotaWanted {
        /// The job.
        key: JobKey,
        /// Whose quota.
        tenant: TenantId,
        /// The job's estimated cost, reserved in the shared cost budgets.
        estimate: u64,
    },
    /// A job admitted by the shared quotas ended having reported a cost other than the
    /// estimate Redis charged to the shared cost budgets: replace that charge by `actual`
    /// (nothing to answer; if it fails, the estimate stays charged).
    QuotaSettled {
        /// The job (it has ended; its key names the charge).
        key: JobKey,
        /// Whose budgets.
        tenant: TenantId,
        /// What was charged at admission.
        estimate: u64,
        /// What the job reported.
        actual: u64,
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
    /// [`Scheduler::complete`] with [`OutcomeKind::Cancelled`](crate::OutcomeKind::Cancelled).
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

/// The pure scheduler: see the module docs.
#[derive(Debug)]
pub struct Scheduler<T> {
    config: Config,
    resources: Vec<Resource>,
    by_name: FastMap<ResourceId, u32>,
    jobs: Slab<Entry<T>>,
    /// Everything that falls due: releases, gate wake-ups, waits, leases, and the
    /// events queued for the next poll.
    timers: TimerTable,
    dirty: Vec<u32>,
    next_id: u64,
    waiting: u64,
    quotas: Quotas,
    /// Quotas decided by the shell's Redis store, when it carries them.
    shared_quotas: Option<Box<quota_wait::SharedQuotas>>,
    /// Events decided outside `poll` (a quota refusal at submission, an answer about a
    /// global lease), reported by the next `poll` (`Timer::Pending` says since when).
    pending: Vec<Event<T>>,
    /// Live configuration changes applied so far ([`Scheduler::reconfigure`],
    /// [`Scheduler::set_max_concurrent`]).
    reconfigurations: u64,
    /// Cost charged against the cost budgets so far (each admitted job's actual cost, or
    /// its estimate when it ran without reporting one), counted once per job.
    cost_charged: u64,
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
            timers: TimerTable::default(),
            dirty: Vec::new(),
            next_id: 0,
            waiting: 0,
            quotas: Quotas::new(&config_quotas),
            shared_quotas: None,
            pending: Vec::new(),
            reconfigurations: 0,
            cost_charged: 0,
        };
        let names: Vec<String> = s.config.resources.keys().cloned().collect();
        for name in names {
            s.resource_index(&ResourceId::new(name));
        }
        s.resolve_fallbacks();
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
        let adaptive = self
            .config
            .resources
            .get(name.as_str())
            .and_then(|r| r.adaptive.as_ref())
            .map(|a| Box::new(AdaptiveLimit::new(a, settings.max_concurrent)));
        let cap = adaptive.as_ref().map_or(settings.max_concurrent, |a| a.limit());
        self.resources.push(Resource {
            name: name.clone(),
            settings,
            pool: SlotPool::new(cap),
            adaptive,
            queue: FairQueue::new(self.config.scheduler.quantum),
            queued: 0,
            deferred: 0,
            overdue: 0,
            stats: ResourceStats::default(),
            dirty: false,
            tenants: TenantLedger::default(),
            // A resource is made on first use, where no `now` is at hand: a learned rate
            // counts its first increase steps from zero, which only lets its slow start
            // grow sooner (a step stays under half the rate).
            guard: Guard::new(name, self.config.resources.get(name.as_str()), Duration::ZERO),
            global: false,
            gate_wake: None,
            lent: Default::default(),
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

    /// The entry `key` names, if that job is still live (its slab index may have been
    /// reused by a later job, whose id differs).
    fn live(&self, key: JobKey) -> Option<&Entry<T>> {
        self.jobs.get(key.idx as usize).filter(|e| e.id == key.id)
    }

    /// [`Self::live`], mutable. It takes the slab, not `self`, so a caller may hold the
    /// entry while it updates the resources beside it.
    fn live_mut(jobs: &mut Slab<Entry<T>>, key: JobKey) -> Option<&mut Entry<T>> {
        jobs.get_mut(key.idx as usize).filter(|e| e.id == key.id)
    }

    /// Processes everything due at `now` (fan-out releases, wait timeouts, lease expiries)
    /// and grants every free slot it can; appends the shell's work to `out`.
    pub fn poll(&mut self, now: Duration, out: &mut Vec<Event<T>>) {
        while let Some(key) = self.timers.pop_release(now) {
            match self.live(key).map(|e| &e.stage) {
                Some(Stage::Deferred) => {
                    let r = self.jobs[key.idx as usize].resource;
                    self.resources[r as usize].deferred -= 1;
                    if self.admit(key, now) {
                        self.enqueue(key, now);
                    }
                }
                Some(Stage::QuotaWait) => {
                    self.quota_wait_due(key, now);
                }
                _ => {}
            }
        }
        out.append(&mut self.pending);
        self.timers.clear_pending();
        self.quotas.sweep(now);
        if let Some(shared) = &mut self.shared_quotas {
            shared.sweep(now);
        }
        while let Some(r) = self.timers.pop_gate(now) {
            let res = &mut self.resources[r as usize];
            if res.gate_wake.is_some_and(|w| w <= now) {
                res.gate_wake = None;
            }
            self.mark_dirty(r);
        }
        // Grant before expiring waits: a job whose slot frees at the instant its wait ends
        // is served, not skipped.
        self.grant(now, out);
        while let Some(key) = self.timers.pop_wait(now) {
            self.expire_wait(key, now, out);
        }
        while let Some(key) = self.timers.pop_lease(now) {
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
        self.timers.retire_stale(
            |at, key| {
                live(key).is_none_or(|e| match (&e.stage, e.wait_timeout) {
                    // Requeued since: a newer deadline was set with the new `since`.
                    (Stage::Waiting { since }, Some(wait)) => since.saturating_add(wait) != at,
                    // The queue's wait deadline bounds the wait for a global lease too (see
                    // `expire_wait`).
                    (
                        Stage::LeaseWait {
                            since,
                            resumed: false,
                            ..
                        },
                        Some(wait),
                    ) if e.on_wait_timeout == OnWaitTimeout::Skip => since.saturating_add(wait) != at,
                    _ => true,
                })
            },
            |at, key| {
                // Renewed or granted again since: `lease_until` moved past this deadline.
                live(key).is_none_or(|e| {
                    !matches!(e.stage, Stage::Running { .. } | Stage::LeaseWait { .. }) || e.lease_until > at
                })
            },
        );
    }

    /// The resource a live job is on now (it differs from its spec's after a fallback).
    pub fn resource_of(&self, key: JobKey) -> Option<&ResourceId> {
        self.live(key).map(|e| &self.resources[e.resource as usize].name)
    }

    /// A small dense index of a live job's resource (resources are numbered in the order
    /// they first received work, and keep their number), for a shell's per-resource side
    /// tables.
    pub fn resource_index_of(&self, key: JobKey) -> Option<usize> {
        self.live(key).map(|e| e.resource as usize)
    }

    /// The state of `resource`'s circuit breaker, if it has one (and has seen work): what
    /// a shell reads to word a refusal without taking a whole snapshot.
    pub fn breaker_state(&self, resource: &ResourceId) -> Option<crate::BreakerState> {
        let res = &self.resources[*self.by_name.get(resource)? as usize];
        res.guard.as_ref()?.breaker_state()
    }

    /// The resource with the index [`Scheduler::resource_index_of`] gives.
    pub fn resource_at(&self, index: usize) -> Option<&ResourceId> {
        self.resources.get(index).map(|r| &r.name)
    }

    /// The tenant of a live job.
    pub fn tenant_of(&self, key: JobKey) -> Option<&TenantId> {
        self.live(key).map(|e| &e.tenant)
    }

    /// When a live job that holds a slot was granted it (time since start); `None` for a
    /// job that holds none (waiting, deferred, parked). For the shell's run-time metric.
    pub fn held_since(&self, key: JobKey) -> Option<Duration> {
        let entry = self.live(key)?;
        match entry.stage {
            Stage::Running { granted_at } | Stage::Overdue { granted_at } => Some(granted_at),
            Stage::LeaseWait { .. } => Some(entry.granted_at()),
            _ => None,
        }
    }

    /// Attempts granted to a live job so far.
    pub fn attempts(&self, key: JobKey) -> Option<u32> {
        self.live(key).map(|e| e.attempts)
    }

    /// Jobs whose task is alive: holding a slot, overdue, parked, or resumed and waiting
    /// for their slot back (what shutdown must stop).
    pub fn started(&self) -> Vec<JobKey> {
        self.jobs
            .iter()
            .filter(|(_, e)| match e.stage {
                Stage::Running { .. } | Stage::Overdue { .. } | Stage::Parked | Stage::Resuming { .. } => {
                    true
                }
                // A resuming parent waiting for its global lease has a live task.
                Stage::LeaseWait { resumed, .. } => resumed,
                Stage::Waiting { .. } | Stage::Deferred | Stage::QuotaWait => false,
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
        self.timers.next_timeout()
    }

    /// Statistics per resource at `now`.
    pub fn snapshot(&self, now: Duration) -> StatsSnapshot {
        let mut snap = StatsSnapshot {
            at: now,
            quota_tenants: self.quotas.tracked_tenants() as u64,
            reconfigurations: self.reconfigurations,
            ..StatsSnapshot::default()
        };
        for res in &self.resources {
            snap.resources.insert(
                res.name.to_string(),
                ResourceSnapshot {
                    cap: res.settings.max_concurrent,
                    limit: res.pool.cap(),
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
