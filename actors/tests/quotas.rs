//! Quotas through the Runtime on the paused clock (issue 6): refusals are outcomes with a
//! retry time that passes when honoured, waiting for quota works, jobs report their cost,
//! and usage is readable from the handle.

mod common;

use std::time::Duration;

use common::paused;
use tokio::time::{sleep, Instant};
use weir::{JobError, JobSpec, Outcome, QuotaScope, SkipReason};
use weir_actors::Runtime;

fn request(runtime: &Runtime, spec: JobSpec) -> weir_actors::JobHandle<()> {
    runtime
        .submit(spec, |_ctx| async {
            sleep(Duration::from_millis(100)).await;
            Ok::<_, JobError>(())
        })
        .unwrap()
}

#[test]
fn the_eleventh_request_in_a_minute_is_refused_and_honouring_retry_after_passes() {
    paused(async {
        let runtime = Runtime::start(common::seed_quotas()).unwrap();
        let start = Instant::now();
        for _ in 0..10 {
            assert_eq!(
                request(&runtime, JobSpec::new("alice", "llm")).await,
                Outcome::Completed(())
            );
            sleep(Duration::from_secs(2)).await;
        }
        let outcome = request(&runtime, JobSpec::new("alice", "llm")).await;
        let Outcome::Skipped(SkipReason::QuotaExceeded { limit, retry_after }) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(limit, "per_user/1m");
        // The first request was admitted at the start: it leaves the minute 60 s later.
        let elapsed = start.elapsed();
        assert_eq!(
            elapsed + retry_after,
            Duration::from_secs(60),
            "retry_after {retry_after:?}"
        );

        let usage = runtime.usage("alice").await;
        let minute = &usage.windows[0];
        assert_eq!((minute.current, minute.limit, minute.remaining), (10, 10, 0));
        assert_eq!(minute.scope, QuotaScope::Tenant);
        let global = usage
            .windows
            .iter()
            .find(|w| w.scope == QuotaScope::Global)
            .unwrap();
        assert_eq!((global.current, global.limit), (10, 1000));

        sleep(retry_after).await;
        assert_eq!(
            request(&runtime, JobSpec::new("alice", "llm")).await,
            Outcome::Completed(())
        );
        runtime.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn a_job_that_waits_for_quota_runs_when_the_window_has_room() {
    paused(async {
        let runtime = Runtime::start(common::seed_quotas()).unwrap();
        let start = Instant::now();
        let first: Vec<_> = (0..10)
            .map(|_| request(&runtime, JobSpec::new("alice", "llm")))
            .collect();
        let waiting = request(
            &runtime,
            JobSpec::new("alice", "llm")
                .wait_for_quota()
                .wait_timeout(Duration::from_secs(90)),
        );
        futures::future::join_all(first).await;
        assert_eq!(waiting.await, Outcome::Completed(()));
        let took = start.elapsed();
        assert!(
            took >= Duration::from_secs(60) && took < Duration::from_secs(61),
            "ran after {took:?}"
        );
        runtime.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn jobs_report_their_cost_and_the_budget_refuses_what_no_longer_fits() {
    paused(async {
        let runtime = Runtime::start(common::seed_quotas()).unwrap();
        // Estimated $1, actually cost $4.50 (tokens in and out times a price).
        let costly = runtime
            .submit(
                JobSpec::new("alice", "llm").estimated_cost(1_000_000),
                |ctx| async move {
                    sleep(Duration::from_millis(50)).await;
                    ctx.report_cost(4_500_000);
                    Ok::<_, JobError>(())
                },
            )
            .unwrap();
        assert_eq!(costly.await, Outcome::Completed(()));
        let usage = runtime.usage("alice").await;
        let cost = &usage.costs[0];
        assert_eq!(
            (cost.spent, cost.reserved, cost.remaining),
            (4_500_000, 0, 500_000)
        );
        let global = usage
            .costs
            .iter()
            .find(|c| c.scope == QuotaScope::Global)
            .unwrap();
        assert_eq!(global.spent, 4_500_000);

        let outcome = request(&runtime, JobSpec::new("alice", "llm").estimated_cost(1_000_000)).await;
        let Outcome::Skipped(SkipReason::QuotaExceeded { limit, retry_after }) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(limit, "per_user/cost");
        // The $4.50 leaves the day-long window a day after it was charged.
        assert!(
            retry_after > Duration::from_secs(24 * 3600 - 1),
            "{retry_after:?}"
        );
        // Someone else still has their own budget.
        let bob = request(&runtime, JobSpec::new("bob", "llm").estimated_cost(1_000_000)).await;
        assert_eq!(bob, Outcome::Completed(()));
        let bob_usage = runtime.usage("bob").await;
        assert_eq!(
            bob_usage.costs[0].spent, 1_000_000,
            "charged its estimate: it never reported"
        );
        runtime.shutdown(Duration::from_secs(1)).await;
    });
}
