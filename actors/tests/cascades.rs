//! The runtime core (issue 2): the cap holds from the downstream's side, leases cancel
//! hung jobs, waits end in a counted skip, and cascades cannot deadlock the pool.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{paused, Downstream};
use weir::{Config, JobError, JobSpec, Outcome, SkipReason};
use weir_actors::{Job, Runtime};

fn config(cap: u32) -> Config {
    let mut c = Config::default();
    c.scheduler.max_concurrent = cap;
    c
}

/// Runs the incident cascade: `orgs` organisation jobs (resource "orgs") each fan out
/// `projections` query jobs (resource "store") against a store of limit 100.
fn incident(
    store_cap: u32,
    orgs: u32,
    projections: u32,
) -> (Arc<Downstream>, Vec<Outcome<usize>>, weir::StatsSnapshot) {
    paused(async move {
        let mut cfg = config(50);
        cfg.resources.insert(
            "store".into(),
            weir::ResourceConfig {
                max_concurrent: Some(store_cap),
                ..Default::default()
            },
        );
        let runtime = Runtime::start(cfg).unwrap();
        let store = Downstream::new(100);
        let mut handles = Vec::new();
        let mut jobs = Vec::new();
        for org in 0..orgs {
            let store = store.clone();
            let (job, handle) = Job::new(
                JobSpec::new(format!("org-{org}"), "orgs").kind("org"),
                move |ctx| async move {
                    let children = ctx.spawn((0..projections).map(|p| {
                        let store = store.clone();
                        let latency = Duration::from_millis(200 + u64::from(p % 7) * 50);
                        (
                            ctx.child_spec("store").kind("projection"),
                            move |_ctx| async move { store.query(latency).await },
                        )
                    }))?;
                    let outcomes = ctx.join(children).await;
                    Ok::<_, JobError>(outcomes.iter().filter(|o| o.is_completed()).count())
                },
            );
            jobs.push(job);
            handles.push(handle);
        }
        runtime.submit_batch(jobs).unwrap();
        let outcomes = futures::future::join_all(handles).await;
        let stats = runtime.stats().await;
        runtime.shutdown(Duration::from_secs(1)).await;
        (store, outcomes, stats)
    })
}

#[test]
fn incident_cascade_never_exceeds_the_cap_from_the_downstreams_side() {
    let (store, outcomes, stats) = incident(50, 8, 20);
    assert!(
        store.peak() <= 50,
        "downstream saw {} concurrent queries",
        store.peak()
    );
    assert_eq!(store.peak(), 50, "the cap is used in full");
    assert_eq!(store.rejections(), 0);
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Completed(20)),
        "{outcomes:?}"
    );
    let s = &stats.resources["store"];
    assert_eq!(s.outcomes.completed, 160);
    assert_eq!(s.submitted, 160);
    assert!(s.peak_in_flight <= 50);
}

#[test]
fn incident_cascade_with_cap_over_the_limit_is_rejected() {
    let (store, _, stats) = incident(200, 8, 20);
    assert!(store.peak() > 100, "peak {}", store.peak());
    assert!(store.rejections() > 0);
    assert!(stats.resources["store"].outcomes.failed > 0);
}

#[test]
fn lease_expiry_cancels_a_hung_job_and_its_slot_serves_the_next() {
    paused(async {
        let mut cfg = config(1);
        cfg.scheduler.slot_lease_timeout = Duration::from_secs(5);
        let runtime = Runtime::start(cfg).unwrap();
        let dropped = Arc::new(AtomicBool::new(false));
        struct SetOnDrop(Arc<AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let guard = SetOnDrop(dropped.clone());
        let hung = runtime
            .submit(JobSpec::new("a", "store"), move |_| async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok::<_, JobError>(())
            })
            .unwrap();
        let start = tokio::time::Instant::now();
        let next = runtime
            .submit(JobSpec::new("b", "store"), move |_| async move {
                Ok::<_, JobError>(start.elapsed())
            })
            .unwrap();
        assert_eq!(hung.await, Outcome::TimedOut);
        assert!(dropped.load(Ordering::SeqCst), "the hung future was dropped");
        let Outcome::Completed(granted_after) = next.await else {
            panic!("next job must complete")
        };
        assert!(granted_after >= Duration::from_secs(5), "{granted_after:?}");
        let stats = runtime.stats().await;
        let s = &stats.resources["store"];
        assert_eq!(
            (s.outcomes.timed_out, s.outcomes.completed, s.in_flight),
            (1, 1, 0)
        );
        runtime.shutdown(Duration::ZERO).await;
    });
}

