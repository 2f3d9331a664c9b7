//! Chaos property test (issue 8): generated workloads with generated faults at random
//! points, through the real actor runtime on tokio's paused clock.
//!
//! Faults: a job panics (before or after its query), hangs past its lease, returns an
//! error, runs slow past its lease, or renews its lease while it works; callers cancel
//! jobs at random instants; parents fan out children (each with its own fault) and park
//! while they wait; and some runs shut down at a random instant with work in flight.
//!
//! Checked in every case: every handle resolves to exactly one outcome that the job's
//! fault allows (never a lost job, never `RuntimeStopped`); no downstream ever sees more
//! queries than the cap, and none is refused; when the run ends no slot is held on any
//! resource (free slots == cap); the statistics count exactly the outcomes the handles
//! saw; and shutdown leaves the same. The totals (cases, jobs, faults injected, jobs lost,
//! peak over cap, slots leaked) are printed (`cargo test --test chaos -- --nocapture`)
//! and asserted.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{paused, Downstream};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, FileFailurePersistence, TestRunner};
use weir::{Config, JobError, JobSpec, Outcome, OutcomeKind, StatsSnapshot};
use weir_actors::{JobContext, Runtime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Clean,
    Panic,
    Hang,
    Error,
    Slow,
    Renewing,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop::sample::select(vec![
        Fault::Clean,
        Fault::Clean,
        Fault::Panic,
        Fault::Hang,
        Fault::Error,
        Fault::Slow,
        Fault::Renewing,
    ])
}

#[derive(Debug, Clone)]
struct Plan {
    submit_at_ms: u64,
    latency_ms: u64,
    fault: Fault,
    /// The fault fires before the job's query instead of after it.
    fault_first: bool,
    cancel_at_ms: Option<u64>,
    /// Non-empty: a parent on resource "orgs" whose children (resource "reports") have
    /// these faults and latencies.
    children: Vec<(Fault, u64)>,
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        0u64..500,
        0u64..300,
        fault(),
        any::<bool>(),
        prop::option::weighted(0.2, 0u64..1_500),
        prop::option::weighted(0.2, prop::collection::vec((fault(), 0u64..300), 0..5)),
    )
        .prop_map(
            |(submit_at_ms, latency_ms, fault, fault_first, cancel_at_ms, children)| Plan {
                submit_at_ms,
                latency_ms,
                fault,
                fault_first,
                cancel_at_ms,
                children: children.unwrap_or_default(),
            },
        )
}

#[derive(Debug, Clone)]
struct Workload {
    cap: u32,
    lease_ms: u64,
    wait_ms: u64,
    jobs: Vec<Plan>,
    /// Shut down at this instant with this grace, instead of after every job ended.
    shutdown: Option<(u64, u64)>,
}

fn workload() -> impl Strategy<Value = Workload> {
    (
        1u32..6,
        50u64..1_000,
        0u64..3_000,
        prop::collection::vec(plan(), 1..25),
        prop::option::weighted(0.25, (0u64..1_500, 0u64..1_000)),
    )
        .prop_map(|(cap, lease_ms, wait_ms, jobs, shutdown)| Workload {
            cap,
            lease_ms,
            wait_ms,
            jobs,
            shutdown,
        })
}

/// Runs the job's fault; `Ok` means "carry on".
async fn fault_action(fault: Fault, lease: Duration, ctx: &JobContext) -> Result<(), JobError> {
    match fault {
        Fault::Clean => Ok(()),
        Fault::Panic => panic!("chaos: injected panic"),
        Fault::Hang => std::future::pending().await,
        Fault::Error => Err(JobError::msg("chaos: injected error")),
        Fault::Slow => {
            tokio::time::sleep(lease * 2).await;
            Ok(())
        }
        Fault::Renewing => {
            // Works for two leases in all, renewing at every half lease: never times out.
            for _ in 0..4 {
                tokio::time::sleep(lease / 2).await;
                ctx.renew_lease()
                    .await
                    .map_err(|e| JobError::msg(format!("renewal refused: {e}")))?;
            }
            Ok(())
        }
    }
}

fn leaf_body(
    store: Arc<Downstream>,
    fault: Fault,
    fault_first: bool,
    latency: Duration,
    lease: Duration,
) -> impl FnOnce(JobContext) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, JobError>>>>
       + Send
       + 'static {
    move |ctx| {
        Box::pin(async move {
            if fault_first {
                fault_action(fault, lease, &ctx).await?;
            }
            // Renewing jobs do no query: their work is the renewals.
            if fault != Fault::Renewing {
                store.query(latency).await?;
            }
            if !fault_first {
                fault_action(fault, lease, &ctx).await?;
            }
            Ok(0)
        })
    }
}

/// May a job with `fault` end in `outcome`?
fn allowed(fault: Fault, outcome: &Outcome<u32>, cancelled: bool) -> bool {
    match outcome {
        Outcome::Skipped(_) => true,
        Outcome::Cancelled => cancelled,
        Outcome::Completed(_) => matches!(fault, Fault::Clean | Fault::Renewing),
        Outcome::TimedOut => fault != Fault::Renewing,
        Outcome::Failed(JobError::Panicked(_)) => fault == Fault::Panic,
        Outcome::Failed(JobError::Job { message, .. }) => {
            fault == Fault::Error && message.as_str() == "chaos: injected error"
        }
        Outcome::Failed(_) => false,
    }
}

