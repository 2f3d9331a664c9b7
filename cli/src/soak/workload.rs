//! The mixed workload a soak offers, and the runtime configuration it runs under.
//!
//! Every 10 ms the driver submits its share of the rate, spread over kinds:
//!
//! - **flat** store queries (half the rate), a few cancelled by their caller;
//! - **cascades**: an organisation job on `orgs` fans out 2 to 12 projection queries on
//!   `store` and joins them (a quarter of the rate, in children);
//! - **flaky** calls, retrying jobs against a downstream that fails 80 % of calls for
//!   3 s of every 9 s, so the `flaky` breaker opens and closes all run long;
//! - **coalesced** requests, answered in batches by one job on `batch` per flush;
//! - **recurring** checks, one per fourth tenant, every second, on `checks`;
//! - **shared** queries on a resource leased through Redis (with `--redis` only).
//!
//! Leaf queries carry injected faults: errors, panics before and after the call, and
//! hangs that only their lease ends. Tenants come from a sliding window: `active_tenants`
//! are active at any moment, `new_tenants_per_sec` arrive and as many of the oldest go
//! idle for good, and a tenth of the traffic goes to the four oldest active tenants,
//! which run into their per-tenant quota (30 per second).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use weir::{BackendConfig, BackendKind, Config, ConfigError, FailurePolicy, JobError, JobSpec};
use weir_actors::{Coalescer, Job, JobContext, RecurringChecks, Runtime};

use super::counters::Counters;
use super::downstream::{Downstream, Flakiness};

/// The runtime configuration of a soak: short leases, waits and quota windows, so state
/// comes and goes many times a minute.
const CONFIG: &str = r#"
[scheduler]
max_concurrent = 16
slot_lease_timeout = "1s"
slot_wait_timeout = "3s"
org_batch_size = 8
batch_delay = "10ms"
max_queued = 1000000

[resources.orgs]
max_concurrent = 64
slot_lease_timeout = "30s"

# Two resources run every body on body threads, the others where their polls say (all
# brief here: on the supervisor's thread), so a soak covers both paths.
[resources.store]
max_concurrent = 32
slot_lease_timeout = "500ms"
bodies = "threads"

[resources.flaky]
max_concurrent = 4
bodies = "threads"
breaker = { error_rate = 0.5, window = "2s", min_calls = 10, cooldown = "1s", half_open_probes = 1, half_open_timeout = "1s" }
retry = { max_attempts = 3, base = "20ms", cap = "200ms" }

[resources.batch]
max_concurrent = 4

[resources.checks]
max_concurrent = 4

[resources.shared]
max_concurrent = 8

[quotas.per_tenant]
windows = [{ limit = 30, per = "1s" }]

[coalesce.counts]
flush_interval = "100ms"
max_batch = 64
max_wait = "200ms"
resource = "batch"
"#;

/// The longest per-tenant quota window of the soak's configuration: a tenant's quota state lives this
/// long after its last admission.
pub const QUOTA_WINDOW: Duration = Duration::from_secs(1);

/// Share of the rate that goes to the four oldest active tenants.
const HEAVY_SHARE: f64 = 0.1;
/// Every this many-th tenant has a recurring check.
const CHECK_EVERY_NTH_TENANT: u64 = 4;
/// A check's interval.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The soak's configuration; with `redis`, resource `shared` takes its slots as leases
/// from that Redis.
pub fn config(redis: Option<&str>) -> Result<Config, ConfigError> {
    let mut config = Config::from_toml_str(CONFIG)?;
    if let Some(url) = redis {
        config.backends.insert(
            "shared".into(),
            BackendConfig {
                backend: BackendKind::Redis,
                url: url.into(),
                key_prefix: format!("weir-soak-{}", std::process::id()),
                lease_ttl: Duration::from_secs(3),
                renewal_interval: Duration::from_secs(1),
                on_failure: FailurePolicy::FailClosed,
                ..BackendConfig::default()
            },
        );
        config.validate()?;
    }
    Ok(config)
}

