//! Several OS processes share quotas, cost budgets and a rate limit through Redis
//! (issue 16).
//!
//! The processes are this test binary re-invoked as children (`child_process`, an ignored
//! test that the parents run with `--ignored --exact`), each with its own weir runtime,
//! as in `redis_multiprocess.rs`. Some children run under libfaketime with their wall
//! clocks hours apart: the scripts read only the Redis server's clock, so the limits do
//! not move.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::redis_server::RedisServer;
use weir::{
    BackendKind, Config, JobError, JobSpec, Outcome, QuotaConfig, QuotaScope, RateLimitConfig, SkipReason,
    WindowConfig,
};
use weir_actors::Runtime;

const PREFIX: &str = "weir-test";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the parent test"))
}

fn quota(url: &str, scope: QuotaScope, windows: Vec<WindowConfig>, budget: Option<u64>) -> QuotaConfig {
    QuotaConfig {
        scope,
        windows,
        cost_budget: budget,
        cost_window: budget.map(|_| Duration::from_secs(3600)),
        backend: BackendKind::Redis,
        url: url.into(),
        key_prefix: PREFIX.into(),
        ..QuotaConfig::default()
    }
}

fn window(limit: u32, per: Duration) -> WindowConfig {
    WindowConfig { limit, per }
}

fn child_config(mode: &str, url: &str) -> Config {
    let mut c = Config::default();
    c.scheduler.batch_delay = Duration::ZERO;
    c.scheduler.max_concurrent = 100;
    match mode {
        "user" => {
            c.quotas.insert(
                "per_user".into(),
                quota(
                    url,
                    QuotaScope::Tenant,
                    vec![window(10, Duration::from_secs(60))],
                    None,
                ),
            );
        }
        "global" => {
            c.quotas.insert(
                "everyone".into(),
                quota(
                    url,
                    QuotaScope::Global,
                    vec![window(25, Duration::from_secs(3600))],
                    None,
                ),
            );
            c.quotas.insert(
                "spend".into(),
                quota(url, QuotaScope::Global, Vec::new(), Some(100)),
            );
        }
        "rate" => {
            let api = c.resources.entry("api".into()).or_default();
            api.rate_limit = Some(RateLimitConfig {
                requests: 10,
                per: Duration::from_millis(500),
                // Starts are measured in the processes, a little after the shared
                // admission: the margin the safety factor exists for.
                safety_factor: 0.8,
                backend: BackendKind::Redis,
                url: url.into(),
                key_prefix: PREFIX.into(),
                ..RateLimitConfig::default()
            });
            api.slot_wait_timeout = Some(Duration::from_secs(60));
        }
        other => panic!("unknown mode {other}"),
    }
    c
}

/// The Redis server's clock in microseconds (one round trip).
async fn server_time(url: &str) -> u64 {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    secs * 1_000_000 + micros
}

fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

/// The child's side. `user`: 10 jobs of one user under a shared 10/min. `global`: 20
/// jobs of distinct tenants costing 7 each, under a global 25/h and a global budget of
/// 100/h. `rate`: 10 jobs on a resource with a shared rate, each printing its start.
/// Prints one line per outcome, then `DONE`.
#[test]
#[ignore = "a child process of the multi-process tests; they run it"]
fn child_process() {
    let mode = env("WEIR_CHILD_MODE");
    let url = env("WEIR_CHILD_REDIS");
    let me = env("WEIR_CHILD_INDEX");
    actix_rt::System::new().block_on(async move {
        let rt = Runtime::start(child_config(&mode, &url)).unwrap();
        let before = server_time(&url).await;
        let handles: Vec<_> = (0..match mode.as_str() {
            "user" | "rate" => 10,
            _ => 20,
        })
            .map(|i| {
                let spec = match mode.as_str() {
                    "user" => JobSpec::new("user-1", "db"),
                    "global" => JobSpec::new(format!("t-{me}-{i}"), "db").estimated_cost(7),
                    _ => JobSpec::new(format!("t-{me}-{i}"), "api"),
                };
                rt.submit(spec, |_ctx| async { Ok::<_, JobError>(wall_us()) })
                    .unwrap()
            })
            .collect();
        for handle in handles {
            match handle.await {
                Outcome::Completed(start) => println!("ADMITTED start_us={start}"),
                Outcome::Skipped(SkipReason::QuotaExceeded { limit, retry_after }) => {
                    let after = server_time(&url).await;
                    println!(
                        "REFUSED limit={limit} retry_us={} before_us={before} after_us={after}",
                        retry_after.as_micros()
                    );
                }
                other => println!("OTHER {other:?}"),
            }
        }
        let stats = rt.backend_stats().await;
        let s = stats.get("quotas").or_else(|| stats.get("api")).unwrap();
        println!("DONE round_trips={} grants={}", s.round_trips, s.grants);
        rt.shutdown(Duration::from_secs(2)).await;
    });
}

/// The preloadable libfaketime (Debian's `faketime` package, installed by scripts/test).
fn libfaketime() -> String {
    std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists())
        .expect("libfaketime.so.1 under /usr/lib/*/faketime (scripts/test installs faketime)")
        .to_string_lossy()
        .into_owned()
}

