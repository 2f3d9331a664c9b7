//! The embedding handle: start the runtime, submit jobs, read stats, shut down.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, AsyncContext};
use tokio::sync::oneshot;
use weir::{Config, ConfigError, JobError, JobKey, JobSpec, StatsSnapshot, TenantId, UsageSnapshot};

use crate::context::JobContext;
use crate::inbox::{Appended, Inbox, Intake};
use crate::stop::Stop;
use crate::supervisor::{
    Cancel, Done, Drain, GetStats, GetUsage, Shutdown, ShutdownReport, Submitted, Supervisor,
};
use crate::worker::WorkerPool;
use crate::{BlockingTicket, Job, JobHandle};

/// Why a submission was refused. Nothing of a refused submission runs, and its handles
/// resolve `Cancelled`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Accepting would put more than `max_queued` jobs in waiting.
    #[error("queue full: {queued} jobs waiting, max_queued is {max_queued}")]
    QueueFull {
        /// Jobs waiting when the submission was refused.
        queued: u64,
        /// The configured bound.
        max_queued: u64,
    },
    /// The runtime is shutting down or stopped.
    #[error("the runtime is shutting down")]
    ShuttingDown,
}

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
    config: Config,
    /// Jobs accepted and not yet started or ended: the `max_queued` bound. This counter is
    /// backpressure only; it admits nothing to a slot (only the supervisor does that).
    waiting: AtomicU64,
    closed: AtomicBool,
    /// Submissions and what started jobs report, on their way to the supervisor.
    inbox: Inbox,
    /// The actix system this runtime started on a thread of its own, if it did.
    own_system: std::sync::Mutex<Option<actix_rt::System>>,
    /// The statistics at the moment the supervisor stopped (after shutdown).
    final_stats: std::sync::Mutex<Option<StatsSnapshot>>,
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

impl Runtime {
    /// Starts a runtime.
    ///
    /// Inside an actix arbiter (an `actix_rt::System`, `#[actix_rt::main]`, or actix-web),
    /// the supervisor runs on the current arbiter (or a new one, with
    /// `runtime.own_thread`), so a paused tokio clock drives it. Anywhere else (plain
    /// `main`, a tokio runtime without actix) it starts an actix system on a thread of its
    /// own. Worker arbiters are started per `runtime.worker_threads`.
    pub fn start(config: Config) -> Result<Runtime, StartError> {
        config.validate()?;
        if actix_rt::Arbiter::try_current().is_some() && actix_rt::System::try_current().is_some() {
            return Ok(Self::start_here(config, None));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("weir-supervisor".into())
            .spawn(move || {
                let system = actix_rt::System::new();
                system.block_on(async {
                    let _ = tx.send(Self::start_here(config, Some(actix_rt::System::current())));
                });
                let _ = system.run();
            })
            .map_err(|e| StartError::Thread(e.to_string()))?;
        rx.recv()
            .map_err(|_| StartError::Thread("the runtime thread exited while starting".into()))
    }

    fn start_here(config: Config, own_system: Option<actix_rt::System>) -> Runtime {
        let arbiters: Vec<actix_rt::Arbiter> = (0..config.runtime.worker_threads)
            .map(|_| actix_rt::Arbiter::new())
            .collect();
        let workers = WorkerPool::start(&arbiters);
        let supervisor_arbiter = config.runtime.own_thread.then(actix_rt::Arbiter::new);
        let handle = supervisor_arbiter.as_ref().map(actix_rt::Arbiter::handle);
        let (runtime_tx, runtime_rx) = std::sync::mpsc::channel();
        let cfg = config.clone();
        let make = move |ctx: &mut actix::Context<Supervisor>| {
            let runtime = Runtime {
                inner: Arc::new(Inner {
                    supervisor: ctx.address(),
                    config: cfg.clone(),
                    waiting: AtomicU64::new(0),
                    closed: AtomicBool::new(false),
                    inbox: Inbox::default(),
                    own_system: std::sync::Mutex::new(own_system),
                    final_stats: std::sync::Mutex::new(None),
                }),
            };
            let _ = runtime_tx.send(runtime.clone());
            let mut all_arbiters = arbiters;
            all_arbiters.extend(supervisor_arbiter);
            Supervisor::new(cfg, runtime, workers, all_arbiters)
        };
        match handle {
            Some(handle) => Supervisor::start_in_arbiter(&handle, make),
            None => Supervisor::create(make),
        };
        runtime_rx
            .recv()
            .expect("the supervisor sends its runtime handle when created")
    }

    pub(crate) fn inbox(&self) -> &Inbox {
        &self.inner.inbox
    }

    /// Appends to the supervisor's inbox, notifying it if no drain is on its way; gives
    /// the item back (`Some`) if the supervisor has stopped.
    #[must_use]
    fn push(&self, item: Intake) -> Option<Intake> {
        match self.inner.inbox.push(item) {
            Appended::Notify => {
                self.inner.supervisor.do_send(Drain);
                None
            }
            Appended::Queued => None,
            Appended::Closed(item) => Some(item),
        }
    }

    /// A started job stopped: its slot goes back to the supervisor.
    pub(crate) fn report_done(&self, done: Done) {
        // Closed: the supervisor is gone, and the slot with it.
        let _ = self.push(Intake::Done(done));
    }

    /// The configuration the runtime runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Reserves room for `n` waiting jobs, or refuses.
    fn reserve(&self, n: u64) -> Result<(), SubmitError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        let max_queued = self.inner.config.scheduler.max_queued;
        let before = self.inner.waiting.fetch_add(n, Ordering::AcqRel);
        if before + n > max_queued {
            self.inner.waiting.fetch_sub(n, Ordering::AcqRel);
            return Err(SubmitError::QueueFull {
                queued: before,
                max_queued,
            });
        }
        Ok(())
    }

