//! The coalescing buffer on virtual time (issue 7): every buffered request is answered
//! exactly once, a batch never exceeds its max size, and no request waits past its max
//! wait when the owner wakes at `next_deadline`.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use weir::engine::{Batch, CoalesceBuffer, CoalesceSettings};

#[derive(Clone, Debug)]
enum Op {
    /// Time advances by this many ms, then a request arrives.
    Push { gap: u64, batch: u8, item: u8 },
    /// A drain (shutdown) after this many ms.
    Drain { gap: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (0u64..40, 0u8..4, 0u8..12).prop_map(|(gap, batch, item)| Op::Push { gap, batch, item }),
        1 => (0u64..40).prop_map(|gap| Op::Drain { gap }),
    ]
}

type Flushed = Batch<u8, u8, (u64, u8)>;

/// Advances virtual time to `to`, waking at every deadline on the way as an actor would.
fn advance(buffer: &mut CoalesceBuffer<u8, u8, (u64, u8)>, to: Duration, out: &mut Vec<Flushed>) {
    while let Some(at) = buffer.next_deadline().filter(|at| *at <= to) {
        buffer.poll(at, out);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_request_is_answered_once_in_bounded_batches_within_its_max_wait(
        flush in 0u64..100,
        max_batch in 1usize..6,
        max_wait in 0u64..150,
        ops in prop::collection::vec(op(), 1..300),
    ) {
        let settings = CoalesceSettings {
            flush_interval: Duration::from_millis(flush),
            max_batch,
            max_wait: Duration::from_millis(max_wait),
        };
        let mut buffer = CoalesceBuffer::new(settings).unwrap();
        let mut now = Duration::ZERO;
        let mut flushed = Vec::new();
        let mut asked: HashMap<u64, (u8, u8)> = HashMap::new();
        for (id, op) in ops.into_iter().enumerate() {
            let id = id as u64;
            match op {
                Op::Push { gap, batch, item } => {
                    now += Duration::from_millis(gap);
                    advance(&mut buffer, now, &mut flushed);
                    asked.insert(id, (batch, item));
                    flushed.extend(buffer.push(batch, item, (id, item), now));
                }
                Op::Drain { gap } => {
                    now += Duration::from_millis(gap);
                    advance(&mut buffer, now, &mut flushed);
                    flushed.extend(buffer.drain(now));
                    prop_assert_eq!(buffer.buffered(), 0);
                    prop_assert_eq!(buffer.next_deadline(), None);
                }
            }
        }
        advance(&mut buffer, Duration::MAX, &mut flushed);
        prop_assert_eq!(buffer.buffered(), 0);

        let mut answered: HashMap<u64, usize> = HashMap::new();
        for batch in &flushed {
            prop_assert!(!batch.items.is_empty());
            prop_assert!(batch.items.len() <= max_batch, "batch of {} > {}", batch.items.len(), max_batch);
            let mut seen = std::collections::HashSet::new();
            for item in &batch.items {
                prop_assert!(seen.insert(item.item), "item {} sent twice in one batch", item.item);
                for w in &item.requests {
                    let (id, asked_item) = w.request;
                    *answered.entry(id).or_default() += 1;
                    // The request is answered with the item it asked for, in its batch.
                    prop_assert_eq!(asked[&id], (batch.key, item.item));
                    prop_assert_eq!(asked_item, item.item);
                    prop_assert!(
                        batch.flushed_at - w.arrived_at <= settings.max_wait,
                        "request {} waited {:?} > {:?}", id, batch.flushed_at - w.arrived_at, settings.max_wait
                    );
                }
            }
        }
        prop_assert_eq!(answered.len(), asked.len(), "every request answered");
        prop_assert!(answered.values().all(|n| *n == 1), "exactly once");
    }
}
