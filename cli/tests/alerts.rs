//! The alerts scenario (issue 7) on config/alerts.toml: coalescing cuts downstream
//! queries at least 7.5x, every check gets the same answer with and without it, the
//! store refuses nothing, and the interval table runs fewer checks.

use weir_cli::alerts::{run_all, AlertsScenario, ALERTS_TOML};

#[test]
fn coalescing_cuts_queries_7_5x_with_identical_answers_and_no_rejections() {
    let scenario = AlertsScenario::from_toml_str(ALERTS_TOML).unwrap();
    let report = run_all(&scenario).unwrap();
    println!("{}", report.table());
    assert_eq!(report.runs.len(), 4);
    for run in &report.runs {
        assert!(run.checks > 0, "{}: no checks ran", run.name);
        assert_eq!(run.rejected, 0, "{}: the store refused queries", run.name);
        assert_eq!(run.failed_checks, 0, "{}: checks failed", run.name);
        assert_eq!(
            run.answers.len() as u64,
            run.checks,
            "{}: one answer per check",
            run.name
        );
        assert!(run.peak_concurrency <= u64::from(scenario.store.limit));
        assert!(run.latency_p50 <= run.latency_p99 && !run.latency_p99.is_zero());
        if !run.coalesce {
            assert_eq!(run.queries, run.checks, "{}: one query per check", run.name);
        }
    }
    for intervals in [false, true] {
        let x = report.query_reduction(intervals).unwrap();
        assert!(x >= 7.5, "only {x:.2}x fewer queries (intervals: {intervals})");
        assert_eq!(
            report.answers_match(intervals),
            Some(true),
            "intervals: {intervals}"
        );
    }
    let checks = |c, i| {
        report
            .runs
            .iter()
            .find(|r| r.coalesce == c && r.intervals == i)
            .unwrap()
            .checks
    };
    assert!(
        checks(false, true) < checks(false, false),
        "the interval table runs fewer checks"
    );
}

#[test]
fn bad_scenarios_name_the_field() {
    let cases = [
        (
            "projects = 40",
            "projects = 0",
            "projects must be between 1 and 100000, got 0",
        ),
        (
            "kind = \"alerts\"",
            "kind = \"incident\"",
            "kind must be \"alerts\", got \"incident\"",
        ),
        (
            "max_batch = 500",
            "max_batch = 0",
            "weir.coalesce.counts.max_batch must be between 1 and 1000000, got 0",
        ),
        (
            "window = \"5m\"",
            "window = \"0s\"",
            "rules[0].window must be between 1s and 30days, got 0s",
        ),
    ];
    for (from, to, message) in cases {
        let err = AlertsScenario::from_toml_str(&ALERTS_TOML.replacen(from, to, 1)).unwrap_err();
        assert_eq!(err.to_string(), message);
    }
    let err = AlertsScenario::from_toml_str(&ALERTS_TOML.replace("seed = 7", "sede = 7")).unwrap_err();
    assert!(err.to_string().contains("sede"), "{err}");
}
