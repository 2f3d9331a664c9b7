//! One policy's report on the providers scenario (the JSON object of `--json`) and the
//! tables printed at the end.
//!
//! Jobs are counted from their handles (every job has exactly one outcome, so
//! `jobs = completed + failed + skipped + timed_out + cancelled`); calls and rejections
//! are counted by the providers themselves. Durations are scenario time, in whole
//! milliseconds.

use serde::Serialize;
use weir::OutcomeKind;

use super::provider::ProviderCounts;
use super::{JobEnd, PolicyTotals};

/// One policy's results: exactly the fields of `--json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProvidersReport {
    /// `none` or `weir`.
    pub policy: String,
    /// Jobs submitted.
    pub jobs: u64,
    /// Ended `Completed` (a call succeeded).
    pub completed: u64,
    /// Ended `Failed` (every call it made failed, or its budget ran out).
    pub failed: u64,
    /// Ended `Skipped` (no slot within the wait timeout).
    pub skipped: u64,
    /// Ended `TimedOut` (lease expired).
    pub timed_out: u64,
    /// Ended `Cancelled`.
    pub cancelled: u64,
    /// Of `failed`: ended `Failed(BudgetExhausted)`.
    pub budget_exhausted: u64,
    /// Jobs moved to the fallback provider.
    pub fallbacks: u64,
    /// Times a breaker opened (both providers).
    pub breaker_opens: u64,
    /// Calls made again after a failed one (both providers).
    pub retries: u64,
    /// Grants weir's rate limits postponed (both providers; 0 for `none`).
    pub limiter_waits: u64,
    /// Calls the providers saw, both together.
    pub calls: u64,
    /// Calls the providers rejected or failed, both together.
    pub rejected: u64,
    /// From the first arrival to the end of the last job.
    pub makespan_ms: u64,
    /// What each provider counted (`a`, then `b`).
    pub providers: Vec<ProviderCounts>,
}

impl ProvidersReport {
    /// The report of one run.
    pub fn new(policy: &str, ends: &[JobEnd], totals: PolicyTotals, providers: Vec<ProviderCounts>) -> Self {
        let count = |k: OutcomeKind| ends.iter().filter(|e| e.outcome == k).count() as u64;
        let makespan = ends.iter().map(|e| e.at).max().unwrap_or_default();
        Self {
            policy: policy.to_string(),
            jobs: ends.len() as u64,
            completed: count(OutcomeKind::Completed),
            failed: count(OutcomeKind::Failed),
            skipped: count(OutcomeKind::Skipped),
            timed_out: count(OutcomeKind::TimedOut),
            cancelled: count(OutcomeKind::Cancelled),
            budget_exhausted: ends.iter().filter(|e| e.budget_exhausted).count() as u64,
            fallbacks: totals.fallbacks,
            breaker_opens: totals.breaker_opens,
            retries: totals.retries,
            limiter_waits: totals.limiter_waits,
            calls: providers.iter().map(|p| p.calls).sum(),
            rejected: providers.iter().map(ProviderCounts::rejected).sum(),
            makespan_ms: makespan.as_millis() as u64,
            providers,
        }
    }
}

/// The jobs table (one row per policy), then the providers table (one row per policy
/// and provider).
pub fn table(reports: &[ProvidersReport]) -> String {
    let jobs = [
        "jobs",
        "succeeded",
        "failed",
        "skipped",
        "timed_out",
        "cancelled",
        "budget_exhausted",
        "fallbacks",
        "breaker_opens",
        "retries",
        "limiter_waits",
        "makespan",
    ];
    let mut out = row("policy", &jobs, &jobs);
    for r in reports {
        let cells = [
            r.jobs.to_string(),
            r.completed.to_string(),
            r.failed.to_string(),
            r.skipped.to_string(),
            r.timed_out.to_string(),
            r.cancelled.to_string(),
            r.budget_exhausted.to_string(),
            r.fallbacks.to_string(),
            r.breaker_opens.to_string(),
            r.retries.to_string(),
            r.limiter_waits.to_string(),
            format!("{:.1}s", r.makespan_ms as f64 / 1e3),
        ];
        out += &row(&r.policy, &jobs, &cells);
    }
    let providers = [
        "provider",
        "calls",
        "succeeded",
        "rejected",
        "over_concurrency",
        "over_rate",
        "burst_429",
        "peak_in_flight",
        "limit",
    ];
    out += "\n";
    out += &row("policy", &providers, &providers);
    for r in reports {
        for p in &r.providers {
            let cells = [
                p.name.clone(),
                p.calls.to_string(),
                p.succeeded.to_string(),
                p.rejected().to_string(),
                p.over_concurrency.to_string(),
                p.over_rate.to_string(),
                p.burst_failures.to_string(),
                p.peak_in_flight.to_string(),
                p.max_concurrent.to_string(),
            ];
            out += &row(&r.policy, &providers, &cells);
        }
    }
    out
}

/// One line: `first` left-aligned, each cell right-aligned under its header.
fn row<S: AsRef<str>>(first: &str, headers: &[&str], cells: &[S]) -> String {
    let mut line = format!("{first:<7}");
    for (h, c) in headers.iter().zip(cells) {
        line += &format!("{:>w$}", c.as_ref(), w = h.len().max(4) + 2);
    }
    line + "\n"
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn outcomes_and_rejections_add_up() {
        let end = |outcome, s| JobEnd::new(outcome, Duration::from_secs(s));
        let mut exhausted = end(OutcomeKind::Failed, 9);
        exhausted.budget_exhausted = true;
        let ends = [
            end(OutcomeKind::Completed, 3),
            exhausted,
            end(OutcomeKind::Skipped, 5),
        ];
        let a = ProviderCounts {
            name: "a".into(),
            calls: 10,
            succeeded: 4,
            over_concurrency: 3,
            over_rate: 2,
            burst_failures: 1,
            ..ProviderCounts::default()
        };
        let r = ProvidersReport::new("weir", &ends, PolicyTotals::default(), vec![a]);
        assert_eq!((r.jobs, r.completed, r.failed, r.skipped), (3, 1, 1, 1));
        assert_eq!((r.budget_exhausted, r.calls, r.rejected), (1, 10, 6));
        assert_eq!(r.makespan_ms, 9000);
        let t = table(&[r]);
        assert!(t.contains("    9.0s"), "{t}");
    }
}
