//! Shared test helpers: a paused-clock actix system and a downstream that counts its own
//! concurrency.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Runs `f` inside an actix system on a current-thread tokio runtime with a paused clock:
/// timers jump forward whenever every task is idle, so scenario minutes take milliseconds.
pub fn paused<F: Future>(f: F) -> F::Output {
    actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("tokio runtime")
    })
    .block_on(f)
}

/// A store that allows `limit` concurrent queries and refuses any query over it, the way
/// the incident's store answered RateLimitExceeded. It counts from its own side.
#[derive(Debug)]
pub struct Downstream {
    limit: u64,
    current: AtomicU64,
    pub peak: AtomicU64,
    pub rejections: AtomicU64,
    pub served: AtomicU64,
}

impl Downstream {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            current: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            rejections: AtomicU64::new(0),
            served: AtomicU64::new(0),
        })
    }

    /// One query taking `latency`; refused at once when the store is over its limit.
    pub async fn query(&self, latency: Duration) -> Result<(), weir::JobError> {
        let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        if now > self.limit {
            self.current.fetch_sub(1, Ordering::SeqCst);
            self.rejections.fetch_add(1, Ordering::SeqCst);
            return Err(weir::JobError::msg("RateLimitExceeded"));
        }
        let _guard = Leave(&self.current);
        tokio::time::sleep(latency).await;
        self.served.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Enters the store from any thread (a blocking client) until the guard drops;
    /// counts like a query, without the limit check.
    pub fn enter(&self) -> Entered<'_> {
        let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        Entered(Leave(&self.current))
    }

    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::SeqCst)
    }

    pub fn rejections(&self) -> u64 {
        self.rejections.load(Ordering::SeqCst)
    }

    pub fn current(&self) -> u64 {
        self.current.load(Ordering::SeqCst)
    }
}

/// One caller inside the store (see [`Downstream::enter`]).
pub struct Entered<'a>(Leave<'a>);

/// Leaves the store when the query ends or its future is dropped (a cancelled query).
struct Leave<'a>(&'a AtomicU64);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
pub mod redis_server;

/// The quotas of the seeds' numbers (config/seed-quotas.toml).
pub fn seed_quotas() -> weir::Config {
    weir::Config::from_toml_str(include_str!("../../../config/seed-quotas.toml"))
        .expect("the seed quotas parse")
}
