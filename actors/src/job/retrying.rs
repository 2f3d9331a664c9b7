//! Jobs that can run again: a body that is `Fn` (not `FnOnce`), so a failed attempt can
//! be re-armed and handed back to the supervisor, which asks the core's retry policy
//! whether and when it runs again.
//!
//! Only an attempt that failed with the job's own error ([`JobError::Job`], which may
//! carry a downstream's Retry-After) is handed back; a panic, a budget exhaustion, a
//! timeout or a cancellation ends the job at once. The job's handle resolves once, with
//! the outcome of its final attempt.

use std::future::Future;
use std::sync::Arc;

use weir::{JobError, Outcome};

use super::body::{boxed_in_span, job_span, run_attempt, ErasedBody, JobFuture, OutcomeTx};
use super::context::JobContext;
use super::slot::SlotReturn;
use super::stop::Stop;

/// A failed attempt handed back to the supervisor: the re-armed body, the error, and
/// the context it ran with (identity, stop signal, call budget).
pub(crate) struct Rearm {
    pub(crate) body: Box<dyn ErasedBody>,
    pub(crate) error: JobError,
    pub(crate) ctx: JobContext,
}

pub(crate) struct Retrying<F, T> {
    pub(crate) body: F,
    pub(crate) tx: OutcomeTx<T>,
}

impl<F, Fut, T> ErasedBody for Retrying<F, T>
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, JobError>> + 'static,
    T: Send + 'static,
{
    fn start(self: Box<Self>, ctx: JobContext, stop: Arc<Stop>, slot: SlotReturn) -> JobFuture {
        let span = job_span(&ctx);
        boxed_in_span(
            async move {
                let this = self;
                let keep = ctx.clone();
                let (outcome, kind) = run_attempt(async { (this.body)(ctx).await }, &stop).await;
                match outcome {
                    Outcome::Failed(error @ JobError::Job { .. }) => slot.rearm(Rearm {
                        body: this,
                        error,
                        ctx: keep,
                    }),
                    outcome => {
                        slot.finish(kind, super::body::overload_of(&outcome));
                        this.tx.send(outcome);
                    }
                }
            },
            span,
        )
    }

    fn resolve(self: Box<Self>, outcome: Outcome<()>) {
        self.tx
            .send(outcome.map(|()| unreachable!("a job that never ran has no value")));
    }
}
