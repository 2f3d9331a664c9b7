//! How fast the virtual-time driver runs the core: simulated jobs per second.
//!
//! One group, one question: what does a run of the generated workload (8 tenants with
//! weights, 32 slots, 1-20 ms jobs arriving slightly faster than they are served) cost
//! per job with weir's fair queue, next to the same run with every job filed under one
//! tenant (`Order::Fifo`, the baseline: the core without fair sharing across tenants)?
//! A second group runs the backlog scenario (10,000 jobs of one tenant ahead of
//! 50 tenants of 3).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use weir::sim::{self, Order, Workload, WorkloadShape};

fn generated(c: &mut Criterion) {
    let mut group = c.benchmark_group("sim/generated");
    for jobs in [10_000usize, 100_000] {
        let workload = Workload::generate(
            &WorkloadShape {
                jobs,
                ..WorkloadShape::default()
            },
            7,
        );
        group.throughput(Throughput::Elements(jobs as u64));
        group.sample_size(10);
        for (name, order) in [("fifo-baseline", Order::Fifo), ("fair", Order::Fair)] {
            group.bench_with_input(BenchmarkId::new(name, jobs), &workload, |b, w| {
                b.iter(|| sim::run(w, order).events.len())
            });
        }
    }
    group.finish();
}

fn backlog(c: &mut Criterion) {
    let mut group = c.benchmark_group("sim/backlog");
    let workload = Workload::backlog(10_000, 50, 3, 10, Duration::from_millis(10));
    group.throughput(Throughput::Elements(workload.jobs.len() as u64));
    group.sample_size(10);
    for (name, order) in [("fifo-baseline", Order::Fifo), ("fair", Order::Fair)] {
        group.bench_function(name, |b| b.iter(|| sim::run(&workload, order).events.len()));
    }
    group.finish();
}

criterion_group!(benches, generated, backlog);
criterion_main!(benches);
