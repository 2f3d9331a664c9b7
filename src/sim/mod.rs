//! A deterministic virtual-time driver of the pure [`Scheduler`]: it runs a scripted or
//! generated [`Workload`] (arrivals, tenants, costs, service times, caps) through the
//! real core (slot pools, fair queues, leases, wait timeouts) with no threads and no
//! clock, and records a [`Trace`] of every arrival, grant, lease expiry and end with its
//! virtual time.
//!
//! The driver plays the runtime shell's part: it submits each job at its arrival time,
//! carries out the core's events (a granted job "runs" for its service time; a job whose
//! lease expires is stopped at once and ends `TimedOut`) and jumps virtual time to the
//! next instant something is due: an arrival, the end of a running job, or the core's
//! own [`Scheduler::next_deadline`]. Nothing in it reads a clock or a random source, so
//! one workload gives one trace; [`Workload::generate`] makes workloads from a seed.
//!
//! ```
//! use std::time::Duration;
//! use weir::sim::{self, Order, SimJob, TraceKind, Workload};
//!
//! let ms = Duration::from_millis;
//! let mut w = Workload::new(1); // one slot
//! w.push(SimJob::new("big", ms(0), ms(10)));
//! w.push(SimJob::new("big", ms(0), ms(10)));
//! w.push(SimJob::new("small", ms(0), ms(10)));
//! let trace = sim::run(&w, Order::Fair);
//! let granted: Vec<u32> = trace
//!     .events
//!     .iter()
//!     .filter(|e| e.kind == TraceKind::Granted)
//!     .map(|e| e.job)
//!     .collect();
//! assert_eq!(granted, vec![0, 2, 1]); // the small tenant is not held behind the big one
//! assert_eq!(trace.end, ms(30));
//! ```
//!
//! Hand-written: it is the shell half of weir's own core, and no simulation crate knows
//! the core's events.

mod check;
mod metrics;
mod workload;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

pub use check::{
    check_all, check_cap, check_deterministic, check_fair_share, check_no_starvation, check_one_outcome,
    check_work_conserving, fair_share_bound, starvation_bound, Property, Violation,
};
pub use metrics::{fairness_report, FairnessReport};
pub use workload::{SimJob, Workload, WorkloadShape};

use crate::job::{OutcomeKind, TenantId};
use crate::scheduler::{Event, JobKey, Scheduler};
use crate::stats::StatsSnapshot;

/// How the driver lets the core order waiting jobs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// The core's fair queue: weighted deficit round robin across tenants.
    #[default]
    Fair,
    /// Plain FIFO, the baseline the fairness suite must catch: every job is submitted
    /// under one tenant, so the core's queue degenerates to arrival order. The trace
    /// still names each job's real tenant.
    Fifo,
}

/// What happened to a job at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceKind {
    /// The job arrived and started waiting for a slot.
    Arrived,
    /// The job was granted a slot.
    Granted,
    /// The job's lease expired; the driver stops it at once (an `Ended(TimedOut)` follows
    /// at the same instant).
    LeaseExpired,
    /// The job reached its terminal outcome (its slot, if any, is free again).
    Ended(OutcomeKind),
}

/// One entry of a [`Trace`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// Virtual time since the start of the run.
    pub at: Duration,
    /// Index of the job in [`Workload::jobs`].
    pub job: u32,
    /// What happened.
    pub kind: TraceKind,
}

/// Everything a run did, in the order it happened (times never decrease).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// The events.
    pub events: Vec<TraceEvent>,
    /// Virtual time of the last event.
    pub end: Duration,
    /// The core's statistics at the end of the run.
    pub stats: StatsSnapshot,
}

impl Trace {
    /// Jobs granted a slot.
    pub fn grants(&self) -> usize {
        self.events
            .iter()
            .filter(|e| e.kind == TraceKind::Granted)
            .count()
    }
}

/// The single tenant every job is filed under with [`Order::Fifo`].
const FIFO_TENANT: &str = "fifo (all tenants)";

/// Runs `workload` to the end (every job reaches its outcome) and returns its trace.
pub fn run(workload: &Workload, order: Order) -> Trace {
    Driver::new(workload, order).run()
}

struct Driver<'w> {
    workload: &'w Workload,
    order: Order,
    core: Scheduler<u32>,
    /// Job indices by arrival time (stable: ties keep workload order).
    arrivals: Vec<u32>,
    next_arrival: usize,
    /// (end time, job) of granted jobs; an entry whose job was stopped early is stale.
    ends: BinaryHeap<Reverse<(Duration, u32)>>,
    /// The core's key of each job while it holds a slot.
    running: Vec<Option<JobKey>>,
    /// Job index by the core's dense key index (for `LeaseExpired`, which has no payload).
    by_key: Vec<u32>,
    fifo_tenant: TenantId,
    events: Vec<Event<u32>>,
    trace: Vec<TraceEvent>,
}

