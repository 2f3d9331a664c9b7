//! Where started jobs run: one long-lived task per thread polls every job body started on
//! that thread. On a body thread (`runtime.worker_threads > 0`) that task also takes the
//! thread's share of the granted jobs from the shared [`BodyQueue`] whenever it runs out
//! of ready work. The supervisor's thread runs the bodies placed there (all of them when
//! there are no body threads; see `placement.rs`) through [`spawn`].
//!
//! # Why not one tokio task per job
//!
//! A tokio task is allocated with 128-byte alignment (its header is padded to a cache
//! line), which glibc serves through its slow aligned path (`posix_memalign`, then the
//! split-off pieces freed and later consolidated). In callgrind that was about 1,100 of
//! the ~8,500 instructions of an empty job, more than the core's grant (issue 9). Here a
//! job is one boxed future in a [`FuturesUnordered`]: two ordinary allocations.
//!
//! # What stays the same
//!
//! A job's future is polled only on the thread that started it (bodies need not be
//! `Send`), woken through its own waker, and dropped when it ends or when the thread's
//! runtime stops; in every case its `SlotReturn` reports its end as before. Job bodies
//! catch their own panics (`job::body::run_attempt`); should one escape anyway, it takes down
//! this thread's driver, whose jobs are dropped and reported, and the next job started
//! on the thread starts a new driver.
//!
//! The driver gives the thread back after a bounded number of finished jobs, and
//! `FuturesUnordered` yields after a bounded number of polls, so the supervisor and
//! other tasks on the same thread are not starved by a long run of ready jobs.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures::stream::{FuturesUnordered, StreamExt};

use crate::job::body::JobFuture;
use crate::job::notices::Pass;

use super::queue::BodyQueue;
use super::Run;

/// Finished jobs per poll of the driver before it lets other tasks of the thread run.
const FINISHED_PER_POLL: usize = 256;

/// What `spawn` and the thread's driver share.
#[derive(Default)]
struct Shared {
    /// Started since the driver last ran.
    incoming: Vec<JobFuture>,
    /// Wakes the driver; taken by the first `spawn` after it last ran.
    waker: Option<Waker>,
}

thread_local! {
    /// This thread's driver, if one runs.
    static CURRENT: RefCell<Option<Rc<RefCell<Shared>>>> = const { RefCell::new(None) };
}

/// Runs `job` on the current thread (an actix arbiter), in this thread's job set.
pub(crate) fn spawn(job: JobFuture) {
    CURRENT.with(|current| {
        let mut current = current.borrow_mut();
        let shared = current.get_or_insert_with(start_driver);
        let waker = {
            let mut shared = shared.borrow_mut();
            shared.incoming.push(job);
            shared.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    });
}

fn start_driver() -> Rc<RefCell<Shared>> {
    let shared = Rc::new(RefCell::new(Shared::default()));
    actix_rt::spawn(Driver {
        shared: Some(shared.clone()),
        jobs: FuturesUnordered::new(),
        taker: None,
    });
    shared
}

/// Where a body thread's driver takes granted jobs from, and the flag that marks it dead.
pub(crate) struct Taker {
    pub(crate) queue: Arc<BodyQueue<Run>>,
    pub(crate) dead: Arc<AtomicBool>,
    /// The last share taken, kept empty between takes for its capacity.
    share: Vec<Run>,
}

/// Starts, on the current thread (a worker's arbiter), a driver that runs the jobs it
/// takes from `queue`.
pub(crate) fn start_taker(queue: Arc<BodyQueue<Run>>, dead: Arc<AtomicBool>) {
    actix_rt::spawn(Driver {
        shared: None,
        jobs: FuturesUnordered::new(),
        taker: Some(Taker {
            queue,
            dead,
            share: Vec::new(),
        }),
    });
}

/// Marks its driver dead when dropped by a panic's unwinding.
///
/// Why: the worker pool must restart the driver before it counts on it again, and a job
/// granted meanwhile waits in the queue, not in the dead driver. The flag is set while the
/// panic unwinds, before the jobs the driver held report their end, so the supervisor
/// sees it on the pass those reports start.
struct DeathMark<'a>(&'a AtomicBool);

