//! `weir bench`: throughput, scheduling latency and memory of weir against the tokio
//! baseline (`Semaphore` + `spawn`), measured in the same run on the same machine.
//!
//! Each measured phase runs in a child process of its own (this same binary, with the
//! hidden `--phase` argument), so its peak RSS is its own; weir and baseline rounds
//! alternate, so a noisy neighbour slows both. The figures are medians over the rounds
//! (peak RSS: the largest). The criterion benches in `benches/` cover the same questions
//! with more baselines (tower's `ConcurrencyLimit`) and statistics.

use std::process::Command;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub mod embedded;
pub mod grant_cost;
pub mod isolation;
pub mod memory;
pub mod workload;

/// Arguments of `weir bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Empty jobs per throughput round.
    #[arg(long, default_value_t = 500_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub jobs: u64,
    /// Slots of the benchmark resource (and permits of the baseline's semaphore).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub cap: u32,
    /// Rounds per system; figures are medians over rounds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
    /// Jobs queued for the memory-per-queued-job measurement.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub queued: u64,
    /// Jobs queued, each its own tenant, for the memory-per-tenant measurement.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub queued_tenants: u64,
    /// weir's `runtime.worker_threads`: threads that run job bodies (0 runs them on the
    /// supervisor's thread). Default: the runtime's default, one per core.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub worker_threads: Option<u32>,
    /// Install a Prometheus recorder (metrics-exporter-prometheus, no HTTP listener) in
    /// weir's phases, so the figures include the cost of the exported metrics.
    #[arg(long)]
    pub metrics: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<std::path::PathBuf>,
    /// A Redis server for the shared-counter comparison (e.g. redis://127.0.0.1/).
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Internal: run one phase and print its figures as JSON.
    #[arg(long, hide = true, value_enum)]
    pub phase: Option<Phase>,
    /// Internal: submitting tasks of an embedded phase.
    #[arg(long, hide = true, default_value_t = 1)]
    pub submitters: usize,
}

/// One measured phase, run in a child process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    /// weir: throughput, then latency.
    Weir,
    /// weir: the supervisor thread's CPU per job, submitting from another thread.
    WeirSupervisor,
    /// tokio Semaphore + spawn: throughput, then latency.
    Tokio,
    /// weir: memory per queued job.
    WeirQueued,
    /// tokio: memory per queued task.
    TokioQueued,
    /// weir: memory per queued job when every job is its own tenant.
    WeirQueuedTenants,
    /// weir: the fan-out scenario's makespan.
    Fanout,
    /// weir started from a multi-threaded tokio runtime whose tasks submit and await.
    EmbeddedWeir,
    /// tokio Semaphore + spawn from the same tasks.
    EmbeddedTokio,
    /// weir: an empty resource's latency while another resource's bodies spin.
    IsolationWeir,
    /// tokio: the same, spawned tasks on a multi-threaded runtime.
    IsolationTokio,
}

/// What one child phase measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PhaseFigures {
    /// Empty jobs per second, submit to outcome.
    pub jobs_per_sec: Option<f64>,
    /// CPU time per job (all the phase's threads), nanoseconds.
    pub cpu_ns_per_job: Option<f64>,
    /// CPU time per job of the supervisor's thread alone, measured in a flood of its own
    /// (`--phase weir-supervisor`) submitted and awaited from another thread, so the
    /// submitting loop is not counted,
    /// nanoseconds: its inverse is the ceiling of one supervisor's grant rate, whatever
    /// the number of body threads.
    pub supervisor_ns_per_job: Option<f64>,
    /// Scheduling latency (submit to first poll), nanoseconds.
    pub latency_ns: Option<Latency>,
    /// Peak RSS of the phase's process, bytes.
    pub peak_rss: Option<u64>,
    /// RSS growth per queued job, bytes.
    pub bytes_per_queued_job: Option<f64>,
    /// Fan-out makespan and its lower bound, milliseconds.
    pub makespan_ms: Option<f64>,
    /// The fan-out's lower bound, milliseconds.
    pub lower_bound_ms: Option<f64>,
    /// Isolation: p99 of the empty resource's submit-to-first-poll latency, nanoseconds.
    pub isolation_p99_ns: Option<u64>,
}

