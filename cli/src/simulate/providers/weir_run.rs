//! The `weir` policy: every job is a retrying job submitted to resource `a` of the real
//! [`Runtime`] when its batch arrives, configured by the scenario's `[weir]` table. The
//! job's body counts one call against its budget (`ctx.call()?`) and calls the provider
//! its slot is on (`a`, or `b` after a fallback); a provider's 429 comes back as the job's
//! error with the provider's Retry-After. Caps, rate limits, stagger, backoff, breaker,
//! fallback and budget are weir's; this driver only submits and waits.

use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;
use tokio::time::Instant;
use weir::{Config, JobError, JobSpec, Outcome};

use super::provider::Provider;
use super::scenario::{PRIMARY, SECONDARY};
use super::{JobEnd, PolicyTotals};
use crate::simulate::policies::RunError;
use weir_actors::{Job, JobContext, Runtime};

/// Runs the arrivals through a fresh runtime; one [`JobEnd`] per job, in arrival order.
pub(super) async fn run(
    arrivals: &[(Duration, u32)],
    config: Config,
    a: &Arc<Provider>,
    b: &Arc<Provider>,
    progress: &ProgressBar,
) -> Result<(Vec<JobEnd>, PolicyTotals), RunError> {
    let runtime = Runtime::start(config)?;
    let start = Instant::now();
    let mut ends = Vec::new();
    for &(at, jobs) in arrivals {
        tokio::time::sleep_until(start + at).await;
        for _ in 0..jobs {
            let (a, b) = (a.clone(), b.clone());
            let (job, handle) = Job::retrying(JobSpec::new("jobs", PRIMARY), move |ctx: JobContext| {
                let provider = if ctx.resource().as_str() == SECONDARY {
                    b.clone()
                } else {
                    a.clone()
                };
                async move {
                    ctx.call()?;
                    provider.call().await.map_err(JobError::from)
                }
            });
            runtime.submit_job(job)?;
            let progress = progress.clone();
            // A task of its own, so the end is stamped when the handle resolves.
            ends.push(actix_rt::spawn(async move {
                let outcome = handle.await;
                progress.inc(1);
                let mut end = JobEnd::new(outcome.kind(), start.elapsed());
                end.budget_exhausted = matches!(outcome, Outcome::Failed(JobError::BudgetExhausted { .. }));
                end
            }));
        }
    }
    let ends = futures::future::join_all(ends)
        .await
        .into_iter()
        .map(|end| end.expect("a waiting task does not panic"))
        .collect();
    let stats = runtime.stats().await;
    runtime.shutdown(Duration::ZERO).await;
    let mut totals = PolicyTotals::default();
    for r in stats.resources.values() {
        totals.retries += r.resilience.retries;
        totals.fallbacks += r.resilience.fallbacks;
        totals.breaker_opens += r.resilience.opened;
        totals.limiter_waits += r.resilience.limiter_waits;
    }
    Ok((ends, totals))
}