impl Drop for DeathMark<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Release);
        }
    }
}

/// Polls the jobs of one thread; see the module docs.
struct Driver {
    /// Jobs started on this thread with [`spawn`] (none for a taker).
    shared: Option<Rc<RefCell<Shared>>>,
    jobs: FuturesUnordered<JobFuture>,
    /// The queue a body thread takes granted jobs from.
    taker: Option<Taker>,
}

impl Driver {
    /// Takes the jobs started on this thread since the last round; true if there were any.
    fn take_spawned(&mut self, cx: &Context<'_>) -> bool {
        let Some(shared) = &self.shared else {
            return false;
        };
        let mut shared = shared.borrow_mut();
        if !shared.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            shared.waker = Some(cx.waker().clone());
        }
        let any = !shared.incoming.is_empty();
        for job in shared.incoming.drain(..) {
            self.jobs.push(job);
        }
        any
    }

    /// Takes this thread's share of the granted jobs, or parks until there are some.
    fn take_granted(&mut self, cx: &Context<'_>) -> bool {
        let Some(taker) = &mut self.taker else {
            return false;
        };
        if !taker.queue.take_or_park(&mut taker.share, cx.waker()) {
            return false;
        }
        if crate::failpoints::hit("weir::worker::run") {
            // Simulates a body thread whose driver dies while it holds jobs.
            panic!("failpoint weir::worker::run: the worker dies");
        }
        for run in taker.share.drain(..) {
            self.jobs.push(run.start());
        }
        true
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        // What the jobs tell the supervisor in this pass wakes it once, when the pass ends.
        let _pass = Pass::begin();
        let dead = this.taker.as_ref().map(|t| t.dead.clone());
        let _mark = dead.as_deref().map(DeathMark);
        let mut finished = 0;
        this.take_spawned(cx);
        loop {
            match this.jobs.poll_next_unpin(cx) {
                Poll::Ready(Some(())) => {
                    finished += 1;
                    if finished == FINISHED_PER_POLL {
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
                // Empty, or every job waits (or the set yielded and woke us): take what
                // was started or granted meanwhile, else wait.
                Poll::Ready(None) | Poll::Pending => {
                    let spawned = this.take_spawned(cx);
                    let granted = this.take_granted(cx);
                    if !spawned && !granted {
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // This thread's runtime stopped (or a panic escaped a job): the next job started
        // here needs a new driver. Jobs not yet taken in are dropped, which reports them.
        let Some(shared) = &self.shared else {
            return;
        };
        let _ = CURRENT.try_with(|current| {
            if let Ok(mut current) = current.try_borrow_mut() {
                if current.as_ref().is_some_and(|s| Rc::ptr_eq(s, shared)) {
                    *current = None;
                }
            }
        });
        let pending = std::mem::take(&mut shared.borrow_mut().incoming);
        drop(pending);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;

    #[test]
    fn jobs_run_and_a_new_runtime_gets_a_new_driver() {
        for _ in 0..2 {
            let ran = Rc::new(Cell::new(0));
            actix_rt::System::new().block_on({
                let ran = ran.clone();
                async move {
                    for _ in 0..1_000 {
                        let ran = ran.clone();
                        spawn(Box::pin(async move {
                            tokio::task::yield_now().await;
                            ran.set(ran.get() + 1);
                        }));
                    }
                    while ran.get() < 1_000 {
                        tokio::task::yield_now().await;
                    }
                }
            });
            assert_eq!(ran.get(), 1_000);
        }
    }

    #[test]
    fn jobs_are_dropped_when_their_runtime_stops() {
        struct Dropped(Rc<Cell<u32>>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        let dropped = Rc::new(Cell::new(0));
        actix_rt::System::new().block_on({
            let dropped = dropped.clone();
            async move {
                for _ in 0..10 {
                    let guard = Dropped(dropped.clone());
                    spawn(Box::pin(async move {
                        let _guard = guard;
                        std::future::pending::<()>().await;
                    }));
                }
                tokio::task::yield_now().await;
            }
        });
        assert_eq!(dropped.get(), 10);
    }
}
