//! The CI-sized soak (issue 18): a few seconds of the real runtime on the real clock
//! under the full mixed workload with faults, judged by the same checks as
//! `weir soak --duration 10m`, through the library function (not the printed table).
//! And the checks can fail: the hidden test-only defects make the run leak memory or
//! lose an outcome, and the soak must report exactly that check as failed.
//!
//! The soaks run one after another (a mutex), so their RSS figures are their own and the
//! machine's two cores are not split three ways.

use std::sync::Mutex;
use std::time::Duration;

use weir_cli::soak::{soak, CheckKind, SoakOptions, SoakReport, TestDefect};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A short soak: 6 s, a sample every 500 ms (warm-up is the first 1.2 s), a small and
/// quickly turning tenant population so that several times more tenants are seen than
/// are ever tracked.
fn short(defect: Option<TestDefect>) -> SoakReport {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    soak(&SoakOptions {
        duration: Duration::from_secs(6),
        sample_every: Duration::from_millis(500),
        rate: 1500,
        active_tenants: 100,
        new_tenants_per_sec: 50,
        seed: 18,
        redis: None,
        defect,
        progress: false,
    })
    .expect("valid options")
}

#[test]
fn a_short_soak_passes_every_check() {
    let report = short(None);
    println!("{}", report.table());
    assert!(
        report.passed(),
        "failed: {:?}\n{}",
        report.failed(),
        report.table()
    );
    let t = &report.totals;
    // The workload did what it says: faults, cascades, coalescing, checks, retries.
    assert!(t.children > 0 && t.batches > 0 && t.recurring_jobs > 0 && t.cancels > 0);
    assert!(
        t.runtime_outcomes.failed > 0,
        "injected errors and panics end Failed"
    );
    assert!(
        t.runtime_outcomes.skipped > 0,
        "the heavy tenants run into their quota"
    );
    assert!(t.retries > 0, "the flaky downstream's failures are retried");
    assert!(t.requests > t.batches, "requests are answered in batches");
    // Tenants tracked followed the active ones, not every tenant seen.
    let most = report.samples.iter().map(|s| s.tenants_tracked).max().unwrap();
    assert!(
        t.tenants_seen > 2 * most,
        "{} seen, {most} tracked at most",
        t.tenants_seen
    );
}

#[test]
fn a_soak_that_keeps_memory_per_job_fails_the_memory_check() {
    let report = short(Some(TestDefect::Memory));
    println!("{}", report.table());
    assert_eq!(report.failed(), [CheckKind::MemoryFlat], "{}", report.table());
}

#[test]
fn a_soak_that_loses_an_outcome_fails_the_count_check() {
    let report = short(Some(TestDefect::Outcome));
    println!("{}", report.table());
    assert_eq!(report.failed(), [CheckKind::OutcomesAddUp], "{}", report.table());
}
