//! `Runtime::reconfigure` on a paused clock (issue 17): caps raised and lowered, weights
//! and quota windows changed mid-run lose no job and no count; a lowered cap is never
//! exceeded once in flight drains to it; an invalid configuration is refused by the
//! field's name and the old one keeps running; a change racing shutdown ends cleanly.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{paused, Downstream};
use weir::{Config, JobError, JobSpec, Outcome, SkipReason};
use weir_actors::{Job, Runtime};

fn config(text: &str) -> Config {
    Config::from_toml_str(text).unwrap()
}

fn with_cap(cap: u32) -> Config {
    config(&format!(
        "[scheduler]\nslot_wait_timeout = \"1h\"\n[resources.store]\nmax_concurrent = {cap}\n"
    ))
}

#[test]
fn caps_lowered_then_raised_mid_run_lose_no_job_and_the_lowered_cap_holds() {
    paused(async {
        let runtime = Runtime::start(with_cap(8)).unwrap();
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
        let changes = runtime.reconfigure(with_cap(3)).await.unwrap();
        assert_eq!(changes.to_string(), "resources.store.max_concurrent: 8 -> 3");
        assert_eq!(
            runtime.stats().await.resources["store"].in_flight,
            8,
            "nothing preempted"
        );
        // The jobs in flight at the change end within their 100 ms; from then on, 3.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(store.current() <= 3);
        store.peak.store(store.current(), Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(store.peak() <= 3, "peak {} after the drain", store.peak());
        runtime.reconfigure(with_cap(12)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(store.current(), 12, "a raised cap grants at once");
        let outcomes = futures::future::join_all(handles).await;
        assert!(outcomes.iter().all(Outcome::is_completed));
        let stats = runtime.stats().await;
        let store_stats = &stats.resources["store"];
        assert_eq!(
            (store_stats.submitted, store_stats.outcomes.completed),
            (200, 200)
        );
        assert_eq!((store_stats.cap, store_stats.limit), (12, 12));
        assert_eq!(stats.reconfigurations, 2);
        assert_eq!(runtime.config().resources["store"].max_concurrent, Some(12));
        runtime.shutdown(Duration::ZERO).await;
    });
}

#[test]
fn a_weight_raised_mid_run_serves_that_tenant_more_and_loses_no_job() {
    paused(async {
        let base = "[scheduler]\nslot_wait_timeout = \"1h\"\n[resources.store]\nmax_concurrent = 1\n";
        let runtime = Runtime::start(config(base)).unwrap();
        let served = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        for _ in 0..40 {
            for tenant in ["a", "b"] {
                let served = served.clone();
                let handle = runtime
                    .submit(JobSpec::new(tenant, "store"), move |_ctx| async move {
                        served.lock().unwrap().push(tenant);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        Ok::<_, JobError>(())
                    })
                    .unwrap();
                handles.push(handle);
            }
        }
        tokio::time::sleep(Duration::from_millis(105)).await;
        runtime
            .reconfigure(config(&format!("{base}[tenants.a]\nweight = 3\n")))
            .await
            .unwrap();
        let from = served.lock().unwrap().len();
        let outcomes = futures::future::join_all(handles).await;
        assert!(outcomes.iter().all(Outcome::is_completed));
        let served = served.lock().unwrap().clone();
        let before = &served[..from];
        let after = &served[from..from + 20];
        let a_before = before.iter().filter(|t| **t == "a").count();
        let a_after = after.iter().filter(|t| **t == "a").count();
        assert!(
            a_before.abs_diff(before.len() - a_before) <= 1,
            "1:1 before: {before:?}"
        );
        assert!((14..=16).contains(&a_after), "3:1 after: {after:?}");
        let stats = runtime.stats().await;
        assert_eq!(stats.resources["store"].outcomes.completed, 80);
        runtime.shutdown(Duration::ZERO).await;
    });
}

#[test]
fn a_quota_raised_then_lowered_mid_run_keeps_its_window() {
    paused(async {
        let quota = |limit: u32| {
            config(&format!(
                "[quotas.per_user]\nwindows = [{{ limit = {limit}, per = \"1m\" }}]\n"
            ))
        };
        let runtime = Runtime::start(quota(5)).unwrap();
        let run = |n: usize| {
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    runtime
                        .submit(JobSpec::new("acme", "store"), |_ctx| async {
                            Ok::<_, JobError>(())
                        })
                        .unwrap()
                })
                .collect();
            futures::future::join_all(handles)
        };
        assert!(run(5).await.iter().all(Outcome::is_completed));
        runtime.reconfigure(quota(8)).await.unwrap();
        let outcomes = run(5).await;
        let completed = outcomes.iter().filter(|o| o.is_completed()).count();
        assert_eq!(
            completed, 3,
            "the first 5 still count in the window: {outcomes:?}"
        );
        assert!(outcomes
            .iter()
            .filter(|o| !o.is_completed())
            .all(|o| matches!(o, Outcome::Skipped(SkipReason::QuotaExceeded { .. }))));
        runtime.reconfigure(quota(2)).await.unwrap();
        assert!(!run(1).await[0].is_completed(), "8 in the window, limit 2");
        let usage = runtime.usage("acme").await;
        assert_eq!((usage.windows[0].remaining, usage.windows[0].limit), (0, 2));
        // The window passes as it would have: a minute after the first admissions.
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert!(run(2).await.iter().all(Outcome::is_completed));
        let stats = runtime.stats().await;
        let counts = &stats.resources["store"];
        assert_eq!(
            (
                counts.submitted,
                counts.outcomes.completed,
                counts.outcomes.skipped
            ),
            (13, 10, 3)
        );
        runtime.shutdown(Duration::ZERO).await;
    });
}

