//! The task that carries one resource's shared rate limit for the supervisor: GCRA state
//! in Redis (`rate.lua`), on the server's clock.
//!
//! It speaks the slot broker's protocol (`Cmd` in, `Answer` out), so the core's
//! lease-wait stage carries it: a job granted a local slot (past the local breaker and
//! rate gate) waits until the shared limiter admits it. The broker asks for every
//! waiting job in one call; the limiter admits as many as the rate allows and says when
//! the next could pass, and the broker asks again then. The safety factor is applied
//! here (the interval sent is the effective one) and jitter stays in the process's own
//! gate, so replicas never share a random sequence.
//!
//! While Redis fails it retries with full-jitter backoff; `fail_open` and
//! `fail_open_local` admit the waiting jobs (counted; the process's own rate gate, which
//! every grant passes first, still holds its local rate), `fail_closed` admits none and
//! the core skips them at their wait timeout.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::Script;
use tokio::sync::mpsc;
use tokio::time::Instant;
use weir::{JobKey, RateLimitConfig, SharedFailure};

use super::broker::{back_off, Answer, Cmd, Ended};
use super::conn::Conn;
use super::quota_broker::OP_TIMEOUT;
use super::stats::BackendStats;
use super::PoolError;

/// A learned rate kept in Redis (issue 26): its bounds and the keys of its state.
struct Learned {
    /// The learned rate's hash: rate, generation, the last cut's rate, the pause.
    key: String,
    per_us: u64,
    ceiling: u32,
    min: u32,
    initial: u32,
    safety_factor: f64,
    take: Script,
    cut: Script,
}

/// What a take of the shared limiter answered.
pub(crate) struct Taken {
    /// Calls admitted now.
    pub(crate) admitted: usize,
    /// When the next call could pass.
    pub(crate) retry: Duration,
    /// The learned rate's generation the admitted calls were granted in (0 for a fixed
    /// rate).
    pub(crate) generation: u64,
}

/// The shared GCRA of one resource, at a fixed rate or at one learned by every replica.
pub(crate) struct RateStore {
    conn: Conn,
    key: String,
    interval_us: u64,
    tolerance_us: u64,
    script: Script,
    learned: Option<Learned>,
}

impl RateStore {
    pub(crate) fn new(resource: &str, cfg: &RateLimitConfig) -> Result<Self, PoolError> {
        let interval_us = u64::try_from(cfg.interval().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        // A learned rate's keys share a hash tag per resource, so a cluster keeps them
        // in one slot and one script may touch both.
        let learned = cfg.adaptive.map(|a| Learned {
            key: format!("{}:{{rate:{resource}}}:learned", cfg.key_prefix),
            per_us: u64::try_from(cfg.per.as_micros()).unwrap_or(u64::MAX).max(1),
            ceiling: cfg.requests,
            min: a.min,
            initial: a.initial.unwrap_or(a.min),
            safety_factor: cfg.safety_factor,
            take: Script::new(include_str!("learned_rate.lua")),
            cut: Script::new(include_str!("learned_rate_cut.lua")),
        });
        let key = if learned.is_some() {
            format!("{}:{{rate:{resource}}}:tat", cfg.key_prefix)
        } else {
            format!("{}:rate:{resource}", cfg.key_prefix)
        };
        Ok(Self {
            conn: Conn::new(&cfg.url, OP_TIMEOUT)?,
            key,
            interval_us,
            tolerance_us: interval_us.saturating_mul(u64::from(cfg.burst.max(1) - 1)),
            script: Script::new(include_str!("rate.lua")),
            learned,
        })
    }

    /// Admits up to `n` calls now; a learned rate first grows by `successes` (calls that
    /// succeeded since the last take).
    pub(crate) async fn take(&self, n: usize, successes: u64) -> Result<Taken, PoolError> {
        let Some(l) = &self.learned else {
            let mut inv = self.script.prepare_invoke();
            inv.key(&self.key)
                .arg(self.interval_us)
                .arg(self.tolerance_us)
                .arg(n);
            let (admitted, retry_us): (i64, i64) = self.conn.run(inv).await?;
            return Ok(Taken {
                admitted: usize::try_from(admitted).unwrap_or(0),
                retry: Duration::from_micros(u64::try_from(retry_us).unwrap_or(0)),
                generation: 0,
            });
        };
        let mut inv = l.take.prepare_invoke();
        inv.key(&self.key)
            .key(&l.key)
            .arg(l.per_us)
            .arg(l.ceiling)
            .arg(l.initial)
            .arg(l.safety_factor)
            .arg(n)
            .arg(successes);
        let (admitted, retry_us, generation, _rate): (i64, i64, i64, i64) = self.conn.run(inv).await?;
        Ok(Taken {
            admitted: usize::try_from(admitted).unwrap_or(0),
            retry: Duration::from_micros(u64::try_from(retry_us).unwrap_or(0)),
            generation: u64::try_from(generation).unwrap_or(0),
        })
    }

    /// An overload refusal of a call granted in `generation`: cuts the shared rate once
    /// per generation and pauses every replica until `retry_after`.
    pub(crate) async fn cut(&self, generation: u64, retry_after: Option<Duration>) -> Result<(), PoolError> {
        let Some(l) = &self.learned else {
            return Ok(());
        };
        let mut inv = l.cut.prepare_invoke();
        inv.key(&l.key)
            .arg(generation)
            .arg(retry_after.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)))
            .arg(l.min)
            .arg(l.initial);
        let _: (i64, i64) = self.conn.run(inv).await?;
        Ok(())
    }

    fn learns(&self) -> bool {
        self.learned.is_some()
    }
}

