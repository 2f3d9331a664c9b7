//! The workloads `weir bench` and the criterion benches run: the same empty jobs pushed
//! through weir and through the baselines a user would pick instead.
//!
//! Every workload measures submit to outcome: the clock starts before the first job is
//! submitted and stops when the last job's outcome (or join handle) has been received.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use weir::{Config, JobError, JobSpec, Outcome};

use weir_actors::{Job, Runtime};

/// A configuration for empty-job runs: every job on resource `store` with `cap` slots,
/// waits long enough that nothing is skipped, room for `queued` waiting jobs.
pub fn config(cap: u32, queued: u64) -> Config {
    let mut config = Config::default();
    config.scheduler.max_concurrent = cap;
    config.scheduler.max_queued = queued.max(1);
    config.scheduler.slot_wait_timeout = Duration::from_secs(3600);
    config
}

/// The spec of every benchmark job.
pub fn spec() -> JobSpec {
    JobSpec::new("bench", "store")
}

/// A histogram of nanoseconds (3 significant figures, auto-resizing).
pub fn histogram() -> Histogram<u64> {
    let mut h = Histogram::new(3).expect("3 significant figures is a valid precision");
    h.auto(true);
    h
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Submits `n` empty jobs one by one through `runtime`, then awaits every outcome.
///
/// # Panics
/// If a job is refused or does not complete (the benchmark would be meaningless).
pub async fn weir_flood(runtime: &Runtime, n: usize) -> Duration {
    let spec = spec();
    let start = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let handle = runtime
            .submit(spec.clone(), |_| async { Ok::<_, JobError>(()) })
            .expect("the benchmark sizes max_queued to fit");
        handles.push(handle);
    }
    for handle in handles {
        assert_eq!(handle.await, Outcome::Completed(()));
    }
    start.elapsed()
}

/// [`weir_flood`] run on a thread of its own (its jobs submitted and awaited there), so
/// the caller's thread, where the supervisor runs, does none of the submitting work.
/// Returns the flood's elapsed time.
///
/// # Panics
/// If the thread cannot be started, or as [`weir_flood`] does.
pub async fn weir_flood_from_thread(runtime: &Runtime, n: usize) -> Duration {
    let runtime = runtime.clone();
    let (done, elapsed) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench-submitter".into())
        .spawn(move || {
            let _ = done.send(futures::executor::block_on(weir_flood(&runtime, n)));
        })
        .expect("a submitting thread");
    elapsed.await.expect("the submitting thread completes its flood")
}

/// Submits `n` empty jobs as one prepared batch ([`Runtime::submit_batch`]), then awaits
/// every outcome. Fan-out batching applies: use a config with `batch_delay = 0` to
/// release them at once.
///
/// # Panics
/// If the batch is refused or a job does not complete.
pub async fn weir_batch(runtime: &Runtime, n: usize) -> Duration {
    let spec = spec();
    let start = Instant::now();
    let (jobs, handles): (Vec<_>, Vec<_>) = (0..n)
        .map(|_| Job::new(spec.clone(), |_| async { Ok::<_, JobError>(()) }))
        .unzip();
    runtime
        .submit_batch(jobs)
        .expect("the benchmark sizes max_queued to fit");
    for handle in handles {
        assert_eq!(handle.await, Outcome::Completed(()));
    }
    start.elapsed()
}

/// The tokio baseline: `n` tasks spawned at once, each acquiring a permit of a
/// `Semaphore` of `cap` permits before its (empty) body runs; awaits every join handle.
/// Call inside a tokio runtime.
///
/// # Panics
/// If a task panics.
pub async fn tokio_flood(n: usize, cap: usize) -> Duration {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(cap));
    let start = Instant::now();
    let mut handles = Vec::with_capacity(n);
    for _ in 0..n {
        let semaphore = semaphore.clone();
        handles.push(tokio::spawn(async move {
            let _permit = semaphore.acquire().await.expect("never closed");
        }));
    }
    for handle in handles {
        handle.await.expect("an empty task does not panic");
    }
    start.elapsed()
}

