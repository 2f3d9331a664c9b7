//! Several OS processes share one cap through Redis (issue 10).
//!
//! The processes are this test binary re-invoked as children (`child_process`, an ignored
//! test that the parents run with `--ignored --exact`), each with its own weir runtime.
//! The downstream lives in the parent: a TCP server that counts concurrent queries from
//! its own side and refuses any query over its limit. Some children run under
//! libfaketime with their clocks two hours apart: the pool never reads a client clock,
//! so the cap and the lease expiries do not move.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use weir::{BackendConfig, BackendKind, Config, JobError, JobSpec, Outcome};
use weir_actors::Runtime;

const CAP: u32 = 20;

/// A downstream outside every weir process: counts concurrent queries, refuses over
/// `limit`, remembers when the first query arrived.
struct CountingServer {
    addr: String,
    current: Arc<AtomicU64>,
    peak: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    served: Arc<AtomicU64>,
    first_query: Arc<Mutex<Option<Instant>>>,
}

impl CountingServer {
    fn start(limit: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = Self {
            addr: listener.local_addr().unwrap().to_string(),
            current: Arc::default(),
            peak: Arc::default(),
            refused: Arc::default(),
            served: Arc::default(),
            first_query: Arc::default(),
        };
        let (current, peak, refused, served, first) = (
            server.current.clone(),
            server.peak.clone(),
            server.refused.clone(),
            server.served.clone(),
            server.first_query.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let (current, peak, refused, served, first) = (
                    current.clone(),
                    peak.clone(),
                    refused.clone(),
                    served.clone(),
                    first.clone(),
                );
                std::thread::spawn(move || {
                    let mut line = String::new();
                    if BufReader::new(&stream).read_line(&mut line).is_err() {
                        return;
                    }
                    let ms: u64 = line.trim().parse().unwrap_or(0);
                    first.lock().unwrap().get_or_insert_with(Instant::now);
                    let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    let reply = if now > limit {
                        refused.fetch_add(1, Ordering::SeqCst);
                        "REFUSED\n"
                    } else {
                        std::thread::sleep(Duration::from_millis(ms));
                        served.fetch_add(1, Ordering::SeqCst);
                        "OK\n"
                    };
                    current.fetch_sub(1, Ordering::SeqCst);
                    let _ = stream.write_all(reply.as_bytes());
                });
            }
        });
        server
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::SeqCst)
    }
    fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
    fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }
}

/// One query: blocks until the downstream answers.
fn query(addr: &str, ms: u64) -> Result<(), JobError> {
    let mut s = TcpStream::connect(addr).map_err(|e| JobError::msg(e.to_string()))?;
    writeln!(s, "{ms}").map_err(|e| JobError::msg(e.to_string()))?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)
        .map_err(|e| JobError::msg(e.to_string()))?;
    match reply.trim() {
        "OK" => Ok(()),
        other => Err(JobError::msg(other.to_string())),
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the parent test"))
}

fn child_config(redis: &str, ttl: Duration) -> Config {
    let mut c = Config::default();
    c.scheduler.batch_delay = Duration::ZERO;
    c.resources.insert(
        "store".into(),
        weir::ResourceConfig {
            max_concurrent: Some(CAP),
            ..Default::default()
        },
    );
    c.backends.insert(
        "store".into(),
        BackendConfig {
            backend: BackendKind::Redis,
            url: redis.into(),
            lease_ttl: ttl,
            renewal_interval: ttl / 4,
            ..Default::default()
        },
    );
    c
}

/// The child's side: `cascade` runs orgs that fan out store queries and prints its
/// outcome counts; `hold` takes every slot it can with jobs that never end and prints
/// one line per job that started.
#[test]
#[ignore = "a child process of the multi-process tests; they run it"]
fn child_process() {
    let mode = env("WEIR_CHILD_MODE");
    let redis = env("WEIR_CHILD_REDIS");
    let ttl = Duration::from_millis(env("WEIR_CHILD_TTL_MS").parse().unwrap());
    actix_rt::System::new().block_on(async move {
        let rt = Runtime::start(child_config(&redis, ttl)).unwrap();
        if mode == "hold" {
            for _ in 0..CAP {
                let handle = rt
                    .submit(JobSpec::new("holder", "store"), |ctx| async move {
                        println!("HOLD {}", ctx.fencing_token().unwrap_or(0));
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok::<_, JobError>(())
                    })
                    .unwrap();
                std::mem::forget(handle);
            }
            std::future::pending::<()>().await;
        }
        let downstream = env("WEIR_CHILD_DOWNSTREAM");
        let orgs: u32 = env("WEIR_CHILD_ORGS").parse().unwrap();
        let projections: u32 = env("WEIR_CHILD_PROJECTIONS").parse().unwrap();
        let mut handles = Vec::new();
        for org in 0..orgs {
            let downstream = downstream.clone();
            handles.push(
                rt.submit(JobSpec::new(format!("org-{org}"), "orgs"), move |ctx| async move {
                    let children = ctx
                        .spawn((0..projections).map(|p| {
                            let addr = downstream.clone();
                            (ctx.child_spec("store"), move |ctx: weir_actors::JobContext| async move {
                                ctx.run_blocking(move || query(&addr, 20 + u64::from(p % 5) * 10))
                                    .await?
                            })
                        }))
                        .map_err(|e| JobError::msg(e.to_string()))?;
                    let outcomes = ctx.join(children).await;
                    let mut counts = [0u64; 5];
                    for o in &outcomes {
                        counts[o.kind().index()] += 1;
                    }
                    Ok::<_, JobError>(counts)
                })
                .unwrap(),
            );
        }
        let mut counts = [0u64; 5];
        let mut orgs_completed = 0;
        for outcome in futures::future::join_all(handles).await {
            if let Outcome::Completed(c) = outcome {
                orgs_completed += 1;
                for (total, n) in counts.iter_mut().zip(c) {
                    *total += n;
                }
            }
        }
        let stats = rt.backend_stats().await;
        let s = &stats["store"];
        println!(
            "RESULT orgs_completed={orgs_completed} completed={} failed={} timed_out={} skipped={} cancelled={} grants={} round_trips={}",
            counts[0], counts[1], counts[2], counts[3], counts[4], s.grants, s.round_trips
        );
        rt.shutdown(Duration::from_secs(2)).await;
    });
}

