//! What a soak reports: its samples, totals and checks; printed as a table, written as
//! JSON with `--json`.

use std::fmt::Write as _;
use std::path::Path;

use super::checks::{Check, CheckKind};
use super::downstream::DownstreamReport;
use super::sample::{Counts, Sample};

/// Totals over the whole run.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Totals {
    /// Handles and coalesced requests the soak held (one per accepted submission).
    pub submitted: u64,
    /// What they resolved to.
    pub outcomes: Counts,
    /// Children spawned by the cascades.
    pub children: u64,
    /// Their outcomes, as their parents saw them.
    pub child_outcomes: Counts,
    /// Jobs submitted by the recurring checks.
    pub recurring_jobs: u64,
    /// Coalesced requests, and the batch jobs that answered them.
    pub requests: u64,
    /// See `requests`.
    pub batches: u64,
    /// Requests merged into a batch that already had their item.
    pub merged: u64,
    /// Submissions refused (queue full).
    pub refused: u64,
    /// Caller cancellations.
    pub cancels: u64,
    /// Jobs the runtime counted, and their outcomes.
    pub runtime_submitted: u64,
    /// See `runtime_submitted`.
    pub runtime_outcomes: Counts,
    /// Times the flaky resource's breaker opened, and its transitions in all.
    pub breaker_opened: u64,
    /// See `breaker_opened`.
    pub breaker_transitions: u64,
    /// Failed attempts run again.
    pub retries: u64,
    /// Leases granted by Redis to the shared resource (0 without `--redis`).
    pub redis_grants: u64,
    /// Tenants ever active.
    pub tenants_seen: u64,
    /// Seconds from the end of the load until every handle had resolved.
    pub drain_s: f64,
    /// Peak RSS of the process.
    pub peak_rss_bytes: u64,
}

/// The settings the run was made with.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Settings {
    /// `--duration`, seconds.
    pub duration_s: f64,
    /// `--sample-every`, seconds.
    pub sample_every_s: f64,
    /// `--rate`.
    pub rate: u32,
    /// `--tenants`.
    pub active_tenants: u32,
    /// `--new-tenants-per-sec`.
    pub new_tenants_per_sec: u32,
    /// `--seed`.
    pub seed: u64,
    /// Whether a Redis-shared resource ran.
    pub redis: bool,
    /// Warm-up, seconds: the memory check compares the end with the first sample after it.
    pub warm_up_s: f64,
}

/// Everything a soak run measured and judged.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SoakReport {
    /// How it was run.
    pub settings: Settings,
    /// Samples while the load ran, the last at its end.
    pub samples: Vec<Sample>,
    /// Totals.
    pub totals: Totals,
    /// The downstreams' own counts.
    pub downstreams: Vec<DownstreamReport>,
    /// The verdicts.
    pub checks: Vec<Check>,
}

impl SoakReport {
    /// True when every check held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The checks that failed.
    pub fn failed(&self) -> Vec<CheckKind> {
        self.checks.iter().filter(|c| !c.passed).map(|c| c.kind).collect()
    }

    /// Writes the report as JSON.
    pub fn write_json(&self, path: &Path) -> Result<(), String> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| format!("cannot encode the report: {e}"))?;
        std::fs::write(path, text).map_err(|e| format!("cannot write --json {}: {e}", path.display()))
    }

    /// The table the command prints.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(
            out,
            "soak: {}s at {} leaf jobs/s offered, {} tenants active, {} new per second, seed {}{}",
            s.duration_s,
            s.rate,
            s.active_tenants,
            s.new_tenants_per_sec,
            s.seed,
            if s.redis { ", Redis-shared resource" } else { "" }
        );
        let _ = writeln!(
            out,
            "\n{:>7} {:>9} {:>8} {:>9} {:>7} {:>8} {:>10} {:>7} {:>10} {:>9} {:>9} {:>8} {:>9}",
            "t (s)",
            "RSS MiB",
            "jobs/s",
            "in_flight",
            "queued",
            "tracked",
            "backlogged",
            "seen",
            "completed",
            "failed",
            "timed_out",
            "skipped",
            "cancelled"
        );
        for x in &self.samples {
            let _ = writeln!(
                out,
                "{:>7.1} {:>9.1} {:>8.0} {:>9} {:>7} {:>8} {:>10} {:>7} {:>10} {:>9} {:>9} {:>8} {:>9}",
                x.at_s,
                x.rss_bytes as f64 / (1 << 20) as f64,
                x.jobs_per_sec,
                x.in_flight,
                x.queued,
                x.tenants_tracked,
                x.tenants_backlogged,
                x.tenants_seen,
                x.outcomes.completed,
                x.outcomes.failed,
                x.outcomes.timed_out,
                x.outcomes.skipped,
                x.outcomes.cancelled
            );
        }
        let t = &self.totals;
        let _ = writeln!(
            out,
            "\njobs run: {} (runtime), {} handles + requests, {} children, {} recurring, {} coalesced requests in {} batches ({} merged)",
            t.runtime_submitted, t.submitted, t.children, t.recurring_jobs, t.requests, t.batches, t.merged
        );
        let _ = writeln!(
            out,
            "faults: {} failed, {} timed out, {} cancelled ({} by callers), {} skipped; breaker opened {} times ({} transitions), {} retries, {} refused",
            t.runtime_outcomes.failed,
            t.runtime_outcomes.timed_out,
            t.runtime_outcomes.cancelled,
            t.cancels,
            t.runtime_outcomes.skipped,
            t.breaker_opened,
            t.breaker_transitions,
            t.retries,
            t.refused
        );
        if s.redis {
            let _ = writeln!(out, "redis: {} leases granted to `shared`", t.redis_grants);
        }
        let _ = writeln!(
            out,
            "drain {:.1}s; peak RSS {:.1} MiB",
            t.drain_s,
            t.peak_rss_bytes as f64 / (1 << 20) as f64
        );
        let _ = writeln!(out);
        for c in &self.checks {
            let _ = writeln!(
                out,
                "{:<4} {:<30} {}",
                if c.passed { "ok" } else { "FAIL" },
                c.kind.label(),
                c.detail
            );
        }
        out
    }
}
