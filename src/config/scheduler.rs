//! `[scheduler]`: the defaults of every resource and the fan-out stage.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::allowed::{
    BATCH_DELAY, MAX_CONCURRENT, MAX_QUEUED, ORG_BATCH_SIZE, QUANTUM, SLOT_LEASE_TIMEOUT, SLOT_WAIT_TIMEOUT,
};
use super::ConfigError;

/// Scheduler defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Slots per resource unless the resource overrides it (1 ..= 1,000,000; default 50).
    pub max_concurrent: u32,
    /// How long a granted slot may be held (1 ms ..= 7 days; default 300 s).
    #[serde(with = "humantime_serde")]
    pub slot_lease_timeout: Duration,
    /// How long a job may wait for a slot (0 ..= 7 days; default 60 s).
    #[serde(with = "humantime_serde")]
    pub slot_wait_timeout: Duration,
    /// Jobs released per fan-out batch (1 ..= 1,000,000; default 25).
    pub org_batch_size: u32,
    /// Delay between fan-out batches (0 ..= 1 h; default 2 s).
    #[serde(with = "humantime_serde")]
    pub batch_delay: Duration,
    /// Jobs that may wait (queued or deferred) before `submit` refuses (default 1,000,000).
    pub max_queued: u64,
    /// Fair-share units a tenant of weight 1 earns per turn (1 ..= 1,000,000; default 1).
    pub quantum: u32,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 50,
            slot_lease_timeout: Duration::from_secs(300),
            slot_wait_timeout: Duration::from_secs(60),
            org_batch_size: 25,
            batch_delay: Duration::from_secs(2),
            max_queued: 1_000_000,
            quantum: 1,
        }
    }
}

impl SchedulerConfig {
    /// Checks every field; errors name `scheduler.FIELD`.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        MAX_CONCURRENT.check("scheduler.max_concurrent", self.max_concurrent)?;
        SLOT_LEASE_TIMEOUT.check("scheduler.slot_lease_timeout", self.slot_lease_timeout)?;
        SLOT_WAIT_TIMEOUT.check("scheduler.slot_wait_timeout", self.slot_wait_timeout)?;
        ORG_BATCH_SIZE.check("scheduler.org_batch_size", self.org_batch_size)?;
        BATCH_DELAY.check("scheduler.batch_delay", self.batch_delay)?;
        MAX_QUEUED.check("scheduler.max_queued", self.max_queued)?;
        QUANTUM.check("scheduler.quantum", self.quantum)
    }
}
