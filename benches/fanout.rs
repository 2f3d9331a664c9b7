//! The incident's cascade: one batch of 1,000 organisations x 50 projections with
//! zero-latency jobs, batches of 25 released 10 ms apart. Beside it, the lower bound the
//! release schedule allows, measured the same way (the same number of timer waits), so
//! the difference is weir's overhead.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use weir_actors::Runtime;
use weir_cli::bench::workload;

const ORGS: usize = 1_000;
const PROJECTIONS: u32 = 50;

fn fanout(c: &mut Criterion) {
    let delay = Duration::from_millis(10);
    let config = workload::fanout_config(delay, ORGS, PROJECTIONS);
    let mut group = c.benchmark_group("fanout_1000x50");
    group.sample_size(10);
    group.bench_function("weir", |b| {
        b.iter_custom(|iters| {
            let system = actix_rt::System::new();
            (0..iters)
                .map(|_| {
                    system.block_on(async {
                        let runtime = Runtime::start(config.clone()).expect("valid");
                        let makespan = workload::weir_fanout(&runtime, ORGS, PROJECTIONS).await;
                        runtime.shutdown(Duration::from_secs(1)).await;
                        makespan
                    })
                })
                .sum()
        })
    });
    // The bound: the last organisation's release, then its last child's, as timer waits.
    let schedule = weir::engine::BatchSchedule::new(config.scheduler.org_batch_size, delay);
    let waits = schedule.batches(ORGS) - 1 + schedule.batches(PROJECTIONS as usize) - 1;
    group.bench_function("lower_bound", |b| {
        b.iter_custom(|iters| {
            let system = actix_rt::System::new();
            (0..iters)
                .map(|_| {
                    system.block_on(async {
                        let start = Instant::now();
                        for _ in 0..waits {
                            actix_rt::time::sleep(delay).await;
                        }
                        start.elapsed()
                    })
                })
                .sum()
        })
    });
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
