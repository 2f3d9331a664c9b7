//! A job as the runtime carries it: its spec, its body with the body's type erased, and
//! the channel that delivers its one outcome to whoever submitted it.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::oneshot;
use tracing::Instrument;
use weir::{JobError, JobSpec, Outcome, OutcomeKind};

use crate::context::JobContext;
use crate::stop::{Stop, Stoppable};
use crate::supervisor::Done;

/// Where a job's outcome goes: an async handle or a blocking one.
pub(crate) enum OutcomeTx<T> {
    Async(oneshot::Sender<Outcome<T>>),
    Blocking(crossbeam_channel::Sender<Outcome<T>>),
}

impl<T> OutcomeTx<T> {
    fn send(self, outcome: Outcome<T>) {
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

/// The body of a job with its result type erased, so the supervisor can hold jobs of
/// every type in one queue. One allocation per job: the boxed body holds its closure and
/// its outcome sender together.
pub(crate) trait ErasedBody: Send {
    /// Spawns the body on the current thread (a worker arbiter); the task reports `Done`
    /// to the supervisor when it stops.
    fn spawn(self: Box<Self>, ctx: JobContext, stop: Arc<Stop>);
    /// Resolves the handle of a job that never ran.
    fn resolve(self: Box<Self>, outcome: Outcome<()>);
}

struct Typed<F, T> {
    body: F,
    tx: OutcomeTx<T>,
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

impl<F, Fut, T> ErasedBody for Typed<F, T>
where
    F: FnOnce(JobContext) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, JobError>> + 'static,
    T: Send + 'static,
{
    fn spawn(self: Box<Self>, ctx: JobContext, stop: Arc<Stop>) {
        let Typed { body, tx } = *self;
        let key = ctx.key();
        let supervisor = ctx.runtime().supervisor().clone();
        let span = tracing::info_span!(
            "job",
            job = key.id().0,
            tenant = %ctx.tenant(),
            resource = %ctx.resource()
        );
        actix_rt::spawn(
            async move {
                let result = {
                    // Calling the closure inside the guarded future catches a panic in
                    // its synchronous part too.
                    let guarded =
                        std::pin::pin!(AssertUnwindSafe(async move { body(ctx).await }).catch_unwind());
                    Stoppable {
                        fut: guarded,
                        stop: &stop,
                    }
                    .await
                    // The body's future is dropped here, before the slot is reported free.
                };
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
                        let outcome = match kind {
                            OutcomeKind::TimedOut => Outcome::TimedOut,
                            _ => Outcome::Cancelled,
                        };
                        (outcome, kind)
                    }
                };
                tx.send(outcome);
                supervisor.do_send(Done { key, kind });
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
        };
        (job, crate::BlockingTicket::new(rx, stop))
    }

    /// The job's spec.
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }
}
