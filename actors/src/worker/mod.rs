//! Body threads: each runs on its own arbiter (thread) the granted jobs it takes from one
//! shared queue (see `queue.rs`), each inside the slot it was granted.
//!
//! # Why a worker never takes a job down with it
//!
//! Job panics are caught inside each job's own future (see `job/body.rs`), so job code
//! cannot kill a body thread's driver. Should a driver die anyway (a bug in weir, or the
//! `weir::worker::run` failpoint), the jobs it held are dropped with it, and each one's
//! `SlotReturn` reports its end (`Failed`), so no slot leaks and every handle resolves.
//! The [`WorkerPool`] restarts a dead driver on its arbiter before it queues more jobs,
//! and runs the jobs on the supervisor's own arbiter if no body thread is left.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

mod jobset;
mod placement;
mod queue;

use crate::job::body::{ErasedBody, JobFuture};
use crate::job::context::JobContext;
use crate::job::slot::SlotReturn;
use crate::job::stop::Stop;
pub(crate) use placement::{Place, Placements};
use queue::BodyQueue;

/// A job with its grant: the context names the key whose slot the supervisor holds for it.
pub(crate) struct Run {
    pub(crate) body: Box<dyn ErasedBody>,
    pub(crate) ctx: JobContext,
    pub(crate) stop: Arc<Stop>,
    pub(crate) slot: SlotReturn,
}

impl Run {
    /// The job's run, for the thread that polls it.
    fn start(self) -> JobFuture {
        self.body.start(self.ctx, self.stop, self.slot)
    }

    /// Runs the job on the current arbiter.
    pub(crate) fn spawn_here(self) {
        jobset::spawn(self.start());
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("job", &self.ctx.key())
            .finish_non_exhaustive()
    }
}

/// A body thread: its arbiter and its driver's death flag.
#[derive(Debug)]
struct BodyThread {
    arbiter: actix_rt::ArbiterHandle,
    dead: Arc<AtomicBool>,
    /// The arbiter refused a driver (it has stopped).
    gone: bool,
}

impl BodyThread {
    fn start(arbiter: actix_rt::ArbiterHandle, queue: &Arc<BodyQueue<Run>>) -> Self {
        let dead = Arc::new(AtomicBool::new(false));
        let (q, flag) = (queue.clone(), dead.clone());
        let gone = !arbiter.spawn_fn(move || jobset::start_taker(q, flag));
        Self { arbiter, dead, gone }
    }
}

/// The body threads and the queue they take granted jobs from.
pub(crate) struct WorkerPool {
    threads: Vec<BodyThread>,
    queue: Arc<BodyQueue<Run>>,
    /// Jobs granted since the last [`WorkerPool::flush`].
    pending: Vec<Run>,
    restarts: u64,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("threads", &self.threads.len())
            .field("restarts", &self.restarts)
            .finish_non_exhaustive()
    }
}

impl Default for WorkerPool {
    fn default() -> Self {
        Self::start(&[])
    }
}

impl WorkerPool {
    /// Starts one body thread's driver on each arbiter.
    pub(crate) fn start(arbiters: &[actix_rt::Arbiter]) -> Self {
        let queue = Arc::new(BodyQueue::new(arbiters.len()));
        Self {
            threads: arbiters
                .iter()
                .map(|a| BodyThread::start(a.handle(), &queue))
                .collect(),
            queue,
            pending: Vec::new(),
            restarts: 0,
        }
    }

    /// Whether there are body threads (else every job runs on the caller's arbiter).
    pub(crate) fn has_threads(&self) -> bool {
        !self.threads.is_empty()
    }

    /// Hands a job to the body threads ([`Place::Threads`]); it is queued with the pass's
    /// other jobs at the next [`WorkerPool::flush`]. Runs the job here (on the caller's
    /// arbiter) when placed [`Place::Inline`] or if there are no body threads.
    pub(crate) fn dispatch(&mut self, run: Run, place: Place) {
        if place == Place::Inline || self.threads.is_empty() {
            run.spawn_here();
            return;
        }
        self.pending.push(run);
    }

    /// Queues the jobs granted since the last flush, in one append that wakes at most one
    /// parked body thread per job, after restarting any driver that died. Runs them here
    /// if no body thread is left. The supervisor flushes at the end of every pass, so no
    /// job waits for a later one.
    pub(crate) fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        for (i, thread) in self.threads.iter_mut().enumerate() {
            if thread.gone || !thread.dead.load(Ordering::Acquire) {
                continue;
            }
            *thread = BodyThread::start(thread.arbiter.clone(), &self.queue);
            self.restarts += 1;
            tracing::warn!(worker = i, restarts = self.restarts, "worker died; restarted");
        }
        if self.threads.iter().all(|t| t.gone) {
            tracing::error!("every worker arbiter is gone; running jobs on the supervisor's arbiter");
            for run in self.pending.drain(..).chain(self.queue.take_everything()) {
                run.spawn_here();
            }
            return;
        }
        self.queue.push_all(self.pending.drain(..));
    }
}
