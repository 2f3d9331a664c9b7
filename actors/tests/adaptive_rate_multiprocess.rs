//! Four OS processes learn the rate of one downstream that none of them is told (issue
//! 26), sharing nothing: each replica adapts on its own, and their rates settle at shares
//! of the downstream's. The downstream is a real server on loopback (counting calls,
//! 429s and calls during a pause it announced); the replicas are this test binary re-run
//! as children (`replica_process`, an ignored test the parent runs with `--ignored
//! --exact`), as in shared_limits_multiprocess.rs.

#[path = "common/adaptive_replicas.rs"]
mod adaptive_replicas;
#[path = "common/rate_downstream.rs"]
mod rate_downstream;

use std::process::{Command, Stdio};

/// The child's side: one replica (see `adaptive_replicas::run_replica`).
#[test]
#[ignore = "a child process of the multi-process test; it runs it"]
fn replica_process() {
    adaptive_replicas::run_replica();
}

#[test]
fn four_processes_without_redis_keep_refusals_under_5_percent_of_calls() {
    let report = adaptive_replicas::run(4, 250, |_| {
        let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
        cmd.args([
            "replica_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .stderr(Stdio::null());
        cmd
    });
    println!("{}", report.json("none"));
    assert_eq!(report.completed, report.jobs, "every job completes: {report:?}");
    assert!(
        report.counts.calls >= report.jobs,
        "each completed job made its call: {report:?}"
    );
    assert!(
        report.refusal_share() <= 0.05,
        "refusals are {:.2} % of the calls, the bound is 5 %: {report:?}",
        report.refusal_share() * 100.0
    );
}