#[derive(Default)]
struct Totals {
    cases: AtomicU64,
    jobs: AtomicU64,
    faults: AtomicU64,
    lost: AtomicU64,
    over_cap: AtomicU64,
    leaked: AtomicU64,
    /// Outcomes by kind (`OutcomeKind::index`), to show which paths the faults reached.
    outcomes: [AtomicU64; 5],
}

fn count(outcomes: &[Outcome<u32>]) -> [u64; 5] {
    let mut c = [0u64; 5];
    for o in outcomes {
        c[o.kind().index()] += 1;
    }
    c
}

fn counted(stats: &StatsSnapshot, resource: &str) -> [u64; 5] {
    stats.resources.get(resource).map_or([0; 5], |r| {
        let o = &r.outcomes;
        let mut c = [0u64; 5];
        c[OutcomeKind::Completed.index()] = o.completed;
        c[OutcomeKind::Failed.index()] = o.failed;
        c[OutcomeKind::TimedOut.index()] = o.timed_out;
        c[OutcomeKind::Skipped.index()] = o.skipped;
        c[OutcomeKind::Cancelled.index()] = o.cancelled;
        c
    })
}

fn run_case(w: Workload, totals: &Totals) -> Result<(), TestCaseError> {
    paused(async move {
        let lease = Duration::from_millis(w.lease_ms);
        let mut cfg = Config::default();
        cfg.scheduler.max_concurrent = w.cap;
        cfg.scheduler.slot_lease_timeout = lease;
        cfg.scheduler.slot_wait_timeout = Duration::from_millis(w.wait_ms);
        cfg.scheduler.org_batch_size = 2;
        cfg.scheduler.batch_delay = Duration::from_millis(100);
        let runtime = Runtime::start(cfg).unwrap();
        let store = Downstream::new(u64::from(w.cap));
        let reports = Downstream::new(u64::from(w.cap));
        let shutdown_at = w.shutdown.map(|(at, _)| Duration::from_millis(at));
        let mut drivers = Vec::new();
        let mut faults = 0u64;
        for (i, p) in w.jobs.iter().cloned().enumerate() {
            faults += u64::from(p.fault != Fault::Clean) + u64::from(p.cancel_at_ms.is_some());
            faults += p.children.iter().filter(|(f, _)| *f != Fault::Clean).count() as u64;
            let runtime = runtime.clone();
            let (store, reports) = (store.clone(), reports.clone());
            drivers.push(actix_rt::spawn(async move {
                tokio::time::sleep(Duration::from_millis(p.submit_at_ms)).await;
                let tenant = format!("t{}", i % 3);
                let parent = !p.children.is_empty();
                let submitted = if parent {
                    let children = p.children.clone();
                    runtime.submit(JobSpec::new(tenant, "orgs"), move |ctx: JobContext| async move {
                        let kids = ctx.spawn(children.into_iter().map(|(fault, latency)| {
                            (
                                ctx.child_spec("reports"),
                                leaf_body(
                                    reports.clone(),
                                    fault,
                                    false,
                                    Duration::from_millis(latency),
                                    lease,
                                ),
                            )
                        }))?;
                        let n = ctx.join(kids).await.len();
                        Ok::<_, JobError>(n as u32)
                    })
                } else {
                    runtime.submit(
                        JobSpec::new(tenant, "store"),
                        leaf_body(
                            store,
                            p.fault,
                            p.fault_first,
                            Duration::from_millis(p.latency_ms),
                            lease,
                        ),
                    )
                };
                let Ok(mut handle) = submitted else {
                    return None; // refused: shutting down
                };
                let outcome = match p.cancel_at_ms {
                    Some(at) => {
                        tokio::select! {
                            o = &mut handle => o,
                            _ = tokio::time::sleep(Duration::from_millis(at)) => {
                                handle.cancel();
                                handle.await
                            }
                        }
                    }
                    None => handle.await,
                };
                Some((parent, p.fault, p.cancel_at_ms.is_some(), outcome))
            }));
        }
        if let Some((at, grace)) = w.shutdown {
            let rt = runtime.clone();
            actix_rt::spawn(async move {
                tokio::time::sleep(Duration::from_millis(at)).await;
                rt.shutdown(Duration::from_millis(grace)).await;
            });
        }
        // Every handle resolves: a lost job would leave its driver pending, and the
        // paused clock would jump to this (virtual) hour.
        let results = tokio::time::timeout(Duration::from_secs(3600), futures::future::join_all(drivers))
            .await
            .map_err(|_| TestCaseError::fail("a job handle never resolved"))?;
        let (mut leaves, mut parents) = (Vec::new(), Vec::new());
        for r in results {
            let Some((parent, fault, cancelled, outcome)) = r.expect("driver task") else {
                continue;
            };
            let shutting_down = shutdown_at.is_some();
            if parent {
                let ok = match &outcome {
                    Outcome::Completed(_) | Outcome::Skipped(_) => true,
                    Outcome::Cancelled => cancelled || shutting_down,
                    // Its children were refused because shutdown began: the parent's own error.
                    Outcome::Failed(JobError::Job { message, .. }) => {
                        shutting_down && message.as_str() == "the runtime is shutting down"
                    }
                    _ => false,
                };
                prop_assert!(ok, "parent ended {outcome:?}");
                parents.push(outcome);
            } else {
                prop_assert!(
                    allowed(fault, &outcome, cancelled || shutting_down),
                    "{fault:?} job ended {outcome:?}"
                );
                leaves.push(outcome);
            }
        }
        // Children of stopped parents may still run: wait (on the paused clock) until every
        // job the core knows has ended, or report what is stuck.
        let mut stats = runtime.stats().await;
        for _ in 0..10_000 {
            if stats.outcomes().total() == stats.submitted() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            stats = runtime.stats().await;
        }
        let over_cap =
            store.peak().saturating_sub(u64::from(w.cap)) + reports.peak().saturating_sub(u64::from(w.cap));
        let lost = stats.submitted() - stats.outcomes().total();
        totals.cases.fetch_add(1, Ordering::Relaxed);
        totals.jobs.fetch_add(stats.submitted(), Ordering::Relaxed);
        totals
            .faults
            .fetch_add(faults + u64::from(w.shutdown.is_some()), Ordering::Relaxed);
        totals.lost.fetch_add(lost, Ordering::Relaxed);
        totals.over_cap.fetch_add(over_cap, Ordering::Relaxed);
        for (i, n) in counted(&stats, "store").iter().enumerate() {
            totals.outcomes[i].fetch_add(*n, Ordering::Relaxed);
        }
        prop_assert_eq!(lost, 0, "jobs without an outcome: {:?}", stats);
        prop_assert_eq!(over_cap, 0, "a downstream saw more than the cap {}", w.cap);
        prop_assert_eq!(store.rejections() + reports.rejections(), 0);
        prop_assert_eq!(
            counted(&stats, "store"),
            count(&leaves),
            "stats agree with the leaf outcomes"
        );
        prop_assert_eq!(
            counted(&stats, "orgs"),
            count(&parents),
            "stats agree with the parent outcomes"
        );
        for (name, r) in &stats.resources {
            prop_assert!(
                r.peak_in_flight <= r.cap,
                "{name}: peak {} over cap {}",
                r.peak_in_flight,
                r.cap
            );
        }
        let leaked_before = stats.in_flight();
        runtime.shutdown(Duration::ZERO).await;
        let last = runtime.stats().await;
        let leaked = leaked_before + last.in_flight();
        totals.leaked.fetch_add(leaked, Ordering::Relaxed);
        prop_assert_eq!(leaked, 0, "slots held at the end");
        for r in last.resources.values() {
            prop_assert_eq!(r.cap - r.in_flight, r.cap, "free slots == cap after shutdown");
        }
        prop_assert_eq!(last.outcomes().total(), last.submitted());
        Ok(())
    })
}