/// Four children in `mode`, two of them with their wall clocks two hours off.
fn four_children(mode: &str, url: &str) -> Vec<Vec<String>> {
    let skews = [None, Some("+2h"), Some("-2h"), None];
    let children: Vec<Child> = skews
        .iter()
        .enumerate()
        .map(|(i, skew)| {
            let mut cmd = Command::new(std::env::current_exe().unwrap());
            if let Some(offset) = skew {
                // Only the wall clock is skewed; the monotonic clock keeps the child's
                // own timers meaningful.
                cmd.env("LD_PRELOAD", libfaketime())
                    .env("FAKETIME", offset)
                    .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
            }
            cmd.args([
                "child_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("WEIR_CHILD_MODE", mode)
            .env("WEIR_CHILD_REDIS", url)
            .env("WEIR_CHILD_INDEX", i.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("re-run the test binary as a child")
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(text.contains("DONE"), "child failed ({}): {text}", out.status);
            text.lines()
                .filter_map(|l| {
                    ["ADMITTED", "REFUSED", "OTHER", "DONE"]
                        .iter()
                        .find_map(|w| l.find(w).map(|i| l[i..].to_string()))
                })
                .collect()
        })
        .collect()
}

fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

#[test]
fn four_processes_with_skewed_clocks_admit_exactly_one_users_10_per_minute() {
    let server = RedisServer::start();
    let outputs = four_children("user", &server.url());
    let lines: Vec<&String> = outputs.iter().flatten().collect();
    let admitted = lines.iter().filter(|l| l.starts_with("ADMITTED")).count();
    let refusals: Vec<&&String> = lines.iter().filter(|l| l.starts_with("REFUSED")).collect();
    assert_eq!(admitted, 10, "{lines:#?}");
    assert_eq!(refusals.len(), 30, "{lines:#?}");
    assert!(!lines.iter().any(|l| l.starts_with("OTHER")), "{lines:#?}");
    // The true retry time: the oldest admission of the window leaves it 60 s after it was
    // recorded (on the server's clock). A refusal decided at server time `t` says
    // `oldest + 60 s - t`; `t` lies between the child's reading of the server clock
    // before it submitted and its reading right after the refusal reached it.
    let mut conn = server.connection();
    let times: Vec<(String, u64)> = redis::cmd("ZRANGE")
        .arg(format!("{PREFIX}:quota:per_user:t:user-1"))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut conn)
        .unwrap();
    assert_eq!(times.len(), 10, "one record per admission in Redis");
    let leaves_at = times[0].1 + 60_000_000;
    for r in refusals {
        assert!(r.contains("limit=per_user/1m"), "{r}");
        let (retry, before, after) = (field(r, "retry_us"), field(r, "before_us"), field(r, "after_us"));
        assert!(
            leaves_at - after <= retry && retry <= leaves_at - before,
            "retry_after {retry} us outside [{}, {}] (true at the refusal's receipt .. at submission): {r}",
            leaves_at - after,
            leaves_at - before
        );
    }
    // The keys expire after the longest window: nothing stays for an idle user.
    let ttl: i64 = redis::cmd("PTTL")
        .arg(format!("{PREFIX}:quota:per_user:t:user-1"))
        .query(&mut conn)
        .unwrap();
    assert!(ttl > 0 && ttl <= 60_001, "expires after the window, got {ttl} ms");
}

#[test]
fn a_global_hourly_window_and_a_cost_budget_hold_across_four_processes() {
    let server = RedisServer::start();
    let outputs = four_children("global", &server.url());
    let lines: Vec<&String> = outputs.iter().flatten().collect();
    let admitted = lines.iter().filter(|l| l.starts_with("ADMITTED")).count();
    // 80 jobs costing 7 each: the budget of 100 admits 14 (98), under the window's 25.
    assert_eq!(admitted, 14, "{lines:#?}");
    let refused: Vec<&&String> = lines.iter().filter(|l| l.starts_with("REFUSED")).collect();
    assert_eq!(refused.len(), 66);
    assert!(
        refused.iter().all(|l| l.contains("limit=spend/cost")),
        "{refused:#?}"
    );
    // Batched: fewer round trips than admissions decided (80).
    let trips: u64 = lines
        .iter()
        .filter(|l| l.starts_with("DONE"))
        .map(|l| field(l, "round_trips"))
        .sum();
    let decided = 80;
    assert!(trips < decided, "{trips} round trips for {decided} admissions");
}

#[test]
fn a_shared_rate_is_never_exceeded_in_any_window_of_job_starts() {
    let server = RedisServer::start();
    let outputs = four_children("rate", &server.url());
    let skews_us: [i64; 4] = [0, 7_200_000_000, -7_200_000_000, 0];
    let mut starts: Vec<i64> = Vec::new();
    for (child, lines) in outputs.iter().enumerate() {
        for l in lines.iter().filter(|l| l.starts_with("ADMITTED")) {
            // Back to the real wall clock: the skewed children read theirs two hours off.
            starts.push(field(l, "start_us") as i64 - skews_us[child]);
        }
    }
    assert_eq!(starts.len(), 40, "{outputs:#?}");
    starts.sort_unstable();
    let per = 500_000;
    let mut lo = 0;
    let mut most = 0;
    for hi in 0..starts.len() {
        while starts[lo] <= starts[hi] - per {
            lo += 1;
        }
        most = most.max(hi - lo + 1);
    }
    assert!(
        most <= 10,
        "{most} starts within one 500 ms window; the provider allows 10"
    );
}