#[test]
fn fan_out_batching_changed_mid_run_applies_to_the_next_fan_out() {
    paused(async {
        let slow = "[scheduler]\norg_batch_size = 2\nbatch_delay = \"10s\"\n";
        let runtime = Runtime::start(config(slow)).unwrap();
        runtime
            .reconfigure(config("[scheduler]\norg_batch_size = 10\nbatch_delay = \"0s\"\n"))
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let (jobs, handles): (Vec<_>, Vec<_>) = (0..10)
            .map(|_| {
                Job::new(JobSpec::new("acme", "store"), |_ctx| async {
                    Ok::<_, JobError>(())
                })
            })
            .unzip();
        runtime.submit_batch(jobs).unwrap();
        assert!(futures::future::join_all(handles)
            .await
            .iter()
            .all(Outcome::is_completed));
        assert!(started.elapsed() < Duration::from_secs(1), "one batch, no delay");
        runtime.shutdown(Duration::ZERO).await;
    });
}

#[test]
fn an_invalid_config_is_refused_by_name_and_the_old_one_keeps_running() {
    paused(async {
        let runtime = Runtime::start(with_cap(2)).unwrap();
        let store = Downstream::new(1000);
        let handles: Vec<_> = (0..20)
            .map(|_| {
                let store = store.clone();
                runtime
                    .submit(JobSpec::new("acme", "store"), move |_ctx| async move {
                        store.query(Duration::from_millis(100)).await
                    })
                    .unwrap()
            })
            .collect();
        let mut bad = with_cap(2);
        bad.tenants
            .insert("acme".into(), weir::TenantConfig { weight: 0 });
        let e = runtime.reconfigure(bad.clone()).await.unwrap_err();
        assert_eq!(e, bad.validate().unwrap_err(), "the error a start gives");
        assert!(e.to_string().starts_with("tenants.acme.weight must be"), "{e}");
        let mut zero = with_cap(2);
        zero.resources.get_mut("store").unwrap().max_concurrent = Some(0);
        let e = runtime.reconfigure(zero).await.unwrap_err();
        assert!(
            e.to_string()
                .starts_with("resources.store.max_concurrent must be"),
            "{e}"
        );
        let mut threads = with_cap(2);
        threads.runtime.worker_threads = Some(2);
        let e = runtime.reconfigure(threads).await.unwrap_err();
        assert!(
            e.to_string()
                .starts_with("runtime.worker_threads must be unchanged"),
            "{e}"
        );
        let outcomes = futures::future::join_all(handles).await;
        assert!(outcomes.iter().all(Outcome::is_completed));
        assert_eq!(store.peak(), 2, "the old cap kept running");
        assert_eq!(*runtime.config(), with_cap(2));
        assert_eq!(runtime.stats().await.reconfigurations, 0);
        runtime.shutdown(Duration::ZERO).await;
    });
}

#[test]
fn reconfigure_racing_shutdown_ends_cleanly() {
    paused(async {
        let runtime = Runtime::start(with_cap(1)).unwrap();
        let handles: Vec<_> = (0..3)
            .map(|_| {
                runtime
                    .submit(JobSpec::new("acme", "store"), |_ctx| async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, JobError>(())
                    })
                    .unwrap()
            })
            .collect();
        let (changed, report) = tokio::join!(
            runtime.reconfigure(with_cap(4)),
            runtime.shutdown(Duration::from_millis(100))
        );
        assert!(changed.is_ok(), "{changed:?}");
        assert_eq!(report.cancelled_running, 0, "{report:?}");
        let outcomes = futures::future::join_all(handles).await;
        assert!(
            outcomes
                .iter()
                .all(|o| o.is_completed() || matches!(o, Outcome::Cancelled)),
            "{outcomes:?}"
        );
        // After shutdown it changes nothing and reports no change.
        assert!(runtime.reconfigure(with_cap(5)).await.unwrap().is_empty());
        // A refusal is the same after shutdown.
        let mut zero = with_cap(1);
        zero.resources.get_mut("store").unwrap().max_concurrent = Some(0);
        assert!(runtime.reconfigure(zero).await.is_err());
    });
}
