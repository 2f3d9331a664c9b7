//! weir: the organisations are one fan-out batch submitted to the real [`Runtime`]
//! (released `org_batch_size` at a time, `batch_delay` apart, as the cascade did), each
//! organisation job spawns its projection jobs on the `store` resource and joins them
//! without holding a slot. The supervisor grants `store` slots; nothing else admits work.

use std::sync::Arc;
use std::time::Duration;

use weir::{Config, JobError, JobSpec};

use super::{outcome_of, Recorder, RunError, Store, Workload};
use crate::simulate::scenario::{IncidentScenario, WaitTimeoutAction};
use weir_actors::{Job, Runtime};

/// The resource of the projection jobs' queries.
pub(crate) const STORE: &str = "store";

/// Runs the workload; returns the peak of `store` slots held, as the scheduler counted.
pub(super) async fn run(
    workload: Arc<Workload>,
    scenario: &IncidentScenario,
    store: &Arc<Store>,
    recorder: &Arc<Recorder>,
) -> Result<u64, RunError> {
    let config = Config {
        scheduler: scenario.scheduler.clone(),
        ..Config::default()
    };
    let runtime = Runtime::start(config)?;
    let requeue = scenario.weir.on_wait_timeout == WaitTimeoutAction::Requeue;
    let mut jobs = Vec::with_capacity(workload.orgs.len());
    let mut handles = Vec::with_capacity(workload.orgs.len());
    for org in 0..workload.orgs.len() {
        let (workload, store, recorder) = (workload.clone(), store.clone(), recorder.clone());
        let spec = JobSpec::new(workload.orgs[org].tenant.clone(), "orgs").kind("organisation");
        let (job, handle) = Job::new(spec, move |ctx| async move {
            let queries = &workload.orgs[org].queries;
            let children = queries.iter().copied().map(|q| {
                recorder.submitted(q.id);
                let (store, recorder) = (store.clone(), recorder.clone());
                let mut spec = ctx.child_spec(STORE).kind("projection");
                if requeue {
                    spec = spec.requeue_on_wait_timeout();
                }
                (spec, move |_ctx| async move {
                    recorder.started(q.id);
                    let result = store.query(q.latency, q.fails).await;
                    recorder.ended(q.id, outcome_of(&result));
                    result.map_err(|e| JobError::msg(e.to_string()))
                })
            });
            let children = ctx.spawn(children)?;
            // Jobs that never ran (skipped, cancelled) or were stopped (timed out) end
            // here, when the organisation collects them.
            for (q, outcome) in queries.iter().zip(ctx.join(children).await) {
                recorder.ended(q.id, outcome.kind());
            }
            Ok::<_, JobError>(())
        });
        jobs.push(job);
        handles.push(handle);
    }
    runtime.submit_batch(jobs)?;
    futures::future::join_all(handles).await;
    let stats = runtime.stats().await;
    runtime.shutdown(Duration::ZERO).await;
    Ok(stats
        .resources
        .get(STORE)
        .map_or(0, |r| u64::from(r.peak_in_flight)))
}
