//! The task that carries the shared quotas' checks for the supervisor.
//!
//! The supervisor sends every `QuotaWanted` of one pass as one batch; the broker joins
//! the batches that arrived meanwhile and checks them in one script call (up to
//! `MAX_BATCH` admissions per round trip), then answers each job. While Redis fails it
//! backs off with full jitter (as the slot broker does) and answers `Unavailable` at once
//! meanwhile, so the core's failure policy decides without waiting on a dead server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use weir::{BackendKind, Config, JobId, JobKey, QuotaRefusal, TenantId};

use super::broker::back_off;
use super::quota_store::{QuotaStore, Verdict};
use super::stats::{BackendSnapshot, BackendStats};

/// Admissions per script call: a call blocks Redis while it runs, so a huge backlog goes
/// in several calls.
const MAX_BATCH: usize = 512;
/// How long one call may take before its admissions are answered `Unavailable`.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_millis(500);

/// One job's admission to check.
pub(crate) type Want = (JobKey, TenantId, u64);
/// One ended job's reported cost to charge instead of its estimate: (job, tenant,
/// estimate, actual).
pub(crate) type Settle = (JobKey, TenantId, u64, u64);

/// What the supervisor sends: one pass's admissions, or its settlements.
enum Work {
    Check(Vec<Want>, Instant),
    Settle(Vec<Settle>),
}

/// What the broker tells the supervisor about one job.
#[derive(Debug)]
pub(crate) enum QuotaAnswer {
    Admitted(JobKey),
    Refused(JobKey, QuotaRefusal),
    Unavailable(JobKey),
}

struct Broker {
    store: QuotaStore,
    rx: mpsc::UnboundedReceiver<Work>,
    answer: Box<dyn Fn(Vec<QuotaAnswer>) + Send>,
    stats: Arc<Mutex<BackendStats>>,
    next_try: Instant,
    delay: Duration,
}

impl Broker {
    async fn run(mut self) {
        while let Some(first) = self.rx.recv().await {
            let mut wants = vec![first];
            while let Ok(more) = self.rx.try_recv() {
                wants.push(more);
            }
            let mut answers = Vec::new();
            // In the order sent: a settlement reaches Redis before any check the
            // supervisor sent after it.
            for work in wants {
                match work {
                    Work::Check(batch, since) => {
                        for chunk in batch.chunks(MAX_BATCH) {
                            self.check(chunk, since, &mut answers).await;
                        }
                    }
                    Work::Settle(batch) => {
                        for chunk in batch.chunks(MAX_BATCH) {
                            self.settle(chunk).await;
                        }
                    }
                }
            }
            if !answers.is_empty() {
                (self.answer)(answers);
            }
        }
    }

    async fn check(&mut self, chunk: &[Want], since: Instant, answers: &mut Vec<QuotaAnswer>) {
        if Instant::now() < self.next_try {
            answers.extend(chunk.iter().map(|(k, _, _)| QuotaAnswer::Unavailable(*k)));
            return;
        }
        let batch: Vec<(JobId, TenantId, u64)> =
            chunk.iter().map(|(k, t, e)| (k.id(), t.clone(), *e)).collect();
        match self.store.check(&batch).await {
            Ok(verdicts) => {
                self.delay = Duration::ZERO;
                let now = Instant::now();
                let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
                stats.round_trips += 1;
                for ((key, _, _), v) in chunk.iter().zip(verdicts) {
                    stats.record_grant_latency(now.saturating_duration_since(since));
                    answers.push(match v {
                        Verdict::Admitted => {
                            stats.grants += 1;
                            QuotaAnswer::Admitted(*key)
                        }
                        Verdict::Refused(r) => QuotaAnswer::Refused(*key, r),
                    });
                }
            }
            Err(e) => {
                self.stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .backend_errors += 1;
                let retry_in = back_off(&mut self.delay);
                self.next_try = Instant::now() + retry_in;
                tracing::warn!(error = %e, ?retry_in, "redis quota check failed");
                answers.extend(chunk.iter().map(|(k, _, _)| QuotaAnswer::Unavailable(*k)));
            }
        }
    }
}

impl Broker {
    /// A failed settlement leaves the estimate charged (on the side of the limit).
    async fn settle(&mut self, chunk: &[Settle]) {
        if Instant::now() < self.next_try {
            tracing::debug!(jobs = chunk.len(), "redis backing off: estimates stay charged");
            return;
        }
        let batch: Vec<(JobId, TenantId, u64, u64)> = chunk
            .iter()
            .map(|(k, t, e, a)| (k.id(), t.clone(), *e, *a))
            .collect();
        match self.store.settle(&batch).await {
            Ok(_) => self.stats.lock().unwrap_or_else(|e| e.into_inner()).round_trips += 1,
            Err(e) => {
                self.stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .backend_errors += 1;
                tracing::warn!(error = %e, "redis cost settlement failed: estimates stay charged");
            }
        }
    }
}

/// The supervisor's handle on the shared quotas' broker.
pub(crate) struct SharedQuotaStore {
    tx: mpsc::UnboundedSender<Work>,
    stats: Arc<Mutex<BackendStats>>,
}

impl std::fmt::Debug for SharedQuotaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedQuotaStore").finish_non_exhaustive()
    }
}

impl SharedQuotaStore {
    /// Starts the broker of `config`'s Redis-backed quotas on the current arbiter; `None`
    /// when there are none (or the client refused the URL, logged: then the core keeps
    /// those quotas in process).
    pub(crate) fn start(config: &Config, answer: impl Fn(Vec<QuotaAnswer>) + Send + 'static) -> Option<Self> {
        let (store, url) = match QuotaStore::new(config, OP_TIMEOUT)? {
            Ok(made) => made,
            Err(e) => {
                tracing::error!(error = %e, "cannot use the redis quota store");
                return None;
            }
        };
        tracing::debug!(%url, "shared quotas on redis");
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Mutex::new(BackendStats::default()));
        let broker = Broker {
            store,
            rx,
            answer: Box::new(answer),
            stats: stats.clone(),
            next_try: Instant::now(),
            delay: Duration::ZERO,
        };
        actix_rt::spawn(broker.run());
        Some(Self { tx, stats })
    }

    /// Sends one pass's admissions (one round trip unless they are many).
    pub(crate) fn want(&self, batch: Vec<Want>) {
        if !batch.is_empty() {
            let _ = self.tx.send(Work::Check(batch, Instant::now()));
        }
    }

    /// Sends one pass's settlements (reported costs replacing charged estimates).
    pub(crate) fn settle(&self, batch: Vec<Settle>) {
        if !batch.is_empty() {
            let _ = self.tx.send(Work::Settle(batch));
        }
    }

    /// The core admitted a job without Redis's check.
    pub(crate) fn count_fail_open(&self) {
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fail_open_admissions += 1;
    }

    /// Admissions (`grants`), round trips, errors, fail-open admissions and check latency
    /// (from the supervisor's pass to the answer).
    pub(crate) fn snapshot(&self) -> BackendSnapshot {
        self.stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .snapshot(BackendKind::Redis)
    }
}
