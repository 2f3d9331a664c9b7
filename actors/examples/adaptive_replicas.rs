//! Four processes learn the rate of one downstream that none of them is told (issue 26).
//!
//! ```text
//! cargo run --release -p weir-actors --example adaptive_replicas -- [--processes 4] [--jobs 250]
//!     [--redis URL]
//! ```
//!
//! It starts a downstream on a free loopback port (80 calls a second in any sliding
//! second, 8 at once, 50 ms a call; over its rate a 429 with the exact Retry-After, over
//! its concurrency a plain 429), then `--processes` copies of itself, each a weir runtime
//! with `rate_limit.adaptive` under a ceiling ten times the downstream's and no rate
//! given, each running `--jobs` jobs of one call that must succeed. Without `--redis` the
//! replicas share nothing: each learns its own rate from its own 429s. With `--redis URL`
//! they share the learned rate through that server (`backend = "redis"`): a cut by one
//! is a cut for all, and a Retry-After pauses them all.
//!
//! The last line is one JSON object: `processes`, `jobs`, `completed`, `calls`,
//! `downstream_rejections` (429s, counted by the downstream), `rejection_share` (of all
//! calls), `calls_in_pause` (calls that arrived during a pause the downstream had
//! announced to some replica), `makespan_ms`, each replica's `learned_requests` at the end
//! (its own gate), and with Redis the `shared_rate` and its `shared_cuts`.

#[path = "../tests/common/adaptive_replicas.rs"]
mod adaptive_replicas;
#[path = "../tests/common/rate_downstream.rs"]
mod rate_downstream;

use std::process::Command;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} must be a whole number, got {v:?}"))
        })
}

fn text_arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    if std::env::var_os(adaptive_replicas::DOWNSTREAM_VAR).is_some() {
        return adaptive_replicas::run_replica();
    }
    let (processes, jobs) = (arg("--processes", 4) as usize, arg("--jobs", 250));
    let limits = adaptive_replicas::LIMITS;
    let redis = text_arg("--redis");
    let sharing = redis.as_ref().map_or("sharing nothing".to_string(), |url| {
        format!("sharing the learned rate through {url}")
    });
    println!(
        "{processes} processes, {jobs} jobs each, {sharing}, against one downstream: \
         {} per {:?}, {} at once, {:?} a call (not told to weir)",
        limits.requests, limits.per, limits.max_concurrent, limits.latency
    );
    let exe = std::env::current_exe().expect("this example's executable");
    let report = adaptive_replicas::run(processes, jobs, redis.as_deref(), |_| Command::new(&exe));
    for (i, r) in report.replicas.iter().enumerate() {
        println!(
            "  replica {i}: {}/{} completed, learned rate {} per {:?}, {} cuts",
            r.completed, r.jobs, r.learned_requests, limits.per, r.rate_cuts
        );
    }
    println!(
        "{} calls, {} refused ({:.2} %), {} during a pause, {:.1} s",
        report.counts.calls,
        report.counts.refusals,
        report.refusal_share() * 100.0,
        report.counts.calls_in_pause,
        report.makespan.as_secs_f64()
    );
    if let Some((rate, cuts)) = report.shared_rate {
        println!(
            "  shared learned rate in redis: {rate:.1} per {:?}, {cuts} cuts",
            limits.per
        );
    }
    println!("{}", report.json(if redis.is_some() { "redis" } else { "none" }));
}
