//! # weir: the scheduling core
//!
//! weir bounds the concurrency of jobs that call rate-limited downstream systems by
//! structure: one owner grants slots, and a job runs only inside a slot it was granted.
//! This crate is the pure core of that owner. It holds no threads, performs no I/O and
//! never reads a clock: every decision is a function of its state and an explicit `now`
//! (a [`Duration`](std::time::Duration) since the runtime started), so it can be driven
//! by the actor runtime (`weir-actors`) on the tokio clock, or by tests on virtual time.
//!
//! ```
//! use std::time::Duration;
//! use weir::{Config, Event, JobSpec, OutcomeKind, Scheduler};
//!
//! let mut config = Config::default();
//! config.scheduler.max_concurrent = 1;
//! let mut core: Scheduler<&str> = Scheduler::new(config);
//! let now = Duration::ZERO;
//! core.submit(JobSpec::new("acme", "store"), "first", now);
//! core.submit(JobSpec::new("acme", "store"), "second", now);
//! let mut events = Vec::new();
//! core.poll(now, &mut events);
//! assert_eq!(events.len(), 1); // one slot: one grant
//! let Event::Granted { key, payload, .. } = events.pop().unwrap() else { unreachable!() };
//! assert_eq!(payload, "first");
//! core.complete(key, OutcomeKind::Completed, now + Duration::from_millis(5)).unwrap();
//! core.poll(now + Duration::from_millis(5), &mut events);
//! assert!(matches!(events.pop(), Some(Event::Granted { payload: "second", .. })));
//! ```

mod adaptive;
mod breaker;
mod coalesce;
mod config;
mod fair;
mod fanout;
mod guard;
mod hash;
mod interval;
mod jitter;
mod job;
mod lease;
mod limit;
mod pool;
mod recurring;
mod retry;
mod scheduler;
mod serde_secs;
#[cfg(feature = "testing")]
pub mod sim;
mod stats;
mod tenant_ledger;
mod tenant_waits;
#[cfg(feature = "testing")]
pub mod testing;
mod timers;

pub use breaker::BreakerState;
// Every configuration type has one path, at the crate root; `allowed` (each field's range)
// is the one module of the configuration that is public.
pub use config::resilience::{
    AdaptiveRateConfig, BreakerConfig, CallBudgetConfig, JitterConfig, RateLimitConfig, RetryConfig,
    StaggerConfig,
};
pub use config::{
    allowed, AdaptiveAlgorithm, AdaptiveConfig, BackendConfig, BackendKind, Bodies, Change, Changes,
    CoalesceConfig, Config, ConfigError, Count, FailurePolicy, IntervalStep, IntervalTable, MetricsConfig,
    QuotaConfig, QuotaScope, Real, ResourceConfig, ResourceSettings, RuntimeConfig, SchedulerConfig,
    SharedFailure, Span, TenantConfig, WindowConfig, DEFAULT_TOML,
};
pub use guard::ResilienceStats;
pub use job::{
    JobError, JobId, JobKind, JobOptions, JobSpec, OnWaitTimeout, Outcome, OutcomeKind, ResourceId,
    SkipReason, TenantId,
};
pub use lease::LeaseError;
pub use limit::quota::{CostUsage, QuotaRefusal, Quotas, UsageSnapshot, WindowUsage};
pub use scheduler::{Cancelled, CoreError, Event, JobKey, LeaseRefusal, Scheduler, SharedQuotaOutcome};
pub use stats::{OutcomeCounts, Percentiles, ResourceSnapshot, ResourceStats, StatsSnapshot, TenantFairness};

/// The pure policies the actor shell drives beside the [`Scheduler`]: fan-out release
/// times, coalescing buffers, recurring schedules and evaluation intervals. A service that
/// embeds weir through `weir-actors` does not need them; they are public because the shell
/// is another crate.
pub mod engine {
    pub use crate::coalesce::{
        Batch, BatchItem, CoalesceBuffer, CoalesceSettings, CoalesceSettingsError, FlushReason, Waiting,
    };
    pub use crate::fanout::BatchSchedule;
    pub use crate::recurring::{next_multiple, DueRun, Recurring};
}
