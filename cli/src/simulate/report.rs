//! One policy's report (the JSON object of `--json`), the lower bound it is measured
//! against, and the table printed at the end.
//!
//! Definitions (every duration in scenario time, rounded to whole milliseconds):
//! * a *job* is one projection job (one query); organisation jobs are orchestration and
//!   not counted. `jobs_submitted` = completed + failed + skipped + timed_out + cancelled.
//! * `wait_ms`: from a job's submission to the start of its query, over jobs whose query
//!   started (a skipped job is counted in `skipped`, not here).
//! * `run_ms`: from the start of a query to its end (a refused query's run is the store's
//!   refusal time).
//! * `makespan_ms`: from the start of the run to the end of the last job.
//! * `tenants.jain_index`: Jain's fairness index over tenants (organisations) of the share
//!   of each tenant's jobs that completed: 1 when every tenant got the same share.
//! * `tenants.wait_p99_max_ms`: the worst tenant's 99th-percentile wait.

use std::time::Duration;

use serde::Serialize;
use weir::OutcomeKind;

use super::policies::{QueryRecord, RunRecord};

/// Wait-time percentiles, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WaitMs {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Longest.
    pub max: u64,
}

/// Run-time percentiles, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RunMs {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
}

/// Fairness over tenants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Tenants {
    /// Tenants that submitted at least one job.
    pub count: u64,
    /// Jain's index of the tenants' completed shares (1/count ..= 1).
    pub jain_index: f64,
    /// The worst tenant's 99th-percentile wait, in milliseconds.
    pub wait_p99_max_ms: u64,
}

/// One policy's results: exactly the fields of `--json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PolicyReport {
    /// `weir`, `naive` or `counter`.
    pub policy: String,
    /// Projection jobs submitted.
    pub jobs_submitted: u64,
    /// Ended `Completed`.
    pub completed: u64,
    /// Ended `Failed` (RateLimitExceeded or the store's own errors).
    pub failed: u64,
    /// Ended `Skipped` (no slot within the wait timeout).
    pub skipped: u64,
    /// Ended `TimedOut` (lease expired).
    pub timed_out: u64,
    /// Ended `Cancelled`.
    pub cancelled: u64,
    /// Most queries in flight at once, as the policy's scheduler counted.
    pub peak_in_flight: u64,
    /// Most requests in flight at once, as the store counted.
    pub downstream_peak: u64,
    /// Queries the store refused with RateLimitExceeded.
    pub downstream_rejections: u64,
    /// From the start of the run to the end of the last job.
    pub makespan_ms: u64,
    /// The least time any scheduler could take (see [`lower_bound`]).
    pub lower_bound_ms: u64,
    /// Wait percentiles.
    pub wait_ms: WaitMs,
    /// Run percentiles.
    pub run_ms: RunMs,
    /// Fairness over tenants.
    pub tenants: Tenants,
}

/// Rounds to whole milliseconds.
pub fn ms(d: Duration) -> u64 {
    u64::try_from((d.as_micros() + 500) / 1000).unwrap_or(u64::MAX)
}

/// The nearest-rank percentile (`q` in 0 ..= 1) of sorted samples; zero when empty.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// The least time a scheduler with `cap` slots could take (the issue's definition):
///
/// `max(total_service / cap, (batches - 1) x batch_delay) + total_service / queries`
///
/// The first term is the work bound (every slot busy all the time), the second the
/// release bound (the last batch of organisations is not released before it), and the
/// added mean service time is the one query that must still run after either: the last
/// batch's queries need their own service time after release, and queries of random
/// length cannot all end at the same instant. It can be beaten by at most that one mean
/// service time (by a clairvoyant packing whose slots all end together).
///
/// ```
/// use std::time::Duration;
/// use weir_cli::simulate::report::lower_bound;
/// // 12 queries of 1 s on 2 slots, 2 batches 5 s apart: max(6 s, 5 s) + 1 s.
/// let lb = lower_bound(Duration::from_secs(12), 12, 2, 2, Duration::from_secs(5));
/// assert_eq!(lb, Duration::from_secs(7));
/// ```
pub fn lower_bound(
    total_service: Duration,
    queries: usize,
    cap: u32,
    batches: usize,
    batch_delay: Duration,
) -> Duration {
    if queries == 0 {
        return Duration::ZERO;
    }
    let work = total_service / cap.max(1);
    let release = batch_delay * u32::try_from(batches.saturating_sub(1)).unwrap_or(u32::MAX);
    let mean = total_service / u32::try_from(queries).unwrap_or(u32::MAX);
    work.max(release) + mean
}