/// What a leaf query does.
#[derive(Clone, Copy, Debug)]
enum Leaf {
    /// Answers after this long.
    Clean(Duration),
    /// Fails after a millisecond.
    Error,
    /// Panics before calling the downstream.
    PanicBefore,
    /// Panics inside the call, after this long.
    PanicAfter(Duration),
    /// Never answers: only the lease ends it.
    Hang,
}

fn leaf_plan(rng: &mut SmallRng) -> Leaf {
    let latency = Duration::from_millis(rng.random_range(1..=20));
    match rng.random_range(0..1000) {
        0..=849 => Leaf::Clean(latency),
        850..=929 => Leaf::Error,
        930..=959 => Leaf::PanicBefore,
        960..=997 => Leaf::PanicAfter(latency),
        _ => Leaf::Hang,
    }
}

/// The body of a leaf query against `downstream`.
async fn leaf(downstream: Arc<Downstream>, plan: Leaf) -> Result<u32, JobError> {
    if let Leaf::PanicBefore = plan {
        panic!("soak: injected panic before the call");
    }
    let _inside = downstream.enter();
    match plan {
        Leaf::Clean(latency) => {
            tokio::time::sleep(latency).await;
            Ok(1)
        }
        Leaf::Error => {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Err(JobError::msg("soak: injected error"))
        }
        Leaf::PanicAfter(latency) => {
            tokio::time::sleep(latency).await;
            panic!("soak: injected panic inside the call");
        }
        Leaf::Hang | Leaf::PanicBefore => std::future::pending().await,
    }
}

/// Every downstream of the soak, one per resource.
#[derive(Debug, Clone)]
pub struct Downstreams {
    /// Flat queries and the cascades' projections.
    pub store: Arc<Downstream>,
    /// The flaky one behind the breaker.
    pub flaky: Arc<Downstream>,
    /// The coalesced batches' calls.
    pub batch: Arc<Downstream>,
    /// The recurring checks' queries.
    pub checks: Arc<Downstream>,
    /// The Redis-leased resource's queries.
    pub shared: Arc<Downstream>,
}

impl Downstreams {
    /// One per resource, each with its resource's cap from `config`.
    pub fn new(config: &Config) -> Self {
        let cap = |name: &str| config.resource(name).max_concurrent;
        Self {
            store: Downstream::new("store", cap("store")),
            flaky: Downstream::new("flaky", cap("flaky")),
            batch: Downstream::new("batch", cap("batch")),
            checks: Downstream::new("checks", cap("checks")),
            shared: Downstream::new("shared", cap("shared")),
        }
    }

    /// All of them, in a fixed order.
    pub fn all(&self) -> [&Arc<Downstream>; 5] {
        [&self.store, &self.flaky, &self.batch, &self.checks, &self.shared]
    }
}

/// Kinds of submission, each with its share of the rate.
#[derive(Clone, Copy)]
enum Kind {
    Flat,
    Cascade,
    Flaky,
    Coalesced,
    Shared,
}

const KINDS: [Kind; 5] = [
    Kind::Flat,
    Kind::Cascade,
    Kind::Flaky,
    Kind::Coalesced,
    Kind::Shared,
];

/// The sliding window of active tenants.
#[derive(Debug)]
struct Tenants {
    /// Lowest active tenant id, fractional so slow arrival rates still advance.
    low: f64,
    active: u64,
    new_per_sec: f64,
}

impl Tenants {
    fn low(&self) -> u64 {
        self.low as u64
    }
}

