//! One policy's report on the limit-shift scenario (the JSON object of `--json`) and the
//! table printed at the end. Jobs are counted from their handles; queries and refusals
//! by the store itself. Durations are scenario time, in whole milliseconds.

use serde::Serialize;

/// One policy's results: exactly the fields of `--json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LimitShiftReport {
    /// `static-50`, `static-30`, `adaptive` or `oracle`.
    pub policy: String,
    /// Jobs submitted.
    pub jobs: u64,
    /// Jobs that ended `Completed` (their query was served).
    pub completed: u64,
    /// Jobs that ended otherwise (out of attempts, skipped, timed out).
    pub not_completed: u64,
    /// Queries the store received, refused ones included.
    pub calls: u64,
    /// Queries the store refused as over its limit.
    pub downstream_rejections: u64,
    /// `downstream_rejections / calls`, in percent.
    pub rejected_percent: f64,
    /// From the first arrival to the end of the last job.
    pub makespan_ms: u64,
    /// Most slots weir's resource held at once.
    pub peak_in_flight: u32,
    /// Most queries in progress at the store at once.
    pub store_peak_in_flight: u32,
    /// The adaptive limit's ceiling (`max_concurrent`); only for `adaptive`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<u32>,
    /// The limit weir's resource had at the end.
    pub final_limit: u32,
}

/// The table of every policy's report, in order.
pub fn table(reports: &[LimitShiftReport]) -> String {
    let mut out = format!(
        "{:<10} {:>7} {:>9} {:>8} {:>9} {:>8} {:>11} {:>6} {:>6} {:>8}\n",
        "policy", "jobs", "completed", "calls", "refused", "refused%", "makespan", "peak", "store", "ceiling"
    );
    for r in reports {
        out += &format!(
            "{:<10} {:>7} {:>9} {:>8} {:>9} {:>7.2}% {:>10.1}s {:>6} {:>6} {:>8}\n",
            r.policy,
            r.jobs,
            r.completed,
            r.calls,
            r.downstream_rejections,
            r.rejected_percent,
            r.makespan_ms as f64 / 1000.0,
            r.peak_in_flight,
            r.store_peak_in_flight,
            r.ceiling.map_or("-".to_string(), |c| c.to_string()),
        );
    }
    out
}
