//! Empty-job throughput, submit to outcome, at caps 1, 50 and 1,000: weir's runtime
//! beside tokio `Semaphore` + `spawn` and tower's `ConcurrencyLimit` doing the same work.
//!
//! weir runs in its default shape (supervisor and job bodies on the caller's actix
//! arbiter); the baselines run on a multi-threaded tokio runtime, as `#[tokio::main]`
//! builds it.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tower::{Service, ServiceExt};
use weir_actors::Runtime;
use weir_cli::bench::workload;

const JOBS: usize = 10_000;

async fn tower_flood(n: usize, cap: usize) -> Duration {
    let service =
        tower::limit::ConcurrencyLimit::new(tower::service_fn(|()| async { Ok::<_, Infallible>(()) }), cap);
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let mut service = service.clone();
            tokio::spawn(async move { service.ready().await?.call(()).await })
        })
        .collect();
    for h in handles {
        h.await.expect("no panic").expect("infallible");
    }
    start.elapsed()
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("empty_jobs");
    group.throughput(Throughput::Elements(JOBS as u64));
    let tokio_rt = workload::tokio_multi_thread();
    for cap in [1u32, 50, 1_000] {
        let system = actix_rt::System::new();
        let runtime =
            system.block_on(async { Runtime::start(workload::config(cap, JOBS as u64)).expect("valid") });
        group.bench_with_input(BenchmarkId::new("weir", cap), &cap, |b, _| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| system.block_on(workload::weir_flood(&runtime, JOBS)))
                    .sum()
            })
        });
        group.bench_with_input(BenchmarkId::new("tokio_semaphore_spawn", cap), &cap, |b, &cap| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| tokio_rt.block_on(workload::tokio_flood(JOBS, cap as usize)))
                    .sum()
            })
        });
        group.bench_with_input(
            BenchmarkId::new("tower_concurrency_limit", cap),
            &cap,
            |b, &cap| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| tokio_rt.block_on(tower_flood(JOBS, cap as usize)))
                        .sum()
                })
            },
        );
        system.block_on(runtime.shutdown(Duration::from_secs(1)));
    }
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