#[test]
fn wait_timeout_skips_with_no_slot_and_counts_it() {
    paused(async {
        let mut cfg = config(1);
        cfg.scheduler.slot_wait_timeout = Duration::from_secs(1);
        let runtime = Runtime::start(cfg).unwrap();
        let long = runtime
            .submit(JobSpec::new("a", "store"), |_| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<_, JobError>(())
            })
            .unwrap();
        let starved = runtime
            .submit(JobSpec::new("b", "store"), |_| async { Ok::<_, JobError>(()) })
            .unwrap();
        assert_eq!(starved.await, Outcome::Skipped(SkipReason::NoSlot));
        assert!(long.await.is_completed());
        let stats = runtime.stats().await;
        assert_eq!(stats.resources["store"].outcomes.skipped, 1);
        assert_eq!(stats.outcomes().total(), stats.submitted());
        runtime.shutdown(Duration::ZERO).await;
    });
}

#[test]
fn requeue_on_wait_timeout_runs_the_job_later() {
    paused(async {
        let mut cfg = config(1);
        cfg.scheduler.slot_wait_timeout = Duration::from_secs(1);
        let runtime = Runtime::start(cfg).unwrap();
        let _long = runtime
            .submit(JobSpec::new("a", "store"), |_| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                Ok::<_, JobError>(())
            })
            .unwrap();
        let patient = runtime
            .submit(JobSpec::new("b", "store").requeue_on_wait_timeout(), |_| async {
                Ok::<_, JobError>(())
            })
            .unwrap();
        assert!(patient.await.is_completed());
        runtime.shutdown(Duration::ZERO).await;
    });
}

/// batch -> organisations -> projections -> queries, all on one resource of ONE slot.
#[test]
fn three_level_cascade_completes_with_a_single_slot() {
    paused(async {
        let runtime = Runtime::start(config(1)).unwrap();
        let store = Downstream::new(1);
        let s = store.clone();
        let top = runtime
            .submit(JobSpec::new("acme", "db"), move |ctx| async move {
                let orgs = ctx
                    .spawn((0..3).map(|_| {
                        let s = s.clone();
                        (
                            ctx.child_spec("db"),
                            move |ctx: weir_actors::JobContext| async move {
                                let projections = ctx
                                    .spawn((0..3).map(|_| {
                                        let s = s.clone();
                                        (
                                            ctx.child_spec("db"),
                                            move |ctx: weir_actors::JobContext| async move {
                                                let queries = ctx
                                                    .spawn((0..2).map(|_| {
                                                        let s = s.clone();
                                                        (ctx.child_spec("db"), move |_| async move {
                                                            s.query(Duration::from_millis(10)).await
                                                        })
                                                    }))
                                                    .unwrap();
                                                Ok::<_, JobError>(ctx.join(queries).await.len())
                                            },
                                        )
                                    }))
                                    .unwrap();
                                Ok::<_, JobError>(ctx.join(projections).await.len())
                            },
                        )
                    }))
                    .unwrap();
                Ok::<_, JobError>(ctx.join(orgs).await.len())
            })
            .unwrap();
        assert_eq!(top.await, Outcome::Completed(3));
        assert_eq!(store.served.load(Ordering::SeqCst), 18);
        assert_eq!(store.rejections(), 0);
        let stats = runtime.stats().await;
        assert_eq!(stats.resources["db"].outcomes.completed, 1 + 3 + 9 + 18);
        assert_eq!(stats.resources["db"].peak_in_flight, 1);
        runtime.shutdown(Duration::ZERO).await;
    });
}

#[test]
fn fan_out_releases_in_batches_with_delays() {
    paused(async {
        let mut cfg = config(1000);
        cfg.scheduler.org_batch_size = 10;
        cfg.scheduler.batch_delay = Duration::from_secs(2);
        let runtime = Runtime::start(cfg).unwrap();
        let start = tokio::time::Instant::now();
        let mut jobs = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..25 {
            let (job, h) = Job::new(JobSpec::new("a", "store"), move |_| async move {
                Ok::<_, JobError>(start.elapsed())
            });
            jobs.push(job);
            handles.push(h);
        }
        runtime.submit_batch(jobs).unwrap();
        let started: Vec<Duration> = futures::future::join_all(handles)
            .await
            .into_iter()
            .map(|o| match o {
                Outcome::Completed(d) => d,
                other => panic!("{other:?}"),
            })
            .collect();
        for (i, d) in started.iter().enumerate() {
            let batch = (i / 10) as u32;
            assert!(*d >= Duration::from_secs(2) * batch, "job {i} started at {d:?}");
            assert!(
                *d < Duration::from_secs(2) * batch + Duration::from_millis(100),
                "job {i} at {d:?}"
            );
        }
        runtime.shutdown(Duration::ZERO).await;
    });
}
