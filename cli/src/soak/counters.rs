//! The soak's own count of what it submitted and what came back, kept apart from the
//! runtime's statistics so the two can be compared: every accepted submission is counted
//! once, and the task that awaits its handle counts the outcome it resolves to.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir::{Outcome, OutcomeCounts, OutcomeKind};

use super::options::TestDefect;

/// Bytes kept per ended job under [`TestDefect::Memory`].
const LEAK_PER_JOB: usize = 4096;

/// Counters shared by the driver, the job bodies and the handle watchers.
#[derive(Debug, Default)]
pub struct Counters {
    /// Handles (and coalesced requests) the soak holds, one per accepted submission.
    pub submitted: AtomicU64,
    /// Outcomes those handles resolved to, by [`OutcomeKind::index`].
    outcomes: [AtomicU64; 5],
    /// Handles not yet resolved.
    pub pending: AtomicU64,
    /// Children the cascades' organisation jobs spawned (their outcomes go to the parent,
    /// which counts them in `child_outcomes`).
    pub children: AtomicU64,
    child_outcomes: [AtomicU64; 5],
    /// Jobs the recurring checks submitted (their handles are counted in `submitted` too).
    pub recurring_jobs: AtomicU64,
    /// Coalesced requests made (their outcomes are counted in `outcomes`).
    pub requests: AtomicU64,
    /// Submissions the runtime refused (queue full); not counted in `submitted`.
    pub refused: AtomicU64,
    /// Caller cancellations asked for.
    pub cancels: AtomicU64,
    defect: Option<TestDefect>,
    dropped_one: AtomicBool,
    leaked: Mutex<Vec<Box<[u8]>>>,
}

impl Counters {
    /// Counters; `defect` breaks them on purpose (tests).
    pub fn new(defect: Option<TestDefect>) -> Arc<Self> {
        Arc::new(Self {
            defect,
            ..Self::default()
        })
    }

    /// Outcomes counted so far.
    pub fn outcomes(&self) -> OutcomeCounts {
        OutcomeCounts::from_array(std::array::from_fn(|i| self.outcomes[i].load(Ordering::Relaxed)))
    }

    /// Outcomes of children, as their parents' `join` returned them.
    pub fn child_outcomes(&self) -> OutcomeCounts {
        OutcomeCounts::from_array(std::array::from_fn(|i| {
            self.child_outcomes[i].load(Ordering::Relaxed)
        }))
    }

    /// A parent saw one of its children end.
    pub fn child_ended(&self, kind: OutcomeKind) {
        self.child_outcomes[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one accepted submission and spawns the task that awaits its outcome
    /// (`cancel_after`: the caller cancels it after that long, if it has not ended).
    pub fn watch<T: 'static>(
        self: &Arc<Self>,
        handle: weir_actors::JobHandle<T>,
        cancel_after: Option<Duration>,
    ) {
        self.submitted.fetch_add(1, Ordering::Relaxed);
        self.pending.fetch_add(1, Ordering::Relaxed);
        let me = self.clone();
        actix_rt::spawn(async move {
            let mut handle = handle;
            let outcome = match cancel_after {
                None => handle.await,
                Some(after) => {
                    tokio::select! {
                        outcome = &mut handle => outcome,
                        () = tokio::time::sleep(after) => {
                            me.cancels.fetch_add(1, Ordering::Relaxed);
                            handle.cancel();
                            handle.await
                        }
                    }
                }
            };
            me.resolved(outcome.kind());
        });
    }

    /// [`Counters::watch`] for a coalesced request's future.
    pub fn watch_request<V: 'static>(self: &Arc<Self>, request: impl Future<Output = Outcome<V>> + 'static) {
        self.submitted.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.pending.fetch_add(1, Ordering::Relaxed);
        let me = self.clone();
        actix_rt::spawn(async move {
            let outcome = request.await;
            me.resolved(outcome.kind());
        });
    }

    fn resolved(&self, kind: OutcomeKind) {
        let drop_it =
            self.defect == Some(TestDefect::Outcome) && !self.dropped_one.swap(true, Ordering::Relaxed);
        if !drop_it {
            self.outcomes[kind.index()].fetch_add(1, Ordering::Relaxed);
        }
        if self.defect == Some(TestDefect::Memory) {
            // Written, not just allocated, so the pages are resident.
            let kept = vec![1u8; LEAK_PER_JOB].into_boxed_slice();
            self.leaked.lock().unwrap_or_else(|e| e.into_inner()).push(kept);
        }
        self.pending.fetch_sub(1, Ordering::Relaxed);
    }
}
