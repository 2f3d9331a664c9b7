//! `weir simulate --scenario config/limit-shift.toml` (issue 17): a store whose limit
//! moves during the run and which refuses every query over it, queried under fixed caps,
//! an adaptive limit and an oracle. Assertions are about behaviour (the ceiling held,
//! outcomes adding up, who is refused and who is not, repeatability), on a shorter
//! version of the built-in scenario, never about the figures of one seed.

use indicatif::ProgressBar;
use weir_cli::simulate::limit_shift::scenario::{LimitShiftScenario, LIMIT_SHIFT_TOML};
use weir_cli::simulate::limit_shift::{self, LimitShiftKind, LimitShiftResults};
use weir_cli::simulate::{RunOptions, ScenarioKind, Speed};

/// The built-in scenario with each `(from, to)` replaced (each `from` must be in it).
fn edited(edits: &[(&str, &str)]) -> String {
    let mut text = LIMIT_SHIFT_TOML.to_string();
    for (from, to) in edits {
        assert!(text.contains(from), "config/limit-shift.toml has no {from:?}");
        text = text.replacen(from, to, 1);
    }
    text
}

/// The built-in shape, shorter: fewer and smaller batches, the limit moving at 10 s and
/// 25 s instead of 1 min and 150 s.
fn short() -> String {
    edited(&[
        ("batches = 20", "batches = 8"),
        ("every = \"10s\"", "every = \"5s\""),
        (
            "batch_size = { min = 2400, max = 3600 }",
            "batch_size = { min = 300, max = 500 }",
        ),
        ("{ from = \"1m\", limit = 40 }", "{ from = \"10s\", limit = 40 }"),
        (
            "{ from = \"150s\", limit = 120 }",
            "{ from = \"25s\", limit = 120 }",
        ),
    ])
}

fn run(text: &str, policies: &[&str]) -> LimitShiftResults {
    let scenario = LimitShiftScenario::from_toml_str(text).expect("a valid scenario");
    limit_shift::run(&scenario, policies, Speed::Max, &ProgressBar::hidden()).expect("the run completes")
}

#[test]
fn every_policy_completes_every_job_and_adaptive_stays_under_its_ceiling() {
    let results = run(&short(), &limit_shift::POLICIES);
    for r in results.runs.iter().map(|r| &r.report) {
        assert_eq!(r.jobs, results.jobs, "{r:?}");
        assert_eq!(
            r.completed, r.jobs,
            "every job's query is served in the end: {r:?}"
        );
        // Every query is served once (its job completes) or refused.
        assert_eq!(r.calls, r.completed + r.downstream_rejections, "{r:?}");
    }
    let adaptive = results.report("adaptive").expect("adaptive ran");
    let ceiling = adaptive.ceiling.expect("adaptive reports its ceiling");
    assert_eq!(ceiling, 150);
    assert!(adaptive.peak_in_flight <= ceiling, "{adaptive:?}");
    for fixed in ["static-50", "static-30", "oracle"] {
        assert_eq!(results.report(fixed).expect("ran").ceiling, None);
    }
    // The oracle's cap is the store's limit at every instant: never refused.
    let oracle = results.report("oracle").expect("oracle ran");
    assert_eq!(oracle.downstream_rejections, 0, "{oracle:?}");
    // A cap of 50 is over the store's limit of 40 for a while: refused, again and again.
    let over = results.report("static-50").expect("static-50 ran");
    assert!(over.downstream_rejections > 0, "{over:?}");
    // The adaptive limit is refused too (it finds the limit by probing), far less often.
    assert!(
        adaptive.downstream_rejections < over.downstream_rejections,
        "{adaptive:?} {over:?}"
    );
}

#[test]
fn a_run_repeats_exactly_on_the_paused_clock() {
    let first = run(&short(), &["adaptive"]);
    let second = run(&short(), &["adaptive"]);
    assert_eq!(first.runs[0].report, second.runs[0].report);
    assert_eq!(first.runs[0].in_flight, second.runs[0].in_flight);
}

#[test]
fn json_has_one_object_per_policy_and_a_ceiling_for_adaptive_only() {
    let options = RunOptions {
        policies: vec!["adaptive".into(), "oracle".into()],
        seed: Some(2),
        speed: Speed::Max,
        progress: ProgressBar::hidden(),
    };
    let results = LimitShiftKind.run(&short(), &options).expect("the run completes");
    let json = results.json();
    let reports = json.as_array().expect("an array for two policies");
    assert_eq!(reports.len(), 2);
    for r in reports {
        for field in [
            "policy",
            "calls",
            "downstream_rejections",
            "makespan_ms",
            "peak_in_flight",
        ] {
            assert!(r.get(field).is_some(), "no {field} in {r}");
        }
        let adaptive = r["policy"] == "adaptive";
        assert_eq!(r.get("ceiling").is_some(), adaptive, "{r}");
    }
    assert!(results.table().contains("limit-shift (seed 2)"));
}

#[test]
fn errors_name_the_field() {
    let e = LimitShiftScenario::from_toml_str(&edited(&[(
        "{ from = \"150s\", limit = 120 }",
        "{ from = \"30s\", limit = 120 }",
    )]))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "store.limits[2].from must be after the step before (1m), got 30s"
    );
    let e =
        LimitShiftScenario::from_toml_str(&edited(&[("min = 5, initial = 20", "min = 200, initial = 20")]))
            .unwrap_err();
    assert_eq!(
        e.to_string(),
        "weir.resources.store.adaptive.min must be between 1 and max_concurrent (150), got 200"
    );
    let e = LimitShiftScenario::from_toml_str(&edited(&[("load_latency = 1.0", "load_latency = -1.0")]))
        .unwrap_err();
    assert_eq!(e.field(), "store.load_latency");
}
