//! Several processes share one cap through Redis, and how fast grants go.
//!
//! ```text
//! cargo run --release --example redis_scale_out -- [--redis URL] [--processes 4] [--jobs 20000] [--cap 20]
//! ```
//!
//! Without `--redis` it starts its own `redis-server` on a free loopback port. It starts
//! `--processes` copies of itself; each runs a weir runtime whose resource `store` is
//! shared through Redis with a cap of `--cap` across all of them, and pushes `--jobs`
//! empty jobs through it (so the figure is the cost of the shared grant itself). Each
//! child reports its grants, its Redis round trips and its grant latency; the parent
//! prints grants per second over all processes and the worst p99 grant latency.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir::{BackendConfig, BackendKind, Config, JobError, JobSpec};
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

fn child(url: &str, jobs: u64, cap: u32) {
    let mut config = Config::default();
    config.scheduler.max_concurrent = cap;
    config.backends.insert(
        "store".into(),
        BackendConfig {
            backend: BackendKind::Redis,
            url: url.into(),
            key_prefix: "weir-example".into(),
            ..Default::default()
        },
    );
    actix_rt::System::new().block_on(async move {
        let runtime = Runtime::start(config).expect("valid configuration");
        let started = Instant::now();
        let handles: Vec<_> = (0..jobs)
            .map(|_| {
                runtime
                    .submit(JobSpec::new("example", "store"), |_ctx| async {
                        Ok::<_, JobError>(())
                    })
                    .expect("accepted")
            })
            .collect();
        let completed = futures::future::join_all(handles)
            .await
            .iter()
            .filter(|o| o.is_completed())
            .count();
        let elapsed = started.elapsed();
        let stats = runtime.backend_stats().await;
        let s = &stats["store"];
        println!(
            "CHILD completed={completed} grants={} round_trips={} secs={:.6} p50_us={} p99_us={}",
            s.grants,
            s.round_trips,
            elapsed.as_secs_f64(),
            s.grant_latency.p50.as_micros(),
            s.grant_latency.p99.as_micros()
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

fn main() {
    let (jobs, cap, processes) = (
        num("--jobs", 20_000),
        num("--cap", 20) as u32,
        num("--processes", 4),
    );
    if let Ok(url) = std::env::var("WEIR_EXAMPLE_CHILD") {
        return child(&url, jobs, cap);
    }
    let mut own_server: Option<Child> = None;
    let url = arg("--redis").unwrap_or_else(|| {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        own_server = Some(
            Command::new("redis-server")
                .args(["--port", &port.to_string(), "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server is installed (or pass --redis URL)"),
        );
        std::thread::sleep(Duration::from_millis(300));
        format!("redis://127.0.0.1:{port}")
    });
    println!("{processes} processes x {jobs} empty jobs, one cap of {cap} shared through {url}");
    let started = Instant::now();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<Child> = (0..processes)
        .map(|_| {
            Command::new(&exe)
                .args(std::env::args().skip(1))
                .env("WEIR_EXAMPLE_CHILD", &url)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut grants = 0.0;
    let mut round_trips = 0.0;
    let mut worst_p99 = 0.0f64;
    let mut p50s = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.starts_with("CHILD")).unwrap_or("");
        println!("  {line}");
        grants += field(line, "grants");
        round_trips += field(line, "round_trips");
        worst_p99 = worst_p99.max(field(line, "p99_us"));
        p50s.push(field(line, "p50_us"));
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "grants/s over {processes} processes: {:.0}; grant latency p50 {:.0} us (median of processes), worst p99 {:.0} us; {:.2} Redis round trips per grant",
        grants / secs,
        { p50s.sort_by(f64::total_cmp); p50s[p50s.len() / 2] },
        worst_p99,
        round_trips / grants.max(1.0)
    );
    if let Some(mut s) = own_server {
        let _ = s.kill();
        let _ = s.wait();
    }
}
