//! `weir simulate --scenario config/providers.toml` (issue 5): two simulated providers
//! that reject calls over their concurrency and rate limits and fail in bursts, run
//! without policies and through weir. Every assertion is about behaviour (limits held,
//! outcomes adding up, rejections with and without the policies, repeatability), never
//! about the figures of one seed.

use std::path::PathBuf;

use indicatif::ProgressBar;
use weir_cli::simulate::providers::report::ProvidersReport;
use weir_cli::simulate::providers::scenario::{ProvidersScenario, PROVIDERS_TOML};
use weir_cli::simulate::providers::{self, ProvidersResults};
use weir_cli::simulate::scenario::ScenarioError;
use weir_cli::simulate::{simulate, SimulateArgs, SimulateError, Speed};

fn run(scenario: &ProvidersScenario, policies: &[&str], speed: Speed) -> ProvidersResults {
    providers::run(scenario, policies, speed, &ProgressBar::hidden()).expect("the run completes")
}

fn error(text: &str) -> ScenarioError {
    ProvidersScenario::from_toml_str(text).unwrap_err()
}

/// The built-in scenario with `from` (which must be in it) replaced by `to`.
fn edited(from: &str, to: &str) -> String {
    assert!(
        PROVIDERS_TOML.contains(from),
        "config/providers.toml has no {from:?}"
    );
    PROVIDERS_TOML.replacen(from, to, 1)
}

/// Every job has exactly one outcome.
fn assert_outcomes_add_up(r: &ProvidersReport, jobs: u64) {
    assert_eq!(r.jobs, jobs, "{r:?}");
    assert_eq!(
        r.completed + r.failed + r.skipped + r.timed_out + r.cancelled,
        jobs,
        "{r:?}"
    );
    assert!(r.budget_exhausted <= r.failed, "{r:?}");
}

#[test]
fn weir_never_exceeds_a_providers_limits_and_every_job_ends_once() {
    let scenario = ProvidersScenario::builtin();
    let results = run(&scenario, &["weir"], Speed::Max);
    let r = results.report("weir").expect("weir ran");
    assert_outcomes_add_up(r, results.jobs);
    for p in &r.providers {
        let spec = scenario.provider(&p.name);
        assert_eq!(p.over_concurrency, 0, "{p:?}");
        assert!(p.peak_in_flight <= spec.max_concurrent, "{p:?}");
        // The limiter runs at safety_factor x the provider's rate: never over it.
        assert_eq!(p.over_rate, 0, "{p:?}");
        assert_eq!(p.calls, p.succeeded + p.rejected(), "{p:?}");
    }
    // Calls stay within attempts x jobs, and within the call budget x jobs.
    let a = &scenario.weir.resources["a"];
    let attempts = u64::from(a.retry.expect("a retries").max_attempts);
    let budget = u64::from(a.call_budget.expect("a has a budget").calls);
    assert!(r.calls <= attempts * r.jobs, "{r:?}");
    assert!(r.calls <= budget * r.jobs, "{r:?}");
}

#[test]
fn during_a_burst_the_breaker_opens_and_jobs_fall_back_to_b() {
    let scenario = ProvidersScenario::builtin();
    assert!(!scenario.providers.a.bursts.is_empty());
    let results = run(&scenario, &["weir"], Speed::Max);
    let r = results.report("weir").expect("weir ran");
    assert!(r.breaker_opens >= 1, "{r:?}");
    assert!(r.fallbacks > 0, "{r:?}");
    assert!(r.retries > 0, "{r:?}");
    let b = &r.providers[1];
    assert_eq!(b.name, "b");
    assert!(b.succeeded > 0, "{b:?}");
    // A's bursts were met (burst failures), and each opened the breaker before many did.
    assert!(r.providers[0].burst_failures > 0, "{r:?}");
}

