//! The coalescing job kind on the real actors, on a paused clock (issue 7): answers reach
//! the right requests when items are duplicated or a batch fails, batches respect their
//! max size and run under the resource's cap, no request waits past its max wait, and
//! shutdown answers everything.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{paused, Downstream};
use tokio::time::Instant;
use weir::{CoalesceConfig, Config, JobError, JobSpec, Outcome};
use weir_actors::{Coalescer, Runtime};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config(kind: &str, flush: u64, max_batch: u32, max_wait: u64, cap: u32) -> Config {
    let mut c = Config::default();
    c.resources.insert(
        "store".into(),
        weir::ResourceConfig {
            max_concurrent: Some(cap),
            ..Default::default()
        },
    );
    c.coalesce.insert(
        kind.into(),
        CoalesceConfig {
            flush_interval: ms(flush),
            max_batch,
            max_wait: ms(max_wait),
            resource: "store".into(),
        },
    );
    c
}

/// Every call the batch function received: (batch key, item keys).
type Calls = Arc<Mutex<Vec<(u32, Vec<u32>)>>>;

/// A coalescer whose batch function queries `store` (10 ms) and answers
/// `batch * 1000 + item`; batch key 13 fails.
fn counting(runtime: &Runtime, store: Arc<Downstream>) -> (Coalescer<u32, u32, u32>, Calls) {
    let calls: Calls = Arc::default();
    let seen = calls.clone();
    let coalescer = runtime
        .coalescer("counts", move |batch: u32, items: Vec<u32>| {
            seen.lock().unwrap().push((batch, items.clone()));
            let store = store.clone();
            async move {
                store.query(ms(10)).await?;
                if batch == 13 {
                    return Err(JobError::msg("store error for batch 13"));
                }
                Ok(items
                    .into_iter()
                    .map(|i| (i, batch * 1000 + i))
                    .collect::<HashMap<_, _>>())
            }
        })
        .unwrap();
    (coalescer, calls)
}

#[test]
fn duplicated_items_are_sent_once_and_every_request_gets_its_own_answer() {
    let (outcomes, calls, stats) = paused(async {
        let runtime = Runtime::start(config("counts", 100, 1000, 1000, 4)).unwrap();
        let store = Downstream::new(4);
        let (coalescer, calls) = counting(&runtime, store);
        // 3 batches x 5 items, each item asked 4 times: 60 requests.
        let requests: Vec<(u32, u32)> = (0..4)
            .flat_map(|_| (1..=3).flat_map(|b| (0..5).map(move |i| (b, i))))
            .collect();
        let outcomes =
            futures::future::join_all(requests.iter().map(|&(b, i)| coalescer.request(b, i))).await;
        let stats = coalescer.shutdown().await;
        runtime.shutdown(ms(100)).await;
        let outcomes: Vec<_> = requests.into_iter().zip(outcomes).collect();
        (outcomes, calls, stats)
    });
    for ((b, i), outcome) in &outcomes {
        assert_eq!(*outcome, Outcome::Completed(b * 1000 + i), "request ({b}, {i})");
    }
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 3, "one downstream call per batch key");
    for (_, items) in calls.iter() {
        let mut sorted = items.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2, 3, 4], "each item sent once");
    }
    assert_eq!(
        (stats.requests, stats.merged, stats.batches, stats.items),
        (60, 45, 3, 15)
    );
}

#[test]
fn a_failed_batch_fails_only_its_own_requests() {
    let outcomes = paused(async {
        let runtime = Runtime::start(config("counts", 100, 1000, 1000, 4)).unwrap();
        let (coalescer, _) = counting(&runtime, Downstream::new(4));
        let asks = [(13, 1), (7, 1), (13, 1), (13, 2), (7, 2)];
        let outcomes = futures::future::join_all(asks.iter().map(|&(b, i)| coalescer.request(b, i))).await;
        runtime.shutdown(ms(100)).await;
        outcomes
    });
    let failed = Outcome::Failed(JobError::msg("store error for batch 13"));
    assert_eq!(
        outcomes,
        [
            failed.clone(),
            Outcome::Completed(7001),
            failed.clone(),
            failed,
            Outcome::Completed(7002)
        ]
    );
}

#[test]
fn batches_never_exceed_max_batch_and_run_under_the_cap() {
    let (outcomes, calls, store) = paused(async {
        let runtime = Runtime::start(config("counts", 1000, 10, 1000, 2)).unwrap();
        let store = Downstream::new(2);
        let (coalescer, calls) = counting(&runtime, store.clone());
        let outcomes = futures::future::join_all((0..95).map(|i| coalescer.request(i % 3, i))).await;
        runtime.shutdown(ms(100)).await;
        (outcomes, calls, store)
    });
    assert!(outcomes.iter().all(Outcome::is_completed));
    let calls = calls.lock().unwrap();
    assert!(calls.iter().all(|(_, items)| items.len() <= 10), "{calls:?}");
    assert_eq!(calls.iter().map(|(_, items)| items.len()).sum::<usize>(), 95);
    // 95 items over 3 batch keys, 10 per call: at least 10 calls, more than 2 at a time
    // would be refused by the store.
    assert!(calls.len() >= 10);
    assert_eq!(store.rejections(), 0);
    assert!(store.peak() <= 2);
}

