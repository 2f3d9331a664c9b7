//! The `unknown-rate` scenario kind (issue 26): jobs call a provider whose true rate limit
//! and concurrency limit move during the run and which refuses with a 429 and the exact
//! Retry-After, with a fallback of lower limits, under four policies: a fixed rate and
//! cap guessed high, one guessed low, a learned rate and concurrency limit under ceilings
//! ten times the provider's (`rate_limit.adaptive`, `[resources.a.adaptive]`), and an
//! oracle given the true rate and limit at every instant (through `Runtime::reconfigure`
//! at each phase: the reference no real policy can see). Each runs the real runtime on a
//! paused clock, against the providers kind's simulated providers, and reports with its
//! report; the plot draws each policy's rate of resource a against the true one.

pub mod scenario;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::ProgressBar;
use serde::Serialize;
use tokio::time::Instant;
use weir::{AdaptiveConfig, AdaptiveRateConfig, Config, JobError, JobSpec, Outcome, RateLimitConfig};
use weir_actors::{Job, JobContext, Runtime};

use self::scenario::{UnknownRateScenario, UNKNOWN_RATE_TOML};
use super::incident::block_on;
use super::plot::{self, PlotError, Series};
use super::policies::RunError;
use super::providers::provider::{Provider, ProviderCounts};
use super::providers::report::{self as providers_report, ProvidersReport};
use super::providers::scenario::{PRIMARY, SECONDARY};
use super::providers::{paced, JobEnd, PolicyTotals};
use super::{RunOptions, ScenarioKind, ScenarioResults, SimulateError, Speed};

/// The policies, in the order reports list them.
pub const POLICIES: [&str; 5] = [
    "static-guess-high",
    "static-guess-low",
    "adaptive",
    "oracle",
    "adaptive-replicas",
];

/// How often the plot samples resource a's rate.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// The `unknown-rate` kind (see [`ScenarioKind`]).
#[derive(Debug)]
pub struct UnknownRateKind;

impl ScenarioKind for UnknownRateKind {
    fn name(&self) -> &'static str {
        "unknown-rate"
    }

    fn builtin(&self) -> &'static str {
        UNKNOWN_RATE_TOML
    }

    fn policies(&self) -> &'static [&'static str] {
        &POLICIES
    }

    fn run(&self, text: &str, options: &RunOptions) -> Result<Box<dyn ScenarioResults>, SimulateError> {
        let mut scenario = UnknownRateScenario::from_toml_str(text)?;
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

/// One policy's results: the providers kind's report and what this kind adds (the
/// fields of `--json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct UnknownRateReport {
    /// Jobs, outcomes, calls and rejections as the providers kind counts them.
    #[serde(flatten)]
    pub base: ProvidersReport,
    /// 429s from both providers (the providers' `rejected`).
    pub downstream_rejections: u64,
    /// Calls that reached a provider during a pause it had announced with a Retry-After.
    pub calls_in_pause: u64,
    /// Times resource a's learned rate was cut (0 without one).
    pub rate_cuts: u64,
    /// `downstream_rejections / calls`.
    pub rejection_share: f64,
    /// `makespan_ms` over the oracle's, if the oracle ran.
    pub makespan_vs_oracle: Option<f64>,
}

/// One policy's run.
#[derive(Debug)]
pub struct PolicyRun {
    /// Its report.
    pub report: UnknownRateReport,
    /// Resource a's rate (requests per second) as the policy had it, sampled.
    pub rate: Vec<(Duration, u32)>,
}

/// The results of an unknown-rate scenario.
#[derive(Debug)]
pub struct UnknownRateResults {
    /// The scenario as run (after `--seed`).
    pub scenario: UnknownRateScenario,
    /// Jobs in the arrivals.
    pub jobs: u64,
    /// One per policy, in the order of [`POLICIES`].
    pub runs: Vec<PolicyRun>,
}

