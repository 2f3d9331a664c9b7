//! The checks a soak ends with, as a pure function of what it measured, so a test can
//! feed them evidence directly and the command and the test suite judge alike.

use std::time::Duration;

use super::downstream::DownstreamReport;
use super::sample::{after_warm_up, Counts, Sample};

/// Growth of RSS after warm-up tolerated as a share of the warm-up RSS.
pub const MEMORY_TOLERANCE: f64 = 0.10;
/// Growth tolerated whatever the share: below this the allocator's own arenas and the
/// runtime's growable buffers (histograms, slab, maps reaching their steady size) move
/// RSS by a few MiB in either direction, which says nothing about a leak. It matters only
/// for short runs, whose RSS is small.
pub const MEMORY_NOISE: u64 = 4 << 20;
/// Slack on the tenant bound: quota state lives one window after a tenant's last
/// admission, plus up to a wait timeout for a job that was waiting (3 s).
pub const TENANT_SLACK: Duration = Duration::from_secs(3);

/// Which check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// Every submission has one outcome, in the soak's counts and in the runtime's.
    OutcomesAddUp,
    /// No downstream ever saw more calls than its cap.
    NeverOverCap,
    /// After shutdown no slot is held, nothing waits, every handle resolved.
    NoSlotLeaked,
    /// Median RSS over the last tenth of the load within 10 % of that over the tenth
    /// after warm-up.
    MemoryFlat,
    /// The tenants whose state the core holds stay within what the active ones explain.
    TenantsFollowActive,
}

impl CheckKind {
    /// The name in the table.
    pub fn label(self) -> &'static str {
        match self {
            CheckKind::OutcomesAddUp => "outcomes add up",
            CheckKind::NeverOverCap => "never over cap",
            CheckKind::NoSlotLeaked => "no slot leaked",
            CheckKind::MemoryFlat => "memory flat after warm-up",
            CheckKind::TenantsFollowActive => "tenants tracked follow active",
        }
    }
}

/// One check's verdict.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// Which.
    pub kind: CheckKind,
    /// Whether it held.
    pub passed: bool,
    /// The figures it was judged on.
    pub detail: String,
}

/// What the checks are judged on.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    /// Handles and requests the soak holds, one per accepted submission.
    pub submitted: u64,
    /// What they resolved to, as the soak counted.
    pub outcomes: Counts,
    /// Handles not resolved after shutdown.
    pub pending: u64,
    /// Children spawned by the cascades, and their outcomes as the parents saw them.
    pub children: u64,
    /// See `children`.
    pub child_outcomes: Counts,
    /// Jobs the runtime should have counted: the soak's handles other than coalesced
    /// requests, plus children, plus the coalescer's batch jobs.
    pub expected_jobs: u64,
    /// The runtime's last statistics (after shutdown): jobs accepted, outcomes, slots
    /// held, jobs waiting.
    pub core_submitted: u64,
    /// See `core_submitted`.
    pub core_outcomes: Counts,
    /// See `core_submitted`.
    pub core_in_flight: u64,
    /// See `core_submitted`.
    pub core_queued: u64,
    /// Every downstream's own counts.
    pub downstreams: Vec<DownstreamReport>,
    /// Samples taken while the workload ran (the last at its end).
    pub samples: Vec<Sample>,
    /// When warm-up ends.
    pub warm_up: Duration,
    /// Time between samples.
    pub sample_every: Duration,
    /// Tenants active at once, and arriving per second.
    pub active_tenants: u64,
    /// See `active_tenants`.
    pub new_tenants_per_sec: u64,
    /// The longest per-tenant quota window.
    pub quota_window: Duration,
}

/// Judges every check.
pub fn judge(e: &Evidence) -> Vec<Check> {
    vec![
        outcomes_add_up(e),
        never_over_cap(e),
        no_slot_leaked(e),
        memory_flat(e),
        tenants_follow_active(e),
    ]
}

fn check(kind: CheckKind, passed: bool, detail: String) -> Check {
    Check { kind, passed, detail }
}

