//! The cascade as it ran in the incident: organisations are released in batches
//! (`org_batch_size`, `batch_delay` apart), and each one starts every projection's query at
//! once. Nothing bounds the queries in flight.

use std::cell::Cell;
use std::rc::Rc;

use tokio::time::Instant;
use weir::engine::BatchSchedule;
use weir::SchedulerConfig;

use super::{outcome_of, Recorder, Store, Workload};

/// Runs the workload; returns the most queries this policy had in flight at once.
pub(super) async fn run(
    workload: &Workload,
    scheduler: &SchedulerConfig,
    store: &std::sync::Arc<Store>,
    recorder: &std::sync::Arc<Recorder>,
) -> u64 {
    let schedule = BatchSchedule::new(scheduler.org_batch_size, scheduler.batch_delay);
    let start = Instant::now();
    // Tasks run on this thread; a plain cell tallies them.
    let in_flight = Rc::new(Cell::new(0u64));
    let peak = Rc::new(Cell::new(0u64));
    let mut tasks = Vec::new();
    for (i, org) in workload.orgs.iter().enumerate() {
        tokio::time::sleep_until(start + schedule.offset(i)).await;
        for q in org.queries.iter().copied() {
            recorder.submitted(q.id);
            let (store, recorder) = (store.clone(), recorder.clone());
            let (in_flight, peak) = (in_flight.clone(), peak.clone());
            tasks.push(actix_rt::spawn(async move {
                recorder.started(q.id);
                in_flight.set(in_flight.get() + 1);
                peak.set(peak.get().max(in_flight.get()));
                let result = store.query(q.latency, q.fails).await;
                in_flight.set(in_flight.get() - 1);
                recorder.ended(q.id, outcome_of(&result));
            }));
        }
    }
    futures::future::join_all(tasks).await;
    peak.get()
}