/// Submits the workload; owned by the driver's loop.
pub struct Driver {
    runtime: Runtime,
    counters: Arc<Counters>,
    downstreams: Downstreams,
    flakiness: Flakiness,
    coalescer: Coalescer<u64, u32, u64>,
    checks: RecurringChecks<u64>,
    rng: SmallRng,
    rate: f64,
    redis: bool,
    /// Fractional submissions owed per kind, carried from tick to tick.
    owed: [f64; KINDS.len()],
    tenants: Tenants,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

impl Driver {
    /// Starts the coalescer and the recurring checks on `runtime` (call inside its actix
    /// system) and schedules the first tenants' checks.
    pub fn start(
        runtime: Runtime,
        counters: Arc<Counters>,
        downstreams: Downstreams,
        options: &super::SoakOptions,
    ) -> Result<Self, String> {
        let batch = downstreams.batch.clone();
        let coalescer = runtime
            .coalescer("counts", move |group: u64, items: Vec<u32>| {
                let batch = batch.clone();
                async move {
                    let _inside = batch.enter();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Ok::<_, JobError>(
                        items
                            .into_iter()
                            .map(|i| (i, group * 1000 + u64::from(i)))
                            .collect::<HashMap<_, _>>(),
                    )
                }
            })
            .map_err(|e| e.to_string())?;
        let (store, c) = (downstreams.checks.clone(), counters.clone());
        let checks =
            RecurringChecks::start(runtime.clone(), runtime.config().intervals.clone(), move |run| {
                let store = store.clone();
                let (job, handle) = Job::new(
                    JobSpec::new(format!("t{}", run.key), "checks"),
                    move |_| async move {
                        let _inside = store.enter();
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        Ok::<_, JobError>(())
                    },
                );
                c.recurring_jobs
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                c.watch(handle, None);
                vec![job]
            })
            .map_err(|e| e.to_string())?;
        let tenants = Tenants {
            low: 0.0,
            active: u64::from(options.active_tenants),
            new_per_sec: f64::from(options.new_tenants_per_sec),
        };
        for id in 0..tenants.active {
            if id % CHECK_EVERY_NTH_TENANT == 0 {
                checks.schedule_every(id, CHECK_INTERVAL);
            }
        }
        Ok(Self {
            runtime,
            counters,
            downstreams,
            flakiness: Flakiness::starting_now(),
            coalescer,
            checks,
            rng: SmallRng::seed_from_u64(options.seed),
            rate: f64::from(options.rate),
            redis: options.redis.is_some(),
            owed: [0.0; KINDS.len()],
            tenants,
        })
    }

    /// Tenants that have ever been active (the highest id + 1).
    pub fn tenants_seen(&self) -> u64 {
        self.tenants.low() + self.tenants.active
    }

    /// The recurring checks (to stop them at the end).
    pub fn checks(&self) -> &RecurringChecks<u64> {
        &self.checks
    }

    /// The coalescer (to flush and stop it at the end).
    pub fn coalescer(&self) -> &Coalescer<u64, u32, u64> {
        &self.coalescer
    }

    fn share(&self, kind: Kind) -> f64 {
        // Without Redis the shared resource's share goes to flat queries.
        let shared = if self.redis { 0.05 } else { 0.0 };
        match kind {
            Kind::Flat => 0.55 - shared,
            // In organisations: 7 children each on average.
            Kind::Cascade => 0.25 / 7.0,
            Kind::Flaky => 0.08,
            Kind::Coalesced => 0.12,
            Kind::Shared => shared,
        }
    }

    /// Offers `elapsed` worth of the workload (the time since the last tick) and moves
    /// the tenant window on.
    pub fn tick(&mut self, elapsed: Duration) {
        self.advance_tenants(elapsed);
        for (i, kind) in KINDS.iter().enumerate() {
            self.owed[i] += self.rate * self.share(*kind) * elapsed.as_secs_f64();
            while self.owed[i] >= 1.0 {
                self.owed[i] -= 1.0;
                self.submit(*kind);
            }
        }
    }

    fn advance_tenants(&mut self, elapsed: Duration) {
        let before = self.tenants.low();
        self.tenants.low += self.tenants.new_per_sec * elapsed.as_secs_f64();
        let after = self.tenants.low();
        // Tenants leaving the window go idle for good: their checks stop. As many new
        // ones arrive at the top, with checks of their own.
        for id in before..after {
            if id % CHECK_EVERY_NTH_TENANT == 0 {
                self.checks.remove(id);
            }
            let new = id + self.tenants.active;
            if new.is_multiple_of(CHECK_EVERY_NTH_TENANT) {
                self.checks.schedule_every(new, CHECK_INTERVAL);
            }
        }
    }

