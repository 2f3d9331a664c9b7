//! A job's body with its result type erased, and the run of one attempt of it.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::oneshot;
use tracing::Instrument;
use weir::{JobError, Outcome, OutcomeKind};

use super::context::JobContext;
use super::slot::SlotReturn;
use super::stop::{Stop, StopReason, Stoppable};

/// A started job's run, polled by the worker thread it was handed to (need not be `Send`).
pub(crate) type JobFuture = Pin<Box<dyn Future<Output = ()>>>;

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

/// The body of a job with its result type erased, so the supervisor can hold jobs of
/// every type in one queue. One allocation per job: the boxed body holds its closure and
/// its outcome sender together.
pub(crate) trait ErasedBody: Send {
    /// The body's run as one boxed future, for the worker thread that polls it; the
    /// future returns the slot through `slot` when it stops. (A future, not a spawn, so
    /// the job lifecycle does not depend on how workers run their jobs.)
    fn start(self: Box<Self>, ctx: JobContext, stop: Arc<Stop>, slot: SlotReturn) -> JobFuture;
    /// Resolves the handle of a job that never ran.
    fn resolve(self: Box<Self>, outcome: Outcome<()>);
}

/// A body called once (`FnOnce`), with the sender of its outcome.
pub(crate) struct Typed<F, T> {
    pub(crate) body: F,
    pub(crate) tx: OutcomeTx<T>,
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
/// `Some(retry_after)` when an attempt failed with
/// [`JobError::overload`](weir::JobError::overload), with the Retry-After it carried.
pub(crate) fn overload_of<T>(outcome: &Outcome<T>) -> Option<Option<std::time::Duration>> {
    match outcome {
        Outcome::Failed(e) => refusal_of(e),
        _ => None,
    }
}

/// `Some(retry_after)` when `error` is an overload refusal.
pub(crate) fn refusal_of(error: &weir::JobError) -> Option<Option<std::time::Duration>> {
    match error {
        weir::JobError::Job {
            overload: true,
            retry_after,
            ..
        } => Some(*retry_after),
        _ => None,
    }
}

pub(crate) fn job_span(ctx: &JobContext) -> tracing::Span {
    tracing::info_span!(
        "job",
        job = ctx.key().id().0,
        tenant = %ctx.tenant(),
        resource = %ctx.resource()
    )
}

/// Boxes a job's run, inside `span` when a subscriber records it.
///
/// Why not always `instrument`: with tracing off the span is disabled, yet `Instrumented`
/// still enters and exits it on every poll (about 2 % of an empty job's CPU in `perf`).
pub(crate) fn boxed_in_span(run: impl Future<Output = ()> + 'static, span: tracing::Span) -> JobFuture {
    if span.is_disabled() {
        Box::pin(run)
    } else {
        Box::pin(run.instrument(span))
    }
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
    fn start(self: Box<Self>, ctx: JobContext, stop: Arc<Stop>, slot: SlotReturn) -> JobFuture {
        let Typed { body, tx } = *self;
        let span = job_span(&ctx);
        boxed_in_span(
            async move {
                let (outcome, kind) = run_attempt(async move { body(ctx).await }, &stop).await;
                // The slot's report goes first: once a caller sees the outcome, a stats
                // request it sends next finds the slot back (the mailbox is FIFO).
                slot.finish(kind, overload_of(&outcome));
                tx.send(outcome);
            },
            span,
        )
    }

    fn resolve(self: Box<Self>, outcome: Outcome<()>) {
        self.tx
            .send(outcome.map(|()| unreachable!("a job that never ran has no value")));
    }
}
