//! The `limit-shift` scenario kind (issue 17): a store whose real limit moves during the
//! run, whose latency grows with its load and which refuses every query over its limit,
//! queried by the same seeded jobs under four policies: fixed caps of 50 and 30, an
//! adaptive limit (`[resources.store.adaptive]`), and an oracle whose cap is the store's
//! true limit at every instant (set through `Runtime::set_max_concurrent` at each change:
//! the reference no real policy can see). Each runs the real runtime on a paused clock.

pub mod report;
pub mod scenario;
pub mod store;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;
use tokio::time::Instant;
use weir::{Config, JobSpec, OutcomeKind};
use weir_actors::{Job, Runtime};

use self::report::LimitShiftReport;
use self::scenario::{LimitShiftScenario, LIMIT_SHIFT_TOML, RESOURCE};
use self::store::Store;
use super::incident::block_on;
use super::plot::{self, PlotError, Series};
use super::policies::RunError;
use super::providers::paced;
use super::{RunOptions, ScenarioKind, ScenarioResults, SimulateError, Speed};

/// The policies, in the order reports list them.
pub const POLICIES: [&str; 4] = ["static-50", "static-30", "adaptive", "oracle"];

/// How long before the store's limit falls the oracle lowers its cap (one tick of the
/// tokio timer).
const ORACLE_LEAD: Duration = Duration::from_millis(1);

/// The `limit-shift` kind (see [`ScenarioKind`]).
#[derive(Debug)]
pub struct LimitShiftKind;

impl ScenarioKind for LimitShiftKind {
    fn name(&self) -> &'static str {
        "limit-shift"
    }

    fn builtin(&self) -> &'static str {
        LIMIT_SHIFT_TOML
    }

    fn policies(&self) -> &'static [&'static str] {
        &POLICIES
    }

    fn run(&self, text: &str, options: &RunOptions) -> Result<Box<dyn ScenarioResults>, SimulateError> {
        let mut scenario = LimitShiftScenario::from_toml_str(text)?;
        if let Some(seed) = options.seed {
            scenario.seed = seed;
        }
        let policies = options.selected(&POLICIES);
        Ok(Box::new(run(
            &scenario,
            &policies,
            options.speed,
            &options.progress,
        )?))
    }
}

/// One policy's run.
#[derive(Debug)]
pub struct PolicyRun {
    /// Its report.
    pub report: LimitShiftReport,
    /// Queries in progress at the store after each change.
    pub in_flight: Vec<(Duration, u32)>,
}

/// The results of a limit-shift scenario.
#[derive(Debug)]
pub struct LimitShiftResults {
    /// The scenario as run (after `--seed`).
    pub scenario: LimitShiftScenario,
    /// Jobs in the arrivals.
    pub jobs: u64,
    /// One per policy, in the order of [`POLICIES`].
    pub runs: Vec<PolicyRun>,
}

impl LimitShiftResults {
    /// The report of `policy`, if it ran.
    pub fn report(&self, policy: &str) -> Option<&LimitShiftReport> {
        self.runs.iter().map(|r| &r.report).find(|r| r.policy == policy)
    }
}

/// weir's configuration for `policy`: the scenario's, with the resource's cap fixed for
/// `static-N` and `oracle` (the store's first limit; the run moves it), as it is for
/// `adaptive`.
pub fn policy_config(scenario: &LimitShiftScenario, policy: &str) -> Config {
    let mut config = scenario.weir.clone();
    let resource = config.resources.entry(RESOURCE.to_string()).or_default();
    let cap = match policy {
        "static-50" => Some(50),
        "static-30" => Some(30),
        "oracle" => Some(scenario.store.limit_at(Duration::ZERO)),
        _ => None,
    };
    if let Some(cap) = cap {
        resource.adaptive = None;
        resource.max_concurrent = Some(cap);
    }
    config
}

/// Runs `policies` (names from [`POLICIES`]) on the scenario's arrivals, one after the
/// other, each against a fresh store and runtime in an actix system of its own on a
/// paused clock.
pub fn run(
    scenario: &LimitShiftScenario,
    policies: &[&str],
    speed: Speed,
    progress: &ProgressBar,
) -> Result<LimitShiftResults, RunError> {
    let arrivals = scenario.workload.arrivals(scenario.seed);
    let jobs: u64 = arrivals.iter().map(|&(_, n)| u64::from(n)).sum();
    progress.set_length(jobs * policies.len() as u64);
    let mut runs = Vec::new();
    for &policy in policies {
        progress.set_message(policy.to_string());
        let run = block_on(
            false,
            paced(speed, run_policy(scenario, policy, &arrivals, progress)),
        )?;
        runs.push(run);
    }
    Ok(LimitShiftResults {
        scenario: scenario.clone(),
        jobs,
        runs,
    })
}

