//! Times the polls of bodies on the supervisor's thread, so placement (see
//! `worker::placement`) can move a resource whose bodies compute to body threads.
//!
//! A leaf: thread-locals and the one clock read of the job path, imported by the job's poll
//! (`job::stop`) and by the supervisor, so neither the job lifecycle nor the policy that
//! decides placement depends on the other.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use weir::JobKey;

thread_local! {
    /// The poll limit on this thread when it is a supervisor's with body threads (else
    /// polls here are not timed).
    static LIMIT: Cell<Option<Duration>> = const { Cell::new(None) };
    /// Keys of jobs whose poll here took longer than the limit, for the supervisor.
    static SLOW: RefCell<Vec<JobKey>> = const { RefCell::new(Vec::new()) };
}

/// Times the polls of bodies on the current thread against `limit` (the supervisor calls
/// this on its own thread when it has body threads to move slow bodies to).
pub(crate) fn time_polls_here(limit: Duration) {
    LIMIT.with(|l| l.set(Some(limit)));
}

/// Runs one poll of a job's body; on a thread that times polls, reports the job (its key
/// from `key`, asked only then) if the poll took longer than the limit. Elsewhere this
/// costs one thread-local read.
pub(crate) fn timed_poll<R>(key: impl FnOnce() -> Option<JobKey>, poll: impl FnOnce() -> R) -> R {
    let Some(limit) = LIMIT.with(Cell::get) else {
        return poll();
    };
    let started = Instant::now();
    let result = poll();
    if started.elapsed() > limit {
        if let Some(key) = key() {
            SLOW.with(|s| s.borrow_mut().push(key));
        }
    }
    result
}

/// Moves the keys of this thread's slow polls since the last call into `into`.
///
/// Several runtimes on one thread share the list, so one may see another's keys; a key
/// that names a live job of its own only moves that job's resource to body threads for a
/// while, which costs speed, never a guarantee.
pub(crate) fn take_slow(into: &mut Vec<JobKey>) {
    SLOW.with(|s| into.append(&mut s.borrow_mut()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_are_timed_only_where_asked_and_reported_by_key() {
        let spin = |d: Duration| {
            let end = Instant::now() + d;
            while Instant::now() < end {}
        };
        let mut core = weir::Scheduler::<()>::new(weir::Config::default());
        let mut job = || core.submit(weir::JobSpec::new("t", "r"), (), Duration::ZERO);
        let (a, b, c) = (job(), job(), job());
        std::thread::spawn(move || {
            let mut slow = Vec::new();
            timed_poll(|| Some(a), || spin(Duration::from_millis(2)));
            take_slow(&mut slow);
            assert!(slow.is_empty(), "not timed before time_polls_here");
            time_polls_here(Duration::from_millis(1));
            timed_poll(|| Some(b), || ());
            timed_poll(|| Some(c), || spin(Duration::from_millis(2)));
            take_slow(&mut slow);
            assert_eq!(slow, vec![c]);
            take_slow(&mut slow);
            assert_eq!(slow.len(), 1, "taken once");
        })
        .join()
        .unwrap();
    }
}
