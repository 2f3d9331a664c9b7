//! The `providers` scenario kind (issue 5): jobs that call a rate-limited provider `a`
//! which fails in bursts, with provider `b` as its fallback, run without any policy
//! (`none`) and through weir's runtime with its per-resource policies (`weir`), on the
//! same seeded arrivals. The simulated providers count, from their side, every call
//! they rejected over their concurrency or rate limit and every call they failed during
//! a burst.
//!
//! `--speed max` (the default) runs each policy on a paused tokio clock. `--speed N`
//! runs the same virtual clock paced to N scenario seconds per wall second (a pacer task
//! blocks the thread for `TICK / N` after every `TICK` of scenario time), so the report
//! is the same whatever the speed; only the progress bar gets time to move.

mod none;
pub mod provider;
pub mod report;
pub mod scenario;
mod weir_run;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;
use weir::OutcomeKind;

use self::provider::Provider;
use self::report::ProvidersReport;
use self::scenario::{ProvidersScenario, PRIMARY, PROVIDERS_TOML, SECONDARY};
use super::incident::block_on;
use super::plot::{self, PlotError, Series};
use super::policies::RunError;
use super::{RunOptions, ScenarioKind, ScenarioResults, SimulateError, Speed};

/// The policies, in the order reports list them.
pub const POLICIES: [&str; 2] = ["none", "weir"];

/// The `providers` kind (see [`ScenarioKind`]).
#[derive(Debug)]
pub struct ProvidersKind;

impl ScenarioKind for ProvidersKind {
    fn name(&self) -> &'static str {
        "providers"
    }

    fn builtin(&self) -> &'static str {
        PROVIDERS_TOML
    }

    fn policies(&self) -> &'static [&'static str] {
        &["weir", "none"]
    }

    fn run(&self, text: &str, options: &RunOptions) -> Result<Box<dyn ScenarioResults>, SimulateError> {
        let mut scenario = ProvidersScenario::from_toml_str(text)?;
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

/// How one job ended, in scenario time from the first arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobEnd {
    /// Its outcome.
    pub outcome: OutcomeKind,
    /// It failed because its call budget ran out.
    pub budget_exhausted: bool,
    /// When it ended.
    pub at: Duration,
}

impl JobEnd {
    /// A job that ended `outcome` at `at`.
    pub fn new(outcome: OutcomeKind, at: Duration) -> Self {
        Self {
            outcome,
            budget_exhausted: false,
            at,
        }
    }
}

/// What a policy counted itself (the providers count calls and rejections).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyTotals {
    /// Calls made again after a failed one.
    pub retries: u64,
    /// Jobs moved to the fallback.
    pub fallbacks: u64,
    /// Times a breaker opened.
    pub breaker_opens: u64,
    /// Grants a rate limit postponed.
    pub limiter_waits: u64,
}

