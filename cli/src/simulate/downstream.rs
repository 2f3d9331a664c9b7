//! The simulated store: serves at most `limit` queries at once and fails any query that
//! arrives over it with RateLimitExceeded, as the incident's store did. It counts from its
//! own side, whatever the caller believes about its concurrency.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Why the store failed a query.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The query arrived while `limit` queries were being served.
    #[error("RateLimitExceeded: the store serves at most {limit} queries at once")]
    RateLimitExceeded {
        /// The store's limit.
        limit: u32,
    },
    /// The store served the query and failed it (the scenario's error rate).
    #[error("the query failed in the store")]
    Failed,
}

/// What the store saw during one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreReport {
    /// Most requests in flight at once (served or being refused).
    pub peak: u32,
    /// Queries refused with RateLimitExceeded.
    pub rejections: u64,
    /// Requests in flight after each change, from the store's creation.
    pub timeline: Vec<(Duration, u32)>,
}

#[derive(Debug, Default)]
struct State {
    serving: u32,
    refusing: u32,
    report: StoreReport,
}

impl State {
    fn mark(&mut self, at: Duration) {
        let now = self.serving + self.refusing;
        self.report.peak = self.report.peak.max(now);
        self.report.timeline.push((at, now));
    }
}

/// A store with a hard concurrency limit. A refused query is in flight (it holds a
/// connection) until the refusal arrives, `reject_latency` later: that is how 159 queries
/// can be in flight against a limit of 100.
#[derive(Debug)]
pub struct Store {
    limit: u32,
    reject_latency: Duration,
    origin: Instant,
    state: Mutex<State>,
}

impl Store {
    /// A store serving at most `limit` queries at once; its clock starts now.
    pub fn new(limit: u32, reject_latency: Duration) -> Self {
        Self {
            limit,
            reject_latency,
            origin: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the counters half-updated: recover them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One query that takes `latency` to serve and then succeeds, or fails if `fails`.
    /// Dropping the future (a cancelled query) leaves the store.
    pub async fn query(&self, latency: Duration, fails: bool) -> Result<(), QueryError> {
        let refused = {
            let mut s = self.state();
            let refused = s.serving >= self.limit;
            if refused {
                s.refusing += 1;
                s.report.rejections += 1;
            } else {
                s.serving += 1;
            }
            s.mark(self.origin.elapsed());
            refused
        };
        let _leave = Leave { store: self, refused };
        if refused {
            tokio::time::sleep(self.reject_latency).await;
            return Err(QueryError::RateLimitExceeded { limit: self.limit });
        }
        tokio::time::sleep(latency).await;
        if fails {
            Err(QueryError::Failed)
        } else {
            Ok(())
        }
    }

    /// What the store saw so far.
    pub fn report(&self) -> StoreReport {
        self.state().report.clone()
    }
}

struct Leave<'a> {
    store: &'a Store,
    refused: bool,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut s = self.store.state();
        if self.refused {
            s.refusing -= 1;
        } else {
            s.serving -= 1;
        }
        s.mark(self.store.origin.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paused<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn refuses_over_the_limit_and_counts_refused_queries_in_flight() {
        paused(async {
            let store = std::sync::Arc::new(Store::new(2, Duration::from_millis(50)));
            let queries = (0..5).map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.query(Duration::from_secs(1), false).await })
            });
            let results = futures::future::join_all(queries).await;
            let results: Vec<_> = results.into_iter().map(Result::unwrap).collect();
            assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2);
            assert_eq!(
                results
                    .iter()
                    .filter(|r| **r == Err(QueryError::RateLimitExceeded { limit: 2 }))
                    .count(),
                3
            );
            let report = store.report();
            assert_eq!((report.peak, report.rejections), (5, 3));
            assert_eq!(report.timeline.last().map(|p| p.1), Some(0));
            assert_eq!(report.timeline.last().map(|p| p.0), Some(Duration::from_secs(1)));
        });
    }

    #[test]
    fn a_served_query_can_fail_and_a_dropped_one_leaves() {
        paused(async {
            let store = Store::new(1, Duration::ZERO);
            assert_eq!(
                store.query(Duration::from_secs(1), true).await,
                Err(QueryError::Failed)
            );
            let dropped = tokio::time::timeout(
                Duration::from_millis(10),
                store.query(Duration::from_secs(9), false),
            );
            assert!(dropped.await.is_err());
            assert_eq!(store.query(Duration::from_secs(1), false).await, Ok(()));
            assert_eq!(store.report().rejections, 0);
        });
    }
}