/// The preloadable libfaketime (Debian's `faketime` package, installed by scripts/test).
fn libfaketime() -> String {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists());
    found
        .expect("libfaketime.so.1 under /usr/lib/*/faketime (scripts/test installs faketime)")
        .to_string_lossy()
        .into_owned()
}

/// A child process, optionally with its clock skewed through libfaketime.
fn spawn_child(
    mode: &str,
    redis: &str,
    downstream: &str,
    orgs: u32,
    projections: u32,
    ttl_ms: u64,
    skew: Option<&str>,
) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(&exe);
    if let Some(offset) = skew {
        // libfaketime preloaded into the child itself (not the `faketime` wrapper, which
        // forks: SIGKILL must reach the process that holds the slots). Only the wall
        // clock is skewed (what a client-timed lease would read); the monotonic clock
        // stays, so the child's own timers keep their meaning.
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
    .env("WEIR_CHILD_REDIS", redis)
    .env("WEIR_CHILD_DOWNSTREAM", downstream)
    .env("WEIR_CHILD_ORGS", orgs.to_string())
    .env("WEIR_CHILD_PROJECTIONS", projections.to_string())
    .env("WEIR_CHILD_TTL_MS", ttl_ms.to_string())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("re-run the test binary as a child")
}

#[derive(Debug, Default, PartialEq, Eq)]
struct ChildResult {
    orgs_completed: u64,
    completed: u64,
    other: u64,
    grants: u64,
}

fn result_of(child: Child) -> ChildResult {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        // The test harness may print its own prefix on the same line.
        .find_map(|l| l.find("RESULT ").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("child printed no RESULT (status {}): {text}", out.status));
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    ChildResult {
        orgs_completed: field("orgs_completed"),
        completed: field("completed"),
        other: field("failed") + field("timed_out") + field("skipped") + field("cancelled"),
        grants: field("grants"),
    }
}

#[test]
fn four_processes_share_a_cap_of_20_with_skewed_clocks() {
    let server = RedisServer::start();
    let downstream = CountingServer::start(u64::from(CAP));
    let (orgs, projections) = (6, 20);
    let skews = [None, Some("+2h"), Some("-2h"), None];
    let children: Vec<Child> = skews
        .iter()
        .map(|skew| {
            spawn_child(
                "cascade",
                &server.url(),
                &downstream.addr,
                orgs,
                projections,
                2000,
                *skew,
            )
        })
        .collect();
    let results: Vec<ChildResult> = children.into_iter().map(result_of).collect();
    let per_child = u64::from(orgs * projections);
    for r in &results {
        assert_eq!(r.orgs_completed, u64::from(orgs), "{r:?}");
        assert_eq!(
            r.completed, per_child,
            "every query one outcome, all completed: {r:?}"
        );
        assert_eq!(r.other, 0, "{r:?}");
        assert_eq!(r.grants, per_child, "one global lease per query: {r:?}");
    }
    assert!(
        downstream.peak() <= u64::from(CAP),
        "downstream saw {} at once",
        downstream.peak()
    );
    assert_eq!(downstream.refused(), 0);
    assert_eq!(downstream.served(), 4 * per_child);
}

#[test]
fn a_killed_process_slots_come_back_within_the_lease_ttl() {
    let server = RedisServer::start();
    let downstream = CountingServer::start(u64::from(CAP));
    let ttl = Duration::from_millis(1500);
    let ttl_ms = ttl.as_millis() as u64;
    // The holder's clock runs two hours behind: if leases were timed by client clocks,
    // its leases would outlive it by two hours.
    let mut holder = spawn_child("hold", &server.url(), "", 0, 0, ttl_ms, Some("-2h"));
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    let mut held = 0;
    while held < CAP {
        let line = lines.next().expect("the holder reports each held slot").unwrap();
        held += u32::from(line.contains("HOLD "));
    }
    // Three more processes start their cascades; every slot is held by the holder.
    let others: Vec<Child> = [None, Some("+2h"), None]
        .iter()
        .map(|skew| spawn_child("cascade", &server.url(), &downstream.addr, 3, 20, ttl_ms, *skew))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        downstream.served(),
        0,
        "nothing runs while the holder holds every slot"
    );
    holder.kill().unwrap(); // SIGKILL: no release, no goodbye
    let killed_at = Instant::now();
    let _ = holder.wait();
    let results: Vec<ChildResult> = others.into_iter().map(result_of).collect();
    let first = downstream.first_query.lock().unwrap().expect("the others ran");
    let back_after = first.saturating_duration_since(killed_at);
    assert!(
        back_after <= ttl + Duration::from_millis(750),
        "slots came back {back_after:?} after the kill; lease ttl {ttl:?}"
    );
    for r in &results {
        assert_eq!((r.completed, r.other), (60, 0), "{r:?}");
    }
    assert!(
        downstream.peak() <= u64::from(CAP),
        "downstream saw {} at once",
        downstream.peak()
    );
    assert_eq!(downstream.refused(), 0);
}
