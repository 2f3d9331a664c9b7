//! The stop signal shared by a job's handle, the supervisor and the job's running task.
//!
//! Stopping a running job means dropping its future on the thread that polls it. The
//! supervisor (at lease expiry, at shutdown) or the caller (`JobHandle::cancel`) records
//! why and wakes the task; the task, on its next poll, drops the body and reports. The
//! slot comes back only when that report arrives, so a job whose thread is blocked keeps
//! its slot until it returns: the cap is never exceeded by a job that outlived its lease.
//!
//! Blocking sections (`JobContext::run_blocking`) run on tokio's blocking pool, where
//! nothing can stop them. Each one is counted here while it runs, and the task does not
//! report its end until the count is back to zero: dropping the body detaches the thread
//! but does not free the slot.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tokio_util::sync::CancellationToken;
use weir::{JobKey, OutcomeKind};

use crate::sync::{AtomicU8, AtomicWaker};

const RUNNING: u8 = 0;
const TIMED_OUT: u8 = 1;
const CANCELLED: u8 = 2;
const LEASE_LOST: u8 = 3;

/// Why a job was asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// Its lease expired.
    TimedOut,
    /// Its caller or shutdown cancelled it.
    Cancelled,
    /// Its lease in a pool shared through Redis was lost (outcome `Failed(LeaseLost)`).
    LeaseLost,
}

