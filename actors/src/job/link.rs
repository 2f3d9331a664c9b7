//! The link from jobs to their supervisor: the intake (see [`super::inbox`]), the
//! `max_queued` backpressure count, and the two actix messages that wake the supervisor.
//!
//! Jobs, contexts, handles and slot returns hold a [`Link`], never the public
//! [`Runtime`](crate::Runtime) and never the supervisor's address: the link names only the
//! messages it sends ([`Drain`], [`Cancel`]), not the actor that handles them. That keeps
//! the job lifecycle free of the supervisor's type, and the public handle a thin facade.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Message, Recipient};
use tokio::sync::oneshot;
use weir::{JobKey, JobSpec, Outcome, OutcomeKind};

use super::body::ErasedBody;
use super::budget::CallBudget;
use super::inbox::{Appended, Inbox, Intake};
use super::retrying::Rearm;
use super::stop::Stop;
use super::Job;

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
    /// More jobs asked for at once than `max_queued` lets wait at all: no wait makes
    /// room for them. Refused before their bodies are built when the iterator knows its
    /// length.
    #[error("{asked} jobs asked for at once, more than max_queued ({max_queued}) can ever hold; submit them in parts or raise scheduler.max_queued")]
    TooMany {
        /// Jobs in the one submission.
        asked: u64,
        /// The configured bound.
        max_queued: u64,
    },
    /// The runtime is shutting down or stopped.
    #[error("the runtime is shutting down")]
    ShuttingDown,
}

/// `?` on a refused spawn or submit inside a job body: the job fails with the refusal's
/// text.
///
/// ```
/// use weir::JobError;
/// use weir_actors::SubmitError;
///
/// let refusal = SubmitError::TooMany { asked: 2_000_000, max_queued: 1_000_000 };
/// let error = JobError::from(refusal);
/// assert!(error.to_string().starts_with("2000000 jobs asked for at once, more than max_queued (1000000)"));
/// ```
impl From<SubmitError> for weir::JobError {
    fn from(e: SubmitError) -> Self {
        weir::JobError::msg(e.to_string())
    }
}

/// A job on its way into the supervisor's core.
pub(crate) struct Submitted {
    pub(crate) spec: JobSpec,
    pub(crate) body: Box<dyn ErasedBody>,
    pub(crate) stop: Arc<Stop>,
    pub(crate) budget: Option<Arc<CallBudget>>,
}

impl From<Job> for Submitted {
    fn from(job: Job) -> Self {
        Self {
            spec: job.spec,
            body: job.body,
            stop: job.stop,
            budget: job.budget,
        }
    }
}

/// A started job stopped: its slot comes back. A retrying job's failed attempt comes
/// with its re-armed body (`rearm`), which may run again; boxed, because retries are
/// rare and a `Done` travels with every job (in its task's future, through the inbox).
pub(crate) struct Done {
    pub(crate) key: JobKey,
    pub(crate) kind: OutcomeKind,
    /// `Some(retry_after)`: the attempt failed with an overload error (a signal for an
    /// adaptive limit or rate), which carried that Retry-After.
    pub(crate) overload: Option<Option<std::time::Duration>>,
    pub(crate) rearm: Option<Box<Rearm>>,
}

/// The inbox has new items (see [`super::inbox`]).
pub(crate) struct Drain;

impl Message for Drain {
    type Result = ();
}

/// The caller cancelled a job (its stop flag is already set).
pub(crate) struct Cancel(pub(crate) Arc<Stop>);

impl Message for Cancel {
    type Result = ();
}

struct Shared {
    inbox: Inbox,
    drain: Recipient<Drain>,
    cancel: Recipient<Cancel>,
    /// Jobs accepted and not yet started or ended: the `max_queued` bound. This counter is
    /// backpressure only; it admits nothing to a slot (only the supervisor does that).
    waiting: AtomicU64,
    max_queued: u64,
    closed: AtomicBool,
}

/// See the module docs. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub(crate) struct Link {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

