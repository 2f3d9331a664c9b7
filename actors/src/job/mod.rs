//! The job lifecycle: a job as the runtime carries it (its spec, its body with the
//! body's type erased, and the channel that delivers its one outcome), the context its
//! body runs with, the handle its submitter holds, its stop signal and call budget, and
//! the link through which all of them talk back to the supervisor.
//!
//! Nothing in this folder names an actor type: the supervisor is reached only through
//! [`link::Link`], so jobs, contexts and handles do not depend on the supervisor or on
//! the public [`Runtime`](crate::Runtime).

pub(crate) mod body;
pub(crate) mod budget;
pub(crate) mod context;
pub(crate) mod handle;
pub(crate) mod inbox;
pub(crate) mod link;
pub(crate) mod notices;
pub(crate) mod retrying;
pub(crate) mod slot;
pub(crate) mod stop;

use std::future::Future;
use std::sync::Arc;

use tokio::sync::oneshot;
use weir::{JobError, JobSpec};

use body::{ErasedBody, OutcomeTx, Typed};
use budget::CallBudget;
use context::JobContext;
use handle::{BlockingTicket, JobHandle};
use retrying::Retrying;
use stop::Stop;

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
    pub fn new<F, Fut, T>(spec: JobSpec, body: F) -> (Job, JobHandle<T>)
    where
        F: FnOnce(JobContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, JobError>> + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let body = Typed {
            body,
            tx: OutcomeTx::Async(tx),
        };
        let (job, stop) = Job::erased(spec, Box::new(body));
        (job, JobHandle::new(rx, stop))
    }

    /// A job whose outcome is delivered to a blocking ticket (for threads outside any
    /// async runtime).
    pub fn new_blocking<F, Fut, T>(spec: JobSpec, body: F) -> (Job, BlockingTicket<T>)
    where
        F: FnOnce(JobContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, JobError>> + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let body = Typed {
            body,
            tx: OutcomeTx::Blocking(tx),
        };
        let (job, stop) = Job::erased(spec, Box::new(body));
        (job, BlockingTicket::new(rx, stop))
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
    pub fn retrying<F, Fut, T>(spec: JobSpec, body: F) -> (Job, JobHandle<T>)
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, JobError>> + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let body = Retrying {
            body,
            tx: OutcomeTx::Async(tx),
        };
        let (job, stop) = Job::erased(spec, Box::new(body));
        (job, JobHandle::new(rx, stop))
    }

    /// The one constructor behind the public ones: a job around an erased body, and its
    /// stop signal for the handle.
    fn erased(spec: JobSpec, body: Box<dyn ErasedBody>) -> (Job, Arc<Stop>) {
        let stop = Arc::new(Stop::default());
        let job = Job {
            spec,
            body,
            stop: stop.clone(),
            budget: None,
        };
        (job, stop)
    }

    /// The job's spec.
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }
}
