//! Adaptive limits and live caps through the runtime on a paused clock (issue 17): a
//! body's overload error lowers the limit and other failures do not; a cap lowered mid-run
//! loses no job and is not exceeded once in-flight drains to it; a bad value is refused
//! by name and the old cap keeps running; a change racing shutdown ends cleanly.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{paused, Downstream};
use weir::{Config, JobError, JobSpec, Outcome};
use weir_actors::{Job, JobContext, Runtime};

const ADAPTIVE: &str = r#"
[scheduler]
slot_wait_timeout = "1h"

[resources.store]
max_concurrent = 40
adaptive = { algorithm = "aimd", min = 2, initial = 30 }
retry = { max_attempts = 100, base = "10ms", cap = "200ms" }
"#;

/// Runs `jobs` retrying queries of 50 ms against a store that allows 10 at once; the
/// store's refusal is the body's error, marked overload or not. Returns the outcomes and
/// the resource's limit at the end.
async fn run_against_ten(overload: bool, jobs: usize) -> (Vec<Outcome<()>>, u32, u64) {
    let runtime = Runtime::start(Config::from_toml_str(ADAPTIVE).unwrap()).unwrap();
    let store = Downstream::new(10);
    let mut handles = Vec::new();
    for _ in 0..jobs {
        let store = store.clone();
        let (job, handle) = Job::retrying(JobSpec::new("acme", "store"), move |_ctx: JobContext| {
            let store = store.clone();
            async move {
                let refused = store.query(Duration::from_millis(50)).await;
                refused.map_err(|e| if overload { e.overloaded() } else { e })
            }
        });
        runtime.submit_job(job).unwrap();
        handles.push(handle);
    }
    let outcomes = futures::future::join_all(handles).await;
    let limit = runtime.stats().await.resources["store"].limit;
    runtime.shutdown(Duration::ZERO).await;
    (outcomes, limit, store.rejections())
}

#[test]
fn overload_errors_bring_the_limit_down_to_the_stores() {
    let (outcomes, limit, rejections) = paused(run_against_ten(true, 400));
    assert!(
        outcomes.iter().all(Outcome::is_completed),
        "every job served in the end"
    );
    // AIMD settles in a sawtooth between 0.9 x 11 and 11 around the store's 10.
    assert!((9..=11).contains(&limit), "limit {limit}");
    assert!(rejections > 0);
}

#[test]
fn failures_not_marked_overload_leave_the_limit_alone() {
    let (outcomes, limit, rejections) = paused(run_against_ten(false, 400));
    assert!(outcomes.iter().all(Outcome::is_completed));
    assert!(rejections > 0);
    // Nothing lowered it: it is still at least its initial 30.
    assert!(limit >= 30, "limit {limit}");
}

#[test]
fn a_cap_lowered_mid_run_loses_no_job_and_holds_once_in_flight_drains() {
    paused(async {
        let mut config = Config::default();
        config.scheduler.max_concurrent = 8;
        let runtime = Runtime::start(config).unwrap();
        let store = Downstream::new(1000);
        let mut handles = Vec::new();
        for _ in 0..200 {
            let store = store.clone();
            let handle = runtime
                .submit(JobSpec::new("acme", "store"), move |_ctx| async move {
                    store.query(Duration::from_millis(100)).await
                })
                .unwrap();
            handles.push(handle);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        runtime.set_max_concurrent("store", 3).await.unwrap();
        assert_eq!(
            runtime.stats().await.resources["store"].in_flight,
            8,
            "nothing preempted"
        );
        // The jobs in flight at the change end within their 100 ms.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(store.current() <= 3);
        store.peak.store(store.current(), Ordering::SeqCst);
        // A bad value is refused by name; the cap of 3 keeps running.
        let e = runtime.set_max_concurrent("store", 0).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "resources.store.max_concurrent must be between 1 and 1000000, got 0"
        );
        let outcomes = futures::future::join_all(handles).await;
        assert!(outcomes.iter().all(Outcome::is_completed));
        assert!(store.peak() <= 3, "peak {} after the drain", store.peak());
        let stats = runtime.stats().await;
        assert_eq!(stats.resources["store"].outcomes.completed, 200);
        assert_eq!(
            (stats.resources["store"].cap, stats.resources["store"].limit),
            (3, 3)
        );
        runtime.shutdown(Duration::ZERO).await;
    });
}

#[test]
fn a_raised_cap_grants_at_once() {
    paused(async {
        let mut config = Config::default();
        config.scheduler.max_concurrent = 2;
        let runtime = Runtime::start(config).unwrap();
        let store = Downstream::new(1000);
        let mut handles = Vec::new();
        for _ in 0..20 {
            let store = store.clone();
            handles.push(
                runtime
                    .submit(JobSpec::new("acme", "store"), move |_ctx| async move {
                        store.query(Duration::from_secs(1)).await
                    })
                    .unwrap(),
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        runtime.set_max_concurrent("store", 12).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(store.current(), 12);
        let outcomes = futures::future::join_all(handles).await;
        assert!(outcomes.iter().all(Outcome::is_completed));
        runtime.shutdown(Duration::ZERO).await;
    });
}

#[test]
fn a_cap_change_racing_shutdown_ends_cleanly() {
    paused(async {
        let runtime = Runtime::start(Config::default()).unwrap();
        let handle = runtime
            .submit(JobSpec::new("acme", "store"), |_ctx| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, JobError>(())
            })
            .unwrap();
        let (changed, report) = tokio::join!(
            runtime.set_max_concurrent("store", 4),
            runtime.shutdown(Duration::from_millis(100))
        );
        assert!(changed.is_ok());
        assert_eq!(report.cancelled_running, 0, "{report:?}");
        assert!(handle.await.is_completed());
        // After shutdown the call changes nothing and does not fail.
        assert!(runtime.set_max_concurrent("store", 5).await.is_ok());
    });
}
