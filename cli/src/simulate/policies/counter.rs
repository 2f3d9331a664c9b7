//! The patch that shipped: a shared counter in a cache, capped at `max_concurrent`, each
//! holder's entry leased for `slot_lease_timeout`. A task polls the counter every
//! `poll_interval` until it gets in, and skips once it has waited `slot_wait_timeout`.
//! Organisations are released as in the cascade (see `naive`).
//!
//! The counter admits in no order: whichever task polls first after a slot frees gets it,
//! and a freed slot stays idle until the next poll.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use weir::engine::BatchSchedule;
use weir::OutcomeKind;

use super::{outcome_of, Recorder, Store, Workload};
use crate::simulate::scenario::IncidentScenario;

/// The cache's counter: holders with their lease expiry, expired lazily on every
/// attempt (the way a cache expires keys).
#[derive(Debug)]
struct LeasedCounter {
    cap: usize,
    lease: Duration,
    holders: HashMap<usize, Instant>,
    peak: usize,
}

impl LeasedCounter {
    fn try_acquire(&mut self, id: usize, now: Instant) -> bool {
        self.holders.retain(|_, expires| *expires > now);
        if self.holders.len() >= self.cap {
            return false;
        }
        self.holders.insert(id, now + self.lease);
        self.peak = self.peak.max(self.holders.len());
        true
    }

    fn release(&mut self, id: usize) {
        self.holders.remove(&id);
    }
}

/// Runs the workload; returns the counter's peak.
pub(super) async fn run(
    workload: &Workload,
    scenario: &IncidentScenario,
    store: &Arc<Store>,
    recorder: &Arc<Recorder>,
) -> u64 {
    let s = &scenario.scheduler;
    let schedule = BatchSchedule::new(s.org_batch_size, s.batch_delay);
    let (wait_timeout, poll) = (s.slot_wait_timeout, scenario.counter.poll_interval);
    let counter = Rc::new(RefCell::new(LeasedCounter {
        cap: s.max_concurrent as usize,
        lease: s.slot_lease_timeout,
        holders: HashMap::new(),
        peak: 0,
    }));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, org) in workload.orgs.iter().enumerate() {
        tokio::time::sleep_until(start + schedule.offset(i)).await;
        for q in org.queries.iter().copied() {
            recorder.submitted(q.id);
            let (store, recorder, counter) = (store.clone(), recorder.clone(), counter.clone());
            tasks.push(actix_rt::spawn(async move {
                let submitted = Instant::now();
                while !counter.borrow_mut().try_acquire(q.id, Instant::now()) {
                    if submitted.elapsed() >= wait_timeout {
                        recorder.ended(q.id, OutcomeKind::Skipped);
                        return;
                    }
                    tokio::time::sleep(poll).await;
                }
                recorder.started(q.id);
                let result = store.query(q.latency, q.fails).await;
                counter.borrow_mut().release(q.id);
                recorder.ended(q.id, outcome_of(&result));
            }));
        }
    }
    futures::future::join_all(tasks).await;
    let peak = counter.borrow().peak as u64;
    peak
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_caps_holders_and_expires_leases() {
        let t0 = Instant::now();
        let mut c = LeasedCounter {
            cap: 2,
            lease: Duration::from_secs(10),
            holders: HashMap::new(),
            peak: 0,
        };
        assert!(c.try_acquire(1, t0));
        assert!(c.try_acquire(2, t0));
        assert!(!c.try_acquire(3, t0));
        c.release(1);
        assert!(c.try_acquire(3, t0));
        // Both leases lapse: the cache forgets the holders, whatever they are doing.
        assert!(c.try_acquire(4, t0 + Duration::from_secs(11)));
        assert_eq!(c.peak, 2);
    }
}