    fn tenant(&mut self) -> u64 {
        let low = self.tenants.low();
        if self.rng.random_bool(HEAVY_SHARE) {
            low + self.rng.random_range(0..self.tenants.active.min(4))
        } else {
            low + self.rng.random_range(0..self.tenants.active)
        }
    }

    fn submit(&mut self, kind: Kind) {
        let tenant = self.tenant();
        let name = format!("t{tenant}");
        match kind {
            Kind::Flat => {
                let plan = leaf_plan(&mut self.rng);
                let cancel = self
                    .rng
                    .random_bool(0.03)
                    .then(|| Duration::from_millis(self.rng.random_range(0..30)));
                let store = self.downstreams.store.clone();
                let submitted = self
                    .runtime
                    .submit(JobSpec::new(name, "store"), move |_| leaf(store, plan));
                self.watch(submitted, cancel);
            }
            Kind::Shared => {
                let latency = Duration::from_millis(self.rng.random_range(1..=10));
                let shared = self.downstreams.shared.clone();
                let submitted = self.runtime.submit(JobSpec::new(name, "shared"), move |_| {
                    leaf(shared, Leaf::Clean(latency))
                });
                self.watch(submitted, None);
            }
            Kind::Cascade => {
                let plans: Vec<Leaf> = (0..self.rng.random_range(2..=12))
                    .map(|_| leaf_plan(&mut self.rng))
                    .collect();
                let (store, counters) = (self.downstreams.store.clone(), self.counters.clone());
                let submitted =
                    self.runtime
                        .submit(JobSpec::new(name, "orgs"), move |ctx: JobContext| async move {
                            let children = ctx
                                .spawn(plans.into_iter().map(|plan| {
                                    let store = store.clone();
                                    (ctx.child_spec("store"), move |_| leaf(store, plan))
                                }))
                                .map_err(|e| JobError::msg(e.to_string()))?;
                            counters
                                .children
                                .fetch_add(children.len() as u64, std::sync::atomic::Ordering::Relaxed);
                            let outcomes = ctx.join(children).await;
                            for outcome in &outcomes {
                                counters.child_ended(outcome.kind());
                            }
                            Ok::<_, JobError>(outcomes.len())
                        });
                self.watch(submitted, None);
            }
            Kind::Flaky => {
                let (flaky, flakiness) = (self.downstreams.flaky.clone(), self.flakiness);
                let (job, handle) = Job::retrying(JobSpec::new(name, "flaky"), move |_| {
                    let flaky = flaky.clone();
                    async move {
                        let _inside = flaky.enter();
                        tokio::time::sleep(Duration::from_millis(3)).await;
                        if flakiness.fails(rand::random()) {
                            Err(JobError::msg("soak: the flaky downstream failed"))
                        } else {
                            Ok(())
                        }
                    }
                });
                match self.runtime.submit_job(job) {
                    Ok(()) => self.counters.watch(handle, None),
                    Err(_) => self.refused(),
                }
            }
            Kind::Coalesced => {
                // Four groups, each asked about 64 items: a batch answers several
                // requests, and repeats merge.
                let group = tenant % 4;
                let item = self.rng.random_range(0..64);
                self.counters.watch_request(self.coalescer.request(group, item));
            }
        }
    }

    fn watch<T: 'static>(
        &self,
        submitted: Result<weir_actors::JobHandle<T>, weir_actors::SubmitError>,
        cancel: Option<Duration>,
    ) {
        match submitted {
            Ok(handle) => self.counters.watch(handle, cancel),
            Err(_) => self.refused(),
        }
    }

    fn refused(&self) {
        self.counters
            .refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soak_configuration_is_valid_with_and_without_redis() {
        let plain = config(None).unwrap();
        assert!(plain.backends.is_empty());
        assert_eq!(plain.quotas["per_tenant"].windows[0].per, QUOTA_WINDOW);
        let shared = config(Some("redis://127.0.0.1:6379")).unwrap();
        assert_eq!(shared.backends["shared"].backend, BackendKind::Redis);
    }
}