#[test]
fn without_policies_the_same_seed_is_rejected_and_with_weir_far_less() {
    let scenario = ProvidersScenario::builtin();
    let results = run(&scenario, &["none", "weir"], Speed::Max);
    let none = results.report("none").expect("none ran");
    let weir = results.report("weir").expect("weir ran");
    assert_outcomes_add_up(none, results.jobs);
    assert_outcomes_add_up(weir, results.jobs);
    assert!(none.providers[0].over_concurrency > 0, "{none:?}");
    assert!(none.rejected > weir.rejected, "none {none:?}\nweir {weir:?}");
    // `none` only calls a, at most max_attempts times per job, and never falls back.
    assert_eq!(none.providers[1].calls, 0, "{none:?}");
    assert_eq!((none.fallbacks, none.breaker_opens), (0, 0));
    assert!(none.calls <= u64::from(scenario.none.max_attempts) * none.jobs);
    assert!(weir.completed > none.completed, "none {none:?}\nweir {weir:?}");
}

#[test]
fn the_same_seed_gives_the_same_report_at_any_speed() {
    let scenario = ProvidersScenario::builtin();
    let first = run(&scenario, &["none", "weir"], Speed::Max);
    let again = run(&scenario, &["none", "weir"], Speed::Max);
    let paced = run(&scenario, &["none", "weir"], Speed::Times(1e6));
    let reports =
        |r: &ProvidersResults| -> Vec<ProvidersReport> { r.runs.iter().map(|r| r.report.clone()).collect() };
    assert_eq!(reports(&first), reports(&again));
    assert_eq!(reports(&first), reports(&paced));
    let mut other = scenario.clone();
    other.seed += 1;
    assert_ne!(
        reports(&first),
        reports(&run(&other, &["none", "weir"], Speed::Max))
    );
}

#[test]
fn a_bad_field_is_named_with_what_is_allowed() {
    let e = error(&edited(
        "max_concurrent = 2\nrequests",
        "max_concurrent = 0\nrequests",
    ));
    assert_eq!(
        e.to_string(),
        "providers.a.max_concurrent must be between 1 and 1000000, got 0"
    );
    let e = error(&edited("max_attempts = 4\n\n", "max_attempts = 0\n\n"));
    assert_eq!(
        e.to_string(),
        "none.max_attempts must be between 1 and 100, got 0"
    );
    let e = error(&edited("length = \"1m\"", "length = \"0s\""));
    assert_eq!(
        e.to_string(),
        "providers.a.bursts[0].length must be between 1ms and 1day, got 0s"
    );
    let e = error(&edited("min = 10, max = 40", "min = 10, max = 3"));
    assert_eq!(
        e.to_string(),
        "workload.batch_size.max must be between 10 and 10000, got 3"
    );
    let e = error(&edited("fallback = \"b\"", "fallback = \"c\""));
    assert_eq!(e.field(), "weir.resources.a.fallback", "{e}");
    let e = error(&edited(
        "retry_after = \"20s\"\nbursts",
        "retry_afer = \"20s\"\nbursts",
    ));
    assert!(e.field().starts_with("providers.a"), "{e}");
    assert!(e.to_string().contains("retry_afer"), "{e}");
}

#[test]
fn the_command_runs_the_file_and_refuses_other_kinds_policies() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/providers.toml");
    let args = SimulateArgs {
        scenario: Some(path.clone()),
        policy: "all".into(),
        ..SimulateArgs::default()
    };
    let results = simulate(&args, ProgressBar::hidden()).expect("the file runs");
    let json = results.json();
    let policies: Vec<&str> = json
        .as_array()
        .expect("two reports")
        .iter()
        .map(|r| r["policy"].as_str().unwrap())
        .collect();
    assert_eq!(policies, ["none", "weir"]);
    assert!(results.table().contains("over_concurrency"));

    let args = SimulateArgs {
        scenario: Some(path),
        policy: "naive".into(),
        ..SimulateArgs::default()
    };
    match simulate(&args, ProgressBar::hidden()) {
        Err(e @ SimulateError::Argument { .. }) => assert_eq!(
            e.to_string(),
            "--policy must be one of weir, none, all, got \"naive\""
        ),
        other => panic!("{other:?}"),
    }
}
