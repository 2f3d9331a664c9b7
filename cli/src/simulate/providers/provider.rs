//! A simulated provider: it enforces its own concurrency and rate limits and rejects
//! every call over them, and it fails every call it accepts during its burst windows.
//! It counts from its own side, whatever the caller believes it is doing.
//!
//! A call is judged the moment it arrives, in this order:
//! 1. `max_concurrent` calls are being served: rejected, over concurrency;
//! 2. it already accepted `requests` calls in the last `per` (a sliding window over
//!    the calls it accepted, not the ones it rejected): rejected, over rate, with the
//!    exact Retry-After (when the oldest of them leaves the window);
//! 3. otherwise it is accepted (and counts towards the rate); inside a burst it fails
//!    with a 429 and the provider's `retry_after`, else it is served.
//!
//! Rejections and a burst's 429 take `reject_latency`; a served call takes a latency
//! drawn from the provider's own seeded generator, in call order (the run is
//! single-threaded on a paused clock, so the order, and the draws, repeat).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, LogNormal};
use serde::Serialize;
use tokio::time::Instant;
use weir::JobError;

use super::scenario::ProviderSpec;
use crate::simulate::workload::lognormal;

/// Why a provider refused or failed a call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// `max_concurrent` calls were being served.
    #[error("429: {provider} serves at most {limit} calls at once")]
    OverConcurrency {
        /// The provider.
        provider: &'static str,
        /// Its concurrency limit.
        limit: u32,
    },
    /// The provider had accepted its `requests` in the last `per`.
    #[error("429: {provider} rate limit reached, retry after {retry_after:?}")]
    OverRate {
        /// The provider.
        provider: &'static str,
        /// When the window has room again.
        retry_after: Duration,
    },
    /// The call arrived during a burst.
    #[error("429: {provider} is overloaded, retry after {retry_after:?}")]
    Burst {
        /// The provider.
        provider: &'static str,
        /// The provider's `retry_after`.
        retry_after: Duration,
    },
}

impl From<CallError> for JobError {
    /// A job's error carrying the Retry-After the provider sent, if it sent one.
    fn from(e: CallError) -> Self {
        let message = e.to_string();
        match e {
            CallError::OverConcurrency { .. } => JobError::msg(message),
            CallError::OverRate { retry_after, .. } | CallError::Burst { retry_after, .. } => {
                JobError::retry_after(message, retry_after)
            }
        }
    }
}

/// What a provider counted during one run. `rejected()` = over concurrency + over rate
/// + burst failures; `calls` = that + `succeeded`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProviderCounts {
    /// `a` or `b`.
    pub name: String,
    /// Its concurrency limit.
    pub max_concurrent: u32,
    /// Calls that reached it.
    pub calls: u64,
    /// Calls it served.
    pub succeeded: u64,
    /// Calls rejected because `max_concurrent` were being served.
    pub over_concurrency: u64,
    /// Calls rejected because its rate window was full.
    pub over_rate: u64,
    /// Calls it accepted and failed with a 429 during a burst.
    pub burst_failures: u64,
    /// Most calls in flight at once, rejected ones included until their rejection.
    pub peak_in_flight: u32,
    /// Calls that arrived during a pause it had announced: after a 429 with a
    /// Retry-After reached its caller and before that Retry-After ran out.
    pub calls_in_pause: u64,
}

impl ProviderCounts {
    /// Calls it rejected or failed: over concurrency, over rate, burst failures.
    pub fn rejected(&self) -> u64 {
        self.over_concurrency + self.over_rate + self.burst_failures
    }
}

#[derive(Debug)]
struct State {
    serving: u32,
    refusing: u32,
    /// Arrival times of the accepted calls still inside the rate window.
    accepted: VecDeque<Duration>,
    rng: StdRng,
    counts: ProviderCounts,
    /// Calls rejected so far, after each rejection (for the plot).
    rejected: Vec<(Duration, u32)>,
    /// Pauses announced and not over: `(answer reached the caller, Retry-After ends)`.
    pauses: Vec<(Duration, Duration)>,
}

/// One simulated provider (see the module docs).
#[derive(Debug)]
pub struct Provider {
    name: &'static str,
    spec: ProviderSpec,
    latency: LogNormal<f64>,
    origin: Instant,
    state: Mutex<State>,
}

/// The verdict on one arriving call.
enum Verdict {
    Refused(CallError),
    Failed(CallError),
    Served(Duration),
}

