//! A job as the runtime carries it: its spec, its body with the body's type erased, and
//! the channel that delivers its one outcome to whoever submitted it.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::oneshot;
use tracing::Instrument;
use weir::{JobError, JobKey, JobSpec, Outcome, OutcomeKind};

use crate::budget::CallBudget;
use crate::context::JobContext;
use crate::retrying::{Rearm, Retrying};
use crate::runtime::Runtime;
use crate::stop::{Stop, StopReason, Stoppable};
use crate::supervisor::Done;

/// Where a job's outcome goes: an async handle or a blocking one.
pub(crate) enum OutcomeTx<T> {
    Async(oneshot::Sender<Outcome<T>>),
    Blocking(crossbeam_channel::Sender<Outcome<T>>),
}

impl<T> OutcomeTx<T> {
    pub(crate) fn send(self, outcome: Outcome<T>) {
        // The receiver may be gone (the caller dropped its handle): the outcome is still
        // counted in stats; nobody is left to tell.
        match self {
            OutcomeTx::Async(tx) => {
                let _ = tx.send(outcome);
            }
            OutcomeTx::Blocking(tx) => {
                let _ = tx.send(outcome);
            }
        }
    }
}

/// Reports a started job's end to the supervisor, exactly once: when it is dropped.
///
/// Created when the slot is granted and carried with the job (in the `Run` message, then
/// in the job's task), so the slot comes back however the job ends: normally, by a panic
/// (also one raised while dropping a stopped body), because a worker died with the job
/// in its mailbox, or because the executor dropped the task. A job that ends abnormally
/// is reported `Failed`, and its handle, whose sender is dropped with it, resolves
/// `Failed(RuntimeStopped)`.
pub(crate) struct SlotReturn {
    key: JobKey,
    runtime: Runtime,
    kind: OutcomeKind,
    rearm: Option<Box<Rearm>>,
}

impl SlotReturn {
    pub(crate) fn new(key: JobKey, runtime: Runtime) -> Self {
        Self {
            key,
            runtime,
            kind: OutcomeKind::Failed,
            rearm: None,
        }
    }

    /// Returns the slot with a failed attempt that may run again (a retrying job).
    pub(crate) fn rearm(mut self, rearm: Rearm) {
        self.kind = OutcomeKind::Failed;
        self.rearm = Some(Box::new(rearm));
    }

    /// Returns the slot with the job's outcome.
    pub(crate) fn finish(mut self, kind: OutcomeKind) {
        self.kind = kind;
    }
}

impl Drop for SlotReturn {
    fn drop(&mut self) {
        self.runtime.report_done(Done {
            key: self.key,
            kind: self.kind,
            rearm: self.rearm.take(),
        });
    }
}

/// The body of a job with its result type erased, so the supervisor can hold jobs of
/// every type in one queue. One allocation per job: the boxed body holds its closure and
/// its outcome sender together.
pub(crate) trait ErasedBody: Send {
    /// Spawns the body on the current thread (a worker arbiter); the task returns the slot
    /// through `slot` when it stops.
    fn spawn(self: Box<Self>, ctx: JobContext, stop: Arc<Stop>, slot: SlotReturn);
    /// Resolves the handle of a job that never ran.
    fn resolve(self: Box<Self>, outcome: Outcome<()>);
}

