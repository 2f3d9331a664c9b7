//! A service embedding weir: a nightly batch fans out one job per organisation, each
//! organisation fans out one query per projection, and the store sees at most
//! `max_concurrent` queries at once however wide the cascade gets.
//!
//! Run: `cargo run --release -p weir-actors --example embed`

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir::{JobError, JobSpec, Outcome};
use weir_actors::{load_config, Job, JobContext, Runtime};

/// Stand-in for the real store client: counts concurrent queries.
#[derive(Default)]
struct Store {
    in_flight: AtomicU32,
    peak: AtomicU32,
}

impl Store {
    async fn query(&self, org: u32, projection: u32) -> Result<u64, JobError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Ok(u64::from(org * 1000 + projection))
    }
}

#[actix_rt::main]
async fn main() {
    // The embedded default, then WEIR__... variables; no batch delay for a quick demo.
    let mut config = load_config(None).expect("valid configuration");
    config.scheduler.batch_delay = Duration::ZERO;
    let runtime = Runtime::start(config).expect("runtime starts");
    let store = Arc::new(Store::default());

    let mut jobs = Vec::new();
    let mut handles = Vec::new();
    for org in 0..40u32 {
        let store = store.clone();
        let (job, handle) = Job::new(
            JobSpec::new(format!("org-{org}"), "orgs").kind("org"),
            move |ctx: JobContext| async move {
                let projections = ctx.spawn((0..30u32).map(|p| {
                    let store = store.clone();
                    let spec = ctx.child_spec("store").kind("projection");
                    (spec, move |_ctx| async move { store.query(org, p).await })
                }))?;
                // The organisation job gives its slot back while it waits.
                let results = ctx.join(projections).await;
                Ok::<_, JobError>(results.iter().filter(|o| o.is_completed()).count())
            },
        );
        jobs.push(job);
        handles.push(handle);
    }
    runtime.submit_batch(jobs).expect("batch accepted");

    let completed = futures::future::join_all(handles)
        .await
        .into_iter()
        .filter(|o| matches!(o, Outcome::Completed(30)))
        .count();
    let stats = runtime.stats().await;
    let s = &stats.resources["store"];
    println!(
        "organisations completed: {completed}/40; queries completed: {}; store peak concurrency: {} (cap {}); wait p99: {:?}",
        s.outcomes.completed,
        store.peak.load(Ordering::SeqCst),
        s.cap,
        s.wait.p99
    );
    runtime.shutdown(Duration::from_secs(5)).await;
}