    /// The supervisor reports a job that waits again (a retry sleeping its backoff).
    pub(crate) fn entered_waiting(&self, n: u64) {
        self.inner.waiting.fetch_add(n, Ordering::AcqRel);
    }

    /// The supervisor reports jobs that left the waiting state.
    pub(crate) fn left_waiting(&self, n: u64) {
        if n > 0 {
            self.inner.waiting.fetch_sub(n, Ordering::AcqRel);
        }
    }

    pub(crate) fn on_stopped(&self, last: StatsSnapshot) {
        if let Ok(mut s) = self.inner.final_stats.lock() {
            *s = Some(last);
        }
        self.inner.closed.store(true, Ordering::Release);
        if let Some(system) = self.inner.own_system.lock().ok().and_then(|mut s| s.take()) {
            system.stop();
        }
    }

    /// Hands reserved submissions to the supervisor; if it has stopped, they are
    /// resolved `Cancelled` and refused.
    fn send(&self, intake: Intake, n: u64) -> Result<(), SubmitError> {
        let Some(refused) = self.push(intake) else {
            return Ok(());
        };
        self.left_waiting(n);
        let items = match refused {
            Intake::One(item) => vec![item],
            Intake::Many { items, .. } => items,
            _ => Vec::new(),
        };
        for item in items {
            item.body.resolve(weir::Outcome::Cancelled);
        }
        Err(SubmitError::ShuttingDown)
    }

    fn send_job(&self, job: Job) -> Result<(), SubmitError> {
        if let Err(e) = self.reserve(1) {
            job.body.resolve(weir::Outcome::Cancelled);
            return Err(e);
        }
        self.send(Intake::One(Submitted::from(job)), 1)
    }

    fn send_jobs(&self, jobs: Vec<Job>, fanout: bool) -> Result<(), SubmitError> {
        let n = jobs.len() as u64;
        if let Err(e) = self.reserve(n) {
            for job in jobs {
                job.body.resolve(weir::Outcome::Cancelled);
            }
            return Err(e);
        }
        let items = jobs.into_iter().map(Submitted::from).collect();
        self.send(Intake::Many { items, fanout }, n)
    }

    pub(crate) fn submit_jobs<T>(
        &self,
        jobs: Vec<Job>,
        mut handles: Vec<JobHandle<T>>,
        fanout: bool,
    ) -> Result<Vec<JobHandle<T>>, SubmitError> {
        self.send_jobs(jobs, fanout)?;
        for h in &mut handles {
            h.attach(self);
        }
        Ok(handles)
    }

    /// Submits one job; the handle resolves to its outcome.
    pub fn submit<T, F, Fut>(&self, spec: JobSpec, body: F) -> Result<JobHandle<T>, SubmitError>
    where
        F: FnOnce(JobContext) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, JobError>> + 'static,
        T: Send + 'static,
    {
        let (job, mut handle) = Job::new(spec, body);
        self.send_job(job)?;
        handle.attach(self);
        Ok(handle)
    }

