//! The supervisor's batched intake keeps each job's own messages in order (issue 9): what a
//! job tells the supervisor while it runs (reported cost, park, unpark) is handled before
//! its stop report, even when many jobs end at once on several worker threads and the
//! supervisor drains their reports in bursts.

use std::time::Duration;

use weir::{Config, JobError, JobSpec, Outcome};
use weir_actors::Runtime;

fn config(toml: &str) -> Config {
    let mut config = Config::from_toml_str(toml).unwrap();
    config.runtime.worker_threads = Some(2);
    // Every body on the two body threads, as the module docs say (brief bodies would
    // otherwise run on the supervisor's thread).
    config.runtime.inline_poll_limit = Duration::ZERO;
    config.scheduler.max_concurrent = 50;
    config.scheduler.slot_wait_timeout = Duration::from_secs(60);
    config
}

#[test]
fn a_cost_reported_just_before_the_job_ends_is_charged() {
    let config = config(
        r#"
        [quotas.per_user]
        cost_budget = 1000000000
        cost_window = "1day"
        "#,
    );
    actix_rt::System::new().block_on(async {
        let runtime = Runtime::start(config).unwrap();
        let jobs = 2_000u64;
        let handles: Vec<_> = (0..jobs)
            .map(|_| {
                runtime
                    .submit(JobSpec::new("acme", "llm").estimated_cost(1), |ctx| async move {
                        // The last thing the job does: its stop report follows at once.
                        ctx.report_cost(7);
                        Ok::<_, JobError>(())
                    })
                    .unwrap()
            })
            .collect();
        for handle in handles {
            assert_eq!(handle.await, Outcome::Completed(()));
        }
        let usage = runtime.usage("acme").await;
        let cost = &usage.costs[0];
        // Charged at the estimate (1) instead, had a stop report overtaken its cost.
        assert_eq!((cost.spent, cost.reserved), (jobs * 7, 0));
        runtime.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn parents_that_park_and_end_at_once_return_every_slot_once() {
    let mut config = config("");
    config.scheduler.max_concurrent = 2;
    actix_rt::System::new().block_on(async {
        let runtime = Runtime::start(config).unwrap();
        let parents = 300;
        let handles: Vec<_> = (0..parents)
            .map(|i| {
                runtime
                    .submit(JobSpec::new(format!("org-{i}"), "orgs"), |ctx| async move {
                        let children =
                            ctx.spawn([(ctx.child_spec("store"), |_ctx| async { Ok::<_, JobError>(()) })])?;
                        // Parks, unparks when the child is done, and ends right after.
                        let outcomes = ctx.join(children).await;
                        Ok::<_, JobError>(outcomes.len())
                    })
                    .unwrap()
            })
            .collect();
        for handle in handles {
            assert_eq!(handle.await, Outcome::Completed(1));
        }
        let stats = runtime.stats().await;
        for name in ["orgs", "store"] {
            let r = &stats.resources[name];
            assert_eq!(r.in_flight, 0, "{name}: every slot is back");
            assert!(r.peak_in_flight <= 2, "{name}: the cap held");
            assert_eq!((r.submitted, r.outcomes.completed), (300, 300), "{name}");
            assert_eq!(r.outcomes.total(), 300, "{name}: one outcome per job");
        }
        runtime.shutdown(Duration::from_secs(1)).await;
    });
}
