//! The simulated store of the `limit-shift` scenario: its limit moves over time, its
//! latency grows with its load, and it refuses every query over its limit. It counts
//! from its own side: queries, refusals, and queries in progress after every change.

use std::sync::Mutex;
use std::time::Duration;

use rand::SeedableRng;
use rand_distr::{Distribution, LogNormal};
use tokio::time::Instant;
use weir::JobError;

use super::scenario::StoreSpec;
use crate::simulate::workload::lognormal;

/// What the store counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Queries it received (refused ones included).
    pub calls: u64,
    /// Queries it refused as over its limit.
    pub refused: u64,
    /// Most queries in progress at once.
    pub peak: u32,
}

struct State {
    in_progress: u32,
    counts: StoreCounts,
    rng: rand::rngs::StdRng,
    /// Queries in progress after each change (scenario time).
    timeline: Vec<(Duration, u32)>,
}

/// The store (shared by every job of one policy's run).
pub struct Store {
    spec: StoreSpec,
    latency: LogNormal<f64>,
    start: Instant,
    state: Mutex<State>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// A store per `spec` whose time starts now, its latencies drawn from `seed`.
    pub fn new(spec: &StoreSpec, seed: u64) -> Self {
        Self {
            spec: spec.clone(),
            latency: lognormal(spec.latency),
            start: Instant::now(),
            state: Mutex::new(State {
                in_progress: 0,
                counts: StoreCounts::default(),
                rng: rand::rngs::StdRng::seed_from_u64(seed),
                timeline: vec![(Duration::ZERO, 0)],
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A job that panicked while holding the lock left consistent counts behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One query: refused (an overload error) if `limit` queries are in progress, else
    /// served after its latency.
    pub async fn query(&self) -> Result<(), JobError> {
        let at = self.start.elapsed();
        let limit = self.spec.limit_at(at);
        let latency = {
            let mut s = self.state();
            s.counts.calls += 1;
            if s.in_progress >= limit {
                s.counts.refused += 1;
                None
            } else {
                s.in_progress += 1;
                s.counts.peak = s.counts.peak.max(s.in_progress);
                let n = s.in_progress;
                s.timeline.push((at, n));
                let load = f64::from(n) / f64::from(limit);
                let base = self.latency.sample(&mut s.rng);
                Some(Duration::from_secs_f64(
                    base * (1.0 + self.spec.load_latency * load),
                ))
            }
        };
        let Some(latency) = latency else {
            tokio::time::sleep(self.spec.reject_latency).await;
            return Err(JobError::overload(format!(
                "RateLimitExceeded: {limit} queries in progress"
            )));
        };
        // Counted out however the query ends (also when its job is cancelled).
        let _leave = Leave(self);
        tokio::time::sleep(latency).await;
        Ok(())
    }

    /// What it counted so far.
    pub fn counts(&self) -> StoreCounts {
        self.state().counts.clone()
    }

    /// Queries in progress after each change.
    pub fn timeline(&self) -> Vec<(Duration, u32)> {
        self.state().timeline.clone()
    }
}

/// Takes a served query out of progress when it is dropped.
struct Leave<'a>(&'a Store);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let at = self.0.start.elapsed();
        let mut s = self.0.state();
        s.in_progress = s.in_progress.saturating_sub(1);
        let n = s.in_progress;
        s.timeline.push((at, n));
    }
}
