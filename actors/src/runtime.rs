//! The embedding handle: start the runtime, submit jobs, read stats, shut down.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, Addr, AsyncContext};
use tokio::sync::oneshot;
use weir::{
    Changes, Config, ConfigError, JobError, JobSpec, ResourceId, StatsSnapshot, TenantId, UsageSnapshot,
};

use crate::job::context::JobContext;
use crate::job::handle::{BlockingTicket, JobHandle};
use crate::job::link::{Link, SubmitError};
use crate::job::Job;
use crate::supervisor::{
    GetBackendStats, GetStats, GetUsage, Published, Reconfigure, SetMaxConcurrent, SharedRefusalBreakers,
    Shutdown, ShutdownReport, Supervisor,
};
use crate::worker::WorkerPool;

/// Why the runtime did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The runtime's thread could not be started.
    #[error("cannot start the runtime thread: {0}")]
    Thread(String),
}

struct Inner {
    supervisor: Addr<Supervisor>,
    /// The configuration in force: the supervisor replaces it after each live change.
    config: Published,
    /// Submissions go to the supervisor through the same link its jobs use.
    link: Link,
    /// Breaker states at slot refusals (the supervisor writes them).
    // Read by the tower layer only (`tower` feature), to word its refusals.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    refusal_breakers: SharedRefusalBreakers,
    /// What the supervisor leaves when it stops; see [`Stopped`].
    stopped: Arc<Stopped>,
}

/// Shared by the handle and the supervisor's stop callback.
#[derive(Default)]
struct Stopped {
    /// The actix system this runtime started on a thread of its own, if it did.
    own_system: Mutex<Option<actix_rt::System>>,
    /// The statistics at the moment the supervisor stopped (after shutdown).
    final_stats: Mutex<Option<StatsSnapshot>>,
}

/// A handle to a running weir runtime; cheap to clone and usable from any thread.
///
/// ```
/// use weir::{Config, JobError, JobSpec, Outcome};
/// use weir_actors::Runtime;
///
/// let runtime = Runtime::start(Config::default()).unwrap(); // from plain `main`
/// let ticket = runtime
///     .submit_blocking(JobSpec::new("acme", "store"), |_ctx| async { Ok::<_, JobError>(2 + 2) })
///     .unwrap();
/// assert_eq!(ticket.wait(), Outcome::Completed(4));
/// runtime.shutdown_blocking(std::time::Duration::from_secs(1));
/// ```
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

/// Every quota and rate limit kept in Redis must find its server at start: an unreachable
/// URL is a configuration error naming the field (a server that goes away later is what
/// `on_failure` is for).
fn check_shared_urls(config: &Config) -> Result<(), StartError> {
    let quotas = config
        .quotas
        .iter()
        .filter(|(_, q)| q.backend == weir::BackendKind::Redis)
        .map(|(name, q)| (format!("quotas.{name}.url"), q.url.as_str()));
    let rates = config.resources.iter().filter_map(|(name, r)| {
        r.rate_limit
            .as_ref()
            .filter(|l| l.backend == weir::BackendKind::Redis)
            .map(|l| (format!("resources.{name}.rate_limit.url"), l.url.as_str()))
    });
    for (field, url) in quotas.chain(rates) {
        if let Err(e) = crate::redis_pool::ping(url, std::time::Duration::from_secs(2)) {
            return Err(ConfigError::invalid(field, format!("a reachable Redis server ({e})"), url).into());
        }
    }
    Ok(())
}

/// The cores this process may use.
fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

/// Whether the current thread's tokio clock is paused (tokio's `test-util`: tests and
/// `weir simulate`). A paused clock stands still while no task awaits, so it has not moved
/// after a microsecond of real time; a running clock has. Body threads run their own
/// tokio runtimes, whose clocks cannot follow a paused one.
fn clock_paused() -> bool {
    let before = tokio::time::Instant::now();
    let real = std::time::Instant::now();
    while real.elapsed() < Duration::from_micros(1) {
        std::hint::spin_loop();
    }
    tokio::time::Instant::now() == before
}

