//! Which waiting requests share one downstream query.
//!
//! A [`CoalesceBuffer`] holds requests keyed by a *batch key* (what one downstream call
//! can answer together, e.g. a project) and an *item key* (what one request asks about,
//! e.g. a group's event count). Requests with the same batch key wait together until
//! the batch is flushed, which happens at the earliest of:
//!
//! - the batch reaches `max_batch` distinct item keys (flushed by the `push` that filled
//!   it, so a batch never holds more);
//! - `flush_interval` has passed since the batch opened (its first request);
//! - a request's own deadline (its arrival plus `max_wait`, or earlier if the caller
//!   asks) falls due, so no request waits in the buffer longer than its max wait.
//!
//! Duplicates are merged: an item key is sent once and its answer goes to every request
//! that asked for it. The buffer never reads a clock: every call takes `now`, and
//! [`CoalesceBuffer::next_deadline`] says when [`CoalesceBuffer::poll`] has work.
//!
//! # Implementation details
//!
//! Hand-written because it is part of weir's heart and tiny: open batches live in a
//! slab, found by batch key through a hash map; their due instants sit in a min-heap with
//! lazy deletion (an entry is stale when its batch is gone or its due instant moved
//! earlier). Stale heap fronts are pruned after every change, so `next_deadline` is exact.
//!
//! ```
//! use std::time::Duration;
//! use weir::engine::{CoalesceBuffer, CoalesceSettings};
//!
//! let ms = Duration::from_millis;
//! let settings = CoalesceSettings { flush_interval: ms(100), max_batch: 10, max_wait: ms(500) };
//! let mut buffer = CoalesceBuffer::new(settings).unwrap();
//! assert!(buffer.push("project-1", "group-a", 1, ms(0)).is_none());
//! assert!(buffer.push("project-1", "group-a", 2, ms(10)).is_none()); // a duplicate item
//! assert!(buffer.push("project-1", "group-b", 3, ms(20)).is_none());
//! assert_eq!(buffer.next_deadline(), Some(ms(100)));
//! let mut flushed = Vec::new();
//! buffer.poll(ms(100), &mut flushed);
//! let batch = flushed.pop().unwrap();
//! assert_eq!(batch.item_keys().collect::<Vec<_>>(), [&"group-a", &"group-b"]);
//! assert_eq!(batch.items[0].requests.len(), 2); // both requests get group-a's answer
//! assert_eq!(buffer.next_deadline(), None);
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;
use std::time::Duration;

use slab::Slab;

/// When a batch is flushed, and how large it may grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoalesceSettings {
    /// How long a batch stays open after its first request.
    pub flush_interval: Duration,
    /// The most distinct item keys one batch (one downstream call) carries; at least 1.
    pub max_batch: usize,
    /// The longest any request waits in the buffer.
    pub max_wait: Duration,
}

/// Why settings were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CoalesceSettingsError {
    /// `max_batch` was 0.
    #[error("max_batch must be at least 1, got 0")]
    ZeroBatch,
}

/// Why a batch left the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlushReason {
    /// It reached `max_batch` distinct items.
    Full,
    /// Its flush interval passed.
    Interval,
    /// A request's deadline (its max wait) fell due before the flush interval.
    MaxWait,
    /// The buffer was drained (shutdown).
    Drained,
}

/// One request waiting for an item's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting<R> {
    /// Whatever identifies the request to its owner (an id, a reply channel).
    pub request: R,
    /// When it entered the buffer.
    pub arrived_at: Duration,
}

/// One item key of a batch and every request that asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchItem<I, R> {
    /// The item key, sent downstream once.
    pub item: I,
    /// The requests to answer with this item's answer, in arrival order.
    pub requests: Vec<Waiting<R>>,
}

/// A flushed batch: one downstream call's worth of items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch<B, I, R> {
    /// The batch key.
    pub key: B,
    /// Distinct items, in first-asked order; never more than `max_batch`.
    pub items: Vec<BatchItem<I, R>>,
    /// When the batch opened (its first request arrived).
    pub opened_at: Duration,
    /// When it was flushed.
    pub flushed_at: Duration,
    /// Why it was flushed.
    pub reason: FlushReason,
}

impl<B, I, R> Batch<B, I, R> {
    /// The distinct item keys, for the downstream call.
    pub fn item_keys(&self) -> impl Iterator<Item = &I> {
        self.items.iter().map(|i| &i.item)
    }

    /// How many requests this batch answers.
    pub fn request_count(&self) -> usize {
        self.items.iter().map(|i| i.requests.len()).sum()
    }
}