/// Latency percentiles in nanoseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        Self {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
        }
    }
}

/// Everything `weir bench` reports (also its `--json` output).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// `nproc` and the CPU model.
    pub machine: String,
    /// Jobs per throughput round.
    pub jobs: u64,
    /// Slots (and semaphore permits).
    pub cap: u32,
    /// Rounds per system.
    pub rounds: u32,
    /// weir's body threads (`runtime.worker_threads`, resolved: one per core by default).
    pub worker_threads: u32,
    /// A Prometheus recorder was installed in weir's phases (`--metrics`).
    pub metrics: bool,
    /// weir's figures (medians over rounds; peak RSS the largest).
    pub weir: PhaseFigures,
    /// The tokio Semaphore + spawn baseline's figures.
    pub tokio: PhaseFigures,
    /// weir jobs/s divided by tokio's (>= 1 means weir is as fast or faster).
    pub throughput_ratio: Option<f64>,
    /// weir CPU time per job divided by tokio's (<= 1 means weir costs no more CPU).
    pub cpu_ratio: Option<f64>,
    /// weir p50 / p99 / p999 latency divided by tokio's (<= 1 means weir is as fast).
    pub latency_ratio: Option<[f64; 3]>,
    /// weir's queued-job bytes divided by tokio's.
    pub queued_memory_ratio: Option<f64>,
    /// RSS growth per waiting job when every waiting job is its own tenant
    /// (`--queued-tenants` jobs), bytes.
    pub bytes_per_waiting_job_tenants: Option<f64>,
    /// weir's throughput pinned to two cores over its throughput pinned to one
    /// (`taskset -c 0,1` and `taskset -c 0`, medians over rounds).
    pub speedup_1_to_2_cores: Option<f64>,
    /// The same for the tokio baseline.
    pub speedup_1_to_2_cores_tokio: Option<f64>,
    /// Why the speed-up was not measured, if it was not (fewer than two CPUs, no
    /// `taskset`).
    pub speedup_not_run: Option<String>,
    /// The core's release + grant, nanoseconds.
    pub core_grant_ns: f64,
    /// The Redis shared counter's grant + release, nanoseconds, if it was run.
    pub redis_grant_ns: Option<f64>,
    /// Why the Redis comparison was not run, if it was not.
    pub redis_not_run: Option<String>,
    /// redis_grant_ns / core_grant_ns: how many times cheaper a weir grant is.
    pub redis_over_weir: Option<f64>,
    /// The fan-out scenario (1,000 organisations x 50 projections, zero-latency jobs).
    pub fanout: PhaseFigures,
    /// Fan-out makespan over its lower bound, percent.
    pub fanout_overhead_pct: Option<f64>,
    /// Embedded, one submitting task: weir jobs/s, tokio jobs/s.
    pub embedded_1: [Option<f64>; 2],
    /// Embedded, 32 submitting tasks: weir jobs/s, tokio jobs/s.
    pub embedded_32: [Option<f64>; 2],
    /// Embedded weir jobs/s over tokio's with one submitting task.
    pub embedded_ratio_1: Option<f64>,
    /// Embedded weir jobs/s over tokio's with 32 submitting tasks.
    pub embedded_ratio_32: Option<f64>,
    /// Isolation p99 (submit to first poll of the empty resource's jobs while the other
    /// resource's bodies spin 1 ms each), nanoseconds, at `worker_threads`.
    pub isolation_p99_ns: Option<u64>,
    /// The same with `worker_threads = 0` (bodies on the supervisor's thread).
    pub isolation_p99_ns_worker_threads_0: Option<u64>,
    /// The same for tokio Semaphore + spawn.
    pub isolation_p99_ns_tokio: Option<u64>,
}

/// Runs `weir bench`. Returns the process exit code.
pub fn run(args: &BenchArgs) -> Result<u8, String> {
    if let Some(phase) = args.phase {
        let figures = run_phase(phase, args)?;
        println!("{}", serde_json::to_string(&figures).map_err(|e| e.to_string())?);
        return Ok(0);
    }
    let report = measure(args)?;
    print!("{}", render(&report));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(0)
}