impl UnknownRateResults {
    /// The report of `policy`, if it ran.
    pub fn report(&self, policy: &str) -> Option<&UnknownRateReport> {
        self.runs
            .iter()
            .map(|r| &r.report)
            .find(|r| r.base.policy == policy)
    }
}

/// Provider a's true rate (requests per `per`) and limit at `at`, as a weir rate limit.
fn true_rate(scenario: &UnknownRateScenario, at: Duration) -> (u32, RateLimitConfig) {
    let a = &scenario.providers.a;
    let (limit, requests) = a.limits_at(at);
    let rate = RateLimitConfig {
        requests,
        per: a.per,
        ..RateLimitConfig::default()
    };
    (limit, rate)
}

/// weir's configuration for `policy`: the scenario's, with resource a's cap and rate as
/// the policy says (the oracle's as the provider's at time 0; the run moves them).
pub fn policy_config(scenario: &UnknownRateScenario, policy: &str) -> Config {
    let mut config = scenario.weir.clone();
    let per = scenario.providers.a.per;
    let p = &scenario.policies;
    let a = config.resources.entry(PRIMARY.to_string()).or_default();
    let fixed = |requests| RateLimitConfig {
        requests,
        per,
        ..RateLimitConfig::default()
    };
    match policy {
        "static-guess-high" | "static-guess-low" => {
            let s = if policy == "static-guess-high" {
                p.static_guess_high
            } else {
                p.static_guess_low
            };
            a.max_concurrent = Some(s.max_concurrent);
            a.rate_limit = Some(fixed(s.requests));
        }
        "adaptive" | "adaptive-replicas" => {
            let s = p.adaptive;
            a.max_concurrent = Some(s.max_concurrent);
            a.adaptive = Some(AdaptiveConfig {
                min: s.min,
                initial: Some(s.initial),
                ..AdaptiveConfig::default()
            });
            a.rate_limit = Some(RateLimitConfig {
                adaptive: Some(AdaptiveRateConfig {
                    min: s.min,
                    initial: Some(s.initial),
                }),
                ..fixed(s.requests)
            });
        }
        _ => {
            let (limit, rate) = true_rate(scenario, Duration::ZERO);
            a.max_concurrent = Some(limit);
            a.rate_limit = Some(rate);
        }
    }
    config
}

/// Runs `policies` (names from [`POLICIES`]) on the scenario's arrivals, one after the
/// other, each against fresh providers and a fresh runtime in an actix system of its own
/// on a paused clock.
pub fn run(
    scenario: &UnknownRateScenario,
    policies: &[&str],
    speed: Speed,
    progress: &ProgressBar,
) -> Result<UnknownRateResults, RunError> {
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
    let oracle = runs
        .iter()
        .find(|r| r.report.base.policy == "oracle")
        .map(|r| r.report.base.makespan_ms);
    for r in &mut runs {
        r.report.makespan_vs_oracle = oracle
            .filter(|&o| o > 0)
            .map(|o| r.report.base.makespan_ms as f64 / o as f64);
    }
    Ok(UnknownRateResults {
        scenario: scenario.clone(),
        jobs,
        runs,
    })
}

