//! The snapshot types serialize with stable field names (issue 15 item 2): dashboards and
//! the example service's JSON read these names, so a rename must fail a test.

use std::time::Duration;

use serde_json::Value;
use weir::{Config, Event, JobSpec, OutcomeKind, Scheduler};

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

fn core_with_a_finished_job() -> (Scheduler<()>, Duration) {
    let config = Config::from_toml_str(
        r#"
        [resources.store]
        breaker = { error_rate = 0.5, window = "60s", min_calls = 5, cooldown = "10s" }

        [quotas.per_user]
        windows = [{ limit = 10, per = "1m" }]
        cost_budget = 5000000
        cost_window = "1day"
        "#,
    )
    .unwrap();
    let mut core = Scheduler::new(config);
    let now = Duration::ZERO;
    core.submit(JobSpec::new("acme", "store"), (), now);
    let mut events = Vec::new();
    core.poll(now, &mut events);
    let key = events
        .iter()
        .find_map(|e| match e {
            Event::Granted { key, .. } => Some(*key),
            _ => None,
        })
        .expect("one grant");
    let end = Duration::from_millis(1500);
    core.complete(key, OutcomeKind::Completed, end).unwrap();
    (core, end)
}

#[test]
fn stats_snapshot_serializes_with_stable_field_names_and_durations_in_seconds() {
    let (core, now) = core_with_a_finished_job();
    let json = serde_json::to_value(core.snapshot(now)).unwrap();
    assert_eq!(
        keys(&json),
        ["at", "quota_tenants", "reconfigurations", "resources"]
    );
    assert_eq!(json["at"], 1.5);
    // acme's quota window still holds its one admission.
    assert_eq!(json["quota_tenants"], 1);
    assert_eq!(json["reconfigurations"], 0);
    let store = &json["resources"]["store"];
    assert_eq!(
        keys(store),
        [
            "cap",
            "deferred",
            "fairness",
            "in_flight",
            "limit",
            "outcomes",
            "overdue",
            "peak_in_flight",
            "queued",
            "resilience",
            "run",
            "submitted",
            "wait"
        ]
    );
    assert_eq!(
        keys(&store["outcomes"]),
        ["cancelled", "completed", "failed", "skipped", "timed_out"]
    );
    assert_eq!(store["outcomes"]["completed"], 1);
    // No adaptive limit: the limit grants follow is the cap.
    assert_eq!(store["limit"], store["cap"]);
    assert_eq!(keys(&store["run"]), ["count", "max", "p50", "p90", "p99", "p999"]);
    // hdrhistogram keeps 3 significant figures: 1.5 s comes back within 0.1 %.
    let p50 = store["run"]["p50"].as_f64().unwrap();
    assert!((p50 - 1.5).abs() < 0.002, "run p50 {p50}");
    assert_eq!(
        keys(&store["fairness"]),
        ["active_tenants", "jain_index", "worst_p99_wait"]
    );
    assert_eq!(
        keys(&store["resilience"]),
        [
            "attempts",
            "breaker",
            "fallbacks",
            "learned_requests",
            "limiter_waits",
            "opened",
            "overloads",
            "paused_waits",
            "rate_cuts",
            "retries",
            "returned",
            "transitions",
            "window_calls",
            "window_failures"
        ]
    );
    assert_eq!(store["resilience"]["breaker"], "closed");
    // No learned rate on this resource (issue 26): null, not left out.
    assert_eq!(store["resilience"]["learned_requests"], serde_json::Value::Null);
}

#[test]
fn usage_snapshot_serializes_windows_and_budgets_with_stable_field_names() {
    let (core, now) = core_with_a_finished_job();
    let json = serde_json::to_value(core.usage(&"acme".into(), now)).unwrap();
    assert_eq!(keys(&json), ["at", "costs", "windows"]);
    let window = &json["windows"][0];
    assert_eq!(
        keys(window),
        [
            "current",
            "limit",
            "quota",
            "remaining",
            "reset",
            "scope",
            "window"
        ]
    );
    assert_eq!(window["quota"], "per_user");
    assert_eq!(window["scope"], "tenant");
    assert_eq!(window["window"], 60.0);
    assert_eq!(
        (window["current"].as_u64(), window["remaining"].as_u64()),
        (Some(1), Some(9))
    );
    let cost = &json["costs"][0];
    assert_eq!(
        keys(cost),
        [
            "budget",
            "quota",
            "remaining",
            "reserved",
            "scope",
            "spent",
            "window"
        ]
    );
    assert_eq!(cost["budget"], 5_000_000);
}
