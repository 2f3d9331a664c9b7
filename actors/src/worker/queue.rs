//! The queue of granted jobs that every body thread takes from.
//!
//! # Why one shared queue, and why by hand
//!
//! The supervisor grants; body threads run. Handing each thread its own jobs (an actix
//! message per thread per pass, round-robin) put a granted job behind whatever its thread
//! was busy with, even while another thread sat idle: a job of one resource waited for
//! another resource's 1 ms bodies. Here the supervisor appends a pass's grants in one go
//! and wakes only threads that are parked, at most one per job; a thread takes its share
//! whenever it runs out of ready work, so the first free thread runs the oldest grant.
//!
//! Started bodies never move (they need not be `Send`, and a body's future stays on the
//! thread that polls it); only jobs not yet started are shared, so this is a plain
//! injector with a parking list, not a work-stealing deque. crossbeam's `Injector` would
//! give the queue but not the parking protocol, whose check-then-park must be one step
//! with the append, or a wake-up is lost: both are under one short lock here, and the
//! loom models below check that nothing is lost or taken twice.

use std::collections::VecDeque;
use std::task::Waker;

use crate::sync::Mutex;

struct State<T> {
    items: VecDeque<T>,
    /// Threads parked because they found nothing to take.
    parked: Vec<Waker>,
}

/// See the module docs.
pub(crate) struct BodyQueue<T> {
    state: Mutex<State<T>>,
    /// Body threads taking from the queue (each takes about its share of a backlog).
    takers: usize,
}

impl<T> BodyQueue<T> {
    /// A queue for `takers` body threads.
    pub(crate) fn new(takers: usize) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                parked: Vec::new(),
            }),
            takers: takers.max(1),
        }
    }

    fn lock(&self) -> impl std::ops::DerefMut<Target = State<T>> + '_ {
        // A panic while holding this lock leaves a consistent queue behind; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a pass's grants, oldest first, and wakes up to one parked thread per job.
    pub(crate) fn push_all(&self, items: impl IntoIterator<Item = T>) {
        let wake: Vec<Waker> = {
            let mut state = self.lock();
            let before = state.items.len();
            state.items.extend(items);
            let added = state.items.len() - before;
            let n = added.min(state.parked.len());
            let from = state.parked.len() - n;
            state.parked.drain(from..).collect()
        };
        // Woken outside the lock: the woken thread's first step is to take it.
        for waker in wake {
            waker.wake();
        }
    }

    /// Moves this thread's share of the queue into `into` (the oldest jobs, about one
    /// `takers`-th of them, at least one); if there is none, parks `waker` until a push
    /// and returns false.
    pub(crate) fn take_or_park(&self, into: &mut Vec<T>, waker: &Waker) -> bool {
        let mut state = self.lock();
        if state.items.is_empty() {
            if !state.parked.iter().any(|w| w.will_wake(waker)) {
                state.parked.push(waker.clone());
            }
            return false;
        }
        let share = state.items.len().div_ceil(self.takers);
        into.extend(state.items.drain(..share));
        true
    }

    /// Everything still queued (the runtime stops: the jobs are dropped, which reports them).
    pub(crate) fn take_everything(&self) -> Vec<T> {
        self.lock().items.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_taker_takes_its_share_oldest_first() {
        let queue = BodyQueue::new(2);
        queue.push_all(0..5);
        let waker = Waker::noop().clone();
        let mut mine = Vec::new();
        assert!(queue.take_or_park(&mut mine, &waker));
        assert_eq!(mine, [0, 1, 2], "half of five, rounded up, oldest first");
        mine.clear();
        assert!(queue.take_or_park(&mut mine, &waker));
        assert_eq!(mine, [3], "half of the two left");
    }

    #[test]
    fn a_push_wakes_parked_takers_at_most_one_per_job() {
        let queue = BodyQueue::new(3);
        let counts: Vec<_> = (0..3).map(|_| Arc::new(Count(AtomicUsize::new(0)))).collect();
        for count in &counts {
            let waker = Waker::from(count.clone());
            assert!(!queue.take_or_park(&mut Vec::new(), &waker));
        }
        queue.push_all([1, 2]);
        let woken: usize = counts.iter().map(|c| c.0.load(Ordering::SeqCst)).sum();
        assert_eq!(woken, 2, "two jobs wake two of the three parked threads");
        queue.push_all([3]);
        let woken: usize = counts.iter().map(|c| c.0.load(Ordering::SeqCst)).sum();
        assert_eq!(woken, 3);
    }
}

/// Models of the body queue under loom (feature `loom`, run by `scripts/test`): every
/// interleaving of the supervisor's pushes and two body threads taking and parking.
#[cfg(all(test, feature = "loom"))]
mod loom_models {
    use std::future::poll_fn;
    use std::task::Poll;

    use loom::sync::atomic::{AtomicBool, Ordering};
    use loom::sync::Arc;
    use loom::thread;

    use super::*;

    /// The supervisor pushes three jobs in two passes while two body threads take their
    /// shares and park when they find none: every job is taken exactly once, and no thread
    /// stays parked while a job waits in the queue (a lost wake-up leaves the supervisor
    /// waiting forever, which loom reports).
    #[test]
    fn every_job_is_taken_once_and_no_wake_up_is_lost() {
        loom::model(|| {
            let queue = Arc::new(BodyQueue::new(2));
            let taken = Arc::new(crate::sync::Mutex::new(Vec::new()));
            let done = Arc::new(AtomicBool::new(false));
            let takers: Vec<_> = (0..2)
                .map(|_| {
                    let (queue, taken, done) = (queue.clone(), taken.clone(), done.clone());
                    thread::spawn(move || {
                        loom::future::block_on(poll_fn(|cx| loop {
                            if done.load(Ordering::SeqCst) {
                                return Poll::Ready(());
                            }
                            let mut mine = Vec::new();
                            if queue.take_or_park(&mut mine, cx.waker()) {
                                taken.lock().unwrap().extend(mine);
                                continue;
                            }
                            // Parked. Checked again after parking: the end is announced
                            // before the parked are woken.
                            if done.load(Ordering::SeqCst) {
                                return Poll::Ready(());
                            }
                            return Poll::Pending;
                        }))
                    })
                })
                .collect();
            queue.push_all([1]);
            queue.push_all([2, 3]);
            while taken.lock().unwrap().len() < 3 {
                thread::yield_now();
            }
            // Every job is taken: let the takers go.
            done.store(true, Ordering::SeqCst);
            let parked = std::mem::take(&mut queue.lock().parked);
            for waker in parked {
                waker.wake();
            }
            for taker in takers {
                taker.join().unwrap();
            }
            let mut all = taken.lock().unwrap().clone();
            all.sort_unstable();
            assert_eq!(all, [1, 2, 3], "every job taken exactly once");
        });
    }
}
