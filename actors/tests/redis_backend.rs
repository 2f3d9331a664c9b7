//! Redis-backed resources through the runtime (issue 10): several runtimes share one cap,
//! jobs get fencing tokens, leases are renewed while jobs run, a lost lease stops its
//! job with an outcome that says so, and the failure policies hold while Redis is down.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::redis_server::RedisServer;
use common::Downstream;
use weir::{BackendConfig, BackendKind, Config, FailurePolicy, JobError, JobSpec, Outcome, SkipReason};
use weir_actors::Runtime;

fn shared(url: &str, cap: u32, ttl_ms: u64, policy: FailurePolicy, local_cap: u32) -> Config {
    let mut c = Config::default();
    c.scheduler.max_concurrent = cap;
    c.scheduler.batch_delay = Duration::ZERO;
    c.backends.insert(
        "store".into(),
        BackendConfig {
            backend: BackendKind::Redis,
            url: url.into(),
            lease_ttl: Duration::from_millis(ttl_ms),
            renewal_interval: Duration::from_millis(ttl_ms / 3),
            on_failure: policy,
            local_cap,
            ..Default::default()
        },
    );
    c
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    actix_rt::System::new().block_on(f)
}

#[test]
fn runtimes_sharing_a_redis_pool_never_exceed_the_global_cap() {
    let server = RedisServer::start();
    let (store, outcomes, tokens, stats) = run(async {
        let store = Downstream::new(5);
        let tokens = Arc::new(Mutex::new(Vec::new()));
        // Three runtimes, each allowed 5 locally: together they may hold 5.
        let runtimes: Vec<Runtime> = (0..3)
            .map(|_| Runtime::start(shared(&server.url(), 5, 3000, FailurePolicy::FailClosed, 1)).unwrap())
            .collect();
        let mut handles = Vec::new();
        for (i, rt) in runtimes.iter().enumerate() {
            for j in 0..30 {
                let (store, tokens) = (store.clone(), tokens.clone());
                let spec = JobSpec::new(format!("t{i}"), "store");
                handles.push(
                    rt.submit(spec, move |ctx| async move {
                        tokens.lock().unwrap().push(ctx.fencing_token());
                        store.query(Duration::from_millis(5 + (j % 4))).await
                    })
                    .unwrap(),
                );
            }
        }
        let outcomes = futures::future::join_all(handles).await;
        // Leases go back in the brokers' next batch, just after the outcomes.
        let mut stats = Vec::new();
        for _ in 0..200 {
            stats = futures::future::join_all(runtimes.iter().map(|r| r.backend_stats())).await;
            if stats.iter().all(|s| s["store"].released == s["store"].grants) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for rt in &runtimes {
            rt.shutdown(Duration::from_secs(1)).await;
        }
        (store, outcomes, tokens, stats)
    });
    assert!(store.peak() <= 5, "downstream saw {}", store.peak());
    assert_eq!(store.rejections(), 0);
    assert_eq!(outcomes.len(), 90);
    assert!(outcomes.iter().all(Outcome::is_completed), "{outcomes:?}");
    let tokens = tokens.lock().unwrap();
    let distinct: HashSet<_> = tokens.iter().map(|t| t.expect("every job has a token")).collect();
    assert_eq!(distinct.len(), 90, "every grant has its own token");
    let grants: u64 = stats.iter().map(|s| s["store"].grants).sum();
    assert_eq!(grants, 90);
    for s in &stats {
        let s = &s["store"];
        assert_eq!(s.backend, BackendKind::Redis);
        assert_eq!(s.grant_latency.count, s.grants);
        assert_eq!(s.released, s.grants, "every lease went back");
    }
}

#[test]
fn a_long_job_keeps_its_lease_by_renewal_and_a_lost_lease_stops_its_job() {
    let server = RedisServer::start();
    let mut admin = server.connection();
    let (long, lost, stats) = run(async {
        let rt = Runtime::start(shared(&server.url(), 2, 300, FailurePolicy::FailClosed, 1)).unwrap();
        // Runs for four lease lengths: renewals keep it.
        let long = rt
            .submit(JobSpec::new("a", "store"), |_ctx| async {
                tokio::time::sleep(Duration::from_millis(1200)).await;
                Ok::<_, JobError>(())
            })
            .unwrap();
        let long = long.await;
        // Its lease vanishes from Redis while it runs (as after a Redis restart): the next
        // renewal finds it gone, and the job is stopped.
        let lost = rt
            .submit(JobSpec::new("a", "store"), |_ctx| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok::<_, JobError>(())
            })
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let _: () = redis::cmd("DEL")
            .arg("{weir:store}:leases")
            .query(&mut admin)
            .unwrap();
        let lost = tokio::time::timeout(Duration::from_secs(5), lost)
            .await
            .expect("stopped within the ttl");
        let stats = rt.backend_stats().await;
        rt.shutdown(Duration::from_secs(1)).await;
        (long, lost, stats)
    });
    assert_eq!(long, Outcome::Completed(()));
    assert_eq!(lost, Outcome::Failed(JobError::LeaseLost));
    let s = &stats["store"];
    assert!(s.renewals >= 3, "renewals {}", s.renewals);
    assert_eq!(s.lost_leases, 1);
}

