//! `weir soak`: the real runtime on the real clock for a long while, under a mixed
//! workload with injected faults, sampled every few seconds and judged at the end.
//!
//! A soak answers what the chaos suite cannot: whether a scheduler that is right over
//! thousands of short cases also keeps its memory and its counts over millions of jobs
//! from tenants that come and go. The pieces, one file each:
//!
//! - [`options`]: the settings and the command's arguments, each checked;
//! - [`workload`]: the mix (cascades, flat queries, a flaky downstream behind a breaker
//!   with retries, coalesced requests, recurring checks, a Redis-leased resource) and
//!   the runtime configuration it runs under;
//! - [`downstream`]: the simulated downstreams, counting calls over their cap themselves;
//! - [`counters`]: the soak's own count of submissions and outcomes;
//! - [`sample`]: a sample of RSS, jobs/s, in flight, queued, tenants and outcomes;
//! - [`checks`]: the verdicts, a pure function of the evidence;
//! - [`report`], [`plot`]: the table, the JSON, the SVG.
//!
//! [`soak`] is the library entry point the CI-sized test calls; [`run`] is the command.

pub mod checks;
pub mod counters;
pub mod downstream;
pub mod options;
pub mod plot;
pub mod report;
pub mod sample;
pub mod workload;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use weir::ConfigError;
use weir_actors::Runtime;

pub use checks::{Check, CheckKind};
pub use options::{OptionError, SoakArgs, SoakOptions, TestDefect};
pub use report::SoakReport;

use counters::Counters;
use report::{Settings, Totals};
use sample::Sampler;
use workload::{Downstreams, Driver};

/// How often the driver submits its share of the workload.
const TICK: Duration = Duration::from_millis(10);
/// How long the end of a run waits for every handle before shutting down anyway (the
/// longest a job lives here is a wait timeout, 3 s, plus retries and a lease).
const DRAIN_LIMIT: Duration = Duration::from_secs(60);
/// Grace for jobs still running at shutdown.
const GRACE: Duration = Duration::from_secs(5);
/// Warm-up is the first minute, or the first fifth of a shorter run.
const WARM_UP: Duration = Duration::from_secs(60);

/// Why a soak could not run (a failed check is not an error: it is in the report).
#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    /// A setting out of range.
    #[error(transparent)]
    Options(#[from] OptionError),
    /// The soak's runtime configuration was refused (with `--redis`, the URL).
    #[error("--redis: {0}")]
    Config(#[from] ConfigError),
    /// The runtime, its coalescer or its recurring checks did not start.
    #[error("cannot start the runtime: {0}")]
    Start(String),
}

/// The warm-up of a run of `duration`.
pub fn warm_up(duration: Duration) -> Duration {
    WARM_UP.min(duration / 5)
}

/// Runs a soak and judges it. Blocks the calling thread for `options.duration` plus the
/// drain; starts its own actix system, so call it outside one. Injected panics are kept
/// off stderr while it runs (the previous panic hook is restored at the end).
pub fn soak(options: &SoakOptions) -> Result<SoakReport, SoakError> {
    options.validate()?;
    let config = workload::config(options.redis.as_deref())?;
    let previous = std::panic::take_hook();
    let previous = Arc::new(previous);
    let chained = previous.clone();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let injected = payload
            .downcast_ref::<&str>()
            .map(|s| s.starts_with("soak:"))
            .or_else(|| payload.downcast_ref::<String>().map(|s| s.starts_with("soak:")))
            .unwrap_or(false);
        if !injected {
            chained(info);
        }
    }));
    let result = actix_rt::System::new().block_on(run_in_system(options, config));
    // Put the caller's hook back (ours holds a clone of it).
    let _ = std::panic::take_hook();
    if let Ok(previous) = Arc::try_unwrap(previous) {
        std::panic::set_hook(previous);
    }
    result
}

