//! Several processes share one user's quota and one provider's rate through Redis, and
//! how fast shared admissions go.
//!
//! ```text
//! cargo run --release --example shared_limits -- [--processes 4] [--redis URL]
//!     [--quota-jobs 10] [--rate 20] [--per-ms 1000] [--rate-jobs 60] [--bench-jobs 20000] [--wave 1000]
//! ```
//!
//! Without `--redis` it starts its own `redis-server` on a free loopback port. It starts
//! `--processes` copies of itself, each with its own weir runtime, and runs three phases:
//!
//! 1. every process submits `--quota-jobs` jobs for one user under `per_user`, 10 per
//!    minute, a quota kept in Redis: 10 are admitted over all processes, the others are
//!    refused with a `retry_after`;
//! 2. every process runs its share of `--rate-jobs` jobs on one resource whose rate limit
//!    (`--rate` per `--per-ms`) is kept in Redis; each job records its start time;
//! 3. every process pushes `--bench-jobs` empty jobs of many tenants (4 each, under their
//!    10/min) through the shared quota, in waves of `--wave` (default 1000) jobs:
//!    admissions per second over all processes, Redis round trips per admission and the
//!    p99 admission latency (from the supervisor's pass that asked to the answer).
//!
//! The last line is one JSON object:
//! `{"processes": N, "quota": {"limit": 10, "admitted": A, "refused": R, "retry_after_ms": X},
//! "rate": {"limit": L, "per_ms": P, "jobs": J, "max_in_any_window": M}}`, where X is the
//! smallest `retry_after` of a refusal and M the most job starts, across all processes,
//! in any window `(t - per, t]`.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use weir::{
    BackendKind, Config, JobError, JobSpec, Outcome, QuotaConfig, RateLimitConfig, SkipReason, WindowConfig,
};
use weir_actors::Runtime;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn num(name: &str, default: u64) -> u64 {
    arg(name).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a whole number, got {v:?}"))
    })
}

fn config(url: &str, rate: u32, per: Duration) -> Config {
    let mut c = Config::default();
    c.scheduler.batch_delay = Duration::ZERO;
    c.scheduler.max_concurrent = 1000;
    c.quotas.insert(
        "per_user".into(),
        QuotaConfig {
            windows: vec![WindowConfig {
                limit: 10,
                per: Duration::from_secs(60),
            }],
            backend: BackendKind::Redis,
            url: url.into(),
            key_prefix: "weir-example".into(),
            ..QuotaConfig::default()
        },
    );
    let api = c.resources.entry("api".into()).or_default();
    api.rate_limit = Some(RateLimitConfig {
        requests: rate,
        per,
        backend: BackendKind::Redis,
        url: url.into(),
        key_prefix: "weir-example".into(),
        ..RateLimitConfig::default()
    });
    api.slot_wait_timeout = Some(Duration::from_secs(600));
    c
}

fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

