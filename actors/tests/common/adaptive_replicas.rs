//! Several OS processes, each a weir runtime that learns the rate of one downstream whose
//! rate nobody gives it (issue 26): the parent starts the downstream (rate_downstream.rs,
//! a sibling module wherever this file is included) on loopback and re-runs its own
//! executable as the replicas; each replica runs its share of the jobs and prints one
//! `REPLICA ...` line. Included by path from actors/tests/adaptive_rate_multiprocess.rs
//! and actors/examples/adaptive_replicas.rs, so the test asserts on the run the example
//! prints.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use weir::{Config, JobError, JobSpec, Outcome};
use weir_actors::{Job, JobContext, Runtime};

use super::rate_downstream::{Counts, Limits, RateDownstream};

/// The variable through which a child learns the downstream's address (and that it is one).
pub const DOWNSTREAM_VAR: &str = "WEIR_REPLICA_DOWNSTREAM";
/// The variable with the number of jobs a child runs.
pub const JOBS_VAR: &str = "WEIR_REPLICA_JOBS";
/// The variable with the Redis URL through which the children share the learned rate
/// (absent: they share nothing).
pub const REDIS_VAR: &str = "WEIR_REPLICA_REDIS";
/// The prefix of the shared rate's keys.
pub const KEY_PREFIX: &str = "weir-replicas";

/// The downstream of the measurement: 80 calls a second, 8 at once, 50 ms a call.
pub const LIMITS: Limits = Limits {
    requests: 80,
    per: Duration::from_secs(1),
    max_concurrent: 8,
    latency: Duration::from_millis(50),
};

/// One replica's configuration: no rate given, ceilings ten times the downstream's, the
/// rate and the concurrency limit learned from `initial = 10`, as the unknown-rate
/// simulation's `adaptive` policy. With `redis`, the learned rate is shared through it.
pub fn replica_config(limits: Limits, redis: Option<&str>) -> Config {
    let shared = redis.map_or(String::new(), |url| {
        format!(r#", backend = "redis", url = "{url}", key_prefix = "{KEY_PREFIX}""#)
    });
    let text = format!(
        r#"
        [scheduler]
        slot_wait_timeout = "1h"
        slot_lease_timeout = "30s"
        [resources.api]
        max_concurrent = {concurrency}
        adaptive = {{ min = 1, initial = 10 }}
        rate_limit = {{ requests = {rate}, per = "{per_ms}ms", adaptive = {{ min = 1, initial = 10 }}{shared} }}
        retry = {{ max_attempts = 50, base = "100ms", cap = "2s" }}
        "#,
        concurrency = limits.max_concurrent * 10,
        rate = limits.requests * 10,
        per_ms = limits.per.as_millis(),
    );
    Config::from_toml_str(&text).expect("the replica's configuration is valid")
}

/// One call over a fresh loopback connection; a 429 is an overload refusal, with the
/// downstream's Retry-After when it gave one.
async fn call(addr: SocketAddr) -> Result<(), JobError> {
    let io = |e: std::io::Error| JobError::msg(format!("downstream: {e}"));
    let mut stream = TcpStream::connect(addr).await.map_err(io)?;
    stream.set_nodelay(true).map_err(io)?;
    stream.write_all(b"CALL\n").await.map_err(io)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).await.map_err(io)?;
    match line.trim().split_once(' ') {
        None if line.trim() == "200" => Ok(()),
        Some(("429", "0")) => Err(JobError::overload("429 over the concurrency limit")),
        Some(("429", us)) => {
            let us: u64 = us
                .parse()
                .map_err(|_| JobError::msg(format!("downstream: bad Retry-After {us:?}")))?;
            Err(JobError::retry_after("429 over the rate", Duration::from_micros(us)).overloaded())
        }
        _ => Err(JobError::msg(format!("downstream: unexpected answer {line:?}"))),
    }
}

/// What one replica reports on its `REPLICA` line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaReport {
    /// Jobs it ran.
    pub jobs: u64,
    /// Of those, completed (their one call succeeded).
    pub completed: u64,
    /// Its learned rate at the end, per `per`.
    pub learned_requests: u64,
    /// Its rate cuts.
    pub rate_cuts: u64,
}

impl ReplicaReport {
    fn line(&self) -> String {
        format!(
            "REPLICA jobs={} completed={} learned_requests={} rate_cuts={}",
            self.jobs, self.completed, self.learned_requests, self.rate_cuts
        )
    }

    /// The report on a line of a child's output (libtest may print `test NAME ... ` first).
    fn parse(line: &str) -> Option<Self> {
        let rest = &line[line.find("REPLICA ")? + "REPLICA ".len()..];
        let field = |name: &str| -> Option<u64> {
            rest.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?
                .parse()
                .ok()
        };
        Some(Self {
            jobs: field("jobs")?,
            completed: field("completed")?,
            learned_requests: field("learned_requests")?,
            rate_cuts: field("rate_cuts")?,
        })
    }
}