async fn run_in_system(options: &SoakOptions, config: weir::Config) -> Result<SoakReport, SoakError> {
    let runtime = Runtime::start(config).map_err(|e| SoakError::Start(e.to_string()))?;
    let downstreams = Downstreams::new(&runtime.config());
    let counters = Counters::new(options.defect);
    let mut driver = Driver::start(runtime.clone(), counters.clone(), downstreams.clone(), options)
        .map_err(SoakError::Start)?;

    // The load: a tick every 10 ms submits the time since the last tick's worth.
    let start = Instant::now();
    let mut sampler = Sampler::new(start);
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = start;
    let mut next_sample = start + options.sample_every;
    loop {
        ticks.tick().await;
        let now = Instant::now();
        if now >= start + options.duration {
            break;
        }
        driver.tick(now - last);
        last = now;
        if now >= next_sample {
            next_sample += options.sample_every;
            let sample = sampler.take(&runtime, driver.tenants_seen()).await;
            if options.progress {
                eprintln!(
                    "soak: {:>5.0}s  RSS {:>6.1} MiB  {:>6.0} jobs/s  in flight {:>3}  queued {:>5}  tenants tracked {:>4}",
                    sample.at_s,
                    sample.rss_bytes as f64 / (1 << 20) as f64,
                    sample.jobs_per_sec,
                    sample.in_flight,
                    sample.queued,
                    sample.tenants_tracked
                );
            }
        }
    }
    // The last sample under load, which the memory check compares with warm-up.
    sampler.take(&runtime, driver.tenants_seen()).await;
    let end_of_load = Instant::now();

    // The end: no new checks, then wait for every handle, flush the coalescer, shut down.
    driver.checks().shutdown().await;
    wait_for_handles(&counters, DRAIN_LIMIT).await;
    let drain_s = end_of_load.elapsed().as_secs_f64();
    let coalesced = driver.coalescer().shutdown().await;
    let backend = runtime.backend_stats().await;
    runtime.shutdown(GRACE).await;
    // Handles resolved by the shutdown itself are counted by their watchers next.
    wait_for_handles(&counters, GRACE).await;
    let last = runtime.stats().await;

    let outcomes = counters.outcomes();
    let children = counters.children.load(Ordering::Relaxed);
    let submitted = counters.submitted.load(Ordering::Relaxed);
    let requests = counters.requests.load(Ordering::Relaxed);
    let flaky = last
        .resources
        .get("flaky")
        .map(|r| r.resilience)
        .unwrap_or_default();
    let totals = Totals {
        submitted,
        outcomes: outcomes.into(),
        children,
        child_outcomes: counters.child_outcomes().into(),
        recurring_jobs: counters.recurring_jobs.load(Ordering::Relaxed),
        requests,
        batches: coalesced.batches,
        merged: coalesced.merged,
        refused: counters.refused.load(Ordering::Relaxed),
        cancels: counters.cancels.load(Ordering::Relaxed),
        runtime_submitted: last.submitted(),
        runtime_outcomes: last.outcomes().into(),
        breaker_opened: flaky.opened,
        breaker_transitions: flaky.transitions,
        retries: last.resources.values().map(|r| r.resilience.retries).sum(),
        redis_grants: backend.get("shared").map_or(0, |b| b.grants),
        tenants_seen: driver.tenants_seen(),
        drain_s,
        peak_rss_bytes: crate::bench::memory::peak_rss().unwrap_or(0),
    };
    let downstreams: Vec<_> = downstreams.all().iter().map(|d| d.report()).collect();
    let warm_up = warm_up(options.duration);
    let evidence = checks::Evidence {
        submitted,
        outcomes: outcomes.into(),
        pending: counters.pending.load(Ordering::Relaxed),
        children,
        child_outcomes: counters.child_outcomes().into(),
        // Coalesced requests are not jobs; each batch that answered them is one.
        expected_jobs: submitted - requests + children + coalesced.batches,
        core_submitted: last.submitted(),
        core_outcomes: last.outcomes().into(),
        core_in_flight: last.in_flight(),
        core_queued: last.queued(),
        downstreams: downstreams.clone(),
        samples: sampler.samples.clone(),
        warm_up,
        sample_every: options.sample_every,
        active_tenants: u64::from(options.active_tenants),
        new_tenants_per_sec: u64::from(options.new_tenants_per_sec),
        quota_window: workload::QUOTA_WINDOW,
    };
    Ok(SoakReport {
        settings: Settings {
            duration_s: options.duration.as_secs_f64(),
            sample_every_s: options.sample_every.as_secs_f64(),
            rate: options.rate,
            active_tenants: options.active_tenants,
            new_tenants_per_sec: options.new_tenants_per_sec,
            seed: options.seed,
            redis: options.redis.is_some(),
            warm_up_s: warm_up.as_secs_f64(),
        },
        samples: sampler.samples,
        totals,
        downstreams,
        checks: checks::judge(&evidence),
    })
}

/// Waits until every handle the soak holds has resolved, or `limit` passes.
async fn wait_for_handles(counters: &Counters, limit: Duration) {
    let deadline = Instant::now() + limit;
    while counters.pending.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `weir soak`: runs, prints the table, writes `--json` and `--plot`. Exit status 0
/// when every check held, 1 when one failed; an unusable argument is an error (2).
pub fn run(args: &SoakArgs) -> Result<u8, String> {
    let options = args.options();
    let report = soak(&options).map_err(|e| e.to_string())?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "weir soak: {} at {} jobs/s offered",
            humantime::format_duration(options.duration),
            options.rate
        );
        plot::write_svg(path, &title, &report.samples, report.settings.warm_up_s)?;
    }
    Ok(if report.passed() { 0 } else { 1 })
}