fn run_phase(phase: Phase, args: &BenchArgs) -> Result<PhaseFigures, String> {
    if args.metrics && matches!(phase, Phase::Weir | Phase::Fanout) {
        // Before the runtime starts: the supervisor registers its handles when it first
        // uses them, against the recorder installed then.
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| format!("cannot install the Prometheus recorder: {e}"))?;
    }
    let jobs = args.jobs as usize;
    let cap = args.cap as usize;
    // Latency runs keep `cap` jobs outstanding; this many give a stable p999.
    let latency_jobs = jobs.clamp(1, 200_000);
    let mut figures = PhaseFigures::default();
    match phase {
        Phase::Weir => {
            let mut config = workload::config(args.cap, args.jobs);
            config.runtime.worker_threads = args.worker_threads;
            actix_rt::System::new().block_on(async {
                let runtime = weir_actors::Runtime::start(config).map_err(|e| e.to_string())?;
                workload::weir_flood(&runtime, jobs.min(50_000)).await; // warm-up
                let cpu = memory::cpu_time();
                let elapsed = workload::weir_flood(&runtime, jobs).await;
                figures.jobs_per_sec = Some(jobs as f64 / elapsed.as_secs_f64());
                figures.cpu_ns_per_job = per_job(cpu, jobs);
                let hist = workload::weir_latency(&runtime, latency_jobs, cap).await;
                figures.latency_ns = Some(Latency::of(&hist));
                runtime.shutdown(Duration::from_secs(1)).await;
                Ok::<_, String>(())
            })?;
        }
        Phase::WeirSupervisor => {
            let mut config = workload::config(args.cap, args.jobs);
            config.runtime.worker_threads = args.worker_threads;
            actix_rt::System::new().block_on(async {
                let runtime = weir_actors::Runtime::start(config).map_err(|e| e.to_string())?;
                workload::weir_flood_from_thread(&runtime, jobs.min(50_000)).await; // warm-up

                // The supervisor runs on this thread (started inside its actix system); a
                // flood from another thread leaves it nothing else to do.
                let supervisor = memory::thread_cpu_time();
                let elapsed = workload::weir_flood_from_thread(&runtime, jobs).await;
                figures.supervisor_ns_per_job = per_job_of(supervisor, memory::thread_cpu_time(), jobs);
                figures.jobs_per_sec = Some(jobs as f64 / elapsed.as_secs_f64());
                runtime.shutdown(Duration::from_secs(1)).await;
                Ok::<_, String>(())
            })?;
        }
        Phase::Tokio => {
            workload::tokio_multi_thread().block_on(async {
                workload::tokio_flood(jobs.min(50_000), cap).await; // warm-up
                let cpu = memory::cpu_time();
                let elapsed = workload::tokio_flood(jobs, cap).await;
                figures.jobs_per_sec = Some(jobs as f64 / elapsed.as_secs_f64());
                figures.cpu_ns_per_job = per_job(cpu, jobs);
                let hist = workload::tokio_latency(latency_jobs, cap, cap).await;
                figures.latency_ns = Some(Latency::of(&hist));
            });
        }
        Phase::WeirQueued => {
            figures.bytes_per_queued_job =
                actix_rt::System::new().block_on(memory::weir_queued(args.queued as usize, false));
        }
        Phase::WeirQueuedTenants => {
            figures.bytes_per_queued_job =
                actix_rt::System::new().block_on(memory::weir_queued(args.queued_tenants as usize, true));
        }
        Phase::TokioQueued => {
            figures.bytes_per_queued_job =
                workload::tokio_multi_thread().block_on(memory::tokio_queued(args.queued as usize));
        }
        Phase::Fanout => {
            let (orgs, projections) = (1_000, 50);
            let config = workload::fanout_config(Duration::from_millis(10), orgs, projections);
            let bound = workload::fanout_lower_bound(&config, orgs, projections);
            let cpu = memory::cpu_time();
            let makespan = actix_rt::System::new().block_on(async {
                let runtime = weir_actors::Runtime::start(config).map_err(|e| e.to_string())?;
                let makespan = workload::weir_fanout(&runtime, orgs, projections).await;
                runtime.shutdown(Duration::from_secs(1)).await;
                Ok::<_, String>(makespan)
            })?;
            figures.makespan_ms = Some(makespan.as_secs_f64() * 1e3);
            figures.cpu_ns_per_job = per_job(cpu, orgs * (projections as usize + 1));
            figures.lower_bound_ms = Some(bound.as_secs_f64() * 1e3);
        }
        Phase::EmbeddedWeir => {
            let mut config = workload::config(args.cap, args.jobs);
            config.runtime.worker_threads = args.worker_threads;
            workload::tokio_multi_thread().block_on(async {
                let runtime = weir_actors::Runtime::start(config).map_err(|e| e.to_string())?;
                embedded::weir_embedded(&runtime, args.submitters, jobs.min(50_000)).await; // warm-up
                let elapsed = embedded::weir_embedded(&runtime, args.submitters, jobs).await;
                figures.jobs_per_sec = Some(jobs as f64 / elapsed.as_secs_f64());
                runtime.shutdown(Duration::from_secs(1)).await;
                Ok::<_, String>(())
            })?;
        }
        Phase::EmbeddedTokio => {
            workload::tokio_multi_thread().block_on(async {
                embedded::tokio_embedded(args.submitters, jobs.min(50_000), cap).await; // warm-up
                let elapsed = embedded::tokio_embedded(args.submitters, jobs, cap).await;
                figures.jobs_per_sec = Some(jobs as f64 / elapsed.as_secs_f64());
            });
        }
        Phase::IsolationWeir => {
            let hist = isolation::weir_isolation(args.worker_threads, ISOLATION_RUN)?;
            figures.isolation_p99_ns = Some(hist.value_at_quantile(0.99));
        }
        Phase::IsolationTokio => {
            let hist = isolation::tokio_isolation(ISOLATION_RUN);
            figures.isolation_p99_ns = Some(hist.value_at_quantile(0.99));
        }
    }
    figures.peak_rss = memory::peak_rss();
    Ok(figures)
}

