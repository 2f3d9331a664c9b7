//! The runtime's snapshot types serialize with stable field names: dashboards and the
//! example service's JSON read these names, so a rename must fail a test. (The core's
//! snapshots are checked in the root tests/snapshot_serde.rs.)

use serde_json::Value;

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

#[test]
fn backend_snapshot_serializes_with_stable_field_names() {
    let json = serde_json::to_value(weir_actors::redis_pool::BackendSnapshot::default()).unwrap();
    assert_eq!(
        keys(&json),
        [
            "backend",
            "backend_errors",
            "fail_open_admissions",
            "grant_latency",
            "grants",
            "lost_leases",
            "reclaimed_leases",
            "released",
            "released_expired",
            "renewals",
            "round_trips"
        ]
    );
    assert_eq!(json["backend"], "in_process");
}