#[test]
fn fail_closed_grants_nothing_while_redis_is_down_and_jobs_skip_by_their_wait() {
    let mut server = RedisServer::start();
    let store = Downstream::new(100);
    let (outcomes, after, stats) = run(async {
        let mut cfg = shared(&server.url(), 4, 400, FailurePolicy::FailClosed, 1);
        cfg.scheduler.slot_wait_timeout = Duration::from_millis(500);
        let rt = Runtime::start(cfg).unwrap();
        server.stop();
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let store = store.clone();
                rt.submit(JobSpec::new("a", "store"), move |_ctx| async move {
                    store.query(Duration::from_millis(5)).await
                })
                .unwrap()
            })
            .collect();
        let outcomes = futures::future::join_all(handles).await;
        server.restart();
        let store2 = store.clone();
        let after = rt
            .submit(JobSpec::new("a", "store"), move |_ctx| async move {
                store2.query(Duration::from_millis(5)).await
            })
            .unwrap()
            .await;
        let stats = rt.backend_stats().await;
        rt.shutdown(Duration::from_secs(1)).await;
        (outcomes, after, stats)
    });
    assert!(
        outcomes
            .iter()
            .all(|o| *o == Outcome::Skipped(SkipReason::NoSlot)),
        "{outcomes:?}"
    );
    assert_eq!(
        store.served.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the job after recovery ran"
    );
    assert_eq!(after, Outcome::Completed(()));
    let s = &stats["store"];
    assert!(s.backend_errors > 0);
    assert_eq!(s.grants, 1);
    assert_eq!(s.fail_open_admissions, 0);
}

#[test]
fn fail_open_local_admits_at_most_the_local_cap_while_redis_is_down() {
    let mut server = RedisServer::start();
    let store = Downstream::new(100);
    let (outcomes, stats) = run(async {
        let rt = Runtime::start(shared(&server.url(), 10, 400, FailurePolicy::FailOpenLocal, 2)).unwrap();
        server.stop();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                rt.submit(JobSpec::new("a", "store"), move |_ctx| async move {
                    store.query(Duration::from_millis(50)).await
                })
                .unwrap()
            })
            .collect();
        let outcomes = futures::future::join_all(handles).await;
        let stats = rt.backend_stats().await;
        rt.shutdown(Duration::from_secs(1)).await;
        (outcomes, stats)
    });
    assert!(outcomes.iter().all(Outcome::is_completed), "{outcomes:?}");
    assert!(
        store.peak() <= 2,
        "fail-open ran {} at once, local cap 2",
        store.peak()
    );
    let s = &stats["store"];
    assert_eq!(s.fail_open_admissions, 8, "each admission counted");
    assert_eq!(s.grants, 0);
}

