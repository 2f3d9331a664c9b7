//! Metrics through the `metrics` facade (issue 15 item 1), read back from a Prometheus
//! recorder: the exported counts equal the outcomes the handles saw, quota refusals are
//! counted under their limit, and tenant labels stay bounded.

mod common;

use std::time::Duration;

use common::paused;
use metrics_exporter_prometheus::PrometheusBuilder;
use weir::{Config, JobError, JobSpec, Outcome};
use weir_actors::Runtime;

/// The value of the series whose line starts with `series` (name and labels as rendered).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn exported_counts_equal_the_outcomes_the_handles_saw() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    // The supervisor runs on this thread (paused clock, no worker threads).
    let _guard = metrics::set_default_local_recorder(&recorder);
    paused(async {
        let config = Config::from_toml_str(
            r#"
            [scheduler]
            max_concurrent = 2
            [quotas.per_user]
            windows = [{ limit = 3, per = "1m" }]
            [metrics]
            tenant_labels = 1
            "#,
        )
        .unwrap();
        let runtime = Runtime::start(config).unwrap();
        let mut outcomes = Vec::new();
        for (tenant, fail) in [("alice", false); 5].into_iter().chain([("bob", true)]) {
            let h = runtime
                .submit(JobSpec::new(tenant, "store"), move |_ctx| async move {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if fail {
                        Err(JobError::msg("downstream said no"))
                    } else {
                        Ok(())
                    }
                })
                .unwrap();
            outcomes.push(h);
        }
        let outcomes = futures::future::join_all(outcomes).await;
        let completed = outcomes.iter().filter(|o| o.is_completed()).count();
        let skipped = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Skipped(_)))
            .count();
        let failed = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Failed(_)))
            .count();
        assert_eq!((completed, skipped, failed), (3, 2, 1));

        runtime.stats().await; // publishes the snapshot-derived series
        let text = handle.render();
        let jobs = |outcome: &str| {
            value(
                &text,
                &format!("weir_jobs_total{{resource=\"store\",outcome=\"{outcome}\"}}"),
            )
        };
        assert_eq!(jobs("completed"), Some(3.0), "{text}");
        assert_eq!(jobs("skipped"), Some(2.0));
        assert_eq!(jobs("failed"), Some(1.0));
        assert_eq!(jobs("cancelled"), Some(0.0));
        assert_eq!(
            value(&text, "weir_quota_refusals_total{limit=\"per_user/1m\"}"),
            Some(2.0)
        );
        assert_eq!(value(&text, "weir_quota_admissions_total"), Some(4.0));
        assert_eq!(value(&text, "weir_jobs_in_flight{resource=\"store\"}"), Some(0.0));
        assert_eq!(value(&text, "weir_slots{resource=\"store\"}"), Some(2.0));
        // No adaptive limit on `store`: its limit is its cap.
        assert_eq!(value(&text, "weir_limit{resource=\"store\"}"), Some(2.0));
        // Every job that held a slot has a run time; every grant a wait time.
        assert_eq!(
            value(&text, "weir_job_run_seconds_count{resource=\"store\"}"),
            Some(4.0)
        );
        assert_eq!(
            value(&text, "weir_job_wait_seconds_count{resource=\"store\"}"),
            Some(4.0)
        );
        // One tenant label: alice (seen first) by name, bob as `other`.
        assert_eq!(
            value(
                &text,
                "weir_tenant_jobs_total{resource=\"store\",tenant=\"alice\",outcome=\"completed\"}"
            ),
            Some(3.0)
        );
        assert_eq!(
            value(
                &text,
                "weir_tenant_jobs_total{resource=\"store\",tenant=\"other\",outcome=\"failed\"}"
            ),
            Some(1.0)
        );
        assert!(!text.contains("tenant=\"bob\""), "{text}");
        runtime.shutdown(Duration::from_secs(1)).await;
    });
}