fn outcomes_add_up(e: &Evidence) -> Check {
    let mine = e.outcomes.total();
    let children = e.child_outcomes.total();
    let core = e.core_outcomes.total();
    let passed = mine == e.submitted
        && children == e.children
        && core == e.core_submitted
        && e.core_submitted == e.expected_jobs;
    check(
        CheckKind::OutcomesAddUp,
        passed,
        format!(
            "handles {} submitted / {mine} outcomes; children {} / {children}; runtime {} submitted / {core} outcomes, {} expected",
            e.submitted, e.children, e.core_submitted, e.expected_jobs
        ),
    )
}

fn never_over_cap(e: &Evidence) -> Check {
    let over: u64 = e.downstreams.iter().map(|d| d.over_cap).sum();
    let peaks: Vec<String> = e
        .downstreams
        .iter()
        .map(|d| format!("{} {}/{}", d.name, d.peak, d.cap))
        .collect();
    check(
        CheckKind::NeverOverCap,
        over == 0,
        format!("{over} calls over cap; peak/cap: {}", peaks.join(", ")),
    )
}

fn no_slot_leaked(e: &Evidence) -> Check {
    let inside: u64 = e.downstreams.iter().map(|d| u64::from(d.inside)).sum();
    let passed = e.core_in_flight == 0 && e.core_queued == 0 && inside == 0 && e.pending == 0;
    check(
        CheckKind::NoSlotLeaked,
        passed,
        format!(
            "after shutdown: {} slots held, {} waiting, {inside} calls inside downstreams, {} handles unresolved",
            e.core_in_flight, e.core_queued, e.pending
        ),
    )
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// The median RSS of the samples taken in `from ..= to` seconds, if any.
fn median_rss(samples: &[Sample], from: f64, to: f64) -> Option<(u64, usize)> {
    let mut rss: Vec<u64> = samples
        .iter()
        .filter(|s| s.at_s >= from && s.at_s <= to)
        .map(|s| s.rss_bytes)
        .collect();
    rss.sort_unstable();
    rss.get(rss.len() / 2).map(|&m| (m, rss.len()))
}

/// Compares the median RSS of a window just after warm-up with that of the last window
/// of the run (each a tenth of the run, at least three sampling intervals). Medians, because single
/// samples move with what is queued at the instant: the flaky downstream's sick spells
/// queue a few hundred jobs every 9 s, and a sample that falls in one reads ~2 MiB more.
fn memory_flat(e: &Evidence) -> Check {
    let Some(last) = e.samples.last() else {
        return check(CheckKind::MemoryFlat, false, "no samples".into());
    };
    let end_s = last.at_s;
    let warm_s = e.warm_up.as_secs_f64();
    // A tenth of the run, but at least three samples' worth, so a short run's medians
    // are not single samples either.
    let window = ((end_s - warm_s) / 10.0).max(3.0 * e.sample_every.as_secs_f64());
    let first = after_warm_up(&e.samples, e.warm_up).map_or(warm_s, |s| s.at_s);
    let (Some((warm, n_warm)), Some((end, n_end))) = (
        median_rss(&e.samples, first, first + window),
        median_rss(&e.samples, end_s - window, end_s),
    ) else {
        return check(
            CheckKind::MemoryFlat,
            false,
            "no sample after warm-up to compare".into(),
        );
    };
    if warm == 0 {
        return check(
            CheckKind::MemoryFlat,
            false,
            "RSS unreadable (no /proc/self/status)".into(),
        );
    }
    let growth = end.saturating_sub(warm);
    let share = growth as f64 / warm as f64;
    let passed = share <= MEMORY_TOLERANCE || growth <= MEMORY_NOISE;
    check(
        CheckKind::MemoryFlat,
        passed,
        format!(
            "median RSS {:.1} MiB over {n_warm} samples from {first:.0}s (after warm-up), {:.1} MiB over the last {n_end} (to {end_s:.0}s): {:+.1} % (allowed 10 %, or {} MiB)",
            mib(warm),
            mib(end),
            (end as f64 / warm as f64 - 1.0) * 100.0,
            MEMORY_NOISE >> 20
        ),
    )
}

/// The most tenants whose quota state may be held at once: the active ones, plus those
/// that went idle within a quota window (and slack) ago.
pub fn tenant_bound(active: u64, new_per_sec: u64, quota_window: Duration) -> u64 {
    active + (new_per_sec as f64 * (quota_window + TENANT_SLACK).as_secs_f64()).ceil() as u64
}

fn tenants_follow_active(e: &Evidence) -> Check {
    let bound = tenant_bound(e.active_tenants, e.new_tenants_per_sec, e.quota_window);
    let most = e.samples.iter().map(|s| s.tenants_tracked).max().unwrap_or(0);
    let seen = e.samples.last().map_or(0, |s| s.tenants_seen);
    check(
        CheckKind::TenantsFollowActive,
        most <= bound,
        format!(
            "at most {most} tenants tracked (bound {bound}: {} active + arrivals within {}s); {seen} tenants seen",
            e.active_tenants,
            (e.quota_window + TENANT_SLACK).as_secs()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_s: f64, rss_mib: u64, tracked: u64) -> Sample {
        Sample {
            at_s,
            rss_bytes: rss_mib << 20,
            jobs_per_sec: 0.0,
            in_flight: 0,
            queued: 0,
            tenants_tracked: tracked,
            tenants_backlogged: 0,
            tenants_seen: 1000,
            submitted: 0,
            outcomes: Counts::default(),
        }
    }

    fn clean() -> Evidence {
        Evidence {
            samples: vec![sample(5.0, 90, 50), sample(60.0, 100, 60), sample(600.0, 105, 60)],
            warm_up: Duration::from_secs(60),
            active_tenants: 50,
            new_tenants_per_sec: 5,
            quota_window: Duration::from_secs(1),
            ..Evidence::default()
        }
    }

    #[test]
    fn a_clean_run_passes_every_check() {
        let checks = judge(&clean());
        assert!(checks.iter().all(|c| c.passed), "{checks:#?}");
    }

    #[test]
    fn a_queue_burst_at_the_last_sample_is_not_a_leak() {
        // Every fifth sample falls in a burst and reads 12 % more, the last one too.
        let mut e = clean();
        e.samples = (1..=60)
            .map(|i| sample(f64::from(i) * 10.0, if i % 5 == 0 { 112 } else { 100 }, 60))
            .collect();
        assert!(memory_flat(&e).passed, "{:?}", memory_flat(&e));
        // The same burst lasting through the whole last tenth is growth.
        for s in e.samples.iter_mut().filter(|s| s.at_s >= 540.0) {
            s.rss_bytes = 112 << 20;
        }
        assert!(!memory_flat(&e).passed);
    }

    #[test]
    fn each_defect_fails_its_own_check() {
        let failed = |e: Evidence| -> Vec<CheckKind> {
            judge(&e)
                .into_iter()
                .filter(|c| !c.passed)
                .map(|c| c.kind)
                .collect()
        };
        let mut lost = clean();
        lost.submitted = 1;
        assert_eq!(failed(lost), [CheckKind::OutcomesAddUp]);
        let mut over = clean();
        over.downstreams.push(DownstreamReport {
            name: "store",
            cap: 2,
            calls: 3,
            peak: 3,
            over_cap: 1,
            inside: 0,
        });
        assert_eq!(failed(over), [CheckKind::NeverOverCap]);
        let mut leaked = clean();
        leaked.core_in_flight = 1;
        assert_eq!(failed(leaked), [CheckKind::NoSlotLeaked]);
        let mut grew = clean();
        grew.samples.push(sample(700.0, 120, 60));
        assert_eq!(failed(grew), [CheckKind::MemoryFlat]);
        let mut kept = clean();
        kept.samples[1].tenants_tracked = 1000;
        assert_eq!(failed(kept), [CheckKind::TenantsFollowActive]);
    }
}