#[test]
fn a_jobs_own_wait_timeout_bounds_its_wait_for_a_global_lease() {
    let server = RedisServer::start();
    let (held, waiter, requeued) = run(async {
        // The resource lets a job wait 60 s; the waiting job asks for 300 ms of its own.
        let holder = Runtime::start(shared(&server.url(), 1, 3000, FailurePolicy::FailClosed, 1)).unwrap();
        let other = Runtime::start(shared(&server.url(), 1, 3000, FailurePolicy::FailClosed, 1)).unwrap();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let held = holder
            .submit(JobSpec::new("a", "store"), move |_ctx| async move {
                let _ = started_tx.send(());
                tokio::time::sleep(Duration::from_millis(1500)).await;
                Ok::<_, JobError>(())
            })
            .unwrap();
        started_rx.await.unwrap();
        // Its local slot is free at once; only the global lease is held elsewhere.
        let spec = JobSpec::new("b", "store").wait_timeout(Duration::from_millis(300));
        let waiter = other
            .submit(spec, |_ctx| async { Ok::<_, JobError>(()) })
            .unwrap();
        // A job that asked to be requeued at its wait timeout is never skipped for it:
        // it runs once the holder is done.
        let spec = JobSpec::new("c", "store")
            .wait_timeout(Duration::from_millis(300))
            .requeue_on_wait_timeout();
        let requeued = holder
            .submit(spec, |_ctx| async { Ok::<_, JobError>(()) })
            .unwrap();
        let (held, waiter, requeued) = futures::join!(held, waiter, requeued);
        holder.shutdown(Duration::from_secs(1)).await;
        other.shutdown(Duration::from_secs(1)).await;
        (held, waiter, requeued)
    });
    assert_eq!(held, Outcome::Completed(()));
    assert_eq!(
        waiter,
        Outcome::Skipped(SkipReason::NoSlot),
        "skipped by its own 300 ms"
    );
    assert_eq!(requeued, Outcome::Completed(()));
}

#[test]
fn a_fallback_whose_slots_are_shared_through_redis_takes_a_global_lease() {
    let server = RedisServer::start();
    let store = Downstream::new(1);
    let config = || {
        // "primary" is local and always fails; once its breaker opens, jobs move to
        // "store", whose one slot is shared by both runtimes through Redis.
        let mut c = shared(&server.url(), 1, 3000, FailurePolicy::FailClosed, 1);
        let text = r#"
            [scheduler]
            max_concurrent = 1
            batch_delay = "0s"
            [resources.primary]
            max_concurrent = 4
            fallback = "store"
            breaker = { error_rate = 0.5, window = "1h", min_calls = 2, cooldown = "1h", half_open_probes = 1, half_open_timeout = "1h" }
            [resources.store]
            max_concurrent = 1
        "#;
        let mut resilient = Config::from_toml_str(text).unwrap();
        resilient.backends = std::mem::take(&mut c.backends);
        resilient
    };
    let outcomes = run(async {
        let runtimes: Vec<Runtime> = (0..2).map(|_| Runtime::start(config()).unwrap()).collect();
        let submit = |rt: &Runtime| {
            let store = store.clone();
            rt.submit(JobSpec::new("a", "primary"), move |ctx| async move {
                if ctx.resource().as_str() == "primary" {
                    return Err(JobError::msg("primary is down"));
                }
                store.query(Duration::from_millis(20)).await
            })
            .unwrap()
        };
        // Two failures open each runtime's breaker on "primary".
        for rt in &runtimes {
            for _ in 0..2 {
                assert!(matches!(submit(rt).await, Outcome::Failed(_)));
            }
        }
        let handles: Vec<_> = runtimes
            .iter()
            .flat_map(|rt| (0..10).map(|_| submit(rt)).collect::<Vec<_>>())
            .collect();
        let outcomes = futures::future::join_all(handles).await;
        for rt in &runtimes {
            rt.shutdown(Duration::from_secs(1)).await;
        }
        outcomes
    });
    assert!(outcomes.iter().all(Outcome::is_completed), "{outcomes:?}");
    assert_eq!(store.served.load(std::sync::atomic::Ordering::SeqCst), 20);
    assert!(
        store.peak() <= 1,
        "the shared fallback saw {} at once",
        store.peak()
    );
    assert_eq!(store.rejections(), 0);
}