    /// Submits one prepared job (see [`Job::new`], [`Job::retrying`]); its handle was
    /// returned when the job was made.
    pub fn submit_job(&self, job: Job) -> Result<(), SubmitError> {
        self.send_job(job)
    }

    /// Submits prepared jobs (see [`Job::new`]) as one fan-out: released in batches of
    /// `org_batch_size`, `batch_delay` apart. All or none are accepted.
    pub fn submit_batch(&self, jobs: Vec<Job>) -> Result<(), SubmitError> {
        self.send_jobs(jobs, true)
    }

    /// Submits one job from a thread outside any async runtime; the ticket blocks.
    pub fn submit_blocking<T, F, Fut>(&self, spec: JobSpec, body: F) -> Result<BlockingTicket<T>, SubmitError>
    where
        F: FnOnce(JobContext) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, JobError>> + 'static,
        T: Send + 'static,
    {
        let (job, mut ticket) = Job::new_blocking(spec, body);
        self.send_job(job)?;
        ticket.attach(self);
        Ok(ticket)
    }

    pub(crate) fn cancel(&self, stop: Arc<Stop>) {
        self.inner.supervisor.do_send(Cancel(stop));
    }

    pub(crate) async fn renew(&self, key: JobKey) -> Result<Duration, weir::LeaseError> {
        let (tx, rx) = oneshot::channel();
        // Refused (the supervisor stopped): the sender is dropped with the item.
        let _ = self.push(Intake::Renew(key, tx));
        rx.await.unwrap_or(Err(weir::LeaseError::Ended))
    }

    pub(crate) fn park(&self, key: JobKey) {
        let _ = self.push(Intake::Park(key));
    }

    pub(crate) async fn unpark(&self, key: JobKey) {
        let (tx, rx) = oneshot::channel();
        // Refused (the supervisor stopped): the dropped sender says no slot will come.
        let _ = self.push(Intake::Unpark(key, tx));
        if rx.await.is_err() {
            // No slot will come: the job is being stopped (lease expired or cancelled).
            // Never run on without a slot; wait to be dropped.
            std::future::pending::<()>().await;
        }
    }

    /// Jobs accepted and not yet started or ended (what `max_queued` bounds).
    pub fn waiting(&self) -> u64 {
        self.inner.waiting.load(Ordering::Acquire)
    }

    /// A statistics snapshot per resource. After [`Runtime::shutdown`] has resolved it is
    /// the last snapshot the supervisor took (every job ended, every slot free).
    pub async fn stats(&self) -> StatsSnapshot {
        match self.inner.supervisor.send(GetStats).await {
            Ok(snapshot) => snapshot,
            Err(_) => self.final_stats().unwrap_or_default(),
        }
    }

    fn final_stats(&self) -> Option<StatsSnapshot> {
        self.inner.final_stats.lock().ok().and_then(|s| s.clone())
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
            .send(crate::supervisor::GetBackendStats)
            .await
            .unwrap_or_default()
    }

    /// [`Runtime::usage`] for threads outside any async runtime.
    pub fn usage_blocking(&self, tenant: impl Into<TenantId>) -> UsageSnapshot {
        futures::executor::block_on(self.usage(tenant))
    }

    pub(crate) fn report_cost(&self, key: JobKey, cost: u64) {
        let _ = self.push(Intake::Cost { key, cost });
    }

    /// [`Runtime::stats`] for threads outside any async runtime.
    pub fn stats_blocking(&self) -> StatsSnapshot {
        futures::executor::block_on(self.stats())
    }

    /// Stops intake, cancels every job that has not started, lets running jobs finish
    /// for up to `grace`, then stops them (`Cancelled`). Resolves once every job has its
    /// outcome and every slot is back.
    pub async fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.inner.closed.store(true, Ordering::Release);
        let (tx, rx) = oneshot::channel();
        self.inner.supervisor.do_send(Shutdown { grace, reply: tx });
        rx.await.unwrap_or_default()
    }

    /// [`Runtime::shutdown`] for threads outside any async runtime.
    pub fn shutdown_blocking(&self, grace: Duration) -> ShutdownReport {
        futures::executor::block_on(self.shutdown(grace))
    }
}
