//! Property (issue 2): over random cascades, caps, latencies and lease / wait settings,
//! run through the real actor runtime on a paused clock, the number of queries in flight
//! never exceeds the cap (seen from the downstream's side and from the scheduler's), and
//! the outcome counts add up to the jobs submitted.

mod common;

use std::time::Duration;

use common::{paused, Downstream};
use proptest::prelude::*;
use weir::{Config, JobError, JobSpec, Outcome};
use weir_actors::{Job, JobContext, Runtime};

#[derive(Debug, Clone)]
struct Cascade {
    cap: u32,
    /// Projections per organisation.
    orgs: Vec<u8>,
    /// Query latencies in ms, cycled over the queries.
    latencies_ms: Vec<u16>,
    lease_ms: u64,
    wait_ms: u64,
    batch_size: u32,
    batch_delay_ms: u64,
    /// Organisation jobs share the queries' pool (exercising parking) or use their own.
    shared_pool: bool,
}

fn cascade() -> impl Strategy<Value = Cascade> {
    (
        1u32..8,
        prop::collection::vec(0u8..8, 1..6),
        prop::collection::vec(0u16..400, 1..8),
        50u64..2_000,
        0u64..3_000,
        1u32..5,
        0u64..1_000,
        any::<bool>(),
    )
        .prop_map(
            |(cap, orgs, latencies_ms, lease_ms, wait_ms, batch_size, batch_delay_ms, shared_pool)| Cascade {
                cap,
                orgs,
                latencies_ms,
                lease_ms,
                wait_ms,
                batch_size,
                batch_delay_ms,
                shared_pool,
            },
        )
}

struct Run {
    downstream_peak: u64,
    rejections: u64,
    scheduler_peak: u32,
    in_flight_after: u64,
    submitted: u64,
    outcomes_total: u64,
    org_outcomes: usize,
    orgs: usize,
}

fn run(c: Cascade) -> Run {
    paused(async move {
        let mut cfg = Config::default();
        cfg.scheduler.max_concurrent = c.cap;
        cfg.scheduler.slot_lease_timeout = Duration::from_millis(c.lease_ms);
        cfg.scheduler.slot_wait_timeout = Duration::from_millis(c.wait_ms);
        cfg.scheduler.org_batch_size = c.batch_size;
        cfg.scheduler.batch_delay = Duration::from_millis(c.batch_delay_ms);
        let runtime = Runtime::start(cfg).unwrap();
        // The downstream allows exactly the cap: one query over it is a rejection.
        let store = Downstream::new(u64::from(c.cap));
        let org_resource = if c.shared_pool { "db" } else { "orgs" };
        let mut jobs = Vec::new();
        let mut handles = Vec::new();
        let mut q = 0usize;
        for (o, &projections) in c.orgs.iter().enumerate() {
            let children: Vec<Duration> = (0..projections)
                .map(|_| {
                    q += 1;
                    Duration::from_millis(u64::from(c.latencies_ms[q % c.latencies_ms.len()]))
                })
                .collect();
            let store = store.clone();
            let (job, handle) = Job::new(
                JobSpec::new(format!("org-{o}"), org_resource),
                move |ctx: JobContext| async move {
                    let kids = ctx.spawn(children.into_iter().map(|latency| {
                        let store = store.clone();
                        (ctx.child_spec("db"), move |_| async move {
                            store.query(latency).await
                        })
                    }))?;
                    Ok::<_, JobError>(ctx.join(kids).await.len())
                },
            );
            jobs.push(job);
            handles.push(handle);
        }
        runtime.submit_batch(jobs).unwrap();
        let outcomes: Vec<Outcome<usize>> = futures::future::join_all(handles).await;
        let stats = runtime.stats().await;
        runtime.shutdown(Duration::ZERO).await;
        Run {
            downstream_peak: store.peak(),
            rejections: store.rejections(),
            scheduler_peak: stats.resources.get("db").map_or(0, |r| r.peak_in_flight),
            in_flight_after: stats.in_flight(),
            submitted: stats.submitted(),
            outcomes_total: stats.outcomes().total(),
            org_outcomes: outcomes.len(),
            orgs: c.orgs.len(),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn cap_holds_and_outcomes_add_up(c in cascade()) {
        let cap = c.cap;
        let r = run(c);
        prop_assert!(r.downstream_peak <= u64::from(cap), "downstream saw {} > cap {}", r.downstream_peak, cap);
        prop_assert_eq!(r.rejections, 0);
        prop_assert!(r.scheduler_peak <= cap);
        prop_assert_eq!(r.in_flight_after, 0, "every slot is back");
        prop_assert_eq!(r.outcomes_total, r.submitted, "outcome counts add up to jobs submitted");
        prop_assert_eq!(r.org_outcomes, r.orgs, "every handle resolved");
    }
}