impl Runtime {
    /// Starts a runtime.
    ///
    /// Inside an actix arbiter (an `actix_rt::System`, `#[actix_rt::main]`, or actix-web),
    /// the supervisor runs on the current arbiter (or a new one, with
    /// `runtime.own_thread`), so a paused tokio clock drives it. Anywhere else (plain
    /// `main`, a tokio runtime without actix) it starts an actix system on a thread of its
    /// own. Body threads are started per `runtime.worker_threads` (by default one fewer
    /// than the cores and at least one; none when the caller's tokio clock is paused, see
    /// [`RuntimeConfig::body_threads`](weir::RuntimeConfig::body_threads)); bodies whose
    /// polls are brief still run on the supervisor's thread (`runtime.inline_poll_limit`).
    /// Quotas and rate limits kept in Redis must reach their server now (an error names
    /// the `url`).
    pub fn start(config: Config) -> Result<Runtime, StartError> {
        config.validate()?;
        check_shared_urls(&config)?;
        if actix_rt::Arbiter::try_current().is_some() && actix_rt::System::try_current().is_some() {
            let threads = config.runtime.body_threads(cores(), clock_paused());
            return Ok(Self::start_here(config, threads, None));
        }
        let threads = config.runtime.body_threads(cores(), false);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("weir-supervisor".into())
            .spawn(move || {
                let system = actix_rt::System::new();
                system.block_on(async {
                    let system = Some(actix_rt::System::current());
                    let _ = tx.send(Self::start_here(config, threads, system));
                });
                let _ = system.run();
            })
            .map_err(|e| StartError::Thread(e.to_string()))?;
        rx.recv()
            .map_err(|_| StartError::Thread("the runtime thread exited while starting".into()))
    }

    fn start_here(config: Config, body_threads: u32, own_system: Option<actix_rt::System>) -> Runtime {
        tracing::info!(body_threads, "weir runtime starting");
        let arbiters: Vec<actix_rt::Arbiter> = (0..body_threads).map(|_| actix_rt::Arbiter::new()).collect();
        let workers = WorkerPool::start(&arbiters);
        let supervisor_arbiter = config.runtime.own_thread.then(actix_rt::Arbiter::new);
        let handle = supervisor_arbiter.as_ref().map(actix_rt::Arbiter::handle);
        let (runtime_tx, runtime_rx) = std::sync::mpsc::channel();
        let cfg = config.clone();
        let published: Published = Arc::new(Mutex::new(Arc::new(config)));
        let refusal_breakers = SharedRefusalBreakers::default();
        let make = move |ctx: &mut actix::Context<Supervisor>| {
            let addr = ctx.address();
            let link = Link::new(
                addr.clone().recipient(),
                addr.clone().recipient(),
                cfg.scheduler.max_queued,
            );
            let stopped = Arc::new(Stopped {
                own_system: Mutex::new(own_system),
                final_stats: Mutex::new(None),
            });
            let runtime = Runtime {
                inner: Arc::new(Inner {
                    supervisor: addr,
                    config: published.clone(),
                    link: link.clone(),
                    refusal_breakers: refusal_breakers.clone(),
                    stopped: stopped.clone(),
                }),
            };
            let _ = runtime_tx.send(runtime);
            let mut all_arbiters = arbiters;
            all_arbiters.extend(supervisor_arbiter);
            let on_stopped = Box::new(move |last| stopped.on_stopped(last));
            Supervisor::new(
                cfg,
                link,
                on_stopped,
                workers,
                all_arbiters,
                published,
                refusal_breakers,
            )
        };
        match handle {
            Some(handle) => Supervisor::start_in_arbiter(&handle, make),
            None => Supervisor::create(make),
        };
        runtime_rx
            .recv()
            .expect("the supervisor sends its runtime handle when created")
    }

    /// The link its jobs use, for the crate's own submitters (recurring checks submit
    /// without fan-out batching).
    pub(crate) fn link(&self) -> &Link {
        &self.inner.link
    }

    /// True when `resource`'s breaker was open at its latest slot refusal: a refusal's
    /// wording without a stats round trip (see `supervisor/breakers.rs`).
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn breaker_was_open_at_refusal(&self, resource: &ResourceId) -> bool {
        self.inner.refusal_breakers.was_open(resource)
    }