/// Scheduling latency through weir: keeps `window` jobs outstanding until `n` have run,
/// recording for each the time from its submission to the first poll of its body.
///
/// With `window` at most the cap, no job waits for a slot: the figure is the cost of
/// the path (mailbox, grant, hand-off, spawn), not of queueing behind other jobs.
///
/// # Panics
/// If a job is refused or does not complete.
pub async fn weir_latency(runtime: &Runtime, n: usize, window: usize) -> Histogram<u64> {
    let spec = spec();
    let mut hist = histogram();
    let mut outstanding = FuturesUnordered::new();
    let submit = |outstanding: &mut FuturesUnordered<_>| {
        let submitted = Instant::now();
        let handle = runtime
            .submit(spec.clone(), move |_| {
                let first_poll = submitted.elapsed();
                async move { Ok::<_, JobError>(first_poll) }
            })
            .expect("the benchmark sizes max_queued to fit");
        outstanding.push(handle);
    };
    let mut submitted = 0;
    while submitted < n.min(window.max(1)) {
        submit(&mut outstanding);
        submitted += 1;
    }
    while let Some(outcome) = outstanding.next().await {
        let Outcome::Completed(latency) = outcome else {
            panic!("an empty job completes, got {outcome:?}");
        };
        let _ = hist.record(nanos(latency));
        if submitted < n {
            submit(&mut outstanding);
            submitted += 1;
        }
    }
    hist
}

/// Scheduling latency of the tokio baseline, measured as [`weir_latency`] does: `window`
/// tasks outstanding, each recording the time from its spawn to its first poll after
/// its permit was acquired. Call inside a tokio runtime.
///
/// # Panics
/// If a task panics.
pub async fn tokio_latency(n: usize, window: usize, cap: usize) -> Histogram<u64> {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(cap));
    let mut hist = histogram();
    let mut outstanding = FuturesUnordered::new();
    let spawn = |outstanding: &mut FuturesUnordered<_>| {
        let semaphore = semaphore.clone();
        let submitted = Instant::now();
        outstanding.push(tokio::spawn(async move {
            let _permit = semaphore.acquire().await.expect("never closed");
            submitted.elapsed()
        }));
    };
    let mut submitted = 0;
    while submitted < n.min(window.max(1)) {
        spawn(&mut outstanding);
        submitted += 1;
    }
    while let Some(joined) = outstanding.next().await {
        let latency = joined.expect("an empty task does not panic");
        let _ = hist.record(nanos(latency));
        if submitted < n {
            spawn(&mut outstanding);
            submitted += 1;
        }
    }
    hist
}

/// A tokio runtime like `#[tokio::main]` builds: multi-threaded, one worker per core.
///
/// # Panics
/// If the runtime cannot be built (no threads available).
pub fn tokio_multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// The fan-out scenario of the incident: `orgs` organisation jobs submitted as one batch,
/// each fanning out `projections` zero-latency children and joining them. Returns the
/// makespan (submit to the last organisation's outcome).
///
/// # Panics
/// If the batch is refused or an organisation does not complete.
pub async fn weir_fanout(runtime: &Runtime, orgs: usize, projections: u32) -> Duration {
    let start = Instant::now();
    let (jobs, handles): (Vec<_>, Vec<_>) = (0..orgs)
        .map(|org| {
            Job::new(
                JobSpec::new(format!("org-{org}"), "orgs"),
                move |ctx| async move {
                    let children = ctx.spawn(
                        (0..projections)
                            .map(|_| (ctx.child_spec("store"), |_ctx| async { Ok::<_, JobError>(()) })),
                    )?;
                    let outcomes = ctx.join(children).await;
                    Ok::<_, JobError>(outcomes.iter().filter(|o| o.is_completed()).count())
                },
            )
        })
        .unzip();
    runtime
        .submit_batch(jobs)
        .expect("the benchmark sizes max_queued to fit");
    for handle in handles {
        assert_eq!(handle.await, Outcome::Completed(projections as usize));
    }
    start.elapsed()
}

/// The least makespan fan-out batching allows with zero-latency jobs: the last
/// organisation is released after `ceil(orgs / batch) - 1` delays, and its last child
/// after `ceil(projections / batch) - 1` more.
pub fn fanout_lower_bound(config: &Config, orgs: usize, projections: u32) -> Duration {
    let schedule =
        weir::engine::BatchSchedule::new(config.scheduler.org_batch_size, config.scheduler.batch_delay);
    let last = |n: usize| schedule.offset(n.saturating_sub(1));
    last(orgs) + last(projections as usize)
}

/// The configuration of the fan-out scenario: `orgs` and `store` pools of 50, batches of
/// 25 released `delay` apart, room for every job.
pub fn fanout_config(delay: Duration, orgs: usize, projections: u32) -> Config {
    let mut config = config(50, (orgs as u64) * (u64::from(projections) + 1));
    config.scheduler.batch_delay = delay;
    config.scheduler.org_batch_size = 25;
    config
}
