//! The core alone, on a fake clock: a slot release + grant through the scheduler, the
//! fair queue's push + pop, beside tokio's `Semaphore` (`try_acquire` + drop of the
//! permit), the primitive a user would otherwise guard a downstream with.
//!
//! Quota and cost-budget checks have their own bench (benches/quota.rs). The rate limit
//! is governor's GCRA behind a clock advanced to `now` (src/limit/rate.rs), so its cost is
//! governor's; it has no group here.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use weir::testing::{FairQueue, SlotPool};
use weir::{Config, Event, JobSpec, OutcomeKind, Scheduler, TenantId};

fn grant_release(c: &mut Criterion) {
    let mut group = c.benchmark_group("grant_release");
    group.throughput(Throughput::Elements(1));
    // One slot, a backlog of up to 1,000 waiting jobs: each step completes the running job
    // and polls, which grants the next waiting one. Submission is outside the timed part.
    group.bench_function("weir_scheduler", |b| {
        const BACKLOG: u64 = 1_000;
        let mut config = Config::default();
        config.scheduler.max_concurrent = 1;
        config.scheduler.max_queued = BACKLOG + 1;
        config.scheduler.slot_wait_timeout = Duration::from_secs(3600);
        let mut core: Scheduler<()> = Scheduler::new(config);
        let now = Duration::ZERO;
        let spec = JobSpec::new("bench", "store");
        let mut events = Vec::with_capacity(4);
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BACKLOG);
                left -= n;
                for _ in 0..n {
                    core.submit(spec.clone(), (), now);
                }
                core.poll(now, &mut events);
                let start = Instant::now();
                while let Some(Event::Granted { key, .. }) = events.pop() {
                    core.complete(key, OutcomeKind::Completed, now).expect("running");
                    core.poll(now, &mut events);
                }
                elapsed += start.elapsed();
            }
            elapsed
        })
    });
    group.bench_function("weir_slot_pool", |b| {
        let mut pool = SlotPool::new(50);
        b.iter(|| {
            assert!(pool.try_grant());
            pool.release().expect("held");
        })
    });
    group.bench_function("tokio_semaphore_try_acquire", |b| {
        let semaphore = tokio::sync::Semaphore::new(50);
        b.iter(|| drop(semaphore.try_acquire().expect("free")))
    });
    group.finish();
}

fn fair_queue(c: &mut Criterion) {
    let mut group = c.benchmark_group("fair_queue_push_pop");
    group.throughput(Throughput::Elements(1));
    for tenants in [1usize, 1_000] {
        let names: Vec<TenantId> = (0..tenants).map(|t| TenantId::new(format!("t{t}"))).collect();
        group.bench_with_input(BenchmarkId::new("weir_drr", tenants), &tenants, |b, _| {
            let mut q = FairQueue::new(1);
            // A standing backlog of 10 jobs per tenant, so push and pop work on a busy ring.
            for i in 0..tenants * 10 {
                q.push(names[i % tenants].clone(), 1, 1, i);
            }
            let mut i = 0;
            b.iter(|| {
                q.push(names[i % tenants].clone(), 1, 1, i);
                i += 1;
                q.pop().expect("non-empty")
            })
        });
        group.bench_with_input(
            BenchmarkId::new("std_vecdeque_fifo", tenants),
            &tenants,
            |b, _| {
                let mut q = std::collections::VecDeque::new();
                for i in 0..tenants * 10 {
                    q.push_back((names[i % tenants].clone(), i));
                }
                let mut i = 0;
                b.iter(|| {
                    q.push_back((names[i % tenants].clone(), i));
                    i += 1;
                    q.pop_front().expect("non-empty")
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, grant_release, fair_queue);
criterion_main!(benches);
