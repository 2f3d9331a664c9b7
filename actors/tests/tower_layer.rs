//! The tower layer (issue 15 item 3): each call runs as a weir job, so the resource's cap
//! holds across concurrent calls, and refusals come back typed with their reason and
//! when to come back.

mod common;

use std::time::Duration;

use common::{paused, Downstream};
use tower::{service_fn, ServiceExt};
use weir::{Config, JobError, TenantId};
use weir_actors::tower::{Layer, WeirError, WeirLayer};
use weir_actors::Runtime;

type Req = (&'static str, u32);

fn tenant(req: &Req) -> TenantId {
    TenantId::new(req.0)
}

#[test]
fn the_layer_holds_the_resource_cap_across_concurrent_calls() {
    paused(async {
        let config = Config::from_toml_str("[resources.store]\nmax_concurrent = 3\n").unwrap();
        let runtime = Runtime::start(config).unwrap();
        let store = Downstream::new(100);
        let db = store.clone();
        let inner = service_fn(move |req: Req| {
            let db = db.clone();
            async move {
                db.query(Duration::from_millis(100)).await?;
                Ok::<_, JobError>(req.1)
            }
        });
        let service = WeirLayer::new(runtime.clone(), "store", tenant).layer(inner);
        let calls = (0..30u32).map(|i| {
            let who = if i % 2 == 0 { "alice" } else { "bob" };
            service.clone().oneshot((who, i))
        });
        let answers = futures::future::join_all(calls).await;
        assert!(answers.iter().all(Result::is_ok), "{answers:?}");
        assert_eq!(store.peak(), 3, "the downstream saw at most the cap");
        runtime.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn a_quota_refusal_carries_its_limit_and_retry_after() {
    paused(async {
        let config =
            Config::from_toml_str("[quotas.per_user]\nwindows = [{ limit = 2, per = \"1m\" }]\n").unwrap();
        let runtime = Runtime::start(config).unwrap();
        let inner = service_fn(|req: Req| async move { Ok::<_, JobError>(req.1) });
        let service = WeirLayer::new(runtime.clone(), "store", tenant).layer(inner);
        for i in 0..2 {
            assert_eq!(service.clone().oneshot(("alice", i)).await.unwrap(), i);
        }
        let refused = service.clone().oneshot(("alice", 3)).await.unwrap_err();
        let WeirError::QuotaExceeded { limit, retry_after } = &refused else {
            panic!("{refused:?}")
        };
        assert_eq!(limit, "per_user/1m");
        assert_eq!(*retry_after, Duration::from_secs(60));
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(60)));
        // Another tenant is not affected.
        assert_eq!(service.clone().oneshot(("bob", 4)).await.unwrap(), 4);
        runtime.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn no_slot_within_the_wait_and_an_open_breaker_are_told_apart() {
    paused(async {
        let config = Config::from_toml_str(
            r#"
            [resources.store]
            max_concurrent = 1
            slot_wait_timeout = "2s"
            [resources.flaky]
            slot_wait_timeout = "1s"
            breaker = { error_rate = 0.5, window = "60s", min_calls = 2, cooldown = "30s" }
            "#,
        )
        .unwrap();
        let runtime = Runtime::start(config).unwrap();
        let slow = service_fn(|req: Req| async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok::<_, JobError>(req.1)
        });
        let store = WeirLayer::new(runtime.clone(), "store", tenant).layer(slow);
        let (first, second) = futures::join!(
            store.clone().oneshot(("alice", 1)),
            store.clone().oneshot(("alice", 2))
        );
        assert_eq!(first.unwrap(), 1);
        let refused = second.unwrap_err();
        assert!(
            matches!(&refused, WeirError::NoSlot { wait_timeout, .. } if *wait_timeout == Duration::from_secs(2)),
            "{refused:?}"
        );

        let failing = service_fn(|_req: Req| async move { Err::<u32, _>(JobError::msg("HTTP 500")) });
        let flaky = WeirLayer::new(runtime.clone(), "flaky", tenant).layer(failing);
        for i in 0..2 {
            let e = flaky.clone().oneshot(("alice", i)).await.unwrap_err();
            assert!(
                matches!(&e, WeirError::Inner(inner) if inner.to_string() == "HTTP 500"),
                "{e:?}"
            );
        }
        let refused = flaky.clone().oneshot(("alice", 9)).await.unwrap_err();
        assert!(
            matches!(&refused, WeirError::BreakerOpen { cooldown, .. } if *cooldown == Duration::from_secs(30)),
            "{refused:?}"
        );
        runtime.shutdown(Duration::from_secs(1)).await;
    });
}

/// Issue 25: a caller that hangs up gives its slot back, as with tower's
/// `ConcurrencyLimit`. Cap 1; the first call's inner service never answers; dropping its
/// response future lets a second call reach the inner service within 100 ms (of the
/// paused clock: the slot comes back at the cancellation, not at the 30 s lease).
#[test]
fn dropping_a_running_calls_response_future_gives_its_slot_to_the_next_call() {
    paused(async {
        let config =
            Config::from_toml_str("[resources.store]\nmax_concurrent = 1\nslot_lease_timeout = \"30s\"\n")
                .unwrap();
        let runtime = Runtime::start(config).unwrap();
        let (reached_tx, mut reached) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let inner = service_fn(move |req: Req| {
            let reached_tx = reached_tx.clone();
            async move {
                let _ = reached_tx.send(req.1);
                if req.1 == 1 {
                    futures::future::pending::<()>().await; // never answers
                }
                Ok::<_, JobError>(req.1)
            }
        });
        let service = WeirLayer::new(runtime.clone(), "store", tenant).layer(inner);
        let mut first = Box::pin(service.clone().oneshot(("alice", 1)));
        // Drive the first call until its inner service holds the slot.
        tokio::select! {
            _ = &mut first => panic!("the first call never answers"),
            got = reached.recv() => assert_eq!(got, Some(1)),
        }
        drop(first); // the client hung up
        let start = tokio::time::Instant::now();
        let second = tokio::spawn(service.clone().oneshot(("bob", 2)));
        let got = tokio::time::timeout(Duration::from_millis(100), reached.recv()).await;
        assert_eq!(got, Ok(Some(2)), "the second call reached the inner service");
        assert!(start.elapsed() <= Duration::from_millis(100));
        assert_eq!(second.await.unwrap().unwrap(), 2);
        let stats = runtime.stats().await;
        assert_eq!(
            stats.resources["store"].outcomes.cancelled, 1,
            "the dropped call was cancelled"
        );
        runtime.shutdown(Duration::from_secs(1)).await;
    });
}

/// Issue 25: a call still waiting for a slot whose response future is dropped leaves the
/// queue at once (its job ends `Cancelled` without running), not at its wait timeout.
#[test]
fn dropping_a_waiting_calls_response_future_takes_it_out_of_the_queue() {
    paused(async {
        let config =
            Config::from_toml_str("[resources.store]\nmax_concurrent = 1\nslot_wait_timeout = \"60s\"\n")
                .unwrap();
        let runtime = Runtime::start(config).unwrap();
        let (ran_tx, mut ran) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let inner = service_fn(move |req: Req| {
            let ran_tx = ran_tx.clone();
            async move {
                let _ = ran_tx.send(req.1);
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<_, JobError>(req.1)
            }
        });
        let service = WeirLayer::new(runtime.clone(), "store", tenant).layer(inner);
        let holder = tokio::spawn(service.clone().oneshot(("alice", 1)));
        assert_eq!(ran.recv().await, Some(1));
        let mut waiting = Box::pin(service.clone().oneshot(("bob", 2)));
        // Polled once, so it is submitted and queued behind the holder.
        assert!(futures::poll!(&mut waiting).is_pending());
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(runtime.stats().await.resources["store"].queued, 1);
        drop(waiting);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let stats = runtime.stats().await;
        assert_eq!(stats.resources["store"].queued, 0, "it left the queue");
        assert_eq!(stats.resources["store"].outcomes.cancelled, 1);
        assert_eq!(holder.await.unwrap().unwrap(), 1);
        assert!(ran.try_recv().is_err(), "the dropped call never ran");
        runtime.shutdown(Duration::from_secs(1)).await;
    });
}