#[derive(Debug)]
struct Open<B, I, R> {
    key: B,
    generation: u64,
    opened_at: Duration,
    due: Duration,
    items: Vec<BatchItem<I, R>>,
    index: HashMap<I, usize>,
}

/// Buffers keyed requests and decides when each batch is flushed (see the module docs).
#[derive(Debug)]
pub struct CoalesceBuffer<B, I, R> {
    settings: CoalesceSettings,
    open: Slab<Open<B, I, R>>,
    by_key: HashMap<B, usize>,
    /// (due, slab index, generation), earliest first; entries may be stale.
    due: BinaryHeap<Reverse<(Duration, usize, u64)>>,
    generation: u64,
    buffered: usize,
    buffered_items: usize,
}

impl<B, I, R> CoalesceBuffer<B, I, R>
where
    B: Hash + Eq + Clone,
    I: Hash + Eq + Clone,
{
    /// An empty buffer.
    pub fn new(settings: CoalesceSettings) -> Result<Self, CoalesceSettingsError> {
        if settings.max_batch == 0 {
            return Err(CoalesceSettingsError::ZeroBatch);
        }
        Ok(Self {
            settings,
            open: Slab::new(),
            by_key: HashMap::new(),
            due: BinaryHeap::new(),
            generation: 0,
            buffered: 0,
            buffered_items: 0,
        })
    }

    /// The settings.
    pub fn settings(&self) -> CoalesceSettings {
        self.settings
    }

    /// Requests waiting in the buffer.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Distinct items waiting in the buffer (requests minus merged duplicates).
    pub fn buffered_items(&self) -> usize {
        self.buffered_items
    }

    /// Open batches.
    pub fn open_batches(&self) -> usize {
        self.open.len()
    }

    /// Buffers a request that may wait up to `max_wait`. Returns the batch if this
    /// request filled it to `max_batch` items (flushed at once, reason `Full`).
    pub fn push(&mut self, key: B, item: I, request: R, now: Duration) -> Option<Batch<B, I, R>> {
        self.push_until(
            key,
            item,
            request,
            now.saturating_add(self.settings.max_wait),
            now,
        )
    }

    /// Like [`push`](Self::push), with a deadline of the caller's; the request is
    /// flushed by the earlier of `deadline` and `now + max_wait`.
    pub fn push_until(
        &mut self,
        key: B,
        item: I,
        request: R,
        deadline: Duration,
        now: Duration,
    ) -> Option<Batch<B, I, R>> {
        let deadline = deadline.min(now.saturating_add(self.settings.max_wait));
        let slot = match self.by_key.get(&key) {
            Some(&slot) => slot,
            None => {
                self.generation += 1;
                let due = now.saturating_add(self.settings.flush_interval);
                let slot = self.open.insert(Open {
                    key: key.clone(),
                    generation: self.generation,
                    opened_at: now,
                    due,
                    items: Vec::new(),
                    index: HashMap::new(),
                });
                self.due.push(Reverse((due, slot, self.generation)));
                self.by_key.insert(key, slot);
                slot
            }
        };
        let batch = &mut self.open[slot];
        if deadline < batch.due {
            batch.due = deadline;
            self.due.push(Reverse((deadline, slot, batch.generation)));
        }
        let waiting = Waiting {
            request,
            arrived_at: now,
        };
        match batch.index.get(&item) {
            Some(&i) => batch.items[i].requests.push(waiting),
            None => {
                self.buffered_items += 1;
                batch.index.insert(item.clone(), batch.items.len());
                batch.items.push(BatchItem {
                    item,
                    requests: vec![waiting],
                });
            }
        }
        self.buffered += 1;
        let full = batch.items.len() >= self.settings.max_batch;
        let flushed = full.then(|| self.take(slot, now, FlushReason::Full));
        self.prune();
        flushed
    }

    /// Moves every batch due at `now` into `out`.
    pub fn poll(&mut self, now: Duration, out: &mut Vec<Batch<B, I, R>>) {
        while let Some(&Reverse((due, slot, generation))) = self.due.peek() {
            if due > now {
                break;
            }
            self.due.pop();
            let live = self
                .open
                .get(slot)
                .is_some_and(|b| b.generation == generation && b.due == due);
            if live {
                let b = &self.open[slot];
                let reason = if due < b.opened_at.saturating_add(self.settings.flush_interval) {
                    FlushReason::MaxWait
                } else {
                    FlushReason::Interval
                };
                out.push(self.take(slot, now, reason));
            }
        }
        self.prune();
    }

    /// When the next batch falls due, if any is open.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.due.peek().map(|Reverse((due, _, _))| *due)
    }

    /// Takes every open batch (reason `Drained`), e.g. at shutdown; the buffer is empty
    /// afterwards.
    pub fn drain(&mut self, now: Duration) -> Vec<Batch<B, I, R>> {
        let slots: Vec<usize> = self.open.iter().map(|(slot, _)| slot).collect();
        let mut batches: Vec<_> = slots
            .into_iter()
            .map(|slot| self.take(slot, now, FlushReason::Drained))
            .collect();
        batches.sort_by_key(|b| b.opened_at);
        self.due.clear();
        batches
    }

    fn take(&mut self, slot: usize, now: Duration, reason: FlushReason) -> Batch<B, I, R> {
        let open = self.open.remove(slot);
        self.by_key.remove(&open.key);
        let batch = Batch {
            key: open.key,
            items: open.items,
            opened_at: open.opened_at,
            flushed_at: now,
            reason,
        };
        self.buffered -= batch.request_count();
        self.buffered_items -= batch.items.len();
        batch
    }

    /// Drops stale heap fronts so `next_deadline` is exact.
    fn prune(&mut self) {
        while let Some(&Reverse((due, slot, generation))) = self.due.peek() {
            let live = self
                .open
                .get(slot)
                .is_some_and(|b| b.generation == generation && b.due == due);
            if live {
                break;
            }
            self.due.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn buffer(flush: u64, max_batch: usize, max_wait: u64) -> CoalesceBuffer<u32, u32, u32> {
        CoalesceBuffer::new(CoalesceSettings {
            flush_interval: ms(flush),
            max_batch,
            max_wait: ms(max_wait),
        })
        .unwrap()
    }

    #[test]
    fn a_full_batch_is_flushed_by_the_push_that_filled_it() {
        let mut b = buffer(1000, 2, 1000);
        assert!(b.push(1, 10, 0, ms(0)).is_none());
        assert!(
            b.push(1, 10, 1, ms(1)).is_none(),
            "a duplicate does not grow the batch"
        );
        let full = b.push(1, 11, 2, ms(2)).expect("second distinct item fills it");
        assert_eq!(full.reason, FlushReason::Full);
        assert_eq!(full.items.len(), 2);
        assert_eq!(full.request_count(), 3);
        assert_eq!((b.buffered(), b.buffered_items()), (0, 0));
        assert_eq!(b.next_deadline(), None, "the stale deadline is pruned");
    }

    #[test]
    fn max_wait_shorter_than_the_interval_flushes_first() {
        let mut b = buffer(1000, 10, 300);
        b.push(1, 10, 0, ms(0));
        assert_eq!(b.next_deadline(), Some(ms(300)));
        let mut out = Vec::new();
        b.poll(ms(299), &mut out);
        assert!(out.is_empty());
        b.poll(ms(300), &mut out);
        assert_eq!(out[0].reason, FlushReason::MaxWait);
    }

    #[test]
    fn a_caller_deadline_pulls_the_batch_earlier() {
        let mut b = buffer(1000, 10, 1000);
        b.push(1, 10, 0, ms(0));
        b.push_until(1, 11, 1, ms(50), ms(10));
        assert_eq!(b.next_deadline(), Some(ms(50)));
        let mut out = Vec::new();
        b.poll(ms(50), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].request_count(), 2);
        assert_eq!(b.next_deadline(), None);
    }

    #[test]
    fn batch_keys_are_independent_and_drain_takes_everything() {
        let mut b = buffer(100, 10, 1000);
        b.push(1, 10, 0, ms(0));
        b.push(2, 10, 1, ms(50));
        let mut out = Vec::new();
        b.poll(ms(100), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key, 1);
        assert_eq!(b.next_deadline(), Some(ms(150)));
        b.push(3, 10, 2, ms(120));
        let drained = b.drain(ms(130));
        assert_eq!(drained.iter().map(|d| d.key).collect::<Vec<_>>(), [2, 3]);
        assert!(drained.iter().all(|d| d.reason == FlushReason::Drained));
        assert_eq!((b.buffered(), b.open_batches(), b.next_deadline()), (0, 0, None));
    }

    #[test]
    fn zero_max_batch_is_refused() {
        let err = CoalesceBuffer::<u32, u32, u32>::new(CoalesceSettings {
            flush_interval: ms(1),
            max_batch: 0,
            max_wait: ms(1),
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "max_batch must be at least 1, got 0");
    }
}
