//! Quota checks with 100,000 tenants, and what a tenant costs in bytes (issue 6).
//!
//! The baseline beside weir is what the incident's patch would do: a fixed-window
//! counter per tenant in a map (one hash lookup, compare, increment), which is cheaper
//! but lets up to twice the limit through at a window boundary. weir's checks run the
//! `prod` profile (10/min, 100/h, 500/day and $5/day per user; 1,000/h and $100/day in
//! all) on a virtual clock.
//!
//! Bytes are counted by a counting global allocator (live bytes after minus before), so
//! they include the tenant's name, its map entry, its logs and its idle-heap entry.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use weir::{Config, QuotaConfig, QuotaScope, Quotas, TenantId};

/// Forwards to the system allocator and keeps a count of live bytes. Hand-written: it
/// is four forwarding lines, and a crate for it would add a dependency for nothing.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

#[allow(unsafe_code)] // forwarding to `System` is the whole impl
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const TENANTS: usize = 100_000;
const PROD: &str = include_str!("../config/prod.toml");

fn prod() -> BTreeMap<String, QuotaConfig> {
    Config::from_toml_str(PROD)
        .expect("config/prod.toml is valid")
        .quotas
}

fn per_user_only() -> BTreeMap<String, QuotaConfig> {
    prod()
        .into_iter()
        .filter(|(_, q)| q.scope == QuotaScope::Tenant)
        .collect()
}

fn tenant_names() -> Vec<String> {
    (0..TENANTS).map(|i| format!("tenant-{i:06}")).collect()
}

/// A fixed-window counter per tenant: the baseline.
#[derive(Default)]
struct FixedWindow {
    counts: HashMap<TenantId, (u64, u32)>,
}

impl FixedWindow {
    fn admit(&mut self, tenant: &TenantId, limit: u32, window: u64, now: u64) -> bool {
        let slot = now / window;
        let entry = self.counts.entry(tenant.clone()).or_insert((slot, 0));
        if entry.0 != slot {
            *entry = (slot, 0);
        }
        if entry.1 >= limit {
            return false;
        }
        entry.1 += 1;
        true
    }
}

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Live bytes per tenant after `requests` admissions each, spaced so that none is refused.
fn bytes_per_tenant(requests: usize) -> (f64, usize) {
    let quotas_config = per_user_only();
    let names = tenant_names();
    let before = live();
    let mut quotas = Quotas::new(&quotas_config);
    // 173 s apart: 500 fit in a day, 21 in an hour, 1 in a minute.
    let gap = Duration::from_secs(173);
    for r in 0..requests {
        for name in &names {
            let tenant = TenantId::new(name);
            quotas
                .admit(&tenant, 0, gap * r as u32)
                .expect("spaced requests are admitted");
        }
    }
    let bytes = (live() - before) as f64 / TENANTS as f64;
    let tracked = quotas.tracked_tenants();
    drop(quotas);
    (bytes, tracked)
}

fn baseline_bytes_per_tenant() -> f64 {
    let names = tenant_names();
    let before = live();
    let mut counter = FixedWindow::default();
    for name in &names {
        counter.admit(&TenantId::new(name), 10, 60_000_000_000, 0);
    }
    let bytes = (live() - before) as f64 / TENANTS as f64;
    drop(counter);
    bytes
}

fn memory(_: &mut Criterion) {
    let baseline = baseline_bytes_per_tenant();
    let (one, tracked) = bytes_per_tenant(1);
    assert_eq!(tracked, TENANTS);
    let (ten, _) = bytes_per_tenant(10);
    let (full, _) = bytes_per_tenant(500);
    // Printed, not timed: criterion has no unit for bytes.
    println!("quota/bytes_per_tenant (100,000 tenants, prod per_user quota):");
    println!("  fixed-window counter map (baseline): {baseline:.0} B");
    println!(
        "  weir, 1 request each:    {one:.0} B ({:.2}x baseline)",
        one / baseline
    );
    println!(
        "  weir, 10 requests each:  {ten:.0} B ({:.2}x baseline)",
        ten / baseline
    );
    println!(
        "  weir, 500 requests each: {full:.0} B ({:.2}x baseline)",
        full / baseline
    );
}

fn checks(c: &mut Criterion) {
    let tenants: Vec<TenantId> = tenant_names().into_iter().map(TenantId::from).collect();
    let mut group = c.benchmark_group("quota/check_100k_tenants");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    group.warm_up_time(Duration::from_secs(1));

    // 1 µs of virtual time per check: each tenant asks every 0.1 s, so its minute
    // window fills and most checks past the first second are refusals, as under a flood.
    group.bench_function("baseline_fixed_window_counter", |b| {
        let mut counter = FixedWindow::default();
        let mut i = 0usize;
        b.iter(|| {
            let ok = counter.admit(&tenants[i % TENANTS], 10, 60_000_000_000, i as u64 * 1_000);
            i += 1;
            black_box(ok)
        })
    });
    for (name, config) in [("weir_per_user", per_user_only()), ("weir_prod_profile", prod())] {
        group.bench_function(format!("{name}_admit"), |b| {
            let mut quotas = Quotas::new(&config);
            let mut i = 0usize;
            b.iter(|| {
                let now = Duration::from_micros(i as u64);
                let ok = quotas.admit(&tenants[i % TENANTS], 1, now).is_ok();
                if i.is_multiple_of(4096) {
                    quotas.sweep(now);
                }
                i += 1;
                black_box(ok)
            })
        });
    }
    // Read-only checks that pass, against tenants that each hold 3 admissions.
    group.bench_function("weir_per_user_check_only", |b| {
        let mut quotas = Quotas::new(&per_user_only());
        for r in 0..3u32 {
            for t in &tenants {
                let _ = quotas.admit(t, 0, Duration::from_secs(u64::from(r)));
            }
        }
        let now = Duration::from_secs(30);
        let mut i = 0usize;
        b.iter(|| {
            let ok = quotas.check(&tenants[i % TENANTS], 0, now).is_ok();
            i += 1;
            black_box(ok)
        })
    });
    group.finish();
}

criterion_group!(benches, memory, checks);
criterion_main!(benches);
