//! The `none` policy: what jobs do without weir. Each job calls provider a the moment its
//! batch arrives, and on any failure (a rejection or a 429) calls again at once, ignoring
//! Retry-After, up to `none.max_attempts` calls in all. Nothing caps the calls in flight,
//! nothing paces them, nothing stops calling a failing provider and nothing falls back.

use std::sync::Arc;

use indicatif::ProgressBar;
use tokio::time::Instant;
use weir::OutcomeKind;

use super::provider::Provider;
use super::{JobEnd, PolicyTotals};

/// Runs the arrivals against `a`; one [`JobEnd`] per job, in arrival order.
pub(super) async fn run(
    arrivals: &[(std::time::Duration, u32)],
    max_attempts: u32,
    a: &Arc<Provider>,
    progress: &ProgressBar,
) -> (Vec<JobEnd>, PolicyTotals) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for &(at, jobs) in arrivals {
        tokio::time::sleep_until(start + at).await;
        for _ in 0..jobs {
            let (a, progress) = (a.clone(), progress.clone());
            tasks.push(actix_rt::spawn(async move {
                let mut calls = 0;
                let outcome = loop {
                    calls += 1;
                    match a.call().await {
                        Ok(()) => break OutcomeKind::Completed,
                        Err(_) if calls >= max_attempts => break OutcomeKind::Failed,
                        Err(_) => {}
                    }
                };
                progress.inc(1);
                (JobEnd::new(outcome, start.elapsed()), calls - 1)
            }));
        }
    }
    let mut ends = Vec::with_capacity(tasks.len());
    let mut totals = PolicyTotals::default();
    for done in futures::future::join_all(tasks).await {
        let (end, retries) = done.expect("a job task does not panic");
        ends.push(end);
        totals.retries += u64::from(retries);
    }
    (ends, totals)
}