/// The child's side: runs the jobs the parent gave it against the downstream, all
/// submitted at once, and prints its `REPLICA` line.
pub fn run_replica() {
    let addr: SocketAddr = std::env::var(DOWNSTREAM_VAR)
        .expect("the parent sets the downstream's address")
        .parse()
        .expect("a socket address");
    let jobs: u64 = std::env::var(JOBS_VAR)
        .expect("the parent sets the number of jobs")
        .parse()
        .expect("a whole number of jobs");
    let report = actix_rt::System::new().block_on(async move {
        let redis = std::env::var(REDIS_VAR).ok();
        let runtime = Runtime::start(replica_config(LIMITS, redis.as_deref())).expect("valid configuration");
        let handles: Vec<_> = (0..jobs)
            .map(|_| {
                let (job, handle) =
                    Job::retrying(JobSpec::new("jobs", "api"), move |_ctx: JobContext| call(addr));
                runtime.submit_job(job).expect("accepted");
                handle
            })
            .collect();
        let completed = futures::future::join_all(handles)
            .await
            .into_iter()
            .filter(|o| matches!(o, Outcome::Completed(())))
            .count() as u64;
        let stats = runtime.stats().await;
        let resilience = stats.resources.get("api").map(|r| r.resilience);
        runtime.shutdown(Duration::from_secs(1)).await;
        ReplicaReport {
            jobs,
            completed,
            learned_requests: resilience.and_then(|r| r.learned_requests).unwrap_or(0),
            rate_cuts: resilience.map_or(0, |r| r.rate_cuts),
        }
    });
    println!("{}", report.line());
}

/// The whole run, seen from the parent and the downstream.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    /// Replica processes.
    pub processes: usize,
    /// Jobs over all replicas.
    pub jobs: u64,
    /// Of those, completed.
    pub completed: u64,
    /// What the downstream counted.
    pub counts: Counts,
    /// From the first child's start to the last child's exit.
    pub makespan: Duration,
    /// Each replica's line, in order.
    pub replicas: Vec<ReplicaReport>,
    /// The shared learned rate at the end (per `per`) and its generation (cuts), read
    /// from Redis; `None` without Redis.
    pub shared_rate: Option<(f64, u64)>,
}

impl RunReport {
    /// The downstream's refusals as a share of all calls it received.
    pub fn refusal_share(&self) -> f64 {
        self.counts.refusals as f64 / (self.counts.calls.max(1)) as f64
    }

    /// One JSON line.
    pub fn json(&self, shared: &str) -> String {
        serde_json::json!({
            "processes": self.processes,
            "shared": shared,
            "downstream": {
                "requests": LIMITS.requests,
                "per_ms": LIMITS.per.as_millis() as u64,
                "max_concurrent": LIMITS.max_concurrent,
                "latency_ms": LIMITS.latency.as_millis() as u64,
            },
            "jobs": self.jobs,
            "completed": self.completed,
            "calls": self.counts.calls,
            "downstream_rejections": self.counts.refusals,
            "rate_rejections": self.counts.rate_refusals,
            "rejection_share": (self.refusal_share() * 10_000.0).round() / 10_000.0,
            "calls_in_pause": self.counts.calls_in_pause,
            "peak_concurrency": self.counts.peak_concurrency,
            "makespan_ms": self.makespan.as_millis() as u64,
            "learned_requests": self.replicas.iter().map(|r| r.learned_requests).collect::<Vec<_>>(),
            "rate_cuts": self.replicas.iter().map(|r| r.rate_cuts).sum::<u64>(),
            "shared_rate": self.shared_rate.map(|(rate, _)| (rate * 10.0).round() / 10.0),
            "shared_cuts": self.shared_rate.map(|(_, generation)| generation),
        })
        .to_string()
    }
}

/// The parent's side: starts the downstream, then `processes` children from `child`
/// (a command that re-runs this executable as a replica), `jobs_each` jobs each, and
/// waits for them all. With `redis`, the replicas share the learned rate through it
/// (its keys under [`KEY_PREFIX`] are cleared first).
pub fn run(
    processes: usize,
    jobs_each: u64,
    redis: Option<&str>,
    child: impl Fn(usize) -> Command,
) -> RunReport {
    let learned_key = format!("{KEY_PREFIX}:{{rate:api}}:learned");
    let mut conn = redis.map(|url| {
        redis::Client::open(url)
            .and_then(|c| c.get_connection())
            .expect("connect to the replicas' redis")
    });
    if let Some(conn) = conn.as_mut() {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{KEY_PREFIX}:*"))
            .query(conn)
            .expect("list the shared rate's keys");
        for key in keys {
            let _: () = redis::cmd("DEL").arg(key).query(conn).expect("clear a key");
        }
    }
    let downstream = RateDownstream::start(LIMITS);
    let started = Instant::now();
    let children: Vec<_> = (0..processes)
        .map(|i| {
            let mut cmd = child(i);
            if let Some(url) = redis {
                cmd.env(REDIS_VAR, url);
            }
            cmd.env(DOWNSTREAM_VAR, downstream.addr().to_string())
                .env(JOBS_VAR, jobs_each.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .expect("re-run this executable as a replica")
        })
        .collect();
    let mut report = RunReport {
        processes,
        ..RunReport::default()
    };
    for c in children {
        let out = c.wait_with_output().expect("the replica ran");
        let text = String::from_utf8_lossy(&out.stdout);
        let replica = text
            .lines()
            .find_map(ReplicaReport::parse)
            .unwrap_or_else(|| panic!("a replica printed no REPLICA line: {text}"));
        report.jobs += replica.jobs;
        report.completed += replica.completed;
        report.replicas.push(replica);
    }
    report.makespan = started.elapsed();
    report.counts = downstream.counts();
    report.shared_rate = conn.as_mut().map(|conn| {
        let (rate, generation): (Option<f64>, Option<u64>) = redis::cmd("HMGET")
            .arg(&learned_key)
            .arg("rate")
            .arg("gen")
            .query(conn)
            .expect("read the shared learned rate");
        (rate.unwrap_or(0.0), generation.unwrap_or(0))
    });
    report
}
