//! Worker actors: each lives on its own arbiter (thread) and runs the jobs the
//! supervisor hands it, each inside the slot it was granted.
//!
//! # Why a worker never takes a job down with it
//!
//! Job panics are caught inside each job's own task (see `job/body.rs`), so job code cannot
//! kill a worker: the handler only spawns the task. Should a worker die anyway (a bug in
//! weir, or the `weir::worker::run` failpoint), the jobs in its mailbox are dropped with
//! it, and each one's `SlotReturn` reports its end (`Failed`), so no slot leaks and every
//! handle resolves. The [`WorkerPool`] restarts a dead worker on its arbiter before the
//! next dispatch, and runs the job on the supervisor's own arbiter if even that fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::{Actor, Addr, Context, Handler, Message};

mod jobset;

use crate::job::body::ErasedBody;
use crate::job::context::JobContext;
use crate::job::slot::SlotReturn;
use crate::job::stop::Stop;

/// Runs granted jobs on its arbiter. It keeps no per-job state, so a restarted worker
/// picks up where the dead one stopped.
#[derive(Debug, Default)]
pub(crate) struct Worker {
    /// Set while the worker dies, before the jobs it held report their end.
    dead: Arc<AtomicBool>,
}

impl Actor for Worker {
    type Context = Context<Self>;
}

/// A job with its grant: the context names the key whose slot the supervisor holds for it.
pub(crate) struct Run {
    pub(crate) body: Box<dyn ErasedBody>,
    pub(crate) ctx: JobContext,
    pub(crate) stop: Arc<Stop>,
    pub(crate) slot: SlotReturn,
}

impl Run {
    /// Runs the job on the current arbiter.
    pub(crate) fn spawn_here(self) {
        jobset::spawn(self.body.start(self.ctx, self.stop, self.slot));
    }
}

/// The jobs granted to one worker in one pass of the supervisor: one message per worker
/// per pass, not one per job, so a burst of grants costs each worker thread one mailbox
/// push and one wake-up.
pub(crate) struct RunBatch(Vec<Run>);

impl Message for RunBatch {
    type Result = ();
}

/// Marks its worker dead when dropped by a panic's unwinding.
///
/// Why: actix notices a dead actor only when its task is dropped, after the panic has
/// unwound through the handler and dropped the jobs, whose `SlotReturn`s report their
/// end. Without this flag the supervisor could see such a report, grant the slot again
/// and send the next job into the dying worker's mailbox, where it would be lost too.
/// A handler's locals drop before its arguments, so the flag is set before any job of
/// the batch reports.
struct DeathMark<'a>(&'a AtomicBool);

impl Drop for DeathMark<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Release);
        }
    }
}

impl Handler<RunBatch> for Worker {
    type Result = ();

    fn handle(&mut self, msg: RunBatch, _: &mut Context<Self>) {
        let _mark = DeathMark(&self.dead);
        if crate::failpoints::hit("weir::worker::run") {
            // Simulates a worker that dies while it holds jobs.
            panic!("failpoint weir::worker::run: the worker dies");
        }
        for run in msg.0 {
            run.spawn_here();
        }
    }
}

/// A worker's arbiter, address and death flag.
#[derive(Debug)]
struct WorkerSlot {
    arbiter: actix_rt::ArbiterHandle,
    addr: Addr<Worker>,
    dead: Arc<AtomicBool>,
}

impl WorkerSlot {
    fn start(arbiter: actix_rt::ArbiterHandle) -> Self {
        let dead = Arc::new(AtomicBool::new(false));
        let flag = dead.clone();
        let addr = Worker::start_in_arbiter(&arbiter, move |_| Worker { dead: flag });
        Self { arbiter, addr, dead }
    }

    fn alive(&self) -> bool {
        self.addr.connected() && !self.dead.load(Ordering::Acquire)
    }
}

/// The workers, one per worker arbiter, served round-robin.
#[derive(Debug, Default)]
pub(crate) struct WorkerPool {
    workers: Vec<WorkerSlot>,
    /// Jobs handed to each worker since the last [`WorkerPool::flush`].
    pending: Vec<Vec<Run>>,
    next: usize,
    restarts: u64,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("job", &self.ctx.key())
            .finish_non_exhaustive()
    }
}

impl WorkerPool {
    /// Starts one worker on each arbiter.
    pub(crate) fn start(arbiters: &[actix_rt::Arbiter]) -> Self {
        let workers: Vec<_> = arbiters.iter().map(|a| WorkerSlot::start(a.handle())).collect();
        Self {
            pending: workers.iter().map(|_| Vec::new()).collect(),
            workers,
            next: 0,
            restarts: 0,
        }
    }

    /// Hands a job to the next worker; it is sent with the worker's other jobs at the
    /// next [`WorkerPool::flush`]. Runs the job here (on the caller's arbiter) if there
    /// are no workers.
    pub(crate) fn dispatch(&mut self, run: Run) {
        if self.workers.is_empty() {
            run.spawn_here();
            return;
        }
        let i = self.next % self.workers.len();
        self.next = self.next.wrapping_add(1);
        self.pending[i].push(run);
    }

    /// Sends each worker the jobs handed to it since the last flush, restarting it first
    /// if it died; runs them here if the worker cannot be restarted. The supervisor
    /// flushes at the end of every pass, so no job waits for a later one.
    pub(crate) fn flush(&mut self) {
        for (i, (worker, pending)) in self.workers.iter_mut().zip(&mut self.pending).enumerate() {
            if pending.is_empty() {
                continue;
            }
            let runs = std::mem::take(pending);
            if !worker.alive() {
                *worker = WorkerSlot::start(worker.arbiter.clone());
                self.restarts += 1;
                tracing::warn!(worker = i, restarts = self.restarts, "worker died; restarted");
            }
            if worker.alive() {
                worker.addr.do_send(RunBatch(runs));
            } else {
                tracing::error!(
                    worker = i,
                    "worker arbiter is gone; running its jobs on the supervisor's arbiter"
                );
                for run in runs {
                    run.spawn_here();
                }
            }
        }
    }
}