/// `weir_bodies_on_body_threads` says where each resource's bodies run: 1 for a resource
/// whose body computed past `runtime.inline_poll_limit` on the supervisor's thread, 0 for
/// one whose bodies are brief. The runtime starts inside this thread's actix system (a
/// running clock, so it has a body thread), and so publishes to this thread's recorder.
#[test]
fn the_placement_gauge_shows_which_resources_left_the_supervisors_thread() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);
    actix_rt::System::new().block_on(async {
        let mut config = Config::default();
        config.runtime.worker_threads = Some(1);
        config.runtime.inline_poll_limit = Duration::from_millis(50);
        let runtime = Runtime::start(config).unwrap();
        let run = |resource: &'static str, compute: Duration| {
            runtime
                .submit(JobSpec::new("t", resource), move |_ctx| async move {
                    let end = std::time::Instant::now() + compute;
                    while std::time::Instant::now() < end {
                        std::hint::spin_loop();
                    }
                    Ok::<_, JobError>(())
                })
                .unwrap()
        };
        assert!(run("quick", Duration::ZERO).await.is_completed());
        assert!(run("compute", Duration::from_millis(150)).await.is_completed());
        runtime.stats().await;
        let text = handle.render();
        assert_eq!(
            value(&text, r#"weir_bodies_on_body_threads{resource="compute"}"#),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            value(&text, r#"weir_bodies_on_body_threads{resource="quick"}"#),
            Some(0.0),
            "{text}"
        );
        runtime.shutdown(Duration::from_secs(5)).await;
    });
}

/// Issue 25: skips are counted by reason, the cost charged counts each admitted job once
/// (its reported cost, not its estimate; nothing for one that never ran) however many
/// cost budgets apply, and an adaptive resource's floor is exported beside its limit.
#[test]
fn skips_by_reason_cost_charged_once_per_job_and_the_adaptive_floor_are_exported() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let _guard = metrics::set_default_local_recorder(&recorder);
    paused(async {
        let config = Config::from_toml_str(
            r#"
            [resources.store]
            max_concurrent = 1
            slot_wait_timeout = "1s"
            [resources.db]
            max_concurrent = 10
            adaptive = { min = 3 }
            [quotas.per_user]
            windows = [{ limit = 100, per = "1m" }]
            cost_budget = 1000
            cost_window = "1day"
            [quotas.global]
            scope = "global"
            windows = [{ limit = 100, per = "1h" }]
            cost_budget = 100000
            cost_window = "1day"
            "#,
        )
        .unwrap();
        let runtime = Runtime::start(config).unwrap();
        let holder = runtime
            .submit(
                JobSpec::new("alice", "store").estimated_cost(10),
                |ctx| async move {
                    ctx.report_cost(7);
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    Ok::<_, JobError>(())
                },
            )
            .unwrap();
        let starved = runtime
            .submit(JobSpec::new("alice", "store").estimated_cost(20), |_ctx| async {
                Ok::<_, JobError>(())
            })
            .unwrap();
        let too_dear = runtime
            .submit(JobSpec::new("bob", "store").estimated_cost(5000), |_ctx| async {
                Ok::<_, JobError>(())
            })
            .unwrap();
        let db = runtime
            .submit(JobSpec::new("bob", "db"), |_ctx| async { Ok::<_, JobError>(()) })
            .unwrap();
        assert!(holder.await.is_completed());
        assert!(matches!(
            starved.await,
            Outcome::Skipped(weir::SkipReason::NoSlot)
        ));
        assert!(matches!(
            too_dear.await,
            Outcome::Skipped(weir::SkipReason::OverBudget { .. })
        ));
        assert!(db.await.is_completed());

        runtime.stats().await;
        let text = handle.render();
        let skips = |reason: &str| {
            value(
                &text,
                &format!("weir_jobs_skipped_total{{resource=\"store\",reason=\"{reason}\"}}"),
            )
        };
        assert_eq!(skips("no_slot"), Some(1.0), "{text}");
        assert_eq!(skips("over_budget"), Some(1.0));
        assert_eq!(skips("quota_exceeded"), None, "a reason never seen has no series");
        assert_eq!(value(&text, "weir_quota_cost_charged_total"), Some(7.0));
        assert_eq!(value(&text, "weir_limit_min{resource=\"db\"}"), Some(3.0));
        assert_eq!(value(&text, "weir_limit_min{resource=\"store\"}"), None);
        assert!(text.contains("# HELP weir_jobs_skipped_total "), "{text}");
        runtime.shutdown(Duration::from_secs(1)).await;
    });
}