#[test]
fn no_request_waits_in_the_buffer_past_its_max_wait() {
    let waits = paused(async {
        // The flush interval (1 h) would hold the batch; max wait (50 ms) flushes it.
        let runtime = Runtime::start(config("counts", 3_600_000, 1000, 50, 4)).unwrap();
        let (coalescer, calls) = counting(&runtime, Downstream::new(4));
        let mut waits = Vec::new();
        for step in 0..5u64 {
            let coalescer = coalescer.clone();
            waits.push(actix_rt::spawn(async move {
                tokio::time::sleep(ms(step * 7)).await;
                let asked = Instant::now();
                let outcome = coalescer.request(1, step as u32).await;
                assert!(outcome.is_completed());
                asked.elapsed()
            }));
        }
        let waits: Vec<Duration> = futures::future::join_all(waits)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            calls.lock().unwrap().len(),
            1,
            "one batch, flushed by its first request's max wait"
        );
        runtime.shutdown(ms(100)).await;
        waits
    });
    // Each answer comes within max wait (50 ms) plus the query (10 ms); the first request
    // waited the full max wait.
    assert!(waits.iter().all(|w| *w <= ms(60)), "{waits:?}");
    assert_eq!(waits[0], ms(60));
}

#[test]
fn jobs_requesting_in_the_batch_resource_give_their_slot_up_while_waiting() {
    let outcomes = paused(async {
        // One slot: if a waiting job held it, the batch job could never run.
        let runtime = Runtime::start(config("counts", 20, 1000, 1000, 1)).unwrap();
        let (coalescer, _) = counting(&runtime, Downstream::new(1));
        let handles: Vec<_> = (0..5u32)
            .map(|i| {
                let coalescer = coalescer.clone();
                runtime
                    .submit(JobSpec::new("acme", "store"), move |ctx| async move {
                        match ctx.request(&coalescer, 2, i).await {
                            Outcome::Completed(v) => Ok(v),
                            other => Err(JobError::msg(format!("{other:?}"))),
                        }
                    })
                    .unwrap()
            })
            .collect();
        let outcomes = futures::future::join_all(handles).await;
        runtime.shutdown(ms(100)).await;
        outcomes
    });
    assert_eq!(
        outcomes,
        (0..5).map(|i| Outcome::Completed(2000 + i)).collect::<Vec<_>>()
    );
}

#[test]
fn shutdown_flushes_every_buffered_request_and_later_requests_are_answered_too() {
    let (flushed, late, stats) = paused(async {
        let runtime = Runtime::start(config("counts", 3_600_000, 1000, 3_600_000, 4)).unwrap();
        let (coalescer, _) = counting(&runtime, Downstream::new(4));
        let pending: Vec<_> = (0..6).map(|i| coalescer.request(i % 2, i)).collect();
        tokio::time::sleep(ms(5)).await;
        assert_eq!(coalescer.stats().await.buffered, 6);
        let stats = coalescer.shutdown().await;
        let flushed = futures::future::join_all(pending).await;
        let late = coalescer.request(0, 0).await;
        runtime.shutdown(ms(100)).await;
        (flushed, late, stats)
    });
    assert_eq!(
        flushed,
        (0..6)
            .map(|i| Outcome::Completed((i % 2) * 1000 + i))
            .collect::<Vec<_>>()
    );
    assert_eq!((stats.drained, stats.batches), (2, 2));
    assert!(
        matches!(late, Outcome::Failed(JobError::RuntimeStopped(_))),
        "{late:?}"
    );
}

#[test]
fn requests_buffered_when_the_runtime_stops_end_cancelled() {
    let outcomes = paused(async {
        let runtime = Runtime::start(config("counts", 3_600_000, 1000, 3_600_000, 4)).unwrap();
        let (coalescer, _) = counting(&runtime, Downstream::new(4));
        let pending: Vec<_> = (0..3).map(|i| coalescer.request(1, i)).collect();
        tokio::time::sleep(ms(5)).await;
        runtime.shutdown(ms(100)).await;
        coalescer.shutdown().await;
        futures::future::join_all(pending).await
    });
    assert_eq!(outcomes, vec![Outcome::Cancelled; 3]);
}

#[test]
fn an_item_missing_from_the_batch_answer_fails_that_request_only() {
    let outcomes = paused(async {
        let runtime = Runtime::start(Config::default()).unwrap();
        let coalescer = runtime
            .coalescer("evens", |_: (), items: Vec<u32>| async move {
                Ok::<_, JobError>(
                    items
                        .into_iter()
                        .filter(|i| i % 2 == 0)
                        .map(|i| (i, i))
                        .collect::<HashMap<_, _>>(),
                )
            })
            .unwrap();
        let outcomes = futures::future::join_all((0..3).map(|i| coalescer.request((), i))).await;
        runtime.shutdown(ms(100)).await;
        outcomes
    });
    assert_eq!(outcomes[0], Outcome::Completed(0));
    assert!(
        matches!(&outcomes[1], Outcome::Failed(JobError::Job { message, .. }) if message.contains("no value"))
    );
    assert_eq!(outcomes[2], Outcome::Completed(2));
}
