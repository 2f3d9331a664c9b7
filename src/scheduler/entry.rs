//! A job's entry in the core and the stage it is in, and the per-resource state.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use crate::adaptive::AdaptiveLimit;
use crate::breaker::Permit;
use crate::config::ResourceSettings;
use crate::fair::FairQueue;
use crate::guard::Guard;
use crate::job::{JobId, OnWaitTimeout, ResourceId, TenantId};
use crate::limit::quota::JobQuota;
use crate::pool::SlotPool;
use crate::stats::ResourceStats;
use crate::tenant_ledger::TenantLedger;

use super::JobKey;
#[cfg(doc)]
use super::Scheduler;

/// Where a job is between its submission and its end. Each stage says what the job holds
/// (a slot, a payload, a live task) and which deadlines apply to it; the deadlines in the
/// timer table are checked against it when they fall due.
#[derive(Debug)]
pub(super) enum Stage {
    /// Not yet eligible for a slot: a fan-out batch, a quota retry or a retry backoff
    /// releases it (`Timer::Release`). Holds its payload; no task.
    Deferred,
    /// Passed the in-process quotas and waits for the shared ones' answer from Redis
    /// (`Event::QuotaWanted` went out); a release timer at its wait deadline bounds the
    /// wait. Holds its payload; no task; not in a queue.
    QuotaWait,
    /// In its tenant's queue since `since`, under its wait timeout (`Timer::Wait`, when it
    /// has one). Holds its payload; no task.
    Waiting { since: Duration },
    /// A parked parent that asked for its slot back after a join, in its tenant's queue
    /// since `since`. Its task is alive (awaiting the payload, a waker), so it has no wait
    /// timeout (a skip would waste the work it did), is never moved to a fallback (its
    /// work is on this resource) and a cancel must stop its task.
    Resuming { since: Duration },
    /// Holds a local slot on a resource whose slots are shared across replicas, and waits
    /// for a global lease before it starts (`Event::LeaseWanted` went out). It was granted
    /// at [`Entry::granted_at`]: not stored here, so that this stage is no larger than the
    /// others (the entry is on the grant path of every job). The core keeps its payload. Its lease runs from the local grant, and a
    /// fresh job (not `resumed`) that skips on wait timeout is skipped at its wait
    /// deadline (`since + wait_timeout`, the deadline it had in the queue) or when its
    /// lease ends, whichever comes first; a `resumed` parent has a live task and no wait
    /// timeout, and at its lease's end it is stopped (`Overdue`).
    LeaseWait { since: Duration, resumed: bool },
    /// Holds a slot granted at `granted_at`, under its lease (`Timer::Lease`).
    Running { granted_at: Duration },
    /// Its lease expired: the shell is stopping it; it keeps the slot until it stops.
    Overdue { granted_at: Duration },
    /// A parent that gave its slot up while it waits for children; its task is alive.
    Parked,
}

#[derive(Debug)]
pub(super) struct Entry<T> {
    pub(super) id: JobId,
    pub(super) tenant: TenantId,
    pub(super) resource: u32,
    /// The resource it was submitted to (`resource` differs after a fallback): while
    /// that one's breaker is closed and it has a free slot, it takes the job back
    /// (`routing.rs`).
    pub(super) home: u32,
    pub(super) cost: u32,
    pub(super) lease: Duration,
    /// When the current lease ends (set at grant, moved by [`Scheduler::renew`]); lease
    /// deadlines that fall due before it are stale.
    pub(super) lease_until: Duration,
    pub(super) wait_timeout: Option<Duration>,
    pub(super) on_wait_timeout: OnWaitTimeout,
    pub(super) stage: Stage,
    /// Bumped at every enqueue, so a queue position left behind by a requeue is stale.
    pub(super) epoch: u32,
    pub(super) payload: Option<T>,
    pub(super) quota: JobQuota,
    /// The breaker permit of the running attempt (resources with a breaker).
    pub(super) permit: Option<Permit>,
    /// Attempts granted so far (retries included).
    pub(super) attempts: u32,
    /// The number of its latest grant among its resource's grants (1 for the first):
    /// an adaptive limit ignores a drop from a call granted before its last cut.
    pub(super) grant: u64,
    /// Holds a global lease ([`Scheduler::lease_granted`]) until it parks, retries, ends
    /// or loses it ([`Scheduler::lease_lost`]).
    pub(super) global_lease: bool,
}

impl<T> Entry<T> {
    /// When a job waiting for a global lease was granted its local slot: its lease runs
    /// from then and cannot be renewed while it waits, so `lease_until - lease` is that
    /// instant (short of a lease so long that `lease_until` saturated, where only the
    /// run time recorded in stats is off).
    pub(super) fn granted_at(&self) -> Duration {
        self.lease_until.saturating_sub(self.lease)
    }
}

/// A job's place in its tenant's queue: its key and the epoch it was queued in, laid out
/// flat. Every waiting job has one: `(JobKey, u32)` pads to 24 bytes (32 with the queue's
/// cost beside it), this is 16 (24).
#[derive(Clone, Copy, Debug)]
pub(super) struct Queued {
    pub(super) id: JobId,
    pub(super) idx: u32,
    /// The entry's `epoch` when it was queued; a different one now means a stale place.
    pub(super) epoch: u32,
}

impl Queued {
    pub(super) fn new(key: JobKey, epoch: u32) -> Self {
        Self {
            id: key.id,
            idx: key.idx,
            epoch,
        }
    }

    pub(super) fn key(self) -> JobKey {
        JobKey {
            idx: self.idx,
            id: self.id,
        }
    }

    /// Whether this place is still the job's: the entry at `idx` is the job's, queued in
    /// this epoch, and waiting.
    pub(super) fn is_live<T>(&self, jobs: &slab::Slab<Entry<T>>) -> bool {
        jobs.get(self.idx as usize).is_some_and(|e| {
            e.id == self.id
                && e.epoch == self.epoch
                && matches!(e.stage, Stage::Waiting { .. } | Stage::Resuming { .. })
        })
    }
}

#[derive(Debug)]
pub(super) struct Resource {
    pub(super) name: ResourceId,
    pub(super) settings: ResourceSettings,
    pub(super) pool: SlotPool,
    pub(super) queue: FairQueue<Queued>,
    pub(super) queued: u64,
    pub(super) deferred: u64,
    pub(super) overdue: u64,
    pub(super) stats: ResourceStats,
    pub(super) dirty: bool,
    /// Per-tenant fairness accounting (Jain's index, worst p99 wait).
    pub(super) tenants: TenantLedger,
    /// Rate limit, breaker, retries, fallback (see `guard.rs`); `None` for plain resources.
    pub(super) guard: Option<Box<Guard>>,
    /// Its slots are shared across replicas: a local grant waits for a global lease
    /// ([`Scheduler::require_global_lease`]).
    pub(super) global: bool,
    /// The limit that follows the downstream (`[resources.NAME.adaptive]`); it sets the
    /// pool's cap, under `settings.max_concurrent`. `None` for a fixed cap.
    pub(super) adaptive: Option<Box<AdaptiveLimit>>,
    /// The wake-up already scheduled in the timer table (`Timer::Gate`) for this resource, if any.
    pub(super) gate_wake: Option<Duration>,
    /// Jobs this resource sent to its fallback while its breaker was open, oldest
    /// submission first (`(job id, slab index)`); entries of jobs that have since
    /// started or ended are dropped when met (`routing.rs`).
    pub(super) lent: BinaryHeap<Reverse<(u64, u32)>>,
}
