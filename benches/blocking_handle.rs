//! Submitting from plain threads with the blocking ticket (a crossbeam channel) against
//! submitting from async tasks with the async handle, to the same runtime (started from
//! plain code, so it runs on a thread of its own). Each submitter keeps one job in
//! flight: submit, wait for the outcome, repeat.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir::{JobError, Outcome};
use weir_actors::Runtime;
use weir_cli::bench::workload;

const SUBMITTERS: usize = 2;
const JOBS_EACH: usize = 2_000;

fn blocking_vs_async(c: &mut Criterion) {
    let runtime = Runtime::start(workload::config(50, 1_000)).expect("valid");
    let mut group = c.benchmark_group("handles_round_trip");
    group.throughput(Throughput::Elements((SUBMITTERS * JOBS_EACH) as u64));
    group.bench_function("blocking_ticket_plain_threads", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let start = Instant::now();
                    std::thread::scope(|s| {
                        for _ in 0..SUBMITTERS {
                            s.spawn(|| {
                                for _ in 0..JOBS_EACH {
                                    let ticket = runtime
                                        .submit_blocking(workload::spec(), |_| async {
                                            Ok::<_, JobError>(())
                                        })
                                        .expect("accepted");
                                    assert_eq!(ticket.wait(), Outcome::Completed(()));
                                }
                            });
                        }
                    });
                    start.elapsed()
                })
                .sum()
        })
    });
    let tokio_rt = workload::tokio_multi_thread();
    group.bench_function("async_handle_tokio_tasks", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    tokio_rt.block_on(async {
                        let start = Instant::now();
                        let tasks: Vec<_> = (0..SUBMITTERS)
                            .map(|_| {
                                let runtime = runtime.clone();
                                tokio::spawn(async move {
                                    for _ in 0..JOBS_EACH {
                                        let handle = runtime
                                            .submit(workload::spec(), |_| async { Ok::<_, JobError>(()) })
                                            .expect("accepted");
                                        assert_eq!(handle.await, Outcome::Completed(()));
                                    }
                                })
                            })
                            .collect();
                        for t in tasks {
                            t.await.expect("no panic");
                        }
                        start.elapsed()
                    })
                })
                .sum()
        })
    });
    group.finish();
    runtime.shutdown_blocking(Duration::from_secs(1));
}

criterion_group!(benches, blocking_vs_async);
criterion_main!(benches);
