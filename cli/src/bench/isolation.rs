//! Does a slow body delay anyone else's grant? Resource `spin`'s bodies each compute for
//! 1 ms (a busy loop, no sleep) at a cap equal to the number of cores, so they can keep
//! every core busy, while resource `store` receives an empty job every 200 us from
//! another thread. The figure is the `store` jobs' time from submission to the first
//! poll of their body: with bodies on the supervisor's thread (`worker_threads = 0`) a
//! spinning body holds every grant back by up to its 1 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use weir::{JobError, JobSpec, Outcome, ResourceConfig};
use weir_actors::Runtime;

use super::workload::{self, histogram};

/// How long each `spin` body computes.
const SPIN: Duration = Duration::from_millis(1);
/// Time between two `store` submissions.
const ARRIVAL: Duration = Duration::from_micros(200);

pub(super) fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// Computes for `d` without yielding, as a body that decodes or aggregates does.
fn spin(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// Enough `spin` jobs to keep every core busy for `run_for` and a margin.
fn spin_jobs(run_for: Duration) -> usize {
    (run_for.as_micros() / SPIN.as_micros()) as usize * cores() as usize * 2
}

/// Submits an empty `store` job every [`ARRIVAL`] for `run_for` through `submit`, which
/// returns a receiver of the job's submit-to-first-poll latency; returns their histogram.
fn arrivals<F>(run_for: Duration, mut submit: F) -> Histogram<u64>
where
    F: FnMut(Instant) -> Box<dyn FnOnce() -> Duration>,
{
    let mut pending = Vec::new();
    let end = Instant::now() + run_for;
    while Instant::now() < end {
        pending.push(submit(Instant::now()));
        std::thread::sleep(ARRIVAL);
    }
    let mut hist = histogram();
    for latency in pending {
        let _ = hist.record(u64::try_from(latency().as_nanos()).unwrap_or(u64::MAX));
    }
    hist
}

/// weir with `worker_threads` (`None`: the runtime's default, one per core), started from
/// a plain thread (its own actix system).
///
/// # Errors
/// If the runtime does not start.
///
/// # Panics
/// If a job is refused or does not complete.
pub fn weir_isolation(worker_threads: Option<u32>, run_for: Duration) -> Result<Histogram<u64>, String> {
    let mut config = workload::config(50, 10_000_000);
    config.runtime.worker_threads = worker_threads;
    config.resources.insert(
        "spin".into(),
        ResourceConfig {
            max_concurrent: Some(cores()),
            ..ResourceConfig::default()
        },
    );
    let runtime = Runtime::start(config).map_err(|e| e.to_string())?;
    let spins: Vec<_> = (0..spin_jobs(run_for))
        .map(|_| {
            runtime
                .submit_blocking(JobSpec::new("bench", "spin"), |_| async {
                    spin(SPIN);
                    Ok::<_, JobError>(())
                })
                .expect("the benchmark sizes max_queued to fit")
        })
        .collect();
    let hist = arrivals(run_for, |submitted| {
        let ticket = runtime
            .submit_blocking(workload::spec(), move |_| {
                let first_poll = submitted.elapsed();
                async move { Ok::<_, JobError>(first_poll) }
            })
            .expect("the benchmark sizes max_queued to fit");
        Box::new(move || match ticket.wait() {
            Outcome::Completed(latency) => latency,
            other => panic!("an empty job completes, got {other:?}"),
        })
    });
    // The spinning backlog is cancelled; running spins finish within SPIN.
    runtime.shutdown_blocking(Duration::ZERO);
    drop(spins);
    Ok(hist)
}

/// The baseline: a multi-threaded tokio runtime (one worker per core) runs `spin` tasks
/// that each hold one of `cores` semaphore permits, and `store` tasks spawned from
/// another thread record their spawn-to-first-poll latency.
///
/// # Panics
/// If a task panics.
pub fn tokio_isolation(run_for: Duration) -> Histogram<u64> {
    let rt = workload::tokio_multi_thread();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(cores() as usize));
    for _ in 0..spin_jobs(run_for) {
        let semaphore = semaphore.clone();
        rt.spawn(async move {
            let _permit = semaphore.acquire().await.expect("never closed");
            spin(SPIN);
        });
    }
    let handle = rt.handle().clone();
    let hist = arrivals(run_for, |submitted| {
        let task = handle.spawn(async move { submitted.elapsed() });
        let handle = handle.clone();
        Box::new(move || handle.block_on(task).expect("an empty task does not panic"))
    });
    rt.shutdown_background();
    hist
}