/// How long each isolation phase submits empty jobs (about 4,000 of them).
const ISOLATION_RUN: Duration = Duration::from_secs(1);

fn per_job(cpu_before: Option<Duration>, jobs: usize) -> Option<f64> {
    per_job_of(cpu_before, memory::cpu_time(), jobs)
}

fn per_job_of(before: Option<Duration>, after: Option<Duration>, jobs: usize) -> Option<f64> {
    let used = after?.checked_sub(before?)?;
    Some(used.as_nanos() as f64 / jobs.max(1) as f64)
}

fn child(phase: Phase, args: &BenchArgs) -> Result<PhaseFigures, String> {
    child_on(phase, args, None)
}

/// Runs `phase` in a child process, pinned to the CPU list `cpus` (`taskset -c`) when
/// given: the runtime and tokio then size their thread pools to those cores, as they
/// read the affinity mask (`available_parallelism`).
fn child_on(phase: Phase, args: &BenchArgs, cpus: Option<&str>) -> Result<PhaseFigures, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the weir binary: {e}"))?;
    let name = clap::ValueEnum::to_possible_value(&phase)
        .expect("every phase has a name")
        .get_name()
        .to_string();
    let mut command = match cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let output = command
        .args(["bench", "--phase", &name])
        .args(["--jobs", &args.jobs.to_string(), "--cap", &args.cap.to_string()])
        .args(["--queued", &args.queued.to_string()])
        .args(["--queued-tenants", &args.queued_tenants.to_string()])
        .args(
            args.worker_threads
                .into_iter()
                .flat_map(|n| ["--worker-threads".to_string(), n.to_string()]),
        )
        .args(["--submitters", &args.submitters.to_string()])
        .args(args.metrics.then_some("--metrics"))
        .output()
        .map_err(|e| format!("cannot run the {name} phase: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "the {name} phase failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("the {name} phase printed {line:?}: {e}"))
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

fn combine(rounds: &[PhaseFigures]) -> PhaseFigures {
    let med = |f: &dyn Fn(&PhaseFigures) -> Option<f64>| median(rounds.iter().filter_map(f).collect());
    let lat =
        |f: &dyn Fn(&Latency) -> u64| med(&|r| r.latency_ns.as_ref().map(|l| f(l) as f64)).map(|x| x as u64);
    PhaseFigures {
        jobs_per_sec: med(&|r| r.jobs_per_sec),
        cpu_ns_per_job: med(&|r| r.cpu_ns_per_job),
        supervisor_ns_per_job: med(&|r| r.supervisor_ns_per_job),
        latency_ns: lat(&|l| l.p50).map(|p50| Latency {
            p50,
            p99: lat(&|l| l.p99).unwrap_or_default(),
            p999: lat(&|l| l.p999).unwrap_or_default(),
        }),
        peak_rss: rounds.iter().filter_map(|r| r.peak_rss).max(),
        bytes_per_queued_job: med(&|r| r.bytes_per_queued_job),
        makespan_ms: med(&|r| r.makespan_ms),
        lower_bound_ms: med(&|r| r.lower_bound_ms),
        isolation_p99_ns: med(&|r| r.isolation_p99_ns.map(|v| v as f64)).map(|v| v as u64),
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} CPUs, {model}")
}

fn measure(args: &BenchArgs) -> Result<Report, String> {
    let (mut weir, mut tokio, mut supervisor) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        weir.push(child(Phase::Weir, args)?);
        tokio.push(child(Phase::Tokio, args)?);
        supervisor.extend(child(Phase::WeirSupervisor, args)?.supervisor_ns_per_job);
    }
    let weir_queued = child(Phase::WeirQueued, args)?;
    let weir_queued_tenants = child(Phase::WeirQueuedTenants, args)?;
    let scaling = scaling(args);
    let tokio_queued = child(Phase::TokioQueued, args)?;
    let fanout = combine(
        &(0..args.rounds)
            .map(|_| child(Phase::Fanout, args))
            .collect::<Result<Vec<_>, _>>()?,
    );
    let rounds = |phase: Phase, args: &BenchArgs| -> Result<PhaseFigures, String> {
        Ok(combine(
            &(0..args.rounds)
                .map(|_| child(phase, args))
                .collect::<Result<Vec<_>, _>>()?,
        ))
    };
    let with = |submitters: usize, worker_threads: Option<u32>| BenchArgs {
        submitters,
        worker_threads,
        json: None,
        redis: None,
        phase: None,
        ..*args
    };
    let mut embedded = [[None; 2]; 2];
    for (i, submitters) in [1, 32].into_iter().enumerate() {
        let a = with(submitters, args.worker_threads);
        embedded[i] = [
            rounds(Phase::EmbeddedWeir, &a)?.jobs_per_sec,
            rounds(Phase::EmbeddedTokio, &a)?.jobs_per_sec,
        ];
    }
    let isolation_p99_ns = rounds(Phase::IsolationWeir, args)?.isolation_p99_ns;
    let isolation_p99_ns_worker_threads_0 = if args.worker_threads == Some(0) {
        isolation_p99_ns
    } else {
        rounds(Phase::IsolationWeir, &with(1, Some(0)))?.isolation_p99_ns
    };
    let isolation_p99_ns_tokio = rounds(Phase::IsolationTokio, args)?.isolation_p99_ns;
    let mut weir = combine(&weir);
    weir.supervisor_ns_per_job = median(supervisor);
    let mut tokio = combine(&tokio);
    weir.bytes_per_queued_job = weir_queued.bytes_per_queued_job;
    tokio.bytes_per_queued_job = tokio_queued.bytes_per_queued_job;
    let core_grant_ns = median(
        (0..args.rounds)
            .map(|_| grant_cost::core_release_grant_ns(1_000, 200))
            .collect(),
    )
    .unwrap_or_default();
    let (redis_grant_ns, redis_not_run) = match &args.redis {
        None => (None, Some("no --redis URL given".to_string())),
        Some(url) => match grant_cost::redis_counter_ns(url, i64::from(args.cap), Duration::from_secs(2)) {
            Ok(ns) => (Some(ns), None),
            Err(e) => (None, Some(e)),
        },
    };
    let ratio = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
    let latency_ratio = match (weir.latency_ns, tokio.latency_ns) {
        (Some(w), Some(t)) => Some([
            w.p50 as f64 / t.p50.max(1) as f64,
            w.p99 as f64 / t.p99.max(1) as f64,
            w.p999 as f64 / t.p999.max(1) as f64,
        ]),
        _ => None,
    };
    Ok(Report {
        machine: machine(),
        jobs: args.jobs,
        cap: args.cap,
        rounds: args.rounds,
        worker_threads: weir::RuntimeConfig {
            worker_threads: args.worker_threads,
            ..weir::RuntimeConfig::default()
        }
        .body_threads(isolation::cores(), false),
        metrics: args.metrics,
        throughput_ratio: ratio(weir.jobs_per_sec, tokio.jobs_per_sec),
        cpu_ratio: ratio(weir.cpu_ns_per_job, tokio.cpu_ns_per_job),
        latency_ratio,
        queued_memory_ratio: ratio(weir.bytes_per_queued_job, tokio.bytes_per_queued_job),
        bytes_per_waiting_job_tenants: weir_queued_tenants.bytes_per_queued_job,
        speedup_1_to_2_cores: scaling.as_ref().ok().and_then(|s| s[0]),
        speedup_1_to_2_cores_tokio: scaling.as_ref().ok().and_then(|s| s[1]),
        speedup_not_run: scaling.err(),
        core_grant_ns,
        redis_over_weir: redis_grant_ns.map(|r| r / core_grant_ns),
        redis_grant_ns,
        redis_not_run,
        fanout_overhead_pct: ratio(fanout.makespan_ms, fanout.lower_bound_ms).map(|r| (r - 1.0) * 100.0),
        embedded_ratio_1: ratio(embedded[0][0], embedded[0][1]),
        embedded_ratio_32: ratio(embedded[1][0], embedded[1][1]),
        embedded_1: embedded[0],
        embedded_32: embedded[1],
        isolation_p99_ns,
        isolation_p99_ns_worker_threads_0,
        isolation_p99_ns_tokio,
        fanout,
        weir,
        tokio,
    })
}