fn child(url: &str, index: u64) {
    let processes = num("--processes", 4);
    let (quota_jobs, rate_jobs, bench_jobs) = (
        num("--quota-jobs", 10),
        num("--rate-jobs", 60),
        num("--bench-jobs", 20_000),
    );
    let (rate, per) = (
        num("--rate", 20) as u32,
        Duration::from_millis(num("--per-ms", 1000)),
    );
    actix_rt::System::new().block_on(async move {
        let runtime = Runtime::start(config(url, rate, per)).expect("valid configuration");
        // (a) one user's quota.
        let handles: Vec<_> = (0..quota_jobs)
            .map(|_| {
                runtime
                    .submit(JobSpec::new("user-1", "db"), |_ctx| async { Ok::<_, JobError>(()) })
                    .expect("accepted")
            })
            .collect();
        let (mut admitted, mut refused, mut retry_ms) = (0, 0, f64::MAX);
        for outcome in futures::future::join_all(handles).await {
            match outcome {
                Outcome::Completed(()) => admitted += 1,
                Outcome::Skipped(SkipReason::QuotaExceeded { retry_after, .. }) => {
                    refused += 1;
                    retry_ms = retry_ms.min(retry_after.as_secs_f64() * 1000.0);
                }
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        // (b) one provider's rate: this process's share of the jobs.
        let mine = rate_jobs / processes + u64::from(index < rate_jobs % processes);
        let handles: Vec<_> = (0..mine)
            .map(|i| {
                // One tenant per job: only the rate limits these.
                runtime
                    .submit(JobSpec::new(format!("caller-{index}-{i}"), "api"), |_ctx| async { Ok::<_, JobError>(wall_ms()) })
                    .expect("accepted")
            })
            .collect();
        let starts: Vec<String> = futures::future::join_all(handles)
            .await
            .into_iter()
            .map(|o| match o {
                Outcome::Completed(at) => format!("{at:.3}"),
                other => panic!("unexpected outcome {other:?}"),
            })
            .collect();
        // (c) throughput of shared admissions: many tenants, each under its quota (4 jobs).
        let before = runtime.backend_stats().await["quotas"].clone();
        let started = Instant::now();
        // In waves: a flood of all jobs at once would measure the backlog, not a check.
        let mut done = Vec::new();
        let wave = num("--wave", 1000).max(1);
        for first in (0..bench_jobs).step_by(wave as usize) {
            let handles: Vec<_> = (first..(first + wave).min(bench_jobs))
                .map(|i| {
                    runtime
                        .submit(JobSpec::new(format!("bench-{index}-{}", i % 5000), "db"), |_ctx| async {
                            Ok::<_, JobError>(())
                        })
                        .expect("accepted")
                })
                .collect();
            done.extend(futures::future::join_all(handles).await);
        }
        let secs = started.elapsed().as_secs_f64();
        let completed = done.iter().filter(|o| o.is_completed()).count();
        let after = runtime.backend_stats().await["quotas"].clone();
        println!(
            "CHILD admitted={admitted} refused={refused} retry_ms={:.3} bench_completed={completed} bench_secs={secs:.6} \
             bench_round_trips={} bench_admissions={} p99_us={} starts={}",
            if refused > 0 { retry_ms } else { 0.0 },
            after.round_trips - before.round_trips,
            after.grants - before.grants,
            after.grant_latency.p99.as_micros(),
            starts.join(",")
        );
        runtime.shutdown(Duration::from_secs(1)).await;
    });
}

fn field(line: &str, name: &str) -> f64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The most starts in any window `(t - per, t]`: the window ending at each start is the
/// worst one ending near it.
fn max_in_any_window(starts: &mut [f64], per_ms: f64) -> usize {
    starts.sort_by(f64::total_cmp);
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..starts.len() {
        while starts[lo] <= starts[hi] - per_ms {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

fn main() {
    if let (Ok(url), Some(index)) = (std::env::var("WEIR_EXAMPLE_CHILD"), arg("--child-index")) {
        return child(&url, index.parse().unwrap_or(0));
    }
    let processes = num("--processes", 4);
    let (rate, per_ms) = (num("--rate", 20), num("--per-ms", 1000));
    let mut own_server: Option<Child> = None;
    let url = arg("--redis").unwrap_or_else(|| {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        own_server = Some(
            Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server is installed (or pass --redis URL)"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        format!("redis://127.0.0.1:{port}")
    });
    // A fresh server, or the caller's: start from no shared state either way.
    if let Ok(mut conn) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection()) {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("weir-example:*")
            .query(&mut conn)
            .unwrap_or_default();
        for k in keys {
            let _: Result<(), _> = redis::cmd("DEL").arg(k).query(&mut conn);
        }
    }
    println!("{processes} processes sharing a quota (per_user 10/min) and a rate ({rate} per {per_ms} ms) through {url}");
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let children: Vec<Child> = (0..processes)
        .map(|i| {
            Command::new(&exe)
                .args(std::env::args().skip(1))
                .args(["--child-index", &i.to_string()])
                .env("WEIR_EXAMPLE_CHILD", &url)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let (mut admitted, mut refused, mut retry_ms) = (0.0, 0.0, f64::MAX);
    let (mut bench, mut bench_rt, mut bench_secs, mut worst_p99) = (0.0, 0.0, 0.0f64, 0.0f64);
    let mut starts = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.starts_with("CHILD")).unwrap_or("");
        let shown: String = line.split(" starts=").next().unwrap_or("").into();
        println!("  {shown}");
        admitted += field(line, "admitted");
        refused += field(line, "refused");
        if field(line, "refused") > 0.0 {
            retry_ms = retry_ms.min(field(line, "retry_ms"));
        }
        bench += field(line, "bench_admissions");
        bench_rt += field(line, "bench_round_trips");
        bench_secs = bench_secs.max(field(line, "bench_secs"));
        worst_p99 = worst_p99.max(field(line, "p99_us"));
        if let Some(list) = line.split(" starts=").nth(1) {
            starts.extend(list.split(',').filter_map(|s| s.trim().parse::<f64>().ok()));
        }
    }
    println!(
        "shared admissions/s over {processes} processes: {:.0} ({bench} in {bench_secs:.2} s, slowest process); \
         {:.3} Redis round trips per admission; worst p99 admission latency {worst_p99:.0} us; total {:.1} s",
        bench / bench_secs.max(1e-9),
        bench_rt / bench.max(1.0),
        started.elapsed().as_secs_f64()
    );
    let jobs = starts.len();
    let m = max_in_any_window(&mut starts, per_ms as f64);
    if let Some(mut s) = own_server {
        let _ = s.kill();
        let _ = s.wait();
    }
    println!(
        "{{\"processes\": {processes}, \"quota\": {{\"limit\": 10, \"admitted\": {admitted}, \"refused\": {refused}, \"retry_after_ms\": {}}}, \
         \"rate\": {{\"limit\": {rate}, \"per_ms\": {per_ms}, \"jobs\": {jobs}, \"max_in_any_window\": {m}}}}}",
        if retry_ms == f64::MAX { 0 } else { retry_ms.round() as u64 }
    );
}
