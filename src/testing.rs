//! The fairness suite for users (cargo feature `testing`): proptest strategies that
//! generate workloads, and a check that runs one through the virtual-time driver and
//! asserts weir's properties on its trace, so you can search for counterexamples with
//! your own weights, caps and job mixes.
//!
//! The properties are those of [`crate::sim`]'s checks: the cap holds per resource, every
//! job reaches exactly one outcome, no tenant starves beyond
//! [`starvation_bound`](crate::sim::starvation_bound), backlogged tenants' granted units
//! stay within [`fair_share_bound`](crate::sim::fair_share_bound) of each other's
//! weighted share, no slot idles while a job waits, and a run repeats exactly.
//!
//! ```
//! use proptest::test_runner::{Config, TestRunner};
//! use weir::testing::{self, Limits};
//!
//! // Your tenants and weights: one heavy tenant of weight 5, two of weight 1.
//! let limits = Limits {
//!     weights: vec![5, 1, 1],
//!     ..Limits::default()
//! };
//! let mut runner = TestRunner::new(Config::with_cases(32));
//! runner
//!     .run(&testing::workloads(limits), |workload| {
//!         testing::check_workload(&workload)?;
//!         Ok(())
//!     })
//!     .unwrap();
//! ```

use std::time::Duration;

/// Engine parts that benches and property tests drive directly; a service never needs them.
pub use crate::adaptive::rate::AdaptiveRate;
pub use crate::fair::FairQueue;
pub use crate::limit::rate::RateLimit;
pub use crate::pool::SlotPool;

use proptest::prelude::*;

use crate::job::{OnWaitTimeout, OutcomeKind, ResourceId, TenantId};
use crate::sim::{self, check_all, check_deterministic, Order, SimJob, Violation, Workload};

/// The space [`workloads`] draws from. Times are in whole milliseconds; a job's cost is
/// its service time in milliseconds, so units granted are slot-time granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Tenant weights, one per tenant (`"t0"`, `"t1"`, ...); empty draws 1 ..= 6 tenants
    /// with weights in `1..=max_weight`.
    pub weights: Vec<u32>,
    /// Largest weight drawn when `weights` is empty.
    pub max_weight: u32,
    /// Most jobs in a workload.
    pub max_jobs: usize,
    /// Resources (`"r0"`, `"r1"`, ...), each with a cap drawn from `1..=max_cap`.
    pub resources: usize,
    /// Largest cap drawn.
    pub max_cap: u32,
    /// Largest scheduler quantum drawn (from 1).
    pub max_quantum: u32,
    /// Arrivals fall in `0..=arrival_window_ms`.
    pub arrival_window_ms: u64,
    /// Service times fall in `1..=max_service_ms`.
    pub max_service_ms: u64,
    /// Whether some jobs get short leases (ending `TimedOut`) and wait timeouts (ending
    /// `Skipped` or rejoining their queue).
    pub timeouts: bool,
}

impl Default for Limits {
    /// Up to 6 tenants (weights 1 ..= 4), 2 resources of 1 ..= 4 slots, quantum 1 ..= 4,
    /// up to 120 jobs arriving within 60 ms, 1 ..= 12 ms of service: backlogs form.
    fn default() -> Self {
        Self {
            weights: Vec::new(),
            max_weight: 4,
            max_jobs: 120,
            resources: 2,
            max_cap: 4,
            max_quantum: 4,
            arrival_window_ms: 60,
            max_service_ms: 12,
            timeouts: true,
        }
    }
}

/// Generates workloads within `limits`. Shrinking removes jobs, moves them earlier and
/// makes them cheaper, lowers caps, weights and the quantum, and drops timeouts, so a
/// failure shrinks to a small counterexample.
pub fn workloads(limits: Limits) -> impl Strategy<Value = Workload> {
    let max_tenants = if limits.weights.is_empty() {
        6
    } else {
        limits.weights.len()
    };
    let weights = if limits.weights.is_empty() {
        proptest::collection::vec(1..=limits.max_weight.max(1), 1..=max_tenants).boxed()
    } else {
        Just(limits.weights.clone()).boxed()
    };
    let resources = limits.resources.max(1);
    let caps = proptest::collection::vec(1..=limits.max_cap.max(1), resources);
    let quantum = 1..=limits.max_quantum.max(1);
    let service = 1..=limits.max_service_ms.max(1);
    let timeouts = limits.timeouts;
    let job = (
        0..max_tenants,
        0..resources,
        0..=limits.arrival_window_ms,
        service.clone(),
        proptest::option::weighted(0.1, service),
        proptest::option::weighted(0.15, 0..=40u64),
        any::<bool>(),
        proptest::bool::weighted(0.05),
    );
    (
        weights,
        caps,
        quantum,
        proptest::collection::vec(job, 0..=limits.max_jobs),
    )
        .prop_map(move |(weights, caps, quantum, jobs)| {
            let mut w = Workload::new(1);
            w.config.scheduler.quantum = quantum;
            for (t, &weight) in weights.iter().enumerate() {
                w.weight(&format!("t{t}"), weight);
            }
            for (r, &cap) in caps.iter().enumerate() {
                w.cap(&format!("r{r}"), cap);
            }
            let ms = Duration::from_millis;
            for (tenant, resource, arrival, service, lease, wait, requeue, failed) in jobs {
                let tenant = TenantId::new(format!("t{}", tenant % weights.len()));
                let mut job = SimJob::new(tenant, ms(arrival), ms(service))
                    .on(ResourceId::new(format!("r{resource}")))
                    .cost(u32::try_from(service).unwrap_or(u32::MAX));
                if timeouts {
                    job.lease = lease.map(ms);
                    job.wait_timeout = wait.map(ms);
                }
                if requeue {
                    job.on_wait_timeout = OnWaitTimeout::Requeue;
                }
                if failed {
                    job.outcome = OutcomeKind::Failed;
                }
                w.push(job);
            }
            w
        })
}

/// Runs `workload` through the driver with weir's fair queue and checks every property
/// (1 to 5 on the trace, and 6 by running it twice).
pub fn check_workload(workload: &Workload) -> Result<(), Violation> {
    let trace = sim::run(workload, Order::Fair);
    check_all(workload, &trace)?;
    check_deterministic(workload, Order::Fair)
}