pub(crate) struct RateBroker {
    store: RateStore,
    policy: SharedFailure,
    rx: mpsc::UnboundedReceiver<Cmd>,
    answer: Box<dyn Fn(Vec<Answer>) + Send>,
    stats: Arc<Mutex<BackendStats>>,
    wants: VecDeque<(JobKey, Instant)>,
    /// A learned rate's admitted jobs, by the generation they were admitted in.
    admitted: HashMap<JobKey, u64>,
    /// Successes not yet reported to the shared learned rate.
    successes: u64,
    /// Overload refusals not yet reported: the call's generation and its Retry-After.
    refusals: Vec<(u64, Option<Duration>)>,
    next_try: Instant,
    delay: Duration,
}

impl RateBroker {
    pub(crate) fn new(
        store: RateStore,
        policy: SharedFailure,
        rx: mpsc::UnboundedReceiver<Cmd>,
        answer: Box<dyn Fn(Vec<Answer>) + Send>,
        stats: Arc<Mutex<BackendStats>>,
    ) -> Self {
        Self {
            store,
            policy,
            rx,
            answer,
            stats,
            wants: VecDeque::new(),
            admitted: HashMap::new(),
            successes: 0,
            refusals: Vec::new(),
            next_try: Instant::now(),
            delay: Duration::ZERO,
        }
    }

    fn on(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Want(key) => self.wants.push_back((key, Instant::now())),
            // Nothing is held: a rate admission is spent when it is given.
            Cmd::Forget(key) | Cmd::Return(key) => {
                self.wants.retain(|(k, _)| *k != key);
                self.admitted.remove(&key);
            }
            Cmd::Ended(key, ended) => {
                let Some(generation) = self.admitted.remove(&key) else {
                    return;
                };
                match ended {
                    Ended::Completed => self.successes += 1,
                    Ended::Overloaded(retry_after) => self.refusals.push((generation, retry_after)),
                    Ended::Other => {}
                }
            }
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            if self.wants.is_empty() {
                match self.rx.recv().await {
                    Some(cmd) => self.on(cmd),
                    None => return,
                }
            } else {
                tokio::select! {
                    cmd = self.rx.recv() => match cmd {
                        Some(cmd) => self.on(cmd),
                        None => return,
                    },
                    _ = tokio::time::sleep_until(self.next_try) => {}
                }
            }
            while let Ok(cmd) = self.rx.try_recv() {
                self.on(cmd);
            }
            self.report_refusals().await;
            if !self.wants.is_empty() && Instant::now() >= self.next_try {
                self.step().await;
            }
        }
    }

    /// Cuts the shared learned rate for the refusals heard since the last pass, before
    /// anything more is asked: a cut by one replica is a cut for all. A refusal that
    /// cannot be reported (Redis down) is dropped: the pause it carried has also reached
    /// this process's own gate.
    async fn report_refusals(&mut self) {
        for (generation, retry_after) in std::mem::take(&mut self.refusals) {
            if let Err(e) = self.store.cut(generation, retry_after).await {
                tracing::warn!(key = %self.store.key, error = %e, "redis learned-rate cut failed");
            }
        }
    }

    async fn step(&mut self) {
        let mut answers = Vec::new();
        match self.store.take(self.wants.len(), self.successes).await {
            Ok(Taken {
                admitted,
                retry,
                generation,
            }) => {
                self.successes = 0;
                self.delay = Duration::ZERO;
                let now = Instant::now();
                let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
                stats.round_trips += 1;
                for _ in 0..admitted {
                    let Some((key, since)) = self.wants.pop_front() else {
                        break;
                    };
                    stats.grants += 1;
                    if self.store.learns() {
                        self.admitted.insert(key, generation);
                    }
                    stats.record_grant_latency(now.saturating_duration_since(since));
                    answers.push(Answer::Admitted(key));
                }
                // The limiter said when the next call passes: ask again then, not before.
                self.next_try = now + retry.max(Duration::from_micros(100));
            }
            Err(e) => {
                self.stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .backend_errors += 1;
                let retry_in = back_off(&mut self.delay);
                self.next_try = Instant::now() + retry_in;
                tracing::warn!(key = %self.store.key, error = %e, ?retry_in, "redis rate check failed");
                if self.policy != SharedFailure::FailClosed {
                    let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
                    for (key, _) in self.wants.drain(..) {
                        stats.fail_open_admissions += 1;
                        tracing::warn!(
                            job = key.id().0,
                            "redis unreachable: admitted without the shared rate (fail-open)"
                        );
                        answers.push(Answer::Admitted(key));
                    }
                }
            }
        }
        if !answers.is_empty() {
            (self.answer)(answers);
        }
    }
}
