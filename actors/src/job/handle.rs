//! What a submitter holds: a handle that resolves to the job's one outcome.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::oneshot;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use weir::{JobError, Outcome};

use super::link::Link;
use super::stop::{Stop, StopReason};

/// What every handle of a job shares: its stop signal, and once the job is submitted the
/// link that tells the supervisor about a cancellation.
#[derive(Debug)]
pub(crate) struct Canceller {
    stop: Arc<Stop>,
    link: Option<Link>,
}

impl Canceller {
    /// A job not submitted yet: a cancel only sets its flag (the submission sees it).
    fn new(stop: Arc<Stop>) -> Self {
        Self { stop, link: None }
    }

    /// The job was submitted through `link`: a cancel now reaches the supervisor.
    fn attach(&mut self, link: &Link) {
        self.link = Some(link.clone());
    }

    /// Sets the job's stop flag (once) and, if it was submitted, tells the supervisor.
    fn cancel(&self) {
        if self.stop.request(StopReason::Cancelled) {
            if let Some(link) = &self.link {
                link.cancel(self.stop.clone());
            }
        }
    }
}

/// Resolves to the job's outcome. Dropping it does not cancel the job.
#[derive(Debug)]
pub struct JobHandle<T> {
    rx: oneshot::Receiver<Outcome<T>>,
    canceller: Canceller,
    /// The caller's token ([`JobHandle::cancel_on`]); polled with the outcome, taken
    /// once it fires.
    token: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl<T> JobHandle<T> {
    pub(crate) fn new(rx: oneshot::Receiver<Outcome<T>>, stop: Arc<Stop>) -> Self {
        Self {
            rx,
            canceller: Canceller::new(stop),
            token: None,
        }
    }

    /// Ties the job to the caller's `token`: when it is cancelled the job is cancelled
    /// as by [`JobHandle::cancel`] (not started: `Cancelled` without running; running:
    /// its future is dropped, its blocking sections see
    /// [`JobContext::cancellation_token`](crate::JobContext::cancellation_token), its
    /// slot comes back).
    ///
    /// The token is watched while the handle is awaited (no task is spawned per job),
    /// so a dropped handle no longer cancels on it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tokio_util::sync::CancellationToken;
    /// # use weir::{Config, JobError, JobSpec, Outcome};
    /// # actix_rt::System::new().block_on(async {
    /// let runtime = weir_actors::Runtime::start(Config::default()).unwrap();
    /// let request = CancellationToken::new(); // e.g. the client went away
    /// let job = runtime
    ///     .submit(JobSpec::new("acme", "store"), |_ctx| async {
    ///         tokio::time::sleep(Duration::from_secs(60)).await;
    ///         Ok::<_, JobError>(())
    ///     })
    ///     .unwrap()
    ///     .cancel_on(request.clone());
    /// request.cancel();
    /// assert_eq!(job.await, Outcome::Cancelled);
    /// # runtime.shutdown(Duration::from_secs(1)).await;
    /// # });
    /// ```
    pub fn cancel_on(mut self, token: CancellationToken) -> Self {
        self.token = Some(Box::pin(token.cancelled_owned()));
        self
    }

    /// The job was submitted through `link`: a cancel now reaches the supervisor.
    pub(crate) fn attach(&mut self, link: &Link) {
        self.canceller.attach(link);
    }

    /// Cancels the job: if it has not started it ends `Cancelled` without running; if it
    /// runs, its future is dropped and it ends `Cancelled` (unless it ended first).
    pub fn cancel(&self) {
        self.canceller.cancel();
    }

    /// Returns the outcome if the job has ended, without waiting.
    pub fn try_outcome(&mut self) -> Option<Outcome<T>> {
        match self.rx.try_recv() {
            Ok(o) => Some(o),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(lost()),
        }
    }
}

fn lost<T>() -> Outcome<T> {
    Outcome::Failed(JobError::RuntimeStopped(
        "the runtime dropped the job without an outcome".into(),
    ))
}

impl<T> Future for JobHandle<T> {
    type Output = Outcome<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(token) = &mut self.token {
            if token.as_mut().poll(cx).is_ready() {
                self.token = None;
                self.canceller.cancel();
            }
        }
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|_| lost()))
    }
}

/// The blocking counterpart of [`JobHandle`], for threads outside any async runtime.
#[derive(Debug)]
pub struct BlockingTicket<T> {
    rx: crossbeam_channel::Receiver<Outcome<T>>,
    canceller: Canceller,
}

impl<T> BlockingTicket<T> {
    pub(crate) fn new(rx: crossbeam_channel::Receiver<Outcome<T>>, stop: Arc<Stop>) -> Self {
        Self {
            rx,
            canceller: Canceller::new(stop),
        }
    }

    /// See [`JobHandle::attach`].
    pub(crate) fn attach(&mut self, link: &Link) {
        self.canceller.attach(link);
    }

    /// Blocks the calling thread until the job ends.
    pub fn wait(self) -> Outcome<T> {
        self.rx.recv().unwrap_or_else(|_| lost())
    }

    /// Waits at most `timeout`; `None` if the job has not ended by then.
    pub fn wait_timeout(&self, timeout: std::time::Duration) -> Option<Outcome<T>> {
        match self.rx.recv_timeout(timeout) {
            Ok(o) => Some(o),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Some(lost()),
        }
    }

    /// Cancels the job (see [`JobHandle::cancel`]).
    pub fn cancel(&self) {
        self.canceller.cancel();
    }
}
