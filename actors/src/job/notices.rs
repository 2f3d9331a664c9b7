//! Wake-ups of the supervisor deferred to the end of a worker thread's pass over its jobs.
//!
//! # Why
//!
//! Everything a job tells the supervisor (its stop report above all) is appended to the
//! supervisor's inbox at once, so it is visible to the next drain, and the append that
//! finds the inbox un-notified owes the supervisor one [`Drain`](super::link::Drain)
//! message. Sent at once, that message wakes the supervisor's thread while the worker is
//! still finishing the other jobs of its pass: the supervisor takes one stop report,
//! grants one slot, hands one job back, and the two threads ping-pong a job at a time (a
//! context switch per job: 31,000 against tokio's 118 in one `weir bench` round at
//! `worker_threads = 2`). Deferred to the end of the pass, one message carries every
//! report of the pass, and the supervisor grants the freed slots in one batch.
//!
//! Only the wake-up waits: the items themselves are in the inbox already, so any drain
//! in between (a stats query, say) takes them, and their order is the order of appends.
//! The deferral is bounded by one pass of the thread's driver (see `worker::jobset`).
//! Outside a pass (a job dropped by a dying worker, or by a runtime that stops) the
//! message goes at once.
//!
//! Only the deferring thread's own items wait: an append from anywhere else (a submission
//! above all) that finds a `Drain` merely owed sends it at once (see `Inbox::push`), and
//! the pass then sends nothing. Before that rule, a submission could wait for a worker
//! whose pass went on to poll a body that computed for a millisecond.

use std::cell::RefCell;

use super::link::Link;

thread_local! {
    /// `Some` during a pass of this thread's job driver: the links owed a `Drain`.
    static OWED: RefCell<Option<Vec<Link>>> = const { RefCell::new(None) };
}

/// Whether this thread is in a pass of its job driver (its appends defer their wake-ups).
pub(crate) fn in_pass() -> bool {
    OWED.try_with(|owed| owed.try_borrow().is_ok_and(|o| o.is_some()))
        .unwrap_or(false)
}

/// `link`'s supervisor is owed a `Drain` by this thread: sent at the end of its pass if
/// no one sent one meanwhile (at once outside a pass).
pub(crate) fn owe_drain(link: &Link) {
    let deferred = OWED
        .try_with(|owed| match owed.try_borrow_mut() {
            Ok(mut owed) => match owed.as_mut() {
                Some(links) => {
                    if !links.iter().any(|l| l.same_as(link)) {
                        links.push(link.clone());
                    }
                    true
                }
                None => false,
            },
            Err(_) => false,
        })
        .unwrap_or(false);
    if !deferred && link.inbox().settle_owed() {
        link.send_drain();
    }
}

/// One pass of a thread's job driver: wake-ups owed during it are sent when it ends
/// (also when it unwinds).
pub(crate) struct Pass {
    /// A pass inside a pass (not expected) leaves the outer one in charge.
    outer: bool,
}

impl Pass {
    /// Starts deferring this thread's wake-ups.
    pub(crate) fn begin() -> Self {
        let outer = OWED
            .try_with(|owed| {
                let mut owed = owed.borrow_mut();
                if owed.is_some() {
                    return false;
                }
                *owed = Some(Vec::new());
                true
            })
            .unwrap_or(false);
        Self { outer }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if !self.outer {
            return;
        }
        let links = OWED
            .try_with(|owed| owed.borrow_mut().take())
            .ok()
            .flatten()
            .unwrap_or_default();
        for link in links {
            if link.inbox().settle_owed() {
                link.send_drain();
            }
        }
    }
}