impl StopReason {
    pub(crate) fn outcome(self) -> OutcomeKind {
        match self {
            StopReason::TimedOut => OutcomeKind::TimedOut,
            StopReason::Cancelled => OutcomeKind::Cancelled,
            StopReason::LeaseLost => OutcomeKind::Failed,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Stop {
    reason: AtomicU8,
    waker: AtomicWaker,
    /// The job's key in the scheduler core; set once by the supervisor at submission.
    key: OnceLock<JobKey>,
    /// What only some jobs use (blocking sections, a cancellation token), allocated by the
    /// first that does. Every waiting job holds a `Stop`: kept inline these cost each one
    /// 48 bytes (`Arc<Stop>` in glibc's 128-byte size class; with them apart, the 96-byte
    /// one).
    rare: OnceLock<Box<Rare>>,
}

/// The parts of a [`Stop`] that most jobs never touch.
#[derive(Debug, Default)]
struct Rare {
    /// Blocking sections of the job still running on the blocking pool.
    blocking: AtomicU32,
    /// Woken when `blocking` drops to zero.
    idle: tokio::sync::Notify,
    /// Cancelled with the stop; created only for a job that asks for it
    /// (`JobContext::cancellation_token`).
    token: OnceLock<CancellationToken>,
}

impl Stop {
    /// Asks the job to stop; the first reason wins. Returns true if this call set it.
    pub(crate) fn request(&self, reason: StopReason) -> bool {
        let code = match reason {
            StopReason::TimedOut => TIMED_OUT,
            StopReason::Cancelled => CANCELLED,
            StopReason::LeaseLost => LEASE_LOST,
        };
        let set = self
            .reason
            .compare_exchange(RUNNING, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if set {
            self.waker.wake();
            // Pairs with the fence in `token`: either this sees the token, or `token`
            // sees the reason, so a token is never left uncancelled after a stop.
            std::sync::atomic::fence(Ordering::SeqCst);
            if let Some(token) = self.rare.get().and_then(|rare| rare.token.get()) {
                token.cancel();
            }
        }
        set
    }

    /// A token cancelled when the job is asked to stop (already cancelled if it was).
    pub(crate) fn token(&self) -> CancellationToken {
        let token = self.rare().token.get_or_init(CancellationToken::new).clone();
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.reason().is_some() {
            token.cancel();
        }
        token
    }

    pub(crate) fn reason(&self) -> Option<StopReason> {
        match self.reason.load(Ordering::Acquire) {
            TIMED_OUT => Some(StopReason::TimedOut),
            CANCELLED => Some(StopReason::Cancelled),
            LEASE_LOST => Some(StopReason::LeaseLost),
            _ => None,
        }
    }

    /// The rarely used parts, allocated on first use.
    fn rare(&self) -> &Rare {
        self.rare.get_or_init(Box::default)
    }

    pub(crate) fn set_key(&self, key: JobKey) {
        let _ = self.key.set(key);
    }

    pub(crate) fn key(&self) -> Option<JobKey> {
        self.key.get().copied()
    }

    /// Counts a blocking section until the returned guard is dropped (on the blocking
    /// thread, when the section returns or panics).
    pub(crate) fn enter_blocking(self: &Arc<Self>) -> BlockingSection {
        self.rare().blocking.fetch_add(1, Ordering::AcqRel);
        BlockingSection(self.clone())
    }

    /// Blocking sections still running.
    pub(crate) fn blocking_sections(&self) -> u32 {
        // No `Rare` yet: the job never entered a blocking section.
        self.rare
            .get()
            .map_or(0, |rare| rare.blocking.load(Ordering::Acquire))
    }

    /// Resolves once no blocking section of the job is running.
    pub(crate) async fn blocking_returned(&self) {
        let rare = self.rare();
        loop {
            // Created before the check: `notify_waiters` wakes every `Notified` that
            // exists when it is called, so a section ending between the check and the
            // await is not missed.
            let notified = rare.idle.notified();
            if rare.blocking.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One running blocking section of a job (see [`Stop::enter_blocking`]).
#[derive(Debug)]
pub(crate) struct BlockingSection(Arc<Stop>);

impl Drop for BlockingSection {
    fn drop(&mut self) {
        // The section's `enter_blocking` created `Rare`.
        let rare = self.0.rare();
        if rare.blocking.fetch_sub(1, Ordering::AcqRel) == 1 {
            rare.idle.notify_waiters();
        }
    }
}

/// Runs `fut` until it ends or `stop` is requested; on a stop the future is dropped
/// when this wrapper is.
pub(crate) struct Stoppable<'a, F> {
    pub(crate) fut: Pin<&'a mut F>,
    pub(crate) stop: &'a Stop,
}

impl<F: Future> Future for Stoppable<'_, F> {
    type Output = Result<F::Output, StopReason>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(reason) = self.stop.reason() {
            return Poll::Ready(Err(reason));
        }
        crate::sync::register(&self.stop.waker, cx.waker());
        if let Some(reason) = self.stop.reason() {
            return Poll::Ready(Err(reason));
        }
        // On the supervisor's thread a poll that takes too long moves the job's resource
        // to body threads (see `worker::placement`, `poll_timer`).
        let stop = self.stop;
        crate::poll_timer::timed_poll(|| stop.key(), || self.fut.as_mut().poll(cx)).map(Ok)
    }
}

#[cfg(all(test, not(feature = "loom")))]
mod tests {
    use super::*;

    /// Every waiting job holds an `Arc<Stop>`: its counts and the stop stay within glibc's
    /// 96-byte size class (a request of up to 88 bytes), which `Rare` kept apart buys.
    #[test]
    fn an_arc_stop_fits_the_96_byte_size_class() {
        let arc_counts = 2 * std::mem::size_of::<usize>();
        assert!(arc_counts + std::mem::size_of::<Stop>() <= 88);
    }

    /// A job that never runs a blocking section or asks for a token allocates no `Rare`,
    /// and a stop still cancels a token asked for later.
    #[test]
    fn rare_parts_are_made_only_when_used() {
        let stop = Arc::new(Stop::default());
        assert!(stop.request(StopReason::Cancelled));
        assert_eq!(stop.blocking_sections(), 0);
        assert!(stop.rare.get().is_none(), "nothing asked for the rare parts");
        assert!(
            stop.token().is_cancelled(),
            "a token asked for after the stop is cancelled"
        );
        let section = stop.enter_blocking();
        assert_eq!(stop.blocking_sections(), 1);
        drop(section);
        assert_eq!(stop.blocking_sections(), 0);
    }
}

/// Models of the stop signal under loom (feature `loom`, run by `scripts/test`): a stop
/// requested from another thread while the job's task polls.
#[cfg(all(test, feature = "loom"))]
mod loom_models {
    use std::sync::Arc;

    use loom::thread;

    use super::*;

    /// A caller cancels while the job's task polls a body that never ends: the task always
    /// ends with the stop (a lost wake-up would leave it parked forever, which loom
    /// reports as a deadlock).
    #[test]
    fn a_stop_racing_the_poll_always_ends_the_job() {
        loom::model(|| {
            let stop = Arc::new(Stop::default());
            let canceller = {
                let stop = stop.clone();
                thread::spawn(move || stop.request(StopReason::Cancelled))
            };
            let mut body = std::pin::pin!(std::future::pending::<()>());
            let ended = loom::future::block_on(Stoppable {
                fut: body.as_mut(),
                stop: &stop,
            });
            assert_eq!(ended, Err(StopReason::Cancelled));
            assert!(canceller.join().unwrap(), "the one request set the reason");
        });
    }

    /// A lease expiry and a cancel race: exactly one of them sets the reason, and the
    /// job ends with the one that did.
    #[test]
    fn of_two_racing_stops_exactly_one_wins() {
        loom::model(|| {
            let stop = Arc::new(Stop::default());
            let expiry = {
                let stop = stop.clone();
                thread::spawn(move || stop.request(StopReason::TimedOut))
            };
            let cancelled = stop.request(StopReason::Cancelled);
            let timed_out = expiry.join().unwrap();
            assert!(cancelled ^ timed_out, "exactly one request wins");
            let winner = if cancelled {
                StopReason::Cancelled
            } else {
                StopReason::TimedOut
            };
            assert_eq!(stop.reason(), Some(winner));
        });
    }
}
