//! The supervisor's batched intake: new jobs, and everything a started job tells the
//! supervisor (its stop report, park, unpark, lease renewal, reported cost).
//!
//! # Why not one actix message per job
//!
//! Every job sends the supervisor at least two things: its submission and its stop
//! report. As actix messages they cost an envelope allocation, a mailbox push and a
//! handler call each, and each handler polls the core and reads the clock. Here they are
//! appended to one buffer under a short lock instead, and only the append that finds the
//! buffer un-notified sends the supervisor one [`Drain`](super::link::Drain)
//! message. The supervisor takes the whole buffer in one go, so a burst of N jobs costs
//! one message and one poll of the core, not 2N.
//!
//! # Order
//!
//! The buffer is one FIFO for every producer, so whatever one thread appends is taken in
//! the order it was appended. In particular a job's park, unpark, renewal and reported
//! cost are always handled before its own stop report: a report cannot overtake them, as
//! it could if they travelled by different routes (a stop report in the buffer, taken by
//! a `Drain` already queued ahead of a park in the mailbox).
//!
//! Messages from callers that still travel as actix messages (cancel, stats, usage,
//! shutdown) drain the buffer before they are handled, so a caller's earlier submissions,
//! and the stop reports of jobs whose outcome it has seen, are processed first, as with
//! one mailbox.
//!
//! Once the supervisor stops, the inbox is closed: later appends are handed back to the
//! caller (which resolves them), and whatever was pending is dropped, so the jobs'
//! handles resolve instead of waiting forever.

use std::time::Duration;

use tokio::sync::oneshot;
use weir::{JobKey, LeaseError};

use super::link::{Done, Submitted};
use crate::sync::Mutex;

/// One thing for the supervisor to take in.
pub(crate) enum Intake {
    /// One job, released at once.
    One(Submitted),
    /// Jobs submitted together; `fanout` releases them in batches.
    Many { items: Vec<Submitted>, fanout: bool },
    /// A started job stopped: its slot comes back.
    Done(Done),
    /// A parent gives its slot up while it waits for children.
    Park(JobKey),
    /// A parked parent asks for its slot back; the sender fires when it is granted.
    Unpark(JobKey, oneshot::Sender<()>),
    /// A running job renews its lease; answered with the new lease end.
    Renew(JobKey, oneshot::Sender<Result<Duration, LeaseError>>),
    /// A running job reports its actual cost (charged when it ends).
    Cost { key: JobKey, cost: u64 },
}

impl Intake {
    /// The jobs of a submission (none for anything else): what is resolved `Cancelled`
    /// when a submission meets a closed inbox.
    pub(crate) fn into_submissions(self) -> Vec<Submitted> {
        match self {
            Intake::One(item) => vec![item],
            Intake::Many { items, .. } => items,
            _ => Vec::new(),
        }
    }
}

#[derive(Default)]
struct State {
    items: Vec<Intake>,
    notice: Notice,
    closed: bool,
}

/// Whether the supervisor will drain what is pending.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Notice {
    /// Nothing is pending (since the last drain), or no `Drain` is on its way.
    #[default]
    Idle,
    /// A worker's pass owes a `Drain` and sends it when the pass ends (see
    /// `super::notices`), unless another append sent one first.
    Owed,
    /// A `Drain` message is on its way.
    Sent,
}

/// See the module docs.
#[derive(Default)]
pub(crate) struct Inbox {
    state: Mutex<State>,
}

/// What an append found.
pub(crate) enum Appended {
    /// Appended; the caller must send the supervisor a `Drain`.
    Notify,
    /// Appended by a caller that defers its wake-ups; it owes the supervisor a `Drain`
    /// at the end of its pass ([`Inbox::settle_owed`]).
    Deferred,
    /// Appended; a `Drain` is already on its way.
    Queued,
    /// The supervisor has stopped; the item comes back.
    Closed(Intake),
}

impl Inbox {
    fn lock(&self) -> impl std::ops::DerefMut<Target = State> + '_ {
        // A panic while holding this lock leaves a consistent Vec behind; keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `item`; says whether the supervisor must be notified. A caller that
    /// `defer`s may owe the `Drain` until the end of its pass; one that does not never
    /// waits for anyone's pass: it finds a `Drain` on its way, or sends one.
    pub(crate) fn push(&self, item: Intake, defer: bool) -> Appended {
        let mut state = self.lock();
        if state.closed {
            return Appended::Closed(item);
        }
        state.items.push(item);
        match (state.notice, defer) {
            (Notice::Sent, _) => Appended::Queued,
            (Notice::Idle | Notice::Owed, true) => {
                state.notice = Notice::Owed;
                Appended::Deferred
            }
            (Notice::Idle | Notice::Owed, false) => {
                state.notice = Notice::Sent;
                Appended::Notify
            }
        }
    }