impl Link {
    /// A link to the actor that handles `drain` and `cancel`.
    pub(crate) fn new(drain: Recipient<Drain>, cancel: Recipient<Cancel>, max_queued: u64) -> Self {
        Self {
            shared: Arc::new(Shared {
                inbox: Inbox::default(),
                drain,
                cancel,
                waiting: AtomicU64::new(0),
                max_queued,
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// Whether both are links to the same supervisor.
    pub(crate) fn same_as(&self, other: &Link) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Wakes the supervisor to drain its inbox (see [`super::notices`] for when).
    pub(crate) fn send_drain(&self) {
        self.shared.drain.do_send(Drain);
    }

    pub(crate) fn inbox(&self) -> &Inbox {
        &self.shared.inbox
    }

    /// Appends to the supervisor's inbox, notifying it if no drain is on its way; gives
    /// the item back (`Some`) if the supervisor has stopped.
    #[must_use]
    fn push(&self, item: Intake) -> Option<Intake> {
        match self.shared.inbox.push(item, super::notices::in_pass()) {
            Appended::Notify => {
                self.send_drain();
                None
            }
            Appended::Deferred => {
                super::notices::owe_drain(self);
                None
            }
            Appended::Queued => None,
            Appended::Closed(item) => Some(item),
        }
    }

    /// Refuses every later submission (shutdown began, or the supervisor stopped).
    pub(crate) fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
    }

    /// A started job stopped: its slot goes back to the supervisor.
    pub(crate) fn report_done(&self, done: Done) {
        // Closed: the supervisor is gone, and the slot with it.
        let _ = self.push(Intake::Done(done));
    }

    /// Reserves room for `n` waiting jobs, or refuses.
    /// False once the runtime shuts down (submissions are refused from then on).
    pub(crate) fn is_open(&self) -> bool {
        !self.shared.closed.load(Ordering::Acquire)
    }

    /// Refuses a submission of at least `n` jobs that could never be accepted, before
    /// anything is built for them.
    pub(crate) fn precheck(&self, n: u64) -> Result<(), SubmitError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        let max_queued = self.shared.max_queued;
        if n > max_queued {
            return Err(SubmitError::TooMany { asked: n, max_queued });
        }
        let queued = self.waiting();
        if queued.saturating_add(n) > max_queued {
            return Err(SubmitError::QueueFull { queued, max_queued });
        }
        Ok(())
    }

    fn reserve(&self, n: u64) -> Result<(), SubmitError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        let max_queued = self.shared.max_queued;
        if n > max_queued {
            return Err(SubmitError::TooMany { asked: n, max_queued });
        }
        let before = self.shared.waiting.fetch_add(n, Ordering::AcqRel);
        if before + n > max_queued {
            self.shared.waiting.fetch_sub(n, Ordering::AcqRel);
            return Err(SubmitError::QueueFull {
                queued: before,
                max_queued,
            });
        }
        Ok(())
    }

    /// Jobs accepted and not yet started or ended (what `max_queued` bounds).
    pub(crate) fn waiting(&self) -> u64 {
        self.shared.waiting.load(Ordering::Acquire)
    }

    /// The supervisor reports a job that waits again (a retry sleeping its backoff).
    pub(crate) fn entered_waiting(&self, n: u64) {
        self.shared.waiting.fetch_add(n, Ordering::AcqRel);
    }

    /// The supervisor reports jobs that left the waiting state.
    pub(crate) fn left_waiting(&self, n: u64) {
        if n > 0 {
            self.shared.waiting.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Hands reserved submissions to the supervisor; if it has stopped, they are
    /// resolved `Cancelled` and refused.
    fn send(&self, intake: Intake, n: u64) -> Result<(), SubmitError> {
        let Some(refused) = self.push(intake) else {
            return Ok(());
        };
        self.left_waiting(n);
        for item in refused.into_submissions() {
            item.body.resolve(Outcome::Cancelled);
        }
        Err(SubmitError::ShuttingDown)
    }

    /// Submits one job, released at once.
    pub(crate) fn send_job(&self, job: Job) -> Result<(), SubmitError> {
        if let Err(e) = self.reserve(1) {
            job.body.resolve(Outcome::Cancelled);
            return Err(e);
        }
        self.send(Intake::One(Submitted::from(job)), 1)
    }

    /// Submits jobs together (all or none); `fanout` releases them in batches.
    pub(crate) fn send_jobs(&self, jobs: Vec<Job>, fanout: bool) -> Result<(), SubmitError> {
        let n = jobs.len() as u64;
        if let Err(e) = self.reserve(n) {
            for job in jobs {
                job.body.resolve(Outcome::Cancelled);
            }
            return Err(e);
        }
        let items = jobs.into_iter().map(Submitted::from).collect();
        self.send(Intake::Many { items, fanout }, n)
    }

    /// Asks the supervisor to cancel the job whose stop flag was just set.
    pub(crate) fn cancel(&self, stop: Arc<Stop>) {
        self.shared.cancel.do_send(Cancel(stop));
    }

    /// Renews a running job's lease; the new lease end, or why not.
    pub(crate) async fn renew(&self, key: JobKey) -> Result<Duration, weir::LeaseError> {
        let (tx, rx) = oneshot::channel();
        // Refused (the supervisor stopped): the sender is dropped with the item.
        let _ = self.push(Intake::Renew(key, tx));
        rx.await.unwrap_or(Err(weir::LeaseError::Ended))
    }

    /// Gives the job's slot back while `wait` runs, and takes a slot again (waiting in
    /// the fair queue like any job) before returning what `wait` gave. The one way a job
    /// waits for other jobs (children, a coalesced batch) without holding a slot.
    pub(crate) async fn without_slot<R>(&self, key: JobKey, wait: impl std::future::Future<Output = R>) -> R {
        let _ = self.push(Intake::Park(key));
        let value = wait.await;
        let (tx, rx) = oneshot::channel();
        // Refused (the supervisor stopped): the dropped sender says no slot will come.
        let _ = self.push(Intake::Unpark(key, tx));
        if rx.await.is_err() {
            // No slot will come: the job is being stopped (lease expired or cancelled).
            // Never run on without a slot; wait to be dropped.
            std::future::pending::<()>().await;
        }
        value
    }

    /// A running job reports its actual cost (charged when it ends).
    pub(crate) fn report_cost(&self, key: JobKey, cost: u64) {
        let _ = self.push(Intake::Cost { key, cost });
    }
}