impl Provider {
    /// A provider named `name`; its clock starts now and its latencies are drawn from `seed`.
    pub fn new(name: &'static str, spec: &ProviderSpec, seed: u64) -> Self {
        Self {
            name,
            latency: lognormal(spec.latency),
            spec: spec.clone(),
            origin: Instant::now(),
            state: Mutex::new(State {
                serving: 0,
                refusing: 0,
                accepted: VecDeque::new(),
                rng: StdRng::seed_from_u64(seed),
                counts: ProviderCounts {
                    name: name.to_string(),
                    max_concurrent: spec.max_concurrent,
                    ..ProviderCounts::default()
                },
                rejected: vec![(Duration::ZERO, 0)],
                pauses: Vec::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the counters half-updated: recover them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn judge(&self, s: &mut State, at: Duration) -> Verdict {
        let spec = &self.spec;
        s.counts.calls += 1;
        s.pauses.retain(|&(_, until)| until > at);
        if s.pauses.iter().any(|&(answered, _)| answered < at) {
            s.counts.calls_in_pause += 1;
        }
        while s.accepted.front().is_some_and(|&t| t + spec.per <= at) {
            s.accepted.pop_front();
        }
        let (max_concurrent, requests) = spec.limits_at(at);
        if s.serving >= max_concurrent {
            s.counts.over_concurrency += 1;
            return Verdict::Refused(CallError::OverConcurrency {
                provider: self.name,
                limit: max_concurrent,
            });
        }
        if s.accepted.len() >= requests as usize {
            s.counts.over_rate += 1;
            // After a lowered limit the window may hold more than `requests`: room comes
            // when enough of the oldest have left.
            let leaving = s.accepted[s.accepted.len() - requests as usize];
            let retry_after = leaving + spec.per - at;
            s.pauses
                .push((at + spec.reject_latency, at + spec.reject_latency + retry_after));
            return Verdict::Refused(CallError::OverRate {
                provider: self.name,
                retry_after,
            });
        }
        s.accepted.push_back(at);
        if spec.bursting(at) {
            s.counts.burst_failures += 1;
            let answered = at + spec.reject_latency;
            s.pauses.push((answered, answered + spec.retry_after));
            return Verdict::Failed(CallError::Burst {
                provider: self.name,
                retry_after: spec.retry_after,
            });
        }
        let secs: f64 = self.latency.sample(&mut s.rng);
        Verdict::Served(Duration::from_micros((secs * 1e6).round().max(1.0) as u64))
    }

    /// One call. Dropping the future (a cancelled job) leaves the provider.
    pub async fn call(&self) -> Result<(), CallError> {
        let verdict = {
            let mut s = self.state();
            let at = self.origin.elapsed();
            let verdict = self.judge(&mut s, at);
            match verdict {
                Verdict::Refused(_) => {
                    s.refusing += 1;
                    let total = s.counts.rejected() as u32;
                    s.rejected.push((at, total));
                }
                Verdict::Failed(_) => {
                    s.serving += 1;
                    let total = s.counts.rejected() as u32;
                    s.rejected.push((at, total));
                }
                Verdict::Served(_) => s.serving += 1,
            }
            s.counts.peak_in_flight = s.counts.peak_in_flight.max(s.serving + s.refusing);
            verdict
        };
        let refused = matches!(verdict, Verdict::Refused(_));
        let _leave = Leave {
            provider: self,
            refused,
        };
        match verdict {
            Verdict::Refused(e) | Verdict::Failed(e) => {
                tokio::time::sleep(self.spec.reject_latency).await;
                Err(e)
            }
            Verdict::Served(latency) => {
                tokio::time::sleep(latency).await;
                self.state().counts.succeeded += 1;
                Ok(())
            }
        }
    }

    /// What it counted so far.
    pub fn counts(&self) -> ProviderCounts {
        self.state().counts.clone()
    }

    /// Calls rejected or failed so far, after each one, from its creation; the last
    /// point is now.
    pub fn rejected_timeline(&self) -> Vec<(Duration, u32)> {
        let s = self.state();
        let mut points = s.rejected.clone();
        points.push((self.origin.elapsed(), s.counts.rejected() as u32));
        points
    }
}

/// Leaves the provider when the call ends or its future is dropped.
struct Leave<'a> {
    provider: &'a Provider,
    refused: bool,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut s = self.provider.state();
        if self.refused {
            s.refusing -= 1;
        } else {
            s.serving -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::providers::scenario::{Burst, ProvidersScenario};

    fn paused<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
            .block_on(f)
    }

    fn spec(max_concurrent: u32, requests: u32) -> ProviderSpec {
        let mut s = ProvidersScenario::builtin().providers.a;
        s.max_concurrent = max_concurrent;
        s.requests = requests;
        s.per = Duration::from_secs(60);
        s.bursts.clear();
        s
    }

    #[test]
    fn rejects_over_concurrency_and_counts_each_reason() {
        paused(async {
            let p = std::sync::Arc::new(Provider::new("a", &spec(2, 100), 1));
            let calls = (0..5).map(|_| {
                let p = p.clone();
                tokio::spawn(async move { p.call().await })
            });
            let results: Vec<_> = futures::future::join_all(calls)
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
            assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2);
            let c = p.counts();
            assert_eq!((c.calls, c.succeeded, c.over_concurrency), (5, 2, 3));
            assert_eq!((c.over_rate, c.burst_failures, c.peak_in_flight), (0, 0, 5));
        });
    }

    #[test]
    fn rejects_over_rate_with_the_exact_retry_after() {
        paused(async {
            let p = Provider::new("b", &spec(1, 2), 1);
            assert!(p.call().await.is_ok());
            assert!(p.call().await.is_ok());
            let first = match p.call().await {
                Err(CallError::OverRate { retry_after, .. }) => retry_after,
                other => panic!("{other:?}"),
            };
            // Waiting exactly that long lets the next call in.
            tokio::time::sleep(first - Duration::from_millis(50)).await;
            assert!(p.call().await.is_ok());
            assert_eq!(p.counts().over_rate, 1);
        });
    }

    #[test]
    fn fails_accepted_calls_during_a_burst_with_its_retry_after() {
        paused(async {
            let mut s = spec(1, 100);
            s.bursts = vec![Burst {
                start: Duration::ZERO,
                length: Duration::from_secs(1),
            }];
            let p = Provider::new("a", &s, 1);
            let e = p.call().await.unwrap_err();
            assert_eq!(
                JobError::from(e),
                JobError::retry_after("429: a is overloaded, retry after 20s", Duration::from_secs(20))
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert!(p.call().await.is_ok());
            let c = p.counts();
            assert_eq!((c.burst_failures, c.succeeded, c.rejected()), (1, 1, 1));
            assert_eq!(p.rejected_timeline().last().map(|p| p.1), Some(1));
        });
    }
}