/// One policy's run.
#[derive(Debug)]
pub struct PolicyRun {
    /// Its report.
    pub report: ProvidersReport,
    /// Per provider (`a`, `b`): calls rejected or failed so far, after each one.
    pub rejected: Vec<(&'static str, Vec<(Duration, u32)>)>,
}

/// The results of a providers scenario.
#[derive(Debug)]
pub struct ProvidersResults {
    /// The scenario as run (after `--seed`).
    pub scenario: ProvidersScenario,
    /// Jobs in the arrivals.
    pub jobs: u64,
    /// One per policy, in the order of [`POLICIES`].
    pub runs: Vec<PolicyRun>,
}

impl ProvidersResults {
    /// The report of `policy`, if it ran.
    pub fn report(&self, policy: &str) -> Option<&ProvidersReport> {
        self.runs.iter().map(|r| &r.report).find(|r| r.policy == policy)
    }
}

/// Scenario time between two pauses of the pacer (`--speed N`).
const TICK: Duration = Duration::from_millis(100);

/// Runs `f`; with `Speed::Times(n)` a pacer holds the paused clock to `n` scenario
/// seconds per wall second (see the module docs).
pub(crate) async fn paced<F: std::future::Future>(speed: Speed, f: F) -> F::Output {
    let Speed::Times(factor) = speed else {
        return f.await;
    };
    let pacer = Box::pin(async move {
        loop {
            tokio::time::sleep(TICK).await;
            std::thread::sleep(TICK.div_f64(factor));
        }
    });
    match futures::future::select(Box::pin(f), pacer).await {
        futures::future::Either::Left((out, _)) => out,
        futures::future::Either::Right(((), _)) => unreachable!("the pacer never ends"),
    }
}

/// Runs `policies` (names from [`POLICIES`]) on the scenario's arrivals, one after the
/// other, each against fresh providers and (for weir) a fresh runtime, each in an actix
/// system of its own on a paused clock.
pub fn run(
    scenario: &ProvidersScenario,
    policies: &[&str],
    speed: Speed,
    progress: &ProgressBar,
) -> Result<ProvidersResults, RunError> {
    let arrivals = scenario.arrivals(scenario.seed);
    let jobs: u64 = arrivals.iter().map(|&(_, n)| u64::from(n)).sum();
    progress.set_length(jobs * policies.len() as u64);
    let mut runs = Vec::new();
    for &policy in policies {
        progress.set_message(policy.to_string());
        let run = block_on(
            false,
            paced(speed, async {
                let seed = scenario.seed;
                let a = Arc::new(Provider::new(
                    PRIMARY,
                    &scenario.providers.a,
                    seed.wrapping_add(1),
                ));
                let b = Arc::new(Provider::new(
                    SECONDARY,
                    &scenario.providers.b,
                    seed.wrapping_add(2),
                ));
                let (ends, totals) = if policy == "none" {
                    none::run(&arrivals, scenario.none.max_attempts, &a, progress).await
                } else {
                    weir_run::run(&arrivals, scenario.weir.clone(), &a, &b, progress).await?
                };
                let report = ProvidersReport::new(policy, &ends, totals, vec![a.counts(), b.counts()]);
                Ok::<_, RunError>(PolicyRun {
                    report,
                    rejected: vec![
                        (PRIMARY, a.rejected_timeline()),
                        (SECONDARY, b.rejected_timeline()),
                    ],
                })
            }),
        )?;
        runs.push(run);
    }
    Ok(ProvidersResults {
        scenario: scenario.clone(),
        jobs,
        runs,
    })
}

fn limits(name: &str, p: &scenario::ProviderSpec) -> String {
    let bursts: Vec<String> = p
        .bursts
        .iter()
        .map(|b| {
            format!(
                "{} for {}",
                humantime::format_duration(b.start),
                humantime::format_duration(b.length)
            )
        })
        .collect();
    let bursts = if bursts.is_empty() {
        "no bursts".to_string()
    } else {
        format!(
            "429 bursts at {} (Retry-After {})",
            bursts.join(", "),
            humantime::format_duration(p.retry_after)
        )
    };
    format!(
        "provider {name}: {} at once, {} per {}, {bursts}",
        p.max_concurrent,
        p.requests,
        humantime::format_duration(p.per)
    )
}

impl ScenarioResults for ProvidersResults {
    fn table(&self) -> String {
        let s = &self.scenario;
        let w = &s.workload;
        let reports: Vec<ProvidersReport> = self.runs.iter().map(|r| r.report.clone()).collect();
        format!(
            "providers (seed {}): {} jobs in {} batches {} apart ({} to {} each), one call each\n\
             {}\n{}\n\
             none: calls a at once, retries at once on any failure, {} calls at most; \
             weir: the [weir] configuration, jobs on resource a\n\n{}",
            s.seed,
            self.jobs,
            w.batches,
            humantime::format_duration(w.every),
            w.batch_size.min,
            w.batch_size.max,
            limits(PRIMARY, &s.providers.a),
            limits(SECONDARY, &s.providers.b),
            s.none.max_attempts,
            report::table(&reports)
        )
    }

    fn json(&self) -> serde_json::Value {
        crate::simulate::reports_json(self.runs.iter().map(|r| &r.report))
    }

    fn plot(&self, path: &Path) -> Result<(), PlotError> {
        let names: Vec<String> = self
            .runs
            .iter()
            .flat_map(|r| {
                r.rejected
                    .iter()
                    .map(move |(p, _)| format!("{}: provider {p}", r.report.policy))
            })
            .collect();
        let series: Vec<Series<'_>> = self
            .runs
            .iter()
            .flat_map(|r| r.rejected.iter().map(|(_, points)| points.as_slice()))
            .zip(&names)
            .map(|(points, name)| Series { name, points })
            .collect();
        let title = format!(
            "providers: {} jobs; calls rejected by each provider so far",
            self.jobs
        );
        plot::write_cumulative_svg(path, &title, "calls rejected so far", &series)
    }
}
