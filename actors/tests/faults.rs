//! Faults in job code and in the caller's use of the runtime (issue 8): panics, hung and
//! blocking jobs, lease renewal, submission floods and shutdown. Each test asserts that
//! every job ends exactly once, the cap holds and no slot is left behind.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{paused, Downstream};
use weir::{Config, JobError, JobSpec, LeaseError, Outcome, StatsSnapshot};
use weir_actors::{Runtime, SubmitError};

/// `workers` body threads; with some, every body runs on them (none on the supervisor's
/// thread, where brief bodies would otherwise run), so the tests cover that path.
fn config(cap: u32, workers: u32) -> Config {
    let mut c = Config::default();
    c.scheduler.max_concurrent = cap;
    c.runtime.worker_threads = Some(workers);
    c.runtime.inline_poll_limit = Duration::ZERO;
    c
}

fn store(stats: &StatsSnapshot) -> &weir::ResourceSnapshot {
    &stats.resources["store"]
}

/// Panicking jobs, in the synchronous part of the body and after an await, among jobs
/// that succeed: the panics end `Failed(Panicked)`, the others complete, and the slots
/// all come back.
fn panics_are_contained(workers: u32) {
    actix_rt::System::new().block_on(async move {
        let runtime = Runtime::start(config(2, workers)).unwrap();
        let mut handles = Vec::new();
        for i in 0..30u32 {
            let h = runtime
                .submit(JobSpec::new("a", "store"), move |_| async move {
                    match i % 3 {
                        0 => panic!("sync panic {i}"),
                        1 => {
                            tokio::task::yield_now().await;
                            panic!("async panic {i}")
                        }
                        _ => Ok::<_, JobError>(i),
                    }
                })
                .unwrap();
            handles.push(h);
        }
        let outcomes = futures::future::join_all(handles).await;
        for (i, o) in outcomes.iter().enumerate() {
            match (i % 3, o) {
                (0, Outcome::Failed(JobError::Panicked(m))) => assert_eq!(m, &format!("sync panic {i}")),
                (1, Outcome::Failed(JobError::Panicked(m))) => assert_eq!(m, &format!("async panic {i}")),
                (2, Outcome::Completed(v)) => assert_eq!(*v as usize, i),
                other => panic!("job {i}: {other:?}"),
            }
        }
        // The workers are alive: later jobs still run.
        let after = runtime
            .submit(JobSpec::new("a", "store"), |_| async {
                Ok::<_, JobError>("alive")
            })
            .unwrap();
        assert_eq!(after.await, Outcome::Completed("alive"));
        let stats = runtime.stats().await;
        let s = store(&stats);
        assert_eq!((s.outcomes.failed, s.outcomes.completed), (20, 11));
        assert_eq!(s.in_flight, 0, "every slot came back");
        assert!(s.peak_in_flight <= 2);
        runtime.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn job_panics_fail_the_job_and_return_its_slot_on_the_supervisor_thread() {
    panics_are_contained(0);
}

#[test]
fn job_panics_never_kill_a_worker() {
    panics_are_contained(2);
}

/// A panic raised while a stopped body is dropped (a `Drop` impl that panics) must not
/// lose the job's report: the job still ends `TimedOut` and its slot returns.
#[test]
fn a_panic_while_dropping_a_stopped_body_still_returns_the_slot() {
    paused(async {
        let mut cfg = config(1, 0);
        cfg.scheduler.slot_lease_timeout = Duration::from_secs(1);
        let runtime = Runtime::start(cfg).unwrap();
        struct PanicOnDrop;
        impl Drop for PanicOnDrop {
            fn drop(&mut self) {
                panic!("drop panics");
            }
        }
        let hung = runtime
            .submit(JobSpec::new("a", "store"), |_| async {
                let _bomb = PanicOnDrop;
                std::future::pending::<()>().await;
                Ok::<_, JobError>(())
            })
            .unwrap();
        let next = runtime
            .submit(JobSpec::new("a", "store"), |_| async { Ok::<_, JobError>(()) })
            .unwrap();
        assert_eq!(hung.await, Outcome::TimedOut);
        assert_eq!(next.await, Outcome::Completed(()));
        let stats = runtime.stats().await;
        assert_eq!(store(&stats).in_flight, 0);
        assert_eq!(store(&stats).outcomes.timed_out, 1);
        runtime.shutdown(Duration::ZERO).await;
    });
}

/// Yields until `cond` holds on the supervisor's statistics (the paused clock does not
/// move while we yield).
async fn until(runtime: &Runtime, cond: impl Fn(&StatsSnapshot) -> bool) -> StatsSnapshot {
    loop {
        let stats = runtime.stats().await;
        if cond(&stats) {
            return stats;
        }
        tokio::task::yield_now().await;
    }
}

/// A blocking section cannot be stopped: at lease expiry the job is overdue, its slot is
/// held (the next job does not start, the downstream never sees two), and it is counted
/// once when the section returns.
#[test]
fn a_blocking_section_past_its_lease_holds_its_slot_until_it_returns() {
    paused(async {
        let mut cfg = config(1, 0);
        cfg.scheduler.slot_lease_timeout = Duration::from_secs(5);
        let runtime = Runtime::start(cfg).unwrap();
        let downstream = Downstream::new(1);
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let d = downstream.clone();
        let blocking = runtime
            .submit(JobSpec::new("a", "store"), move |ctx| async move {
                ctx.run_blocking(move || {
                    // Holds the downstream from a thread nothing can stop.
                    let entered = d.enter();
                    gate.recv().unwrap();
                    drop(entered);
                })
                .await
            })
            .unwrap();
        let d = downstream.clone();
        let next = runtime
            .submit(JobSpec::new("b", "store"), move |_| async move {
                let _e = d.enter();
                Ok::<_, JobError>(())
            })
            .unwrap();
        until(&runtime, |s| store(s).in_flight == 1).await;
        // Auto-advance is held back while a blocking task runs: move the clock by hand.
        tokio::time::advance(Duration::from_secs(6)).await;
        let stats = until(&runtime, |s| store(s).overdue == 1).await;
        let s = store(&stats);
        assert_eq!((s.in_flight, s.queued), (1, 1), "the overdue job keeps its slot");
        assert_eq!(s.outcomes.total(), 0, "no outcome while the section runs");
        release.send(()).unwrap();
        assert_eq!(blocking.await, Outcome::TimedOut);
        assert_eq!(next.await, Outcome::Completed(()));
        assert_eq!(downstream.peak(), 1, "the downstream never saw two");
        let stats = runtime.stats().await;
        let s = store(&stats);
        assert_eq!(
            (s.in_flight, s.overdue, s.outcomes.timed_out, s.outcomes.completed),
            (0, 0, 1, 1)
        );
        runtime.shutdown(Duration::ZERO).await;
    });
}

/// A body that blocks its own thread (no `run_blocking`) on a worker arbiter also keeps
/// its slot until it returns; it is counted once.
#[test]
fn a_body_that_blocks_its_worker_thread_is_counted_once() {
    actix_rt::System::new().block_on(async {
        let mut cfg = config(1, 1);
        cfg.scheduler.slot_lease_timeout = Duration::from_millis(20);
        let runtime = Runtime::start(cfg).unwrap();
        let downstream = Downstream::new(1);
        let d = downstream.clone();
        let blocking = runtime
            .submit(JobSpec::new("a", "store"), move |_| async move {
                let _e = d.enter();
                std::thread::sleep(Duration::from_millis(100));
                Ok::<_, JobError>(())
            })
            .unwrap();
        let d = downstream.clone();
        let next = runtime
            .submit(JobSpec::new("a", "store"), move |_| async move {
                let _e = d.enter();
                Ok::<_, JobError>(())
            })
            .unwrap();
        // The lease expired while the body blocked; the body finished its work anyway.
        assert_eq!(blocking.await, Outcome::Completed(()));
        assert_eq!(next.await, Outcome::Completed(()));
        assert_eq!(downstream.peak(), 1);
        let stats = runtime.stats().await;
        assert_eq!(store(&stats).outcomes.completed, 2);
        assert_eq!(store(&stats).in_flight, 0);
        runtime.shutdown(Duration::ZERO).await;
    });
}

#[test]
fn renewing_the_lease_keeps_a_progressing_job_running_past_its_first_lease() {
    paused(async {
        let mut cfg = config(1, 0);
        cfg.scheduler.slot_lease_timeout = Duration::from_secs(5);
        let runtime = Runtime::start(cfg).unwrap();
        let long = runtime
            .submit(JobSpec::new("a", "store"), |ctx| async move {
                // 6 steps of 3 s: 18 s in all under a 5 s lease, renewed after each step.
                for _ in 0..6 {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    ctx.renew_lease()
                        .await
                        .map_err(|e| JobError::msg(e.to_string()))?;
                }
                Ok::<_, JobError>(())
            })
            .unwrap();
        assert_eq!(long.await, Outcome::Completed(()));
        let stats = runtime.stats().await;
        assert_eq!(store(&stats).outcomes.completed, 1);
        runtime.shutdown(Duration::ZERO).await;
    });
}

#[test]
fn a_renewal_after_the_lease_expired_fails_and_never_takes_the_slot_back() {
    paused(async {
        let mut cfg = config(1, 0);
        cfg.scheduler.slot_lease_timeout = Duration::from_secs(5);
        let runtime = Runtime::start(cfg).unwrap();
        let late = Arc::new(std::sync::Mutex::new(None));
        let l = late.clone();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        // The job's blocking section outlives the lease, then tries to renew.
        let job = runtime
            .submit(JobSpec::new("a", "store"), move |ctx| async move {
                let c = ctx.clone();
                ctx.run_blocking(move || {
                    gate.recv().unwrap();
                    *l.lock().unwrap() = Some(futures::executor::block_on(c.renew_lease()));
                })
                .await
            })
            .unwrap();
        let next = runtime
            .submit(JobSpec::new("b", "store"), |_| async { Ok::<_, JobError>(()) })
            .unwrap();
        until(&runtime, |s| store(s).in_flight == 1).await;
        tokio::time::advance(Duration::from_secs(6)).await;
        until(&runtime, |s| store(s).overdue == 1).await;
        release.send(()).unwrap();
        assert_eq!(job.await, Outcome::TimedOut);
        assert_eq!(next.await, Outcome::Completed(()));
        assert_eq!(*late.lock().unwrap(), Some(Err(LeaseError::Expired)));
        let stats = runtime.stats().await;
        assert_eq!(store(&stats).in_flight, 0);
        assert_eq!(store(&stats).peak_in_flight, 1);
        runtime.shutdown(Duration::ZERO).await;
    });
}

#[test]
fn core_renewal_is_refused_once_the_lease_expired_and_changes_nothing() {
    let mut cfg = config(1, 0);
    cfg.scheduler.slot_lease_timeout = Duration::from_secs(5);
    let mut core: weir::Scheduler<u32> = weir::Scheduler::new(cfg);
    let s = |n| Duration::from_secs(n);
    let a = core.submit(JobSpec::new("a", "store"), 1, s(0));
    core.submit(JobSpec::new("a", "store"), 2, s(0));
    let mut events = Vec::new();
    core.poll(s(0), &mut events);
    assert_eq!(events.len(), 1);
    events.clear();
    // Renewed at 4 s: the lease now ends at 9 s, so the 5 s deadline is stale.
    assert_eq!(core.renew(a, s(4)), Ok(s(9)));
    core.poll(s(5), &mut events);
    assert!(events.is_empty(), "{events:?}");
    core.poll(s(9), &mut events);
    assert!(matches!(events.as_slice(), [weir::Event::LeaseExpired { key }] if *key == a));
    events.clear();
    assert_eq!(core.renew(a, s(9)), Err(LeaseError::Expired));
    core.poll(s(10), &mut events);
    assert!(events.is_empty(), "no slot was taken back or granted: {events:?}");
    assert_eq!(core.in_flight(&"store".into()), 1);
    core.complete(a, weir::OutcomeKind::TimedOut, s(10)).unwrap();
    assert_eq!(core.renew(a, s(10)), Err(LeaseError::Ended));
    core.poll(s(10), &mut events);
    assert!(matches!(
        events.as_slice(),
        [weir::Event::Granted { payload: 2, .. }]
    ));
}

/// 100x `max_queued` submitted without yielding: exactly `max_queued` are accepted, the
/// rest are refused at once with `QueueFull`, and at no point do more than `max_queued`
/// job bodies exist (memory stays bounded). Then every accepted job completes.
#[test]
fn a_flood_of_100x_max_queued_is_refused_at_once_and_stays_bounded() {
    paused(async {
        let bound = 100u64;
        let mut cfg = config(4, 0);
        cfg.scheduler.max_queued = bound;
        let runtime = Runtime::start(cfg).unwrap();
        // Every body owns a clone of `token`: its strong count is the bodies alive.
        let token = Arc::new(());
        let ran = Arc::new(AtomicU64::new(0));
        let (mut accepted, mut refused, mut most_alive) = (Vec::new(), 0u64, 0usize);
        for _ in 0..bound * 100 {
            let (t, r) = (token.clone(), ran.clone());
            match runtime.submit(JobSpec::new("a", "store"), move |_| async move {
                let _t = t;
                r.fetch_add(1, Ordering::SeqCst);
                Ok::<_, JobError>(())
            }) {
                Ok(h) => accepted.push(h),
                Err(SubmitError::QueueFull { max_queued, .. }) => {
                    assert_eq!(max_queued, bound);
                    refused += 1;
                }
                Err(e) => panic!("{e}"),
            }
            most_alive = most_alive.max(Arc::strong_count(&token) - 1);
            assert!(runtime.waiting() <= bound);
        }
        assert_eq!((accepted.len() as u64, refused), (bound, bound * 99));
        assert!(most_alive as u64 <= bound, "{most_alive} bodies alive at once");
        let outcomes = futures::future::join_all(accepted).await;
        assert!(outcomes.iter().all(Outcome::is_completed));
        assert_eq!(ran.load(Ordering::SeqCst), bound);
        let stats = runtime.stats().await;
        assert_eq!(stats.submitted(), bound, "refused jobs never reached the core");
        assert_eq!(store(&stats).in_flight, 0);
        assert_eq!(runtime.waiting(), 0);
        runtime.shutdown(Duration::ZERO).await;
        assert_eq!(Arc::strong_count(&token), 1, "no body left behind");
    });
}

/// Shutdown: intake stops, queued jobs end `Cancelled`, running jobs finish within the
/// grace period or are cancelled at its end, every handle resolves, and the last stats
/// show every slot free.
#[test]
fn shutdown_drains_in_flight_cancels_the_rest_and_leaves_no_slot_behind() {
    paused(async {
        let mut cfg = config(3, 0);
        cfg.resources.insert("store".into(), Default::default());
        let runtime = Runtime::start(cfg).unwrap();
        let token = Arc::new(());
        let sleeper = |secs: u64| {
            let t = token.clone();
            move |_| async move {
                let _t = t;
                tokio::time::sleep(Duration::from_secs(secs)).await;
                Ok::<_, JobError>(secs)
            }
        };
        let quick = runtime.submit(JobSpec::new("a", "store"), sleeper(1)).unwrap();
        let slow = runtime.submit(JobSpec::new("a", "store"), sleeper(100)).unwrap();
        let hung = runtime
            .submit(JobSpec::new("a", "store"), sleeper(u64::MAX / 4))
            .unwrap();
        let queued: Vec<_> = (0..5)
            .map(|_| runtime.submit(JobSpec::new("a", "store"), sleeper(1)).unwrap())
            .collect();
        until(&runtime, |s| store(s).in_flight == 3).await;
        let report = runtime.shutdown(Duration::from_secs(10)).await;
        assert!(matches!(
            runtime.submit(JobSpec::new("a", "store"), sleeper(1)),
            Err(SubmitError::ShuttingDown)
        ));
        assert_eq!(quick.await, Outcome::Completed(1));
        assert_eq!(slow.await, Outcome::Cancelled);
        assert_eq!(hung.await, Outcome::Cancelled);
        for q in queued {
            assert_eq!(q.await, Outcome::Cancelled);
        }
        assert_eq!(
            (
                report.cancelled_waiting,
                report.finished_in_grace,
                report.cancelled_running
            ),
            (5, 1, 2)
        );
        let stats = runtime.stats().await;
        let s = store(&stats);
        assert_eq!(s.cap - s.in_flight, s.cap, "every slot free after shutdown");
        assert_eq!((s.outcomes.completed, s.outcomes.cancelled), (1, 7));
        assert_eq!(stats.outcomes().total(), stats.submitted());
        assert_eq!(Arc::strong_count(&token), 1, "no job task left behind");
    });
}
