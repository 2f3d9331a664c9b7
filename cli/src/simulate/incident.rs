//! The `incident` scenario kind: the same workload run under each chosen policy, one
//! report per policy, side by side.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;
use weir::engine::BatchSchedule;

use super::plot::{self, Level, PlotError, Series};
use super::policies::{self, Policy, RunError, RunRecord};
use super::report::{self, PolicyReport};
use super::scenario::{IncidentScenario, INCIDENT_TOML};
use super::workload::Workload;
use super::{RunOptions, ScenarioKind, ScenarioResults, SimulateError, Speed};

/// The `incident` kind (see [`ScenarioKind`]).
#[derive(Debug)]
pub struct Incident;

impl ScenarioKind for Incident {
    fn name(&self) -> &'static str {
        "incident"
    }

    fn builtin(&self) -> &'static str {
        INCIDENT_TOML
    }

    fn policies(&self) -> &'static [&'static str] {
        &["weir", "naive", "counter"]
    }

    fn run(&self, text: &str, options: &RunOptions) -> Result<Box<dyn ScenarioResults>, SimulateError> {
        let mut scenario = IncidentScenario::from_toml_str(text)?;
        if let Some(seed) = options.seed {
            scenario.seed = seed;
        }
        let policies: Vec<Policy> = Policy::ALL
            .into_iter()
            .filter(|p| options.policies.iter().any(|n| n == p.name()))
            .collect();
        let results = run(&scenario, &policies, options.speed, &options.progress)?;
        Ok(Box::new(results))
    }
}

/// One run of one policy.
#[derive(Debug)]
pub struct PolicyRun {
    /// The policy.
    pub policy: Policy,
    /// What it recorded (scenario time).
    pub record: RunRecord,
    /// Its report.
    pub report: PolicyReport,
}

/// The results of an incident scenario.
#[derive(Debug)]
pub struct IncidentResults {
    /// The scenario as run (after `--seed`).
    pub scenario: IncidentScenario,
    /// Queries in the workload.
    pub queries: usize,
    /// Their service times, summed (scenario time).
    pub total_service: Duration,
    /// Organisation batches.
    pub batches: usize,
    /// The lower bound every policy is measured against.
    pub lower_bound: Duration,
    /// One per policy, in the order of [`Policy::ALL`].
    pub runs: Vec<PolicyRun>,
}

impl RunRecord {
    /// Every time multiplied by `factor` (back from a compressed real-time run).
    fn time_expanded(mut self, factor: f64) -> Self {
        if factor == 1.0 {
            return self;
        }
        let x = |d: &mut Duration| *d = d.mul_f64(factor);
        for q in &mut self.queries {
            q.submitted.as_mut().map(x);
            q.started.as_mut().map(x);
            q.ended.as_mut().map(x);
        }
        self.store.timeline.iter_mut().for_each(|p| x(&mut p.0));
        self
    }
}

/// Runs an actix system on a current-thread tokio runtime, its clock paused (time jumps
/// to the next timer whenever every task is idle) unless `real_time`.
pub(crate) fn block_on<F: std::future::Future>(real_time: bool, f: F) -> F::Output {
    actix_rt::System::with_tokio_rt(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(!real_time)
            .build()
            .expect("a current-thread tokio runtime builds")
    })
    .block_on(f)
}

/// Runs `policies` on the scenario's workload, one after another, each against a fresh
/// store and (for weir) a fresh runtime.
pub fn run(
    scenario: &IncidentScenario,
    policies: &[Policy],
    speed: Speed,
    progress: &ProgressBar,
) -> Result<IncidentResults, RunError> {
    let factor = match speed {
        Speed::Max => 1.0,
        Speed::Times(f) => f,
    };
    let scaled = match speed {
        Speed::Max => scenario.clone(),
        Speed::Times(f) => scenario.time_compressed(f),
    };
    let workload = Arc::new(Workload::generate(&scaled, scenario.seed));
    let full = Workload::generate(scenario, scenario.seed);
    let s = &scenario.scheduler;
    let batches = BatchSchedule::new(s.org_batch_size, s.batch_delay).batches(full.orgs.len());
    let total_service = full.total_service();
    let lower_bound = report::lower_bound(
        total_service,
        full.queries(),
        s.max_concurrent,
        batches,
        s.batch_delay,
    );
    progress.set_length((workload.queries() * policies.len()) as u64);
    let mut runs = Vec::new();
    for &policy in policies {
        progress.set_message(policy.name());
        let record = block_on(
            matches!(speed, Speed::Times(_)),
            policies::run(policy, &scaled, workload.clone(), progress.clone()),
        )?
        .time_expanded(factor);
        let report = PolicyReport::new(policy.name(), &record, lower_bound);
        runs.push(PolicyRun {
            policy,
            record,
            report,
        });
    }
    Ok(IncidentResults {
        scenario: scenario.clone(),
        queries: full.queries(),
        total_service,
        batches,
        lower_bound,
        runs,
    })
}

impl IncidentResults {
    /// The report of `policy`, if it ran.
    pub fn report(&self, policy: Policy) -> Option<&PolicyReport> {
        self.runs.iter().find(|r| r.policy == policy).map(|r| &r.report)
    }
}

impl ScenarioResults for IncidentResults {
    fn table(&self) -> String {
        let s = &self.scenario;
        let sched = &s.scheduler;
        let work = self.total_service / sched.max_concurrent;
        let release = sched.batch_delay * (self.batches.saturating_sub(1) as u32);
        let mean = self.total_service / (self.queries.max(1) as u32);
        let reports: Vec<PolicyReport> = self.runs.iter().map(|r| r.report.clone()).collect();
        format!(
            "incident (seed {}): {} organisations, {} projection queries, {:.0}s of service in all\n\
             store limit {}, cap {}, organisations released {} per {:?}, wait timeout {:?}\n\
             lower bound {:.1}s = max(work/cap {:.1}s, ({} batches - 1) x delay {:.1}s) + mean service {:.2}s\n\n{}",
            s.seed,
            s.workload.organisations,
            self.queries,
            self.total_service.as_secs_f64(),
            s.downstream.limit,
            sched.max_concurrent,
            sched.org_batch_size,
            sched.batch_delay,
            sched.slot_wait_timeout,
            self.lower_bound.as_secs_f64(),
            work.as_secs_f64(),
            self.batches,
            release.as_secs_f64(),
            mean.as_secs_f64(),
            report::table(&reports)
        )
    }

    fn json(&self) -> serde_json::Value {
        crate::simulate::reports_json(self.runs.iter().map(|r| &r.report))
    }

    fn plot(&self, path: &Path) -> Result<(), PlotError> {
        let series: Vec<Series<'_>> = self
            .runs
            .iter()
            .map(|r| Series {
                name: r.policy.name(),
                points: &r.record.store.timeline,
            })
            .collect();
        let levels = [
            Level {
                name: "cap (max_concurrent)",
                value: self.scenario.scheduler.max_concurrent,
            },
            Level {
                name: "store limit",
                value: self.scenario.downstream.limit,
            },
        ];
        let title = format!(
            "incident: {} organisations, {} queries; queries in flight at the store",
            self.scenario.workload.organisations, self.queries
        );
        plot::write_svg(path, &title, &series, &levels)
    }
}