#[test]
fn chaos_every_job_one_outcome_cap_never_exceeded_no_slot_leaked() {
    // Silence the injected panics' messages (the test counts them instead).
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let injected = info
            .payload()
            .downcast_ref::<&str>()
            .is_some_and(|s| s.starts_with("chaos:"));
        if !injected {
            hook(info);
        }
    }));
    let cases = std::env::var("WEIR_CHAOS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let totals = Totals::default();
    // A failing case's seed is saved beside this file (tests/chaos.proptest-regressions)
    // and replayed before any new case on every run after (issue 18). `source_file` is
    // what the `proptest!` macro would set; this runner is built by hand.
    let mut runner = TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        source_file: Some(file!()),
        ..RunnerConfig::default()
    });
    let result = runner.run(&workload(), |w| run_case(w, &totals));
    let _ = std::panic::take_hook();
    let t = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!(
        "chaos: {} cases, {} jobs, {} faults injected, {} jobs lost, {} over the cap, {} slots leaked",
        t(&totals.cases),
        t(&totals.jobs),
        t(&totals.faults),
        t(&totals.lost),
        t(&totals.over_cap),
        t(&totals.leaked)
    );
    let kinds = [
        OutcomeKind::Completed,
        OutcomeKind::Failed,
        OutcomeKind::TimedOut,
        OutcomeKind::Skipped,
        OutcomeKind::Cancelled,
    ];
    let by_kind: Vec<String> = kinds
        .iter()
        .map(|k| format!("{k:?} {}", t(&totals.outcomes[k.index()])))
        .collect();
    println!("chaos: leaf outcomes: {}", by_kind.join(", "));
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(t(&totals.cases) >= u64::from(cases), "every case ran");
    assert_eq!(
        (t(&totals.lost), t(&totals.over_cap), t(&totals.leaked)),
        (0, 0, 0)
    );
}