/// One policy's run; call inside an actix system.
async fn run_policy(
    scenario: &LimitShiftScenario,
    policy: &str,
    arrivals: &[(Duration, u32)],
    progress: &ProgressBar,
) -> Result<PolicyRun, RunError> {
    let config = policy_config(scenario, policy);
    let ceiling = config.resource(RESOURCE).max_concurrent;
    let runtime = Runtime::start(config)?;
    let store = Arc::new(Store::new(&scenario.store, scenario.seed.wrapping_add(1)));
    let start = Instant::now();
    if policy == "oracle" {
        // The oracle's cap follows the store's limit: down a tick before it falls (the
        // message must reach the supervisor before the grants of that instant, or they
        // would be refused), up the instant it rises. Its cap is never above the limit.
        let (runtime, steps) = (runtime.clone(), scenario.store.limits.clone());
        actix_rt::spawn(async move {
            for (before, step) in steps.iter().zip(steps.iter().skip(1)) {
                let lead = if step.limit < before.limit {
                    ORACLE_LEAD
                } else {
                    Duration::ZERO
                };
                tokio::time::sleep_until(start + step.from.saturating_sub(lead)).await;
                // Never refused: the store's limits were checked against the same range.
                let _ = runtime.set_max_concurrent(RESOURCE, step.limit).await;
            }
        });
    }
    let mut ends = Vec::new();
    for &(at, n) in arrivals {
        tokio::time::sleep_until(start + at).await;
        for _ in 0..n {
            let store = store.clone();
            let (job, handle) = Job::retrying(JobSpec::new("jobs", RESOURCE), move |_ctx| {
                let store = store.clone();
                async move { store.query().await }
            });
            runtime.submit_job(job)?;
            let progress = progress.clone();
            ends.push(actix_rt::spawn(async move {
                let outcome = handle.await;
                progress.inc(1);
                (outcome.kind(), start.elapsed())
            }));
        }
    }
    let ends: Vec<(OutcomeKind, Duration)> = futures::future::join_all(ends)
        .await
        .into_iter()
        .map(|end| end.expect("a waiting task does not panic"))
        .collect();
    let stats = runtime.stats().await;
    runtime.shutdown(Duration::ZERO).await;
    let resource = stats.resources.get(RESOURCE).cloned().unwrap_or_default();
    let counts = store.counts();
    let completed = ends.iter().filter(|(k, _)| *k == OutcomeKind::Completed).count() as u64;
    let report = LimitShiftReport {
        policy: policy.to_string(),
        jobs: ends.len() as u64,
        completed,
        not_completed: ends.len() as u64 - completed,
        calls: counts.calls,
        downstream_rejections: counts.refused,
        rejected_percent: 100.0 * counts.refused as f64 / counts.calls.max(1) as f64,
        makespan_ms: ends
            .iter()
            .map(|(_, at)| at.as_millis() as u64)
            .max()
            .unwrap_or(0),
        peak_in_flight: resource.peak_in_flight,
        store_peak_in_flight: counts.peak,
        ceiling: (policy == "adaptive").then_some(ceiling),
        final_limit: resource.limit,
    };
    Ok(PolicyRun {
        report,
        in_flight: store.timeline(),
    })
}

impl ScenarioResults for LimitShiftResults {
    fn table(&self) -> String {
        let s = &self.scenario;
        let w = &s.workload;
        let steps: Vec<String> = s
            .store
            .limits
            .iter()
            .map(|l| format!("{} from {}", l.limit, humantime::format_duration(l.from)))
            .collect();
        let reports: Vec<LimitShiftReport> = self.runs.iter().map(|r| r.report.clone()).collect();
        format!(
            "limit-shift (seed {}): {} jobs in {} batches {} apart ({} to {} each), one query each\n\
             store: limit {}; latency p50 {} idle, x{} at its limit; refuses every query over it\n\n{}",
            s.seed,
            self.jobs,
            w.batches,
            humantime::format_duration(w.every),
            w.batch_size.min,
            w.batch_size.max,
            steps.join(", "),
            humantime::format_duration(s.store.latency.p50),
            1.0 + s.store.load_latency,
            report::table(&reports)
        )
    }

    fn json(&self) -> serde_json::Value {
        crate::simulate::reports_json(self.runs.iter().map(|r| &r.report))
    }

    fn plot(&self, path: &Path) -> Result<(), PlotError> {
        let end = self
            .runs
            .iter()
            .filter_map(|r| r.in_flight.last().map(|p| p.0))
            .max()
            .unwrap_or_default();
        let mut limit: Vec<(Duration, u32)> = self
            .scenario
            .store
            .limits
            .iter()
            .filter(|l| l.from <= end)
            .map(|l| (l.from, l.limit))
            .collect();
        limit.push((end, self.scenario.store.limit_at(end)));
        let names: Vec<String> = self
            .runs
            .iter()
            .map(|r| format!("{}: in flight at the store", r.report.policy))
            .collect();
        let mut series = vec![Series {
            name: "the store's limit",
            points: &limit,
        }];
        series.extend(self.runs.iter().zip(&names).map(|(r, name)| Series {
            name,
            points: &r.in_flight,
        }));
        let title = format!(
            "limit-shift (seed {}): {} jobs; queries in flight at the store",
            self.scenario.seed, self.jobs
        );
        plot::write_svg(path, &title, &series, &[])
    }
}
