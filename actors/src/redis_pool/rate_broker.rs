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

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::Script;
use tokio::sync::mpsc;
use tokio::time::Instant;
use weir::{JobKey, RateLimitConfig, SharedFailure};

use super::broker::{back_off, Answer, Cmd};
use super::conn::Conn;
use super::quota_broker::OP_TIMEOUT;
use super::stats::BackendStats;
use super::PoolError;

/// The shared GCRA of one resource.
pub(crate) struct RateStore {
    conn: Conn,
    key: String,
    interval_us: u64,
    tolerance_us: u64,
    script: Script,
}

impl RateStore {
    pub(crate) fn new(resource: &str, cfg: &RateLimitConfig) -> Result<Self, PoolError> {
        let interval_us = u64::try_from(cfg.interval().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        Ok(Self {
            conn: Conn::new(&cfg.url, OP_TIMEOUT)?,
            key: format!("{}:rate:{resource}", cfg.key_prefix),
            interval_us,
            tolerance_us: interval_us.saturating_mul(u64::from(cfg.burst.max(1) - 1)),
            script: Script::new(include_str!("rate.lua")),
        })
    }

    /// Admits up to `n` calls now; returns how many, and when the next could pass.
    pub(crate) async fn take(&self, n: usize) -> Result<(usize, Duration), PoolError> {
        let mut inv = self.script.prepare_invoke();
        inv.key(&self.key)
            .arg(self.interval_us)
            .arg(self.tolerance_us)
            .arg(n);
        let (admitted, retry_us): (i64, i64) = self.conn.run(inv).await?;
        Ok((
            usize::try_from(admitted).unwrap_or(0),
            Duration::from_micros(u64::try_from(retry_us).unwrap_or(0)),
        ))
    }
}

pub(crate) struct RateBroker {
    store: RateStore,
    policy: SharedFailure,
    rx: mpsc::UnboundedReceiver<Cmd>,
    answer: Box<dyn Fn(Vec<Answer>) + Send>,
    stats: Arc<Mutex<BackendStats>>,
    wants: VecDeque<(JobKey, Instant)>,
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
            next_try: Instant::now(),
            delay: Duration::ZERO,
        }
    }

    fn on(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Want(key) => self.wants.push_back((key, Instant::now())),
            // Nothing is held: a rate admission is spent when it is given.
            Cmd::Forget(key) | Cmd::Return(key) => self.wants.retain(|(k, _)| *k != key),
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
            if !self.wants.is_empty() && Instant::now() >= self.next_try {
                self.step().await;
            }
        }
    }

    async fn step(&mut self) {
        let mut answers = Vec::new();
        match self.store.take(self.wants.len()).await {
            Ok((admitted, retry)) => {
                self.delay = Duration::ZERO;
                let now = Instant::now();
                let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
                stats.round_trips += 1;
                for _ in 0..admitted {
                    let Some((key, since)) = self.wants.pop_front() else {
                        break;
                    };
                    stats.grants += 1;
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