struct Typed<F, T> {
    body: F,
    tx: OutcomeTx<T>,
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// The tracing span of one job's run.
pub(crate) fn job_span(ctx: &JobContext) -> tracing::Span {
    tracing::info_span!(
        "job",
        job = ctx.key().id().0,
        tenant = %ctx.tenant(),
        resource = %ctx.resource()
    )
}

/// Runs one attempt of a job body under its stop signal and returns its outcome.
///
/// `fut` should call the body inside itself (`async move { body(ctx).await }`), so a
/// panic in the body's synchronous part is caught too. The future sits in an `Option`
/// so it can be dropped in place, under `catch_unwind`, before the outcome is returned;
/// if the body left a blocking section running, this waits for it, since it may still
/// be calling the downstream and the slot must stay held until it returns.
pub(crate) async fn run_attempt<T, Fut>(fut: Fut, stop: &Stop) -> (Outcome<T>, OutcomeKind)
where
    Fut: Future<Output = Result<T, JobError>>,
{
    let mut guarded = std::pin::pin!(Some(AssertUnwindSafe(fut).catch_unwind()));
    let result = Stoppable {
        fut: guarded.as_mut().as_pin_mut().expect("set above"),
        stop,
    }
    .await;
    if std::panic::catch_unwind(AssertUnwindSafe(|| guarded.set(None))).is_err() {
        tracing::warn!("job panicked while its stopped body was dropped");
    }
    let (outcome, kind) = match result {
        Ok(Ok(Ok(value))) => (Outcome::Completed(value), OutcomeKind::Completed),
        Ok(Ok(Err(error))) => (Outcome::Failed(error), OutcomeKind::Failed),
        Ok(Err(panic)) => {
            let message = panic_message(&*panic);
            tracing::warn!(panic = %message, "job panicked");
            (Outcome::Failed(JobError::Panicked(message)), OutcomeKind::Failed)
        }
        Err(reason) => {
            let kind = reason.outcome();
            let outcome = match reason {
                StopReason::TimedOut => Outcome::TimedOut,
                StopReason::Cancelled => Outcome::Cancelled,
                StopReason::LeaseLost => Outcome::Failed(JobError::LeaseLost),
            };
            (outcome, kind)
        }
    };
    let sections = stop.blocking_sections();
    if sections > 0 {
        tracing::warn!(
            sections,
            outcome = ?kind,
            "job ended but a blocking section cannot be stopped; its slot is held until it returns"
        );
        stop.blocking_returned().await;
        tracing::info!("blocking section returned; slot released");
    }
    (outcome, kind)
}

impl<F, Fut, T> ErasedBody for Typed<F, T>
where
    F: FnOnce(JobContext) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, JobError>> + 'static,
    T: Send + 'static,
{
    fn spawn(self: Box<Self>, ctx: JobContext, stop: Arc<Stop>, slot: SlotReturn) {
        let Typed { body, tx } = *self;
        let span = job_span(&ctx);
        crate::jobset::spawn(
            async move {
                let (outcome, kind) = run_attempt(async move { body(ctx).await }, &stop).await;
                // The slot's report goes first: once a caller sees the outcome, a stats
                // request it sends next finds the slot back (the mailbox is FIFO).
                slot.finish(kind);
                tx.send(outcome);
            }
            .instrument(span),
        );
    }

    fn resolve(self: Box<Self>, outcome: Outcome<()>) {
        self.tx
            .send(outcome.map(|()| unreachable!("a job that never ran has no value")));
    }
}

/// A job ready to submit: what it needs (its [`JobSpec`]) and what it does (its body).
///
/// The body receives a [`JobContext`] and returns a future; the future need not be
/// `Send` (it runs on the worker thread that created it).
///
/// ```
/// use weir::{JobError, JobSpec};
/// use weir_actors::Job;
/// let (job, handle) = Job::new(JobSpec::new("acme", "store"), |_ctx| async { Ok::<_, JobError>(7) });
/// # drop((job, handle));
/// ```
pub struct Job {
    pub(crate) spec: JobSpec,
    pub(crate) body: Box<dyn ErasedBody>,
    pub(crate) stop: Arc<Stop>,
    /// A call budget inherited from the parent (`include_children`); else the resource's.
    pub(crate) budget: Option<Arc<CallBudget>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// A job and the handle that will resolve to its outcome once it is submitted.
    pub fn new<F, Fut, T>(spec: JobSpec, body: F) -> (Job, crate::JobHandle<T>)
    where
        F: FnOnce(JobContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, JobError>> + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let stop = Arc::new(Stop::default());
        let job = Job {
            spec,
            body: Box::new(Typed {
                body,
                tx: OutcomeTx::Async(tx),
            }),
            stop: stop.clone(),
            budget: None,
        };
        (job, crate::JobHandle::new(rx, stop))
    }

    /// A job whose outcome is delivered to a blocking ticket (for threads outside any
    /// async runtime).
    pub fn new_blocking<F, Fut, T>(spec: JobSpec, body: F) -> (Job, crate::BlockingTicket<T>)
    where
        F: FnOnce(JobContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, JobError>> + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let stop = Arc::new(Stop::default());
        let job = Job {
            spec,
            body: Box::new(Typed {
                body,
                tx: OutcomeTx::Blocking(tx),
            }),
            stop: stop.clone(),
            budget: None,
        };
        (job, crate::BlockingTicket::new(rx, stop))
    }

    /// A job whose body can run again: when an attempt fails with [`JobError::Job`] and
    /// its resource's `retry` policy has an attempt left (and its breaker is not open),
    /// the job sleeps its backoff without holding a slot (at least the error's
    /// Retry-After) and the body is called again with a fresh context. The handle
    /// resolves once, with the final attempt's outcome.
    ///
    /// ```
    /// use weir::{JobError, JobSpec};
    /// use weir_actors::Job;
    /// let (job, handle) = Job::retrying(JobSpec::new("acme", "api"), |ctx| async move {
    ///     ctx.call()?; // counts against the resource's call budget, if it has one
    ///     Ok::<_, JobError>(7)
    /// });
    /// # drop((job, handle));
    /// ```
    pub fn retrying<F, Fut, T>(spec: JobSpec, body: F) -> (Job, crate::JobHandle<T>)
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, JobError>> + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let stop = Arc::new(Stop::default());
        let job = Job {
            spec,
            body: Box::new(Retrying {
                body,
                tx: OutcomeTx::Async(tx),
            }),
            stop: stop.clone(),
            budget: None,
        };
        (job, crate::JobHandle::new(rx, stop))
    }

    /// The job's spec.
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }
}
