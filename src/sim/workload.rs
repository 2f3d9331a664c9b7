//! What the virtual-time driver runs: jobs with arrival and service times, and the
//! configuration (caps, weights, quantum, leases, wait timeouts) of the core they run on.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{Config, TenantConfig};
use crate::job::{JobSpec, OnWaitTimeout, OutcomeKind, ResourceId, TenantId};

/// One scripted job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimJob {
    /// Whose job it is.
    pub tenant: TenantId,
    /// Which slot pool it needs.
    pub resource: ResourceId,
    /// When it is submitted.
    pub arrival: Duration,
    /// How long it holds its slot once granted (unless its lease ends it first).
    pub service: Duration,
    /// Its fair-share cost in units (at least 1).
    pub cost: u32,
    /// How it ends when it runs its whole service time (`Completed` or `Failed`).
    pub outcome: OutcomeKind,
    /// Its own lease (else the resource's).
    pub lease: Option<Duration>,
    /// Its own wait timeout (else the resource's).
    pub wait_timeout: Option<Duration>,
    /// What happens when its wait timeout passes.
    pub on_wait_timeout: OnWaitTimeout,
}

impl SimJob {
    /// A job of `tenant` on the `"default"` resource, cost 1, that completes after
    /// `service`.
    pub fn new(tenant: impl Into<TenantId>, arrival: Duration, service: Duration) -> Self {
        Self {
            tenant: tenant.into(),
            resource: ResourceId::default(),
            arrival,
            service,
            cost: 1,
            outcome: OutcomeKind::Completed,
            lease: None,
            wait_timeout: None,
            on_wait_timeout: OnWaitTimeout::Skip,
        }
    }

    /// Sets the resource.
    pub fn on(mut self, resource: impl Into<ResourceId>) -> Self {
        self.resource = resource.into();
        self
    }

    /// Sets the fair-share cost (0 is treated as 1).
    pub fn cost(mut self, cost: u32) -> Self {
        self.cost = cost.max(1);
        self
    }

    /// The spec the driver submits.
    pub(crate) fn spec(&self) -> JobSpec {
        let mut spec = JobSpec::new(self.tenant.clone(), self.resource.clone()).cost(self.cost);
        spec.options.lease = self.lease;
        spec.options.wait_timeout = self.wait_timeout;
        spec.options.on_wait_timeout = self.on_wait_timeout;
        spec
    }
}

/// A configuration and the jobs to run on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// The core's configuration (caps, leases, wait timeouts, quantum, tenant weights).
    pub config: Config,
    /// The jobs; a trace names them by index.
    pub jobs: Vec<SimJob>,
}

impl Workload {
    /// An empty workload whose resources have `cap` slots, with no wait timeout to speak
    /// of (7 days) and leases of 7 days: jobs wait and run as long as they need.
    pub fn new(cap: u32) -> Self {
        let mut config = Config::default();
        config.scheduler.max_concurrent = cap;
        config.scheduler.slot_wait_timeout = Duration::from_secs(7 * 24 * 3600);
        config.scheduler.slot_lease_timeout = Duration::from_secs(7 * 24 * 3600);
        Self {
            config,
            jobs: Vec::new(),
        }
    }

    /// Adds a job.
    pub fn push(&mut self, job: SimJob) {
        self.jobs.push(job);
    }

    /// Sets a tenant's fair-share weight.
    pub fn weight(&mut self, tenant: &str, weight: u32) {
        self.config
            .tenants
            .insert(tenant.to_owned(), TenantConfig { weight });
    }

    /// Sets a resource's cap.
    pub fn cap(&mut self, resource: &str, cap: u32) {
        self.config
            .resources
            .entry(resource.to_owned())
            .or_default()
            .max_concurrent = Some(cap);
    }

    /// The backlog scenario: tenant `"big"` queues `big_jobs` jobs, then `small`
    /// tenants (`"small-0"`, ...) queue `per_small` jobs each, all at time zero, on `cap`
    /// slots; every job holds its slot for `service` and costs 1.
    pub fn backlog(big_jobs: usize, small: usize, per_small: usize, cap: u32, service: Duration) -> Self {
        let mut w = Self::new(cap);
        for _ in 0..big_jobs {
            w.push(SimJob::new("big", Duration::ZERO, service));
        }
        for s in 0..small {
            let tenant = TenantId::new(format!("small-{s}"));
            for _ in 0..per_small {
                w.push(SimJob::new(tenant.clone(), Duration::ZERO, service));
            }
        }
        w
    }

    /// A random workload of the given shape; the same seed gives the same workload.
    pub fn generate(shape: &WorkloadShape, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut w = Self::new(shape.cap);
        w.config.scheduler.quantum = shape.quantum;
        let tenants: Vec<TenantId> = (0..shape.tenants.max(1))
            .map(|t| TenantId::new(format!("t{t}")))
            .collect();
        for t in &tenants {
            w.weight(t.as_str(), rng.random_range(1..=shape.max_weight.max(1)));
        }
        let max_units = shape.max_service_units.max(1);
        let mut at = Duration::ZERO;
        for _ in 0..shape.jobs {
            // Exponential gaps around the mean: bursts and lulls, so backlogs form and drain.
            let u: f64 = rng.random_range(f64::EPSILON..1.0);
            at += shape.mean_gap.mul_f64(-u.ln());
            let units = rng.random_range(1..=max_units);
            let tenant = tenants[rng.random_range(0..tenants.len())].clone();
            let mut job = SimJob::new(tenant, at, shape.unit * units).cost(units);
            if rng.random_bool(0.05) {
                job.outcome = OutcomeKind::Failed;
            }
            w.push(job);
        }
        w
    }
}

/// The shape of a generated workload ([`Workload::generate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkloadShape {
    /// Jobs to generate.
    pub jobs: usize,
    /// Tenants (`"t0"`, `"t1"`, ...), each with a weight drawn from `1..=max_weight`.
    pub tenants: u32,
    /// Largest weight drawn.
    pub max_weight: u32,
    /// Slots of the (single, `"default"`) resource.
    pub cap: u32,
    /// The scheduler quantum.
    pub quantum: u32,
    /// Mean time between arrivals (exponentially distributed).
    pub mean_gap: Duration,
    /// A job's service time is `unit x n`, `n` drawn from `1..=max_service_units`, and
    /// its cost is `n`.
    pub max_service_units: u32,
    /// Service time per cost unit.
    pub unit: Duration,
}

impl Default for WorkloadShape {
    /// 100,000 jobs of 8 tenants (weights 1..=4) on 32 slots, 1..=20 ms each, arriving
    /// just faster than the slots serve them on average.
    fn default() -> Self {
        Self {
            jobs: 100_000,
            tenants: 8,
            max_weight: 4,
            cap: 32,
            quantum: 1,
            mean_gap: Duration::from_micros(300),
            max_service_units: 20,
            unit: Duration::from_millis(1),
        }
    }
}
