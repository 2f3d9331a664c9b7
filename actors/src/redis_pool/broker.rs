//! The task that carries one Redis-backed resource's leases for the supervisor.
//!
//! The supervisor grants a local slot as usual and then asks the broker for a global
//! lease (`Want`); the job starts only when the broker answers `Leased` (or `Admitted`,
//! under `fail_open_local` while Redis is unreachable). The broker batches: every want
//! that arrived since its last call travels in one `acquire`, every return in one
//! `release`, every held lease in one `renew` per renewal interval. Wants are served in
//! the order the supervisor granted them (its fair order); a want that no lease is free
//! for waits in the broker, polled with backoff, until it is granted or the supervisor
//! forgets it (the core decides when a job stops waiting: its wait timeout, its lease,
//! a cancellation).
//!
//! The only clock the broker reads is the process's monotonic clock, for its own timers
//! (poll backoff, renewal ticks, and "no renewal for a whole lease_ttl":
//! a lease surely expired on the server). Lease validity is decided by Redis alone.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use weir::{BackendConfig, FailurePolicy, JobKey};

use super::pool::{LeaseId, RedisPool, Released};
use super::stats::BackendStats;

/// A retry wait drawn uniformly from `[0, ceiling]` by `draw` (in `[0, 1)`): "full
/// jitter". Replicas that lost Redis at the same moment would otherwise retry in lockstep,
/// all at the same doubled delays, and meet a recovering server together; spread over the
/// whole interval, their retries arrive one by one. The draw comes from the OS-seeded
/// generator: this is the I/O shell, where replicas must not share a sequence.
pub(crate) fn full_jitter(ceiling: Duration, draw: f64) -> Duration {
    ceiling.mul_f64(draw.clamp(0.0, 1.0))
}

/// One more failed call to Redis: doubles the retry ceiling `delay` from `RETRY_MIN` to
/// `RETRY_MAX` and returns the wait before the next try, drawn below it ([`full_jitter`]).
/// Every Redis broker (slots, quotas, rates) backs off through this one step.
pub(crate) fn back_off(delay: &mut Duration) -> Duration {
    *delay = (*delay * 2).clamp(RETRY_MIN, RETRY_MAX);
    full_jitter(*delay, rand::random::<f64>())
}

/// What the supervisor asks of the broker.
#[derive(Debug)]
pub(crate) enum Cmd {
    /// A locally granted job needs a global lease.
    Want(JobKey),
    /// The job no longer wants (cancelled, stopped); any lease it got is returned.
    Forget(JobKey),
    /// The job's slot comes back: return its lease.
    Return(JobKey),
    /// How a job holding a shared admission ended, sent before its `Return`: a shared
    /// learned rate grows on successes and is cut by overload refusals (issue 26).
    Ended(JobKey, Ended),
}

/// How a job ended, as far as a shared learned rate cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Its call succeeded.
    Completed,
    /// The downstream refused it as overloaded, with this Retry-After if it gave one.
    Overloaded(Option<Duration>),
    /// Anything else: no signal about the rate.
    Other,
}

/// What the broker tells the supervisor.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The job holds a global lease with this fencing token: start it.
    Leased { key: JobKey, token: u64 },
    /// Start the job without a lease: Redis is unreachable and `fail_open_local` admits
    /// it, or a shared rate limit admitted it (it holds nothing to renew or return).
    Admitted(JobKey),
    /// The job's lease was lost (expired before renewal): stop it.
    Lost(JobKey),
}

struct Held {
    id: Option<LeaseId>, // None: admitted fail-open, nothing to renew or release
    renewed: Instant,
}

/// Poll delays while the shared pool is full, and reconnect delays while Redis fails.
const POLL_MIN: Duration = Duration::from_millis(2);
const POLL_MAX: Duration = Duration::from_millis(100);
const RETRY_MIN: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

pub(crate) struct Broker {
    pool: Arc<RedisPool>,
    config: BackendConfig,
    rx: mpsc::UnboundedReceiver<Cmd>,
    answer: Box<dyn Fn(Vec<Answer>) + Send>,
    stats: Arc<Mutex<BackendStats>>,
    wants: VecDeque<(JobKey, Instant)>,
    held: HashMap<JobKey, Held>,
    returns: Vec<LeaseId>,
    next_try: Instant,
    delay: Duration,
    next_renewal: Instant,
}