    /// The configuration the runtime runs with now: the one it started with, as changed
    /// since by [`Runtime::reconfigure`] and [`Runtime::set_max_concurrent`]. What reads it
    /// once (a coalescer's settings) keeps the copy it read; a
    /// [`RecurringChecks`](crate::RecurringChecks) takes a new interval table with
    /// [`set_intervals`](crate::RecurringChecks::set_intervals).
    pub fn config(&self) -> Arc<Config> {
        match self.inner.config.lock() {
            Ok(config) => config.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Submits one job; the handle resolves to its outcome.
    pub fn submit<T, F, Fut>(&self, spec: JobSpec, body: F) -> Result<JobHandle<T>, SubmitError>
    where
        F: FnOnce(JobContext) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, JobError>> + 'static,
        T: Send + 'static,
    {
        let (job, mut handle) = Job::new(spec, body);
        self.inner.link.send_job(job)?;
        handle.attach(&self.inner.link);
        Ok(handle)
    }

    /// Submits one prepared job (see [`Job::new`], [`Job::retrying`]); its handle was
    /// returned when the job was made.
    pub fn submit_job(&self, job: Job) -> Result<(), SubmitError> {
        self.inner.link.send_job(job)
    }

    /// Submits prepared jobs (see [`Job::new`]) as one fan-out: released in batches of
    /// `org_batch_size`, `batch_delay` apart. All or none are accepted.
    pub fn submit_batch(&self, jobs: Vec<Job>) -> Result<(), SubmitError> {
        self.inner.link.send_jobs(jobs, true)
    }

    /// Submits one job from a thread outside any async runtime; the ticket blocks.
    pub fn submit_blocking<T, F, Fut>(&self, spec: JobSpec, body: F) -> Result<BlockingTicket<T>, SubmitError>
    where
        F: FnOnce(JobContext) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, JobError>> + 'static,
        T: Send + 'static,
    {
        let (job, mut ticket) = Job::new_blocking(spec, body);
        self.inner.link.send_job(job)?;
        ticket.attach(&self.inner.link);
        Ok(ticket)
    }

    /// True while the runtime takes submissions: false once a shutdown began (a health
    /// check's "runtime stopped").
    pub fn is_running(&self) -> bool {
        self.inner.link.is_open()
    }

    /// Jobs accepted and not yet started or ended (what `max_queued` bounds).
    pub fn waiting(&self) -> u64 {
        self.inner.link.waiting()
    }

    /// A statistics snapshot per resource. After [`Runtime::shutdown`] has resolved it is
    /// the last snapshot the supervisor took (every job ended, every slot free).
    ///
    /// It also brings the exported metrics' counters and gauges up to date (the
    /// supervisor otherwise publishes them at most once a second while it works), so a
    /// `/metrics` route that calls this first serves exact counts.
    pub async fn stats(&self) -> StatsSnapshot {
        match self.inner.supervisor.send(GetStats).await {
            Ok(snapshot) => snapshot,
            Err(_) => self.final_stats().unwrap_or_default(),
        }
    }

    /// Sets `resource`'s `max_concurrent` on the live runtime (for a resource with an
    /// adaptive limit: its ceiling). Checked as at start: a refused value names
    /// `resources.NAME.max_concurrent` and changes nothing. Lowering it preempts nothing:
    /// jobs in flight finish and no new grant is made until fewer than the new cap are in
    /// flight. Queued jobs keep their order. After shutdown it changes nothing and
    /// returns `Ok`.
    pub async fn set_max_concurrent(
        &self,
        resource: impl Into<ResourceId>,
        max_concurrent: u32,
    ) -> Result<(), ConfigError> {
        let msg = SetMaxConcurrent {
            resource: resource.into(),
            max_concurrent,
        };
        self.inner.supervisor.send(msg).await.unwrap_or(Ok(()))
    }

    /// Applies a new configuration to the live runtime, or refuses it and keeps the one
    /// in force. It is checked exactly as at start ([`Config::validate`], the same
    /// errors naming the field); settings only a restart can change (`runtime.*`,
    /// `backends.*`, `metrics.*`, `scheduler.max_queued`) are refused by name too.
    /// Returns the fields that changed (empty when none did).
    ///
    /// Caps, adaptive limits, leases and wait timeouts, rate limits, breakers, retries,
    /// fallbacks, call budgets, quotas, tenant weights, the quantum and fan-out batching
    /// take effect at once, without losing, reordering or preempting any job, count or
    /// window; a lowered cap makes no new grant until fewer than it are in flight.
    /// [`Scheduler::reconfigure`](weir::Scheduler::reconfigure) says, per setting, what
    /// is kept and what starts again. Each changed field is a `config changed` tracing
    /// event, [`StatsSnapshot::reconfigurations`] counts the accepted changes, and
    /// [`Runtime::config`] returns the new configuration. After shutdown it changes
    /// nothing and returns no change.
    ///
    /// ```
    /// use weir::Config;
    /// use weir_actors::Runtime;
    ///
    /// actix_rt::System::new().block_on(async {
    ///     let runtime = Runtime::start(Config::default()).unwrap();
    ///     let mut next = Config::from_toml_str("[resources.store]\nmax_concurrent = 20\n").unwrap();
    ///     let changes = runtime.reconfigure(next.clone()).await.unwrap();
    ///     assert_eq!(changes.to_string(), "resources.store.max_concurrent: (unset) -> 20");
    ///     assert_eq!(runtime.stats().await.reconfigurations, 1);
    ///     next.resources.get_mut("store").unwrap().max_concurrent = Some(0);
    ///     let refused = runtime.reconfigure(next).await.unwrap_err();
    ///     assert!(refused.to_string().starts_with("resources.store.max_concurrent must be"));
    ///     assert_eq!(runtime.config().resources["store"].max_concurrent, Some(20));
    ///     runtime.shutdown(std::time::Duration::from_secs(1)).await;
    /// });
    /// ```
    pub async fn reconfigure(&self, config: Config) -> Result<Changes, ConfigError> {
        // Checked here too, so a refusal is the same whether or not the runtime still runs.
        config.validate()?;
        match self.inner.supervisor.send(Reconfigure(config)).await {
            Ok(result) => result,
            Err(_) => Ok(Changes::default()),
        }
    }

    fn final_stats(&self) -> Option<StatsSnapshot> {
        self.inner.stopped.final_stats.lock().ok().and_then(|s| s.clone())
    }

    /// `tenant`'s usage of its quotas and of the global ones: for every window the
    /// admissions counted, the limit, what remains and when it resets; for every cost
    /// budget what was spent and reserved and what remains. Empty when no quota is
    /// configured (or the runtime has stopped).
    pub async fn usage(&self, tenant: impl Into<TenantId>) -> UsageSnapshot {
        self.inner
            .supervisor
            .send(GetUsage(tenant.into()))
            .await
            .unwrap_or_default()
    }

    /// Statistics of the resources whose slots are shared through Redis, by resource
    /// name (empty when every resource is in-process).
    pub async fn backend_stats(
        &self,
    ) -> std::collections::BTreeMap<String, crate::redis_pool::BackendSnapshot> {
        self.inner
            .supervisor
            .send(GetBackendStats)
            .await
            .unwrap_or_default()
    }

    /// [`Runtime::usage`] for threads outside any async runtime.
    pub fn usage_blocking(&self, tenant: impl Into<TenantId>) -> UsageSnapshot {
        futures::executor::block_on(self.usage(tenant))
    }

    /// [`Runtime::stats`] for threads outside any async runtime.
    pub fn stats_blocking(&self) -> StatsSnapshot {
        futures::executor::block_on(self.stats())
    }

    /// Stops intake, cancels every job that has not started, lets running jobs finish
    /// for up to `grace`, then stops them (`Cancelled`). Resolves once every job has its
    /// outcome and every slot is back.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.inner.link.close();
        let (tx, rx) = oneshot::channel();
        self.inner.supervisor.do_send(Shutdown { grace, reply: tx });
        rx.await.unwrap_or_default()
    }

    /// [`Runtime::shutdown`] for threads outside any async runtime.
    pub fn shutdown_blocking(&self, grace: Duration) -> ShutdownReport {
        futures::executor::block_on(self.shutdown(grace))
    }
}

impl Stopped {
    /// The supervisor stopped: keep its last statistics, and stop the system it ran on
    /// if this runtime started that system itself.
    fn on_stopped(&self, last: StatsSnapshot) {
        if let Ok(mut s) = self.final_stats.lock() {
            *s = Some(last);
        }
        if let Some(system) = self.own_system.lock().ok().and_then(|mut s| s.take()) {
            system.stop();
        }
    }
}
