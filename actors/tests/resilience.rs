//! Resilience through the runtime on a paused clock (issue 5): two providers, the
//! primary answering 429 with Retry-After in bursts. The breaker opens, jobs move to the
//! fallback, retries sleep without a slot, no job is lost, neither provider sees more
//! than its cap, and calls stay within attempts x jobs.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::paused;
use tokio::time::Instant;
use weir::{Config, JobError, JobSpec, Outcome};
use weir_actors::{Job, JobContext, Runtime};

const CONFIG: &str = r#"
[scheduler]
slot_wait_timeout = "1h"

[resources.primary]
max_concurrent = 2
fallback = "secondary"
rate_limit = { requests = 20, per = "1s", safety_factor = 0.9 }
breaker = { error_rate = 0.3, window = "10s", min_calls = 5, cooldown = "3s", half_open_probes = 1, half_open_timeout = "2s" }
retry = { max_attempts = 3, base = "200ms", cap = "2s" }
jitter = { min = 0.9, max = 1.6, seed = 5 }
call_budget = { calls = 5 }

[resources.secondary]
max_concurrent = 1
rate_limit = { requests = 40, per = "1s" }
retry = { max_attempts = 3, base = "200ms", cap = "2s" }
call_budget = { calls = 5 }
"#;

const JOBS: usize = 200;
const MAX_ATTEMPTS: u64 = 3;

/// A provider that counts its own concurrency and calls, and answers 429 (with a
/// Retry-After) while `failing(elapsed)` says so.
struct Provider {
    start: Instant,
    failing: fn(Duration) -> bool,
    current: AtomicU64,
    peak: AtomicU64,
    calls: AtomicU64,
    rejected: AtomicU64,
    started_at: Mutex<Vec<Duration>>,
}

impl Provider {
    fn new(failing: fn(Duration) -> bool) -> Self {
        Self {
            start: Instant::now(),
            failing,
            current: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            calls: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            started_at: Mutex::new(Vec::new()),
        }
    }

    async fn call(&self) -> Result<(), JobError> {
        let elapsed = self.start.elapsed();
        self.started_at.lock().unwrap().push(elapsed);
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.current.fetch_sub(1, Ordering::SeqCst);
        if (self.failing)(elapsed) {
            self.rejected.fetch_add(1, Ordering::SeqCst);
            return Err(JobError::retry_after(
                "429 Too Many Requests",
                Duration::from_millis(500),
            ));
        }
        Ok(())
    }

    fn get(&self, c: &AtomicU64) -> u64 {
        c.load(Ordering::SeqCst)
    }
}

fn primary_failing(elapsed: Duration) -> bool {
    let s = elapsed.as_secs_f64();
    (1.0..5.0).contains(&s) || (9.0..11.0).contains(&s)
}

