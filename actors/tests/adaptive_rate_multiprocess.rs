//! Four OS processes learn the rate of one downstream that none of them is told (issue
//! 26): sharing nothing, each replica adapts on its own and their rates settle at shares
//! of the downstream's; sharing the learned rate through Redis (a redis-server the test
//! starts on loopback), a cut by one is a cut for all. The downstream is a real server on loopback (counting calls,
//! 429s and calls during a pause it announced); the replicas are this test binary re-run
//! as children (`replica_process`, an ignored test the parent runs with `--ignored
//! --exact`), as in shared_limits_multiprocess.rs.

#[path = "common/adaptive_replicas.rs"]
mod adaptive_replicas;
#[path = "common/rate_downstream.rs"]
mod rate_downstream;
// Shared with the other tests through common/mod.rs, which allows what this test leaves
// unused; included alone here.
#[allow(dead_code, unreachable_pub)]
#[path = "common/redis_server.rs"]
mod redis_server;

use std::process::{Command, Stdio};

/// The child's side: one replica (see `adaptive_replicas::run_replica`).
#[test]
#[ignore = "a child process of the multi-process test; it runs it"]
fn replica_process() {
    adaptive_replicas::run_replica();
}

fn four_replicas(redis: Option<&str>) -> adaptive_replicas::RunReport {
    adaptive_replicas::run(4, 250, redis, |_| {
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
    })
}

fn assert_bounded(report: &adaptive_replicas::RunReport) {
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

#[test]
fn four_processes_without_redis_keep_refusals_under_5_percent_of_calls() {
    let report = four_replicas(None);
    println!("{}", report.json("none"));
    assert_bounded(&report);
    assert_eq!(report.shared_rate, None);
}

#[test]
fn four_processes_sharing_the_learned_rate_through_redis_keep_refusals_under_5_percent() {
    let server = redis_server::RedisServer::start();
    let report = four_replicas(Some(&server.url()));
    println!("{}", report.json("redis"));
    assert_bounded(&report);
    // The rate was learned in Redis: cut there by the replicas' refusals, once per
    // generation, and left between the minimum and the ceiling.
    let (rate, cuts) = report.shared_rate.expect("the shared rate is in redis");
    assert!(cuts >= 1, "a refusal cut the shared rate: {report:?}");
    assert!(
        cuts <= report.counts.rate_refusals.max(1),
        "at most one cut per refusal: {report:?}"
    );
    let ceiling = f64::from(adaptive_replicas::LIMITS.requests * 10);
    assert!((1.0..=ceiling).contains(&rate), "{report:?}");
}
