//! Failpoints at the runtime's own steps (issue 8): break the supervisor's grant dispatch,
//! its handling of a job's end, its timer, and the workers, and check that no job is lost
//! (a job a broken step drops still ends, `Failed(RuntimeStopped)`), the cap holds from
//! the downstream's side, and every slot comes back.
//!
//! Run with `cargo test -p weir-actors --features failpoints --test failpoints`
//! (`scripts/test` does). The `fail` registry is global: each test holds a
//! `FailScenario`, which serialises them.

mod common;

use std::time::Duration;

use common::{paused, Downstream};
use fail::FailScenario;
use weir::{Config, JobError, JobSpec, Outcome, StatsSnapshot};
use weir_actors::{JobHandle, Runtime};

fn config(cap: u32, workers: u32) -> Config {
    let mut c = Config::default();
    c.scheduler.max_concurrent = cap;
    c.runtime.worker_threads = Some(workers);
    // With body threads, every body runs on them (none on the supervisor's thread as a
    // probe), so a failpoint in the workers is reached.
    c.runtime.inline_poll_limit = Duration::ZERO;
    c
}

fn queries(runtime: &Runtime, store: &std::sync::Arc<Downstream>, n: usize, ms: u64) -> Vec<JobHandle<()>> {
    (0..n)
        .map(|i| {
            let store = store.clone();
            runtime
                .submit(
                    JobSpec::new(format!("t{}", i % 3), "store"),
                    move |_| async move { store.query(Duration::from_millis(ms)).await },
                )
                .unwrap()
        })
        .collect()
}

/// Waits (on the runtime's clock) until the core has counted an outcome for every job.
async fn settled(runtime: &Runtime) -> StatsSnapshot {
    loop {
        let stats = runtime.stats().await;
        if stats.outcomes().total() == stats.submitted() {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn assert_no_leak_no_overcap(stats: &StatsSnapshot, store: &Downstream, cap: u32) {
    let s = &stats.resources["store"];
    assert_eq!(s.in_flight, 0, "a slot leaked");
    assert!(s.peak_in_flight <= cap);
    assert!(store.peak() <= u64::from(cap), "downstream saw {}", store.peak());
    assert_eq!(store.rejections(), 0);
    assert_eq!(
        stats.outcomes().total(),
        stats.submitted(),
        "a job without an outcome"
    );
}

#[test]
fn a_job_lost_in_dispatch_still_ends_and_returns_its_slot() {
    let scenario = FailScenario::setup();
    // About every other dispatch fails.
    fail::cfg("weir::dispatch", "50%return").unwrap();
    paused(async {
        let runtime = Runtime::start(config(2, 0)).unwrap();
        let store = Downstream::new(2);
        let outcomes = futures::future::join_all(queries(&runtime, &store, 60, 20)).await;
        let lost = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Failed(JobError::RuntimeStopped(_))))
            .count();
        let completed = outcomes.iter().filter(|o| o.is_completed()).count();
        assert_eq!(lost + completed, 60, "{outcomes:?}");
        assert!(
            lost > 0 && completed > 0,
            "both paths ran: {lost} lost, {completed} completed"
        );
        let stats = settled(&runtime).await;
        assert_no_leak_no_overcap(&stats, &store, 2);
        assert_eq!(stats.resources["store"].outcomes.failed, lost as u64);
        fail::remove("weir::dispatch");
        let after = futures::future::join_all(queries(&runtime, &store, 5, 20)).await;
        assert!(after.iter().all(Outcome::is_completed), "{after:?}");
        runtime.shutdown(Duration::ZERO).await;
        assert_eq!(runtime.stats().await.in_flight(), 0);
    });
    scenario.teardown();
}

#[test]
fn a_worker_that_dies_is_restarted_and_its_job_ends() {
    let scenario = FailScenario::setup();
    // The first job a worker receives kills it.
    fail::cfg("weir::worker::run", "1*return").unwrap();
    actix_rt::System::new().block_on(async {
        let runtime = Runtime::start(config(1, 1)).unwrap();
        let store = Downstream::new(1);
        let first = queries(&runtime, &store, 1, 1).pop().unwrap().await;
        assert!(
            matches!(first, Outcome::Failed(JobError::RuntimeStopped(_))),
            "{first:?}"
        );
        // The pool restarts the worker: later jobs run.
        let later = futures::future::join_all(queries(&runtime, &store, 10, 1)).await;
        assert!(later.iter().all(Outcome::is_completed), "{later:?}");
        let stats = settled(&runtime).await;
        assert_no_leak_no_overcap(&stats, &store, 1);
        assert_eq!(stats.resources["store"].outcomes.completed, 10);
        runtime.shutdown(Duration::ZERO).await;
    });
    scenario.teardown();
}

/// A job's end reported twice, or 50 ms late: the slot returns once, when the report
/// arrives; every job is counted once.
#[test]
fn a_duplicated_or_delayed_end_report_returns_the_slot_once() {
    for point in ["weir::done::duplicate", "weir::done::delay"] {
        let scenario = FailScenario::setup();
        fail::cfg(point, "return").unwrap();
        paused(async {
            let runtime = Runtime::start(config(2, 0)).unwrap();
            let store = Downstream::new(2);
            let outcomes = futures::future::join_all(queries(&runtime, &store, 40, 30)).await;
            assert!(outcomes.iter().all(Outcome::is_completed), "{point}");
            let stats = settled(&runtime).await;
            assert_no_leak_no_overcap(&stats, &store, 2);
            // Counted once each, not twice; a double or early release would have let a
            // third query in.
            assert_eq!(stats.resources["store"].outcomes.completed, 40, "{point}");
            runtime.shutdown(Duration::ZERO).await;
        });
        scenario.teardown();
    }
}

/// Early (spurious) and late timer wakes: leases and wait timeouts still end jobs at
/// the right point, never early, and every slot comes back.
#[test]
fn early_and_late_timer_wakes_never_expire_a_lease_early_or_lose_a_timeout() {
    for point in ["weir::wake::early", "weir::wake::late"] {
        let scenario = FailScenario::setup();
        fail::cfg(point, "return").unwrap();
        paused(async {
            let mut cfg = config(1, 0);
            cfg.scheduler.slot_lease_timeout = Duration::from_secs(5);
            cfg.scheduler.slot_wait_timeout = Duration::from_secs(3);
            let runtime = Runtime::start(cfg).unwrap();
            // 4 s of work under a 5 s lease: an early expiry would time it out.
            let in_time = runtime
                .submit(JobSpec::new("a", "store"), |_| async {
                    tokio::time::sleep(Duration::from_secs(4)).await;
                    Ok::<_, JobError>(())
                })
                .unwrap();
            // Waits behind it past its 3 s wait timeout.
            let starved = runtime
                .submit(JobSpec::new("b", "store"), |_| async { Ok::<_, JobError>(()) })
                .unwrap();
            assert_eq!(in_time.await, Outcome::Completed(()), "{point}");
            assert!(matches!(starved.await, Outcome::Skipped(_)), "{point}");
            let hung = runtime
                .submit(JobSpec::new("a", "store"), |_| async {
                    std::future::pending::<()>().await;
                    Ok::<_, JobError>(())
                })
                .unwrap();
            assert_eq!(hung.await, Outcome::TimedOut, "{point}");
            let stats = settled(&runtime).await;
            assert_eq!(stats.resources["store"].in_flight, 0, "{point}");
            runtime.shutdown(Duration::ZERO).await;
        });
        scenario.teardown();
    }
}
