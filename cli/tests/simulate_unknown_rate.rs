//! `weir simulate --scenario config/unknown-rate.toml` (issue 26): a provider whose rate
//! and concurrency limits move and which refuses with 429 and a Retry-After, called under
//! fixed guesses, a learned rate and an oracle. Assertions are about behaviour (outcomes
//! add up, no call during an announced pause under the learned rate, who is refused and
//! who is slow), on a shorter version of the built-in scenario, never about the figures
//! of one seed.

use indicatif::ProgressBar;
use weir_cli::simulate::unknown_rate::scenario::{UnknownRateScenario, UNKNOWN_RATE_TOML};
use weir_cli::simulate::unknown_rate::{self, UnknownRateResults};
use weir_cli::simulate::Speed;

/// The built-in shape, shorter: two smaller batches, the limits moving at 10 s and 20 s.
fn short() -> String {
    let mut text = UNKNOWN_RATE_TOML.to_string();
    for (from, to) in [
        ("batches = 4", "batches = 2"),
        ("every = \"20s\"", "every = \"5s\""),
        (
            "batch_size = { min = 1000, max = 1400 }",
            "batch_size = { min = 400, max = 500 }",
        ),
        ("at = \"40s\"", "at = \"10s\""),
        ("at = \"80s\"", "at = \"20s\""),
    ] {
        assert!(text.contains(from), "config/unknown-rate.toml has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    text
}

fn run(text: &str, policies: &[&str]) -> UnknownRateResults {
    let scenario = UnknownRateScenario::from_toml_str(text).expect("a valid scenario");
    unknown_rate::run(&scenario, policies, Speed::Max, &ProgressBar::hidden()).expect("the run completes")
}

#[test]
fn the_learned_rate_completes_every_job_without_calling_into_a_pause() {
    let results = run(&short(), &unknown_rate::POLICIES);
    for r in results.runs.iter().map(|r| &r.report) {
        assert_eq!(r.base.jobs, results.jobs, "{r:?}");
        assert_eq!(
            r.base.completed, r.base.jobs,
            "every job's call is served in the end: {r:?}"
        );
        // Every call is served once (its job completes) or refused.
        assert_eq!(r.base.calls, r.base.completed + r.downstream_rejections, "{r:?}");
    }
    let adaptive = results.report("adaptive").expect("adaptive ran");
    assert!(
        adaptive.downstream_rejections > 0,
        "it learns by being refused: {adaptive:?}"
    );
    assert!(adaptive.rate_cuts > 0, "{adaptive:?}");
    assert_eq!(adaptive.calls_in_pause, 0, "{adaptive:?}");
    // A fixed rate above the provider's keeps calling into the pauses it is given.
    let high = results.report("static-guess-high").expect("ran");
    assert!(high.calls_in_pause > 0, "{high:?}");
    assert!(
        adaptive.rejection_share * 10.0 < high.rejection_share,
        "{adaptive:?} {high:?}"
    );
    // A fixed rate below it is never refused and is slow.
    let low = results.report("static-guess-low").expect("ran");
    assert_eq!(low.downstream_rejections, 0, "{low:?}");
    assert!(
        low.base.makespan_ms > adaptive.base.makespan_ms,
        "{low:?} {adaptive:?}"
    );
    // The rate was sampled for the plot, and moved.
    let rates = &results
        .runs
        .iter()
        .find(|r| r.report.base.policy == "adaptive")
        .expect("ran")
        .rate;
    let (lo, hi) = rates
        .iter()
        .fold((u32::MAX, 0), |(lo, hi), &(_, r)| (lo.min(r), hi.max(r)));
    assert!(hi > lo, "{rates:?}");
}

#[test]
fn a_run_repeats_exactly_on_the_paused_clock() {
    let first = run(&short(), &["adaptive"]);
    let second = run(&short(), &["adaptive"]);
    assert_eq!(first.runs[0].report, second.runs[0].report);
}

#[test]
fn errors_name_the_field() {
    let bad = UNKNOWN_RATE_TOML.replace("at = \"80s\"", "at = \"30s\"");
    let bad = bad.replace("at = \"40s\"", "at = \"50s\"");
    let e = UnknownRateScenario::from_toml_str(&bad).unwrap_err().to_string();
    assert!(e.starts_with("providers.a.phases[2].at must be between"), "{e}");
}