/// weir's and tokio's speed-up from one core to two: each system's throughput phase
/// run pinned to CPU 0 and to CPUs 0 and 1, rounds alternating, medians.
fn scaling(args: &BenchArgs) -> Result<[Option<f64>; 2], String> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus < 2 {
        return Err(format!("{cpus} CPU available, two are needed"));
    }
    if Command::new("taskset").arg("-V").output().is_err() {
        return Err("taskset (util-linux) is not installed".into());
    }
    let mut speedup = [None; 2];
    for (i, phase) in [Phase::Weir, Phase::Tokio].into_iter().enumerate() {
        let (mut one, mut two) = (Vec::new(), Vec::new());
        for _ in 0..args.rounds {
            one.extend(child_on(phase, args, Some("0"))?.jobs_per_sec);
            two.extend(child_on(phase, args, Some("0,1"))?.jobs_per_sec);
        }
        speedup[i] = median(two).zip(median(one)).map(|(two, one)| two / one);
    }
    Ok(speedup)
}

fn render(r: &Report) -> String {
    use std::fmt::Write;
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or_else(|| "n/a".to_string(), f);
    let us = |ns: Option<u64>| opt(ns.map(|n| n as f64 / 1e3), &|v| format!("{v:.1} us"));
    let mib = |b: Option<u64>| opt(b.map(|b| b as f64 / (1 << 20) as f64), &|v| format!("{v:.1} MiB"));
    let x = |v: Option<f64>| opt(v, &|v| format!("{v:.2}x"));
    let (w, t) = (&r.weir, &r.tokio);
    let lat = |l: &PhaseFigures, f: fn(&Latency) -> u64| l.latency_ns.as_ref().map(f);
    let lr = |i: usize| r.latency_ratio.map(|a| a[i]);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "weir bench on {}: {} empty jobs per round, cap {}, {} rounds (medians), weir worker_threads = {}, Prometheus recorder {}",
        r.machine,
        r.jobs,
        r.cap,
        r.rounds,
        r.worker_threads,
        if r.metrics { "installed" } else { "not installed" }
    );
    let _ = writeln!(
        s,
        "{:<34}{:>16}{:>24}{:>14}",
        "", "weir", "tokio Semaphore+spawn", "weir/tokio"
    );
    let mut row = |name: &str, a: String, b: String, ratio: String| {
        let _ = writeln!(s, "{name:<34}{a:>16}{b:>24}{ratio:>14}");
    };
    let jps = |v: Option<f64>| opt(v, &|v| format!("{v:.0}"));
    row(
        "throughput, jobs/s (submit..outcome)",
        jps(w.jobs_per_sec),
        jps(t.jobs_per_sec),
        x(r.throughput_ratio),
    );
    let ns = |v: Option<f64>| opt(v, &|v| format!("{v:.0} ns"));
    row(
        "CPU time per job (all threads)",
        ns(w.cpu_ns_per_job),
        ns(t.cpu_ns_per_job),
        x(r.cpu_ratio),
    );
    row(
        "latency p50 (submit..first poll)",
        us(lat(w, |l| l.p50)),
        us(lat(t, |l| l.p50)),
        x(lr(0)),
    );
    row(
        "latency p99",
        us(lat(w, |l| l.p99)),
        us(lat(t, |l| l.p99)),
        x(lr(1)),
    );
    row(
        "latency p99.9",
        us(lat(w, |l| l.p999)),
        us(lat(t, |l| l.p999)),
        x(lr(2)),
    );
    row(
        "peak RSS of the phase",
        mib(w.peak_rss),
        mib(t.peak_rss),
        String::new(),
    );
    let bytes = |v: Option<f64>| opt(v, &|v| format!("{v:.0} B"));
    row(
        "RSS per queued job",
        bytes(w.bytes_per_queued_job),
        bytes(t.bytes_per_queued_job),
        x(r.queued_memory_ratio),
    );
    let _ = writeln!(
        s,
        "slot release + grant in weir's core: {:.0} ns of CPU time",
        r.core_grant_ns
    );
    let _ = writeln!(
        s,
        "RSS per waiting job, every job its own tenant: {}",
        bytes(r.bytes_per_waiting_job_tenants)
    );
    if let Some(ns) = w.supervisor_ns_per_job {
        let _ = writeln!(
            s,
            "supervisor's thread (submitting from another thread): {ns:.0} ns of CPU per job, a ceiling of {:.0} jobs/s whatever the body threads",
            1e9 / ns
        );
    }
    match &r.speedup_not_run {
        None => {
            let _ = writeln!(
                s,
                "speed-up from one core to two (taskset): weir {}, tokio {}",
                x(r.speedup_1_to_2_cores),
                x(r.speedup_1_to_2_cores_tokio)
            );
        }
        Some(why) => {
            let _ = writeln!(s, "speed-up from one core to two: not run ({why})");
        }
    }
    match (r.redis_grant_ns, &r.redis_not_run) {
        (Some(ns), _) => {
            let _ = writeln!(
                s,
                "shared counter in Redis (INCR, check, DECR): {:.0} ns per grant ({:.0} grants/s); weir's grant is {:.0}x cheaper",
                ns,
                1e9 / ns,
                r.redis_over_weir.unwrap_or_default()
            );
        }
        (None, why) => {
            let _ = writeln!(
                s,
                "shared counter in Redis: not run ({})",
                why.as_deref().unwrap_or("unknown reason")
            );
        }
    }
    let _ = writeln!(
        s,
        "fan-out 1,000 orgs x 50 projections, zero-latency jobs, batches of 25 every 10 ms: makespan {}, lower bound {}, overhead {}",
        opt(r.fanout.makespan_ms, &|v| format!("{v:.1} ms")),
        opt(r.fanout.lower_bound_ms, &|v| format!("{v:.1} ms")),
        opt(r.fanout_overhead_pct, &|v| format!("{v:.1} %")),
    );
    let _ = writeln!(
        s,
        "fan-out phase: CPU time per job {} (all threads), peak RSS {}",
        opt(r.fanout.cpu_ns_per_job, &|v| format!("{v:.0} ns")),
        mib(r.fanout.peak_rss)
    );
    for (tasks, [w, t], ratio) in [
        (1, r.embedded_1, r.embedded_ratio_1),
        (32, r.embedded_32, r.embedded_ratio_32),
    ] {
        let _ = writeln!(
            s,
            "embedded in a tokio service, {tasks} submitting task(s): weir {} jobs/s, tokio {} jobs/s, {}",
            jps(w),
            jps(t),
            x(ratio)
        );
    }
    let _ = writeln!(
        s,
        "isolation (another resource's bodies spin 1 ms each): p99 submit..first poll weir {}, with worker_threads = 0 {}, tokio {}",
        us(r.isolation_p99_ns),
        us(r.isolation_p99_ns_worker_threads_0),
        us(r.isolation_p99_ns_tokio)
    );
    s
}
