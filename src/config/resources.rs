//! `[resources.NAME]`: per-resource overrides of the scheduler defaults and the
//! resource's resilience sections, and the effective settings after defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::adaptive::AdaptiveConfig;
use super::allowed::{MAX_CONCURRENT, SLOT_LEASE_TIMEOUT, SLOT_WAIT_TIMEOUT};
use super::resilience::{
    self, BreakerConfig, CallBudgetConfig, JitterConfig, RateLimitConfig, RetryConfig, StaggerConfig,
};
use super::runtime::Bodies;
use super::ConfigError;

/// Overrides for one resource; unset fields take the scheduler defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceConfig {
    /// Slots of this resource.
    pub max_concurrent: Option<u32>,
    /// Lease of this resource's slots.
    #[serde(with = "humantime_serde")]
    pub slot_lease_timeout: Option<Duration>,
    /// Wait timeout of this resource's jobs.
    #[serde(with = "humantime_serde")]
    pub slot_wait_timeout: Option<Duration>,
    /// Request rate limit (see [`RateLimitConfig`]).
    pub rate_limit: Option<RateLimitConfig>,
    /// Circuit breaker.
    pub breaker: Option<BreakerConfig>,
    /// Retries of failed jobs.
    pub retry: Option<RetryConfig>,
    /// Resource to use while this one's breaker is open.
    pub fallback: Option<String>,
    /// Jitter range and seed of this resource's waits.
    pub jitter: Option<JitterConfig>,
    /// Random delay before a job's first attempt.
    pub stagger: Option<StaggerConfig>,
    /// Downstream calls a job may make.
    pub call_budget: Option<CallBudgetConfig>,
    /// A limit that follows the downstream, with `max_concurrent` as its ceiling.
    pub adaptive: Option<AdaptiveConfig>,
    /// Which thread runs this resource's bodies (default `"auto"`, left out when written).
    #[serde(skip_serializing_if = "Bodies::is_auto")]
    pub bodies: Bodies,
}

/// The effective settings of one resource, after defaults are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceSettings {
    /// Slots.
    pub max_concurrent: u32,
    /// Lease.
    pub lease: Duration,
    /// Wait timeout.
    pub wait_timeout: Duration,
}

impl ResourceConfig {
    /// Checks every field of resource `name`, errors naming `resources.NAME.FIELD`;
    /// `exists` says whether another resource is configured (for `fallback`).
    pub(super) fn validate(&self, name: &str, exists: impl Fn(&str) -> bool) -> Result<(), ConfigError> {
        if name.is_empty() {
            return Err(ConfigError::invalid(
                "resources",
                "non-empty resource names",
                "\"\"",
            ));
        }
        if let Some(v) = self.max_concurrent {
            MAX_CONCURRENT.check(&format!("resources.{name}.max_concurrent"), v)?;
        }
        if let Some(v) = self.slot_lease_timeout {
            SLOT_LEASE_TIMEOUT.check(&format!("resources.{name}.slot_lease_timeout"), v)?;
        }
        if let Some(v) = self.slot_wait_timeout {
            SLOT_WAIT_TIMEOUT.check(&format!("resources.{name}.slot_wait_timeout"), v)?;
        }
        resilience::validate(name, self, exists)
    }
}