#[test]
fn primary_fails_in_bursts_breaker_opens_jobs_fall_back_and_none_is_lost() {
    let (outcomes, stats, primary, secondary) = paused(async {
        let runtime = Runtime::start(Config::from_toml_str(CONFIG).unwrap()).unwrap();
        let primary = Arc::new(Provider::new(primary_failing));
        let secondary = Arc::new(Provider::new(|_| false));
        let mut handles = Vec::new();
        for _ in 0..JOBS {
            let (p, s) = (primary.clone(), secondary.clone());
            let (job, handle) = Job::retrying(JobSpec::new("acme", "primary"), move |ctx: JobContext| {
                let (p, s) = (p.clone(), s.clone());
                async move {
                    ctx.call()?;
                    if ctx.resource().as_str() == "primary" {
                        p.call().await
                    } else {
                        s.call().await
                    }
                }
            });
            runtime.submit_job(job).unwrap();
            handles.push(handle);
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        let outcomes = futures::future::join_all(handles).await;
        let stats = runtime.stats().await;
        runtime.shutdown(Duration::from_secs(1)).await;
        (outcomes, stats, primary, secondary)
    });

    // No job is lost: every one has exactly one outcome, and none was skipped.
    assert_eq!(outcomes.len(), JOBS);
    let completed = outcomes.iter().filter(|o| o.is_completed()).count();
    let failed = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Failed(_)))
        .count();
    assert_eq!(completed + failed, JOBS, "{outcomes:?}");
    assert_eq!(stats.outcomes().total(), JOBS as u64);
    // Caps seen from the providers' side.
    assert!(
        primary.get(&primary.peak) <= 2,
        "primary peak {}",
        primary.get(&primary.peak)
    );
    assert!(
        secondary.get(&secondary.peak) <= 1,
        "secondary peak {}",
        secondary.get(&secondary.peak)
    );
    // Calls within attempts x jobs.
    let calls = primary.get(&primary.calls) + secondary.get(&secondary.calls);
    assert!(calls <= MAX_ATTEMPTS * JOBS as u64, "{calls} calls");
    // The breaker opened, jobs moved to the fallback and it served them.
    let p = &stats.resources["primary"].resilience;
    assert!(p.opened >= 1, "{p:?}");
    assert!(p.fallbacks > 0, "{p:?}");
    assert!(p.retries > 0, "{p:?}");
    assert!(secondary.get(&secondary.calls) > 0);
    // The rate limit held on the primary: at most 18 calls in any second.
    let times = primary.started_at.lock().unwrap().clone();
    for (i, t) in times.iter().enumerate() {
        let inside = times[i..]
            .iter()
            .take_while(|u| **u < *t + Duration::from_secs(1))
            .count();
        assert!(inside <= 18, "{inside} calls in the second from {t:?}");
    }
    eprintln!(
        "completed {completed}, failed {failed}, calls {calls} (primary {}, rejected {}; secondary {}), {p:?}",
        primary.get(&primary.calls),
        primary.get(&primary.rejected),
        secondary.get(&secondary.calls)
    );
    // Retries and fallbacks rescued nearly every job that met a 429.
    assert!(
        completed >= JOBS * 95 / 100,
        "completed {completed}, failed {failed}, primary rejected {}",
        primary.get(&primary.rejected)
    );
}

#[test]
fn over_budget_a_job_fails_budget_exhausted_with_the_count() {
    let outcome = paused(async {
        let runtime = Runtime::start(Config::from_toml_str(CONFIG).unwrap()).unwrap();
        let handle = runtime
            .submit(JobSpec::new("acme", "secondary"), |ctx| async move {
                for _ in 0..10 {
                    ctx.call()?;
                }
                Ok::<_, JobError>(())
            })
            .unwrap();
        let outcome = handle.await;
        runtime.shutdown(Duration::from_secs(1)).await;
        outcome
    });
    assert_eq!(
        outcome,
        Outcome::Failed(JobError::BudgetExhausted { calls: 6, limit: 5 })
    );
}

#[test]
fn attempts_share_one_budget() {
    let (outcome, calls) = paused(async {
        let runtime = Runtime::start(Config::from_toml_str(CONFIG).unwrap()).unwrap();
        let calls = Arc::new(AtomicU64::new(0));
        let c = calls.clone();
        let (job, handle) = Job::retrying(JobSpec::new("acme", "secondary"), move |ctx: JobContext| {
            let c = c.clone();
            async move {
                // Two calls per attempt, each attempt fails: the third attempt's second
                // call is the sixth and is refused.
                for _ in 0..2 {
                    ctx.call()?;
                    c.fetch_add(1, Ordering::SeqCst);
                }
                Err::<(), _>(JobError::msg("downstream error"))
            }
        });
        runtime.submit_job(job).unwrap();
        let outcome = handle.await;
        runtime.shutdown(Duration::from_secs(1)).await;
        (outcome, calls.load(Ordering::SeqCst))
    });
    assert_eq!(
        outcome,
        Outcome::Failed(JobError::BudgetExhausted { calls: 6, limit: 5 })
    );
    assert_eq!(calls, 5);
}