impl<'w> Driver<'w> {
    fn new(workload: &'w Workload, order: Order) -> Self {
        let mut arrivals: Vec<u32> = (0..workload.jobs.len() as u32).collect();
        arrivals.sort_by_key(|&j| workload.jobs[j as usize].arrival);
        Self {
            workload,
            order,
            core: Scheduler::new(workload.config.clone()),
            arrivals,
            next_arrival: 0,
            ends: BinaryHeap::new(),
            running: vec![None; workload.jobs.len()],
            by_key: Vec::new(),
            fifo_tenant: TenantId::new(FIFO_TENANT),
            events: Vec::new(),
            trace: Vec::with_capacity(workload.jobs.len() * 3),
        }
    }

    fn next_instant(&self) -> Option<Duration> {
        let arrival = self
            .arrivals
            .get(self.next_arrival)
            .map(|&j| self.workload.jobs[j as usize].arrival);
        let end = self.ends.peek().map(|Reverse((at, _))| *at);
        [arrival, end, self.core.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    fn record(&mut self, at: Duration, job: u32, kind: TraceKind) {
        self.trace.push(TraceEvent { at, job, kind });
    }

    fn run(mut self) -> Trace {
        let mut now = Duration::ZERO;
        while let Some(at) = self.next_instant() {
            now = now.max(at);
            self.finish_due(now);
            self.arrive_due(now);
            self.poll(now);
        }
        let end = self.trace.last().map_or(Duration::ZERO, |e| e.at);
        Trace {
            stats: self.core.snapshot(now),
            events: self.trace,
            end,
        }
    }

    /// Jobs whose service time is over end with their scripted outcome.
    fn finish_due(&mut self, now: Duration) {
        while let Some(&Reverse((at, job))) = self.ends.peek() {
            if at > now {
                break;
            }
            self.ends.pop();
            if let Some(key) = self.running[job as usize].take() {
                let outcome = self.workload.jobs[job as usize].outcome;
                self.core
                    .complete(key, outcome, now)
                    .expect("a running job completes once");
                self.record(now, job, TraceKind::Ended(outcome));
            }
        }
    }

    fn arrive_due(&mut self, now: Duration) {
        while let Some(&job) = self.arrivals.get(self.next_arrival) {
            let sim_job = &self.workload.jobs[job as usize];
            if sim_job.arrival > now {
                break;
            }
            self.next_arrival += 1;
            let mut spec = sim_job.spec();
            if self.order == Order::Fifo {
                spec.tenant = self.fifo_tenant.clone();
            }
            let key = self.core.submit(spec, job, now);
            if self.by_key.len() <= key.index() {
                self.by_key.resize(key.index() + 1, u32::MAX);
            }
            self.by_key[key.index()] = job;
            self.record(now, job, TraceKind::Arrived);
        }
    }

    /// Polls the core until it has nothing more to do at `now`, carrying out its events.
    fn poll(&mut self, now: Duration) {
        loop {
            self.core.poll(now, &mut self.events);
            if self.events.is_empty() {
                break;
            }
            let mut events = std::mem::take(&mut self.events);
            for event in events.drain(..) {
                match event {
                    Event::Granted {
                        key, payload: job, ..
                    } => {
                        self.record(now, job, TraceKind::Granted);
                        self.running[job as usize] = Some(key);
                        let service = self.workload.jobs[job as usize].service;
                        self.ends.push(Reverse((now.saturating_add(service), job)));
                    }
                    Event::Skipped { payload: job, .. } => {
                        self.record(now, job, TraceKind::Ended(OutcomeKind::Skipped));
                    }
                    // The simulator shares no slots across replicas, so it never asks the
                    // core to wait for global leases.
                    Event::LeaseWanted { .. } => unreachable!("no resource requires a global lease"),
                    Event::QuotaWanted { .. } | Event::QuotaSettled { .. } => {
                        unreachable!("the simulator keeps every quota in process")
                    }
                    Event::LeaseExpired { key } => {
                        let job = self.by_key[key.index()];
                        self.record(now, job, TraceKind::LeaseExpired);
                        // The shell stops the job at once; its slot comes back now.
                        self.running[job as usize] = None;
                        self.core
                            .complete(key, OutcomeKind::TimedOut, now)
                            .expect("an overdue job completes once");
                        self.record(now, job, TraceKind::Ended(OutcomeKind::TimedOut));
                    }
                }
            }
            self.events = events;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::OnWaitTimeout;

    #[test]
    fn requeue_with_a_zero_wait_timeout_does_not_spin() {
        let ms = Duration::from_millis;
        let mut w = Workload::new(1);
        w.push(SimJob::new("a", ms(0), ms(5)));
        let mut late = SimJob::new("b", ms(1), ms(5));
        late.wait_timeout = Some(Duration::ZERO);
        late.on_wait_timeout = OnWaitTimeout::Requeue;
        w.push(late);
        let trace = run(&w, Order::Fair);
        check_all(&w, &trace).unwrap();
        assert_eq!(trace.grants(), 2);
    }
}