/// One policy's run; call inside an actix system.
async fn run_policy(
    scenario: &UnknownRateScenario,
    policy: &str,
    arrivals: &[(Duration, u32)],
    progress: &ProgressBar,
) -> Result<PolicyRun, RunError> {
    let config = policy_config(scenario, policy);
    // `adaptive-replicas`: that many runtimes, sharing nothing (as processes without
    // Redis would), each given every n-th job, against the same providers.
    let replicas = if policy == "adaptive-replicas" {
        scenario.policies.replicas.max(1)
    } else {
        1
    };
    let runtimes = (0..replicas)
        .map(|_| Runtime::start(config.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let runtime = runtimes[0].clone();
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
    let start = Instant::now();
    let per_second = 1.0 / scenario.providers.a.per.as_secs_f64();
    if policy == "oracle" {
        // The oracle's cap and rate follow the provider's at each phase.
        let (runtime, scenario, mut config) = (runtime.clone(), scenario.clone(), config.clone());
        actix_rt::spawn(async move {
            for phase in &scenario.providers.a.phases {
                tokio::time::sleep_until(start + phase.at).await;
                let (limit, rate) = true_rate(&scenario, phase.at);
                let r = config.resources.entry(PRIMARY.to_string()).or_default();
                r.max_concurrent = Some(limit);
                r.rate_limit = Some(rate);
                // Never refused: the phases were checked against the same ranges.
                let _ = runtime.reconfigure(config.clone()).await;
            }
        });
    }
    // Resource a's rate as the policy has it (summed over replicas), for the plot.
    let rate = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (runtimes, rate) = (runtimes.clone(), rate.clone());
        let fixed = config.resources[PRIMARY].rate_limit.clone();
        let (scenario, oracle) = (scenario.clone(), policy == "oracle");
        actix_rt::spawn(async move {
            loop {
                let at = start.elapsed();
                let mut learned = None;
                for runtime in &runtimes {
                    let stats = runtime.stats().await;
                    if let Some(l) = stats
                        .resources
                        .get(PRIMARY)
                        .and_then(|r| r.resilience.learned_requests)
                    {
                        *learned.get_or_insert(0) += l;
                    }
                }
                let requests = match (learned, oracle) {
                    (Some(l), _) => l as f64,
                    (None, true) => f64::from(true_rate(&scenario, at).1.requests),
                    (None, false) => fixed.as_ref().map_or(0.0, |r| f64::from(r.requests)),
                };
                rate.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((at, (requests * per_second).round() as u32));
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        })
    };
    let mut ends = Vec::new();
    let mut next = 0usize;
    for &(at, jobs) in arrivals {
        tokio::time::sleep_until(start + at).await;
        for _ in 0..jobs {
            let (a, b) = (a.clone(), b.clone());
            let (job, handle) = Job::retrying(JobSpec::new("jobs", PRIMARY), move |ctx: JobContext| {
                let provider = if ctx.resource().as_str() == SECONDARY {
                    b.clone()
                } else {
                    a.clone()
                };
                // Every 429 is an overload refusal, with its Retry-After if it had one.
                async move { provider.call().await.map_err(|e| JobError::from(e).overloaded()) }
            });
            runtimes[next % runtimes.len()].submit_job(job)?;
            next += 1;
            let progress = progress.clone();
            ends.push(actix_rt::spawn(async move {
                let outcome = handle.await;
                progress.inc(1);
                let mut end = JobEnd::new(outcome.kind(), start.elapsed());
                end.budget_exhausted = matches!(outcome, Outcome::Failed(JobError::BudgetExhausted { .. }));
                end
            }));
        }
    }
    let ends: Vec<JobEnd> = futures::future::join_all(ends)
        .await
        .into_iter()
        .map(|end| end.expect("a waiting task does not panic"))
        .collect();
    sampler.abort();
    let mut totals = PolicyTotals::default();
    let mut rate_cuts = 0;
    for runtime in &runtimes {
        let stats = runtime.stats().await;
        runtime.shutdown(Duration::ZERO).await;
        for r in stats.resources.values() {
            totals.retries += r.resilience.retries;
            totals.fallbacks += r.resilience.fallbacks;
            totals.breaker_opens += r.resilience.opened;
            totals.limiter_waits += r.resilience.limiter_waits;
        }
        rate_cuts += stats.resources.get(PRIMARY).map_or(0, |r| r.resilience.rate_cuts);
    }
    let providers = vec![a.counts(), b.counts()];
    let calls_in_pause = providers.iter().map(|p| p.calls_in_pause).sum();
    let base = ProvidersReport::new(policy, &ends, totals, providers);
    let rate = rate.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(PolicyRun {
        report: UnknownRateReport {
            downstream_rejections: base.rejected,
            rejection_share: base.rejected as f64 / base.calls.max(1) as f64,
            calls_in_pause,
            rate_cuts,
            makespan_vs_oracle: None,
            base,
        },
        rate,
    })
}

fn limits(p: &super::providers::scenario::ProviderSpec) -> String {
    let per = humantime::format_duration(p.per);
    let mut phases: Vec<String> = p
        .phases
        .iter()
        .map(|ph| {
            format!(
                "from {}: {} at once, {} per {per}",
                humantime::format_duration(ph.at),
                ph.max_concurrent,
                ph.requests
            )
        })
        .collect();
    if phases.is_empty() {
        phases.push(format!("{} at once, {} per {per}", p.max_concurrent, p.requests));
    }
    phases.join("; ")
}

impl ScenarioResults for UnknownRateResults {
    fn table(&self) -> String {
        let s = &self.scenario;
        let w = &s.workload;
        let mut out = format!(
            "unknown-rate (seed {}): {} jobs in {} batches {} apart, one call each\n\
             provider a: {}\nprovider b (a's fallback): {}\n\n",
            s.seed,
            self.jobs,
            w.batches,
            humantime::format_duration(w.every),
            limits(&s.providers.a),
            limits(&s.providers.b),
        );
        let heads = [
            "completed",
            "calls",
            "429s",
            "429_share",
            "in_pause",
            "rate_cuts",
            "makespan",
            "vs_oracle",
        ];
        out += &format!("{:<18}", "policy");
        for h in heads {
            out += &format!("{h:>11}");
        }
        out += "\n";
        for r in self.runs.iter().map(|r| &r.report) {
            let b = &r.base;
            let cells = [
                format!("{}/{}", b.completed, b.jobs),
                b.calls.to_string(),
                r.downstream_rejections.to_string(),
                format!("{:.1}%", r.rejection_share * 100.0),
                r.calls_in_pause.to_string(),
                r.rate_cuts.to_string(),
                format!("{:.1}s", b.makespan_ms as f64 / 1e3),
                r.makespan_vs_oracle.map_or("-".into(), |v| format!("{v:.2}x")),
            ];
            out += &format!("{:<18}", b.policy);
            for c in cells {
                out += &format!("{c:>11}");
            }
            out += "\n";
        }
        let bases: Vec<ProvidersReport> = self.runs.iter().map(|r| r.report.base.clone()).collect();
        out + "\n" + &providers_report::table(&bases)
    }

    fn json(&self) -> serde_json::Value {
        crate::simulate::reports_json(self.runs.iter().map(|r| &r.report))
    }

    fn plot(&self, path: &Path) -> Result<(), PlotError> {
        let end = self
            .runs
            .iter()
            .filter_map(|r| r.rate.last())
            .map(|p| p.0)
            .max()
            .unwrap_or_default();
        let per_second = 1.0 / self.scenario.providers.a.per.as_secs_f64();
        let mut truth = Vec::new();
        let mut at = Duration::ZERO;
        while at <= end {
            let requests = f64::from(self.scenario.providers.a.limits_at(at).1);
            truth.push((at, (requests * per_second).round() as u32));
            at += SAMPLE_EVERY;
        }
        let names: Vec<String> = self
            .runs
            .iter()
            .map(|r| format!("{}: rate of a", r.report.base.policy))
            .collect();
        let mut series: Vec<Series<'_>> = vec![Series {
            name: "provider a's true rate",
            points: &truth,
        }];
        series.extend(
            self.runs
                .iter()
                .zip(&names)
                .filter(|(r, _)| r.report.base.policy != "oracle")
                .map(|(r, name)| Series {
                    name,
                    points: &r.rate,
                }),
        );
        let title = format!(
            "unknown-rate: {} jobs; requests per second, learned and true",
            self.jobs
        );
        plot::write_cumulative_svg(path, &title, "requests per second", &series)
    }
}

/// What one provider counted, for tests.
pub fn provider_counts(report: &UnknownRateReport, name: &str) -> Option<ProviderCounts> {
    report.base.providers.iter().find(|p| p.name == name).cloned()
}
