//! Overload refusals through the runtime on a paused clock (issue 26): an overload error's
//! Retry-After pauses every job of a resource whose rate is learned, not only the refused
//! job's retry; an overload refusal stays out of the breaker unless `count_overload` says
//! so, while plain errors still open it.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::paused;
use tokio::time::Instant;
use weir::{BreakerState, Config, JobError, JobSpec, Outcome};
use weir_actors::{Job, JobContext, Runtime};

/// The first call is refused with a Retry-After of 1 s; the others succeed. Returns when
/// each call was made, from the start.
async fn calls_around_a_pause() -> Vec<Duration> {
    let config = Config::from_toml_str(
        r#"
        [scheduler]
        slot_wait_timeout = "1h"
        [resources.api]
        max_concurrent = 10
        rate_limit = { requests = 1000, per = "1s", adaptive = { min = 1, initial = 100 } }
        retry = { max_attempts = 3, base = "1ms", cap = "1ms" }
        "#,
    )
    .unwrap();
    let runtime = Runtime::start(config).unwrap();
    let start = Instant::now();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for _ in 0..5 {
        let calls = calls.clone();
        let (job, handle) = Job::retrying(JobSpec::new("acme", "api"), move |_ctx: JobContext| {
            let calls = calls.clone();
            async move {
                let first = {
                    let mut calls = calls.lock().unwrap();
                    calls.push(start.elapsed());
                    calls.len() == 1
                };
                tokio::time::sleep(Duration::from_millis(1)).await;
                if first {
                    Err(JobError::retry_after("429", Duration::from_secs(1)).overloaded())
                } else {
                    Ok(())
                }
            }
        });
        runtime.submit_job(job).unwrap();
        handles.push(handle);
    }
    for h in handles {
        assert_eq!(h.await, Outcome::Completed(()));
    }
    runtime.shutdown(Duration::from_secs(1)).await;
    let calls = calls.lock().unwrap().clone();
    calls
}

#[test]
fn a_retry_after_pauses_every_job_of_a_learned_rate() {
    let calls = paused(calls_around_a_pause());
    assert_eq!(calls.len(), 6, "five jobs, one refused once: {calls:?}");
    // At 100 a second the first two calls are 10 ms apart; the refusal at 1 ms...
    let refused_at = calls[0] + Duration::from_millis(1);
    // ...holds every later call until its Retry-After has passed.
    for &at in &calls[1..] {
        assert!(
            at <= refused_at || at >= refused_at + Duration::from_secs(1),
            "a call at {at:?} inside the pause after {refused_at:?}: {calls:?}"
        );
    }
    assert!(
        calls
            .iter()
            .filter(|&&at| at >= refused_at + Duration::from_secs(1))
            .count()
            >= 4,
        "{calls:?}"
    );
}

/// Eight jobs whose every call fails, as overload or not; the breaker's state after.
async fn breaker_after(count_overload: bool, overload: bool) -> Option<BreakerState> {
    let config = Config::from_toml_str(&format!(
        r#"
        [resources.api]
        max_concurrent = 8
        breaker = {{ error_rate = 0.5, min_calls = 4, cooldown = "1h", count_overload = {count_overload} }}
        "#
    ))
    .unwrap();
    let runtime = Runtime::start(config).unwrap();
    let mut handles = Vec::new();
    for _ in 0..8 {
        let (job, handle) = Job::new(JobSpec::new("acme", "api"), move |_ctx: JobContext| async move {
            let e = JobError::msg("429");
            Err::<(), _>(if overload { e.overloaded() } else { e })
        });
        runtime.submit_job(job).unwrap();
        handles.push(handle);
    }
    for h in handles {
        let _ = h.await;
    }
    let state = runtime.stats().await.resources["api"].resilience.breaker;
    runtime.shutdown(Duration::from_secs(1)).await;
    state
}

#[test]
fn overload_refusals_stay_out_of_the_breaker_unless_it_counts_them() {
    assert_eq!(paused(breaker_after(false, true)), Some(BreakerState::Closed));
    assert_eq!(paused(breaker_after(true, true)), Some(BreakerState::Open));
    assert_eq!(paused(breaker_after(false, false)), Some(BreakerState::Open));
}