    /// At the end of a pass that owes a `Drain`: true if it must send it now (no other
    /// append sent one, and the supervisor has not drained meanwhile).
    pub(crate) fn settle_owed(&self) -> bool {
        let mut state = self.lock();
        if state.notice == Notice::Owed {
            state.notice = Notice::Sent;
            true
        } else {
            false
        }
    }

    /// Swaps the pending items with `spare` (which must be empty; its capacity is reused),
    /// and clears the notification so the next append sends a fresh `Drain`.
    pub(crate) fn take(&self, spare: &mut Vec<Intake>) {
        debug_assert!(spare.is_empty(), "the previous batch was fully taken in");
        let mut state = self.lock();
        std::mem::swap(&mut state.items, spare);
        state.notice = Notice::Idle;
    }

    /// Refuses later appends and returns what was pending.
    pub(crate) fn close(&self) -> Vec<Intake> {
        let mut state = self.lock();
        state.closed = true;
        std::mem::take(&mut state.items)
    }
}

#[cfg(test)]
impl Inbox {
    /// An append that does not defer its wake-up.
    fn push_now(&self, item: Intake) -> Appended {
        self.push(item, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(item: &Intake) -> Option<u64> {
        match item {
            Intake::Cost { cost, .. } => Some(*cost),
            _ => None,
        }
    }

    fn cost(n: u64) -> Intake {
        Intake::Cost {
            key: weir::Scheduler::<()>::new(weir::Config::default()).submit(
                weir::JobSpec::new("t", "r"),
                (),
                Duration::ZERO,
            ),
            cost: n,
        }
    }

    #[test]
    fn only_the_first_append_after_a_take_notifies() {
        let inbox = Inbox::default();
        assert!(matches!(inbox.push_now(cost(1)), Appended::Notify));
        assert!(matches!(inbox.push_now(cost(2)), Appended::Queued));
        let mut batch = Vec::new();
        inbox.take(&mut batch);
        assert_eq!(batch.iter().filter_map(key_of).collect::<Vec<_>>(), [1, 2]);
        assert!(matches!(inbox.push_now(cost(3)), Appended::Notify));
    }

    #[test]
    fn a_deferred_drain_is_sent_by_the_next_append_that_does_not_defer() {
        let inbox = Inbox::default();
        assert!(matches!(inbox.push(cost(1), true), Appended::Deferred));
        assert!(matches!(inbox.push(cost(2), true), Appended::Deferred));
        assert!(
            matches!(inbox.push_now(cost(3)), Appended::Notify),
            "a submitter does not wait for a worker's pass"
        );
        assert!(!inbox.settle_owed(), "sent already: the pass sends nothing");
        assert!(matches!(inbox.push(cost(4), true), Appended::Queued));
    }

    #[test]
    fn a_pass_sends_what_it_owes_unless_the_supervisor_drained_first() {
        let inbox = Inbox::default();
        let _ = inbox.push(cost(1), true);
        assert!(inbox.settle_owed());
        assert!(!inbox.settle_owed(), "once");
        let mut batch = Vec::new();
        inbox.take(&mut batch);
        let _ = inbox.push(cost(2), true);
        batch.clear();
        inbox.take(&mut batch);
        assert!(!inbox.settle_owed(), "drained meanwhile: nothing owed");
    }

    #[test]
    fn a_closed_inbox_hands_items_back() {
        let inbox = Inbox::default();
        let _ = inbox.push_now(cost(1));
        let pending = inbox.close();
        assert_eq!(pending.len(), 1);
        assert!(matches!(
            inbox.push_now(cost(2)),
            Appended::Closed(Intake::Cost { cost: 2, .. })
        ));
    }
}

/// Models of the inbox under loom (feature `loom`, run by `scripts/test`): every
/// interleaving of appends, drains and the close, within loom's preemption bound.
#[cfg(all(test, feature = "loom"))]
mod loom_models {
    use loom::sync::atomic::{AtomicUsize, Ordering};
    use loom::sync::Arc;
    use loom::thread;

    use super::*;

    fn keys(n: usize) -> Vec<JobKey> {
        let mut core = weir::Scheduler::<()>::new(weir::Config::default());
        (0..n)
            .map(|_| core.submit(weir::JobSpec::new("t", "r"), (), Duration::ZERO))
            .collect()
    }

    fn item(key: JobKey, n: u64) -> Intake {
        Intake::Cost { key, cost: n }
    }

    fn costs(batch: &[Intake]) -> Vec<u64> {
        batch
            .iter()
            .map(|i| match i {
                Intake::Cost { cost, .. } => *cost,
                _ => unreachable!("the models append costs only"),
            })
            .collect()
    }

    /// The supervisor handles one `Drain` message, if one is on its way (`drains` counts
    /// those sent and not yet handled): it takes the inbox and keeps what it took. False
    /// when none was on its way.
    fn handle_drain(inbox: &Inbox, drains: &AtomicUsize, taken: &mut Vec<u64>) -> bool {
        if drains.load(Ordering::SeqCst) == 0 {
            return false;
        }
        drains.fetch_sub(1, Ordering::SeqCst);
        let mut batch = Vec::new();
        inbox.take(&mut batch);
        taken.extend(costs(&batch));
        true
    }

    /// Two producers append while the supervisor handles the drains they asked for: every
    /// item is taken exactly once, by a drain some append promised (none is left behind
    /// with no drain on its way: no lost wake-up), and each producer's items in order.
    #[test]
    fn every_append_is_taken_once_by_a_promised_drain() {
        let keys = keys(4);
        loom::model(move || {
            let inbox = Arc::new(Inbox::default());
            // Drain messages sent and not yet handled (the supervisor's mailbox).
            let drains = Arc::new(AtomicUsize::new(0));
            let producers: Vec<_> = (0..2u64)
                .map(|p| {
                    let (inbox, drains) = (inbox.clone(), drains.clone());
                    let keys = keys.clone();
                    thread::spawn(move || {
                        for i in 0..2u64 {
                            let key = keys[(p * 2 + i) as usize];
                            if let Appended::Notify = inbox.push(item(key, p * 10 + i), false) {
                                drains.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    })
                })
                .collect();
            let mut taken = Vec::new();
            // The supervisor handles a drain while the producers run...
            handle_drain(&inbox, &drains, &mut taken);
            for p in producers {
                p.join().unwrap();
            }
            // ...and every drain still on its way after they stopped.
            while handle_drain(&inbox, &drains, &mut taken) {}
            let mut sorted = taken.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 10, 11], "every item taken once: {taken:?}");
            for p in [0u64, 10] {
                let own: Vec<u64> = taken.iter().copied().filter(|c| c / 10 * 10 == p).collect();
                assert_eq!(own, [p, p + 1], "a producer's items in its order");
            }
        });
    }

    /// A worker appends in a pass (deferring its wake-up) while a submitter appends: the
    /// submitter's item is drained without waiting for the pass to end, and the worker's
    /// item is drained once the pass settles what it owes; each item once.
    #[test]
    fn a_submitter_never_waits_for_a_workers_pass() {
        let keys = keys(2);
        loom::model(move || {
            let inbox = Arc::new(Inbox::default());
            let drains = Arc::new(AtomicUsize::new(0));
            let worker = {
                let (inbox, key) = (inbox.clone(), keys[0]);
                // In a pass: a deferred drain is not sent until the pass settles below.
                thread::spawn(move || matches!(inbox.push(item(key, 1), true), Appended::Deferred))
            };
            let submitter = {
                let (inbox, drains, key) = (inbox.clone(), drains.clone(), keys[1]);
                thread::spawn(move || {
                    if let Appended::Notify = inbox.push(item(key, 2), false) {
                        drains.fetch_add(1, Ordering::SeqCst);
                    }
                })
            };
            let mut taken = Vec::new();
            submitter.join().unwrap();
            while handle_drain(&inbox, &drains, &mut taken) {}
            assert!(taken.contains(&2), "the submitter's item before the pass ends");
            let owes = worker.join().unwrap();
            // The pass ends.
            if owes && inbox.settle_owed() {
                drains.fetch_add(1, Ordering::SeqCst);
            }
            while handle_drain(&inbox, &drains, &mut taken) {}
            taken.sort_unstable();
            assert_eq!(taken, [1, 2], "every item taken once");
        });
    }

    /// An append racing the close is either among what the close returns or handed back
    /// to its caller: never lost.
    #[test]
    fn an_append_racing_the_close_is_never_lost() {
        let keys = keys(1);
        loom::model(move || {
            let inbox = Arc::new(Inbox::default());
            let producer = {
                let inbox = inbox.clone();
                let key = keys[0];
                thread::spawn(move || matches!(inbox.push(item(key, 7), false), Appended::Closed(_)))
            };
            let pending = inbox.close();
            let handed_back = producer.join().unwrap();
            assert_eq!(
                usize::from(handed_back) + pending.len(),
                1,
                "the item is in exactly one place"
            );
        });
    }
}