/// Jain's fairness index `(sum x)^2 / (n * sum x^2)`: 1 when all are equal, 1/n when one
/// tenant gets everything. Empty, or all zero (all equally starved), gives 1.
///
/// ```
/// use weir_cli::simulate::report::jain_index;
/// assert_eq!(jain_index(&[1.0, 1.0, 1.0]), 1.0);
/// assert_eq!(jain_index(&[1.0, 0.0, 0.0, 0.0]), 0.25);
/// ```
pub fn jain_index(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    let sum_sq: f64 = xs.iter().map(|x| x * x).sum();
    if xs.is_empty() || sum_sq == 0.0 {
        return 1.0;
    }
    sum * sum / (xs.len() as f64 * sum_sq)
}

fn sorted(mut v: Vec<Duration>) -> Vec<Duration> {
    v.sort_unstable();
    v
}

impl PolicyReport {
    /// Builds the report of one run.
    pub fn new(policy: &str, run: &RunRecord, lower_bound: Duration) -> Self {
        let submitted: Vec<&QueryRecord> = run.queries.iter().filter(|q| q.submitted.is_some()).collect();
        let count = |k: OutcomeKind| submitted.iter().filter(|q| q.outcome == Some(k)).count() as u64;
        let waits = sorted(
            submitted
                .iter()
                .filter_map(|q| Some(q.started? - q.submitted?))
                .collect(),
        );
        let runs = sorted(
            submitted
                .iter()
                .filter_map(|q| Some(q.ended? - q.started?))
                .collect(),
        );
        let makespan = submitted.iter().filter_map(|q| q.ended).max().unwrap_or_default();
        Self {
            policy: policy.to_string(),
            jobs_submitted: submitted.len() as u64,
            completed: count(OutcomeKind::Completed),
            failed: count(OutcomeKind::Failed),
            skipped: count(OutcomeKind::Skipped),
            timed_out: count(OutcomeKind::TimedOut),
            cancelled: count(OutcomeKind::Cancelled),
            peak_in_flight: run.peak_in_flight,
            downstream_peak: u64::from(run.store.peak),
            downstream_rejections: run.store.rejections,
            makespan_ms: ms(makespan),
            lower_bound_ms: ms(lower_bound),
            wait_ms: WaitMs {
                p50: ms(percentile(&waits, 0.5)),
                p90: ms(percentile(&waits, 0.9)),
                p99: ms(percentile(&waits, 0.99)),
                max: ms(waits.last().copied().unwrap_or_default()),
            },
            run_ms: RunMs {
                p50: ms(percentile(&runs, 0.5)),
                p99: ms(percentile(&runs, 0.99)),
            },
            tenants: tenants(&submitted),
        }
    }

    /// Outcomes summed: equals `jobs_submitted` (every job ends in exactly one outcome).
    pub fn outcomes_total(&self) -> u64 {
        self.completed + self.failed + self.skipped + self.timed_out + self.cancelled
    }

    /// makespan / lower bound.
    pub fn makespan_ratio(&self) -> f64 {
        self.makespan_ms as f64 / self.lower_bound_ms.max(1) as f64
    }
}

fn tenants(submitted: &[&QueryRecord]) -> Tenants {
    let orgs = submitted.iter().map(|q| q.org + 1).max().unwrap_or(0);
    let mut jobs = vec![0u64; orgs];
    let mut completed = vec![0u64; orgs];
    let mut waits = vec![Vec::new(); orgs];
    for q in submitted {
        jobs[q.org] += 1;
        if q.outcome == Some(OutcomeKind::Completed) {
            completed[q.org] += 1;
        }
        if let (Some(s), Some(t)) = (q.submitted, q.started) {
            waits[q.org].push(t - s);
        }
    }
    let shares: Vec<f64> = (0..orgs)
        .filter(|&o| jobs[o] > 0)
        .map(|o| completed[o] as f64 / jobs[o] as f64)
        .collect();
    let wait_p99_max = waits
        .into_iter()
        .map(|w| percentile(&sorted(w), 0.99))
        .max()
        .unwrap_or_default();
    Tenants {
        count: shares.len() as u64,
        jain_index: jain_index(&shares),
        wait_p99_max_ms: ms(wait_p99_max),
    }
}

fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// The side-by-side table printed on stdout.
pub fn table(reports: &[PolicyReport]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<8} {:>6} {:>9} {:>6} {:>7} {:>9} {:>9} {:>5} {:>10} {:>8} {:>9} {:>7} {:>8} {:>8} {:>8} {:>6} {:>10}\n",
        "policy",
        "jobs",
        "completed",
        "failed",
        "skipped",
        "timed_out",
        "cancelled",
        "peak",
        "store_peak",
        "rejected",
        "makespan",
        "xbound",
        "wait_p50",
        "wait_p99",
        "wait_max",
        "jain",
        "worst_p99"
    ));
    for r in reports {
        out.push_str(&format!(
            "{:<8} {:>6} {:>9} {:>6} {:>7} {:>9} {:>9} {:>5} {:>10} {:>8} {:>9} {:>7.3} {:>8} {:>8} {:>8} {:>6.3} {:>10}\n",
            r.policy,
            r.jobs_submitted,
            r.completed,
            r.failed,
            r.skipped,
            r.timed_out,
            r.cancelled,
            r.peak_in_flight,
            r.downstream_peak,
            r.downstream_rejections,
            secs(r.makespan_ms),
            r.makespan_ratio(),
            secs(r.wait_ms.p50),
            secs(r.wait_ms.p99),
            secs(r.wait_ms.max),
            r.tenants.jain_index,
            secs(r.tenants.wait_p99_max_ms),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Option<Duration> {
        Some(Duration::from_secs(secs))
    }

    fn record(
        org: usize,
        submitted: u64,
        started: Option<u64>,
        ended: u64,
        outcome: OutcomeKind,
    ) -> QueryRecord {
        QueryRecord {
            org,
            submitted: s(submitted),
            started: started.and_then(s),
            ended: s(ended),
            outcome: Some(outcome),
        }
    }

    #[test]
    fn outcomes_add_up_and_percentiles_come_from_the_records() {
        let run = RunRecord {
            queries: vec![
                record(0, 0, Some(0), 2, OutcomeKind::Completed),
                record(0, 0, Some(1), 3, OutcomeKind::Failed),
                record(1, 0, None, 60, OutcomeKind::Skipped),
                record(1, 0, Some(4), 9, OutcomeKind::Completed),
                // Never submitted (its organisation stopped first): not counted.
                QueryRecord {
                    org: 2,
                    ..QueryRecord::default()
                },
            ],
            peak_in_flight: 2,
            ..RunRecord::default()
        };
        let r = PolicyReport::new("x", &run, Duration::from_secs(10));
        assert_eq!(r.jobs_submitted, 4);
        assert_eq!(
            (r.completed, r.failed, r.skipped, r.timed_out, r.cancelled),
            (2, 1, 1, 0, 0)
        );
        assert_eq!(r.outcomes_total(), r.jobs_submitted);
        assert_eq!(r.makespan_ms, 60_000);
        assert_eq!(r.lower_bound_ms, 10_000);
        // Waits of started jobs: 0, 1, 4 s.
        assert_eq!((r.wait_ms.p50, r.wait_ms.p99, r.wait_ms.max), (1000, 4000, 4000));
        // Runs: 2, 2, 5 s.
        assert_eq!((r.run_ms.p50, r.run_ms.p99), (2000, 5000));
        // Tenant 0 completed 1 of 2, tenant 1 completed 1 of 2: equal shares.
        assert_eq!(r.tenants.count, 2);
        assert_eq!(r.tenants.jain_index, 1.0);
        assert_eq!(r.tenants.wait_p99_max_ms, 4000);
    }

    #[test]
    fn jain_index_falls_with_unequal_shares() {
        let j = jain_index(&[1.0, 0.5]);
        assert!((j - 0.9).abs() < 1e-12, "{j}");
    }

    #[test]
    fn lower_bound_takes_the_release_schedule_when_it_dominates() {
        // 4 queries of 1 s on 10 slots, 3 batches 10 s apart: max(0.4 s, 20 s) + 1 s.
        let lb = lower_bound(Duration::from_secs(4), 4, 10, 3, Duration::from_secs(10));
        assert_eq!(lb, Duration::from_secs(21));
        assert_eq!(
            lower_bound(Duration::ZERO, 0, 1, 0, Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn the_json_has_exactly_the_issues_fields() {
        let v = serde_json::to_value(PolicyReport::default()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "policy",
                "jobs_submitted",
                "completed",
                "failed",
                "skipped",
                "timed_out",
                "cancelled",
                "peak_in_flight",
                "downstream_peak",
                "downstream_rejections",
                "makespan_ms",
                "lower_bound_ms",
                "wait_ms",
                "run_ms",
                "tenants"
            ]
        );
        let keys = |k: &str| -> Vec<String> { v[k].as_object().unwrap().keys().cloned().collect() };
        assert_eq!(keys("wait_ms"), ["p50", "p90", "p99", "max"]);
        assert_eq!(keys("run_ms"), ["p50", "p99"]);
        assert_eq!(keys("tenants"), ["count", "jain_index", "wait_p99_max_ms"]);
    }
}