impl Broker {
    pub(crate) fn new(
        pool: Arc<RedisPool>,
        config: BackendConfig,
        rx: mpsc::UnboundedReceiver<Cmd>,
        answer: Box<dyn Fn(Vec<Answer>) + Send>,
        stats: Arc<Mutex<BackendStats>>,
    ) -> Self {
        let now = Instant::now();
        Self {
            next_renewal: now + config.renewal_interval,
            pool,
            config,
            rx,
            answer,
            stats,
            wants: VecDeque::new(),
            held: HashMap::new(),
            returns: Vec::new(),
            next_try: now,
            delay: Duration::ZERO,
        }
    }

    fn stats(&self) -> std::sync::MutexGuard<'_, BackendStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn on(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Want(key) => self.wants.push_back((key, Instant::now())),
            Cmd::Forget(key) | Cmd::Return(key) => {
                self.wants.retain(|(k, _)| *k != key);
                if let Some(Held { id: Some(id), .. }) = self.held.remove(&key) {
                    self.returns.push(id);
                }
            }
            // A slot lease says nothing about a rate.
            Cmd::Ended(..) => {}
        }
    }

    /// Runs until the supervisor drops its sender; then returns every lease it holds.
    pub(crate) async fn run(mut self) {
        loop {
            let wake = self.next_wake();
            tokio::select! {
                cmd = self.rx.recv() => match cmd {
                    Some(cmd) => self.on(cmd),
                    None => break,
                },
                _ = tokio::time::sleep_until(wake) => {}
            }
            while let Ok(cmd) = self.rx.try_recv() {
                self.on(cmd);
            }
            self.step().await;
        }
        let ids: Vec<LeaseId> = self.held.drain().filter_map(|(_, h)| h.id).collect();
        self.returns.extend(ids);
        self.release().await;
    }

    fn next_wake(&self) -> Instant {
        let mut at = self.next_renewal;
        if !self.wants.is_empty() {
            at = at.min(self.next_try);
        }
        if !self.returns.is_empty() {
            at = at.min(self.next_try);
        }
        at
    }

    async fn step(&mut self) {
        let now = Instant::now();
        let mut answers = Vec::new();
        if now >= self.next_try {
            self.release().await;
            if !self.wants.is_empty() {
                self.acquire(&mut answers).await;
            }
        }
        if Instant::now() >= self.next_renewal {
            self.renew(&mut answers).await;
            self.next_renewal = Instant::now() + self.config.renewal_interval;
        }
        if !answers.is_empty() {
            (self.answer)(answers);
        }
    }

    fn failed(&mut self, what: &str, e: &super::PoolError) {
        self.stats().backend_errors += 1;
        let retry_in = back_off(&mut self.delay);
        self.next_try = Instant::now() + retry_in;
        tracing::warn!(resource = %self.pool.settings().resource, error = %e, ?retry_in, "redis {what} failed");
    }

    async fn release(&mut self) {
        if self.returns.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.returns);
        match self.pool.release(&ids).await {
            Ok(results) => {
                let expired = results.iter().filter(|r| **r != Released::Held).count() as u64;
                let mut stats = self.stats();
                stats.round_trips += 1;
                stats.released += ids.len() as u64;
                stats.released_expired += expired;
            }
            Err(e) => {
                // Kept for the next try; a lease that expires meanwhile is reclaimed by
                // the server anyway.
                self.returns = ids;
                self.failed("release", &e);
            }
        }
    }

    async fn acquire(&mut self, answers: &mut Vec<Answer>) {
        let n = self.wants.len();
        match self.pool.acquire(n).await {
            Ok(got) => {
                let now = Instant::now();
                let granted = got.leases.len();
                {
                    let mut stats = self.stats();
                    stats.round_trips += 1;
                    stats.reclaimed_leases += got.reclaimed;
                    stats.grants += granted as u64;
                    for (_, since) in self.wants.iter().take(granted) {
                        stats.record_grant_latency(now.saturating_duration_since(*since));
                    }
                }
                for lease in got.leases {
                    let (key, _) = self.wants.pop_front().expect("no more leases than wants");
                    self.held.insert(
                        key,
                        Held {
                            id: Some(lease.id),
                            renewed: now,
                        },
                    );
                    answers.push(Answer::Leased {
                        key,
                        token: lease.token,
                    });
                }
                // Full: poll again soon, backing off while it stays full.
                self.delay = if self.wants.is_empty() {
                    Duration::ZERO
                } else if granted > 0 {
                    POLL_MIN
                } else {
                    (self.delay * 2).clamp(POLL_MIN, POLL_MAX)
                };
                self.next_try = now + self.delay;
            }
            Err(e) => {
                self.failed("acquire", &e);
                if self.config.on_failure == FailurePolicy::FailOpenLocal {
                    self.admit_fail_open(answers);
                }
            }
        }
    }

    fn admit_fail_open(&mut self, answers: &mut Vec<Answer>) {
        let open = self.held.values().filter(|h| h.id.is_none()).count();
        let room = (self.config.local_cap as usize).saturating_sub(open);
        let now = Instant::now();
        for _ in 0..room.min(self.wants.len()) {
            let (key, _) = self.wants.pop_front().expect("counted");
            self.held.insert(
                key,
                Held {
                    id: None,
                    renewed: now,
                },
            );
            self.stats().fail_open_admissions += 1;
            tracing::warn!(job = key.id().0, resource = %self.pool.settings().resource, "redis unreachable: admitted without a lease (fail_open_local)");
            answers.push(Answer::Admitted(key));
        }
    }

    async fn renew(&mut self, answers: &mut Vec<Answer>) {
        let (keys, ids): (Vec<JobKey>, Vec<LeaseId>) = self
            .held
            .iter()
            .filter_map(|(k, h)| h.id.clone().map(|id| (*k, id)))
            .unzip();
        if ids.is_empty() {
            return;
        }
        match self.pool.renew(&ids).await {
            Ok(renewed) => {
                let now = Instant::now();
                let mut lost = Vec::new();
                for (key, ok) in keys.into_iter().zip(renewed) {
                    if ok {
                        if let Some(h) = self.held.get_mut(&key) {
                            h.renewed = now;
                        }
                    } else {
                        lost.push(key);
                    }
                }
                let mut stats = self.stats();
                stats.round_trips += 1;
                stats.renewals += ids.len() as u64 - lost.len() as u64;
                stats.lost_leases += lost.len() as u64;
                drop(stats);
                for key in lost {
                    self.held.remove(&key);
                    tracing::warn!(job = key.id().0, resource = %self.pool.settings().resource, "lease lost: it expired before renewal; stopping the job");
                    answers.push(Answer::Lost(key));
                }
            }
            Err(e) => {
                self.failed("renew", &e);
                // No renewal for a whole lease_ttl: the server has surely expired the
                // lease, and another process may hold the slot. Stop the job.
                let ttl = self.config.lease_ttl;
                let now = Instant::now();
                let lost: Vec<JobKey> = self
                    .held
                    .iter()
                    .filter(|(_, h)| h.id.is_some() && now.saturating_duration_since(h.renewed) >= ttl)
                    .map(|(k, _)| *k)
                    .collect();
                self.stats().lost_leases += lost.len() as u64;
                for key in lost {
                    self.held.remove(&key);
                    answers.push(Answer::Lost(key));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_jitter_draws_across_the_whole_interval_below_the_ceiling() {
        let ceiling = Duration::from_millis(800);
        assert_eq!(full_jitter(ceiling, 0.0), Duration::ZERO);
        assert_eq!(full_jitter(ceiling, 0.5), Duration::from_millis(400));
        assert!(full_jitter(ceiling, 0.999_999) <= ceiling);
        // Out-of-range draws are clamped, never past the ceiling.
        assert_eq!(full_jitter(ceiling, 7.0), ceiling);
        // Two replicas' draws spread: 1,000 draws fill every tenth of the interval.
        let mut tenths = [0u32; 10];
        for _ in 0..1_000 {
            let d = full_jitter(ceiling, rand::random::<f64>());
            tenths[(d.as_secs_f64() / ceiling.as_secs_f64() * 10.0).min(9.0) as usize] += 1;
        }
        assert!(tenths.iter().all(|&n| n > 0), "{tenths:?}");
    }
}
