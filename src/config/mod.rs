//! The typed configuration and its validation.
//!
//! Loading (files, the embedded default, `WEIR__SECTION__KEY` variables) lives in the
//! runtime crate; this module holds the struct every layer deserializes into and the
//! checks that name the field and what is allowed. Durations are written as humantime
//! strings (`"300s"`, `"2s"`, `"150ms"`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod backend;
mod coalesce;
mod quota;
pub mod resilience;

pub use backend::{BackendConfig, BackendKind, FailurePolicy};
pub use coalesce::CoalesceConfig;
pub use quota::{QuotaConfig, QuotaScope, WindowConfig};
use resilience::{
    BreakerConfig, CallBudgetConfig, JitterConfig, RateLimitConfig, RetryConfig, StaggerConfig,
};

/// The embedded default configuration (`config/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Why a configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value is out of its allowed range.
    #[error("{field} must be {allowed}, got {got}")]
    Invalid {
        /// Dotted path of the field (`scheduler.max_concurrent`).
        field: String,
        /// What is allowed (`at least 1`).
        allowed: String,
        /// What was given.
        got: String,
    },
    /// The text could not be read as a configuration (syntax, unknown key, wrong type).
    #[error("invalid configuration: {0}")]
    Parse(String),
}

impl ConfigError {
    fn invalid(field: impl Into<String>, allowed: impl Into<String>, got: impl ToString) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            allowed: allowed.into(),
            got: got.to_string(),
        }
    }
}

/// The whole configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Defaults for every resource and the fan-out stage.
    pub scheduler: SchedulerConfig,
    /// Threads of the actor runtime.
    pub runtime: RuntimeConfig,
    /// Per-resource overrides, by resource name.
    pub resources: BTreeMap<String, ResourceConfig>,
    /// Per-tenant settings (fair-share weights), by tenant name.
    pub tenants: BTreeMap<String, TenantConfig>,
    /// Coalescing job kinds (`[coalesce.KIND]`), by kind name.
    pub coalesce: BTreeMap<String, crate::CoalesceConfig>,
    /// Evaluation interval by time window (`[[intervals]]`) for recurring checks.
    pub intervals: crate::IntervalTable,
    /// Quotas and cost budgets, by quota name (`[quotas.per_user]`).
    pub quotas: BTreeMap<String, crate::QuotaConfig>,
    /// Slot backend per resource name (in-process unless set; see [`BackendConfig`]).
    pub backends: BTreeMap<String, BackendConfig>,
}

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

/// Threads of the actor runtime.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Worker arbiters (threads) that run job bodies; 0 runs them on the supervisor's
    /// thread, which is fastest for tiny jobs and lets tests use tokio's paused clock
    /// (0 ..= 1,024; default 0).
    pub worker_threads: u32,
    /// Runs the supervisor on an arbiter of its own instead of the caller's (default false).
    pub own_thread: bool,
}

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
    /// Request rate limit (see [`crate::resilience`]).
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
}

/// Settings of one tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    /// Fair-share weight (1 ..= 1,000; default 1).
    pub weight: u32,
}

impl Default for TenantConfig {
    fn default() -> Self {
        Self { weight: 1 }
    }
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

const MAX_SLOTS: u32 = 1_000_000;
const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);
const HOUR: Duration = Duration::from_secs(3600);

fn check_slots(field: &str, v: u32) -> Result<(), ConfigError> {
    if v == 0 || v > MAX_SLOTS {
        return Err(ConfigError::invalid(field, "between 1 and 1000000", v));
    }
    Ok(())
}

fn check_duration(field: &str, v: Duration, min: Duration, max: Duration) -> Result<(), ConfigError> {
    if v < min || v > max {
        return Err(ConfigError::invalid(
            field,
            format!(
                "between {} and {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
            humantime::format_duration(v),
        ));
    }
    Ok(())
}

impl Config {
    /// Parses TOML text (keys unknown to weir are errors) and validates it. Fields left
    /// out take the built-in defaults.
    ///
    /// ```
    /// let cfg = weir::Config::from_toml_str("[scheduler]\nmax_concurrent = 8\n").unwrap();
    /// assert_eq!(cfg.scheduler.max_concurrent, 8);
    /// let err = weir::Config::from_toml_str("[scheduler]\nmax_concurrent = 0\n").unwrap_err();
    /// assert_eq!(err.to_string(), "scheduler.max_concurrent must be between 1 and 1000000, got 0");
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The embedded default (`config/default.toml`).
    pub fn embedded_default() -> Self {
        Self::from_toml_str(DEFAULT_TOML).expect("config/default.toml is valid")
    }

    /// Checks every field; the error names the first field out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.scheduler;
        check_slots("scheduler.max_concurrent", s.max_concurrent)?;
        check_duration(
            "scheduler.slot_lease_timeout",
            s.slot_lease_timeout,
            Duration::from_millis(1),
            WEEK,
        )?;
        check_duration(
            "scheduler.slot_wait_timeout",
            s.slot_wait_timeout,
            Duration::ZERO,
            WEEK,
        )?;
        if s.org_batch_size == 0 || s.org_batch_size > MAX_SLOTS {
            return Err(ConfigError::invalid(
                "scheduler.org_batch_size",
                "between 1 and 1000000",
                s.org_batch_size,
            ));
        }
        check_duration("scheduler.batch_delay", s.batch_delay, Duration::ZERO, HOUR)?;
        if s.max_queued == 0 {
            return Err(ConfigError::invalid("scheduler.max_queued", "at least 1", 0));
        }
        if s.quantum == 0 || s.quantum > MAX_SLOTS {
            return Err(ConfigError::invalid(
                "scheduler.quantum",
                "between 1 and 1000000",
                s.quantum,
            ));
        }
        if self.runtime.worker_threads > 1024 {
            return Err(ConfigError::invalid(
                "runtime.worker_threads",
                "between 0 and 1024",
                self.runtime.worker_threads,
            ));
        }
        for (name, r) in &self.resources {
            if name.is_empty() {
                return Err(ConfigError::invalid(
                    "resources",
                    "non-empty resource names",
                    "\"\"",
                ));
            }
            if let Some(v) = r.max_concurrent {
                check_slots(&format!("resources.{name}.max_concurrent"), v)?;
            }
            if let Some(v) = r.slot_lease_timeout {
                check_duration(
                    &format!("resources.{name}.slot_lease_timeout"),
                    v,
                    Duration::from_millis(1),
                    WEEK,
                )?;
            }
            if let Some(v) = r.slot_wait_timeout {
                check_duration(
                    &format!("resources.{name}.slot_wait_timeout"),
                    v,
                    Duration::ZERO,
                    WEEK,
                )?;
            }
            resilience::validate(name, r, |n| self.resources.contains_key(n))?;
        }
        quota::validate(&self.quotas)?;
        for (name, b) in &self.backends {
            b.validate(name)?;
        }
        for (name, t) in &self.tenants {
            if t.weight == 0 || t.weight > 1000 {
                return Err(ConfigError::invalid(
                    format!("tenants.{name}.weight"),
                    "between 1 and 1000",
                    t.weight,
                ));
            }
        }
        for (kind, c) in &self.coalesce {
            c.validate(kind)?;
        }
        self.intervals.validate("intervals")?;
        Ok(())
    }

    /// The settings of a coalescing job kind (the defaults unless `[coalesce.KIND]` is
    /// configured).
    pub fn coalesce_kind(&self, kind: &str) -> crate::CoalesceConfig {
        self.coalesce.get(kind).cloned().unwrap_or_default()
    }

    /// The effective settings of a resource (its overrides over the scheduler defaults).
    pub fn resource(&self, name: &str) -> ResourceSettings {
        let r = self.resources.get(name);
        ResourceSettings {
            max_concurrent: r
                .and_then(|r| r.max_concurrent)
                .unwrap_or(self.scheduler.max_concurrent),
            lease: r
                .and_then(|r| r.slot_lease_timeout)
                .unwrap_or(self.scheduler.slot_lease_timeout),
            wait_timeout: r
                .and_then(|r| r.slot_wait_timeout)
                .unwrap_or(self.scheduler.slot_wait_timeout),
        }
    }

    /// The slot backend of a resource (in-process unless configured).
    pub fn backend(&self, resource: &str) -> BackendConfig {
        self.backends.get(resource).cloned().unwrap_or_default()
    }

    /// A tenant's fair-share weight (1 unless configured).
    pub fn weight(&self, tenant: &str) -> u32 {
        self.tenants.get(tenant).map_or(1, |t| t.weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_matches_documented_defaults() {
        let cfg = Config::embedded_default();
        assert_eq!(cfg.scheduler, SchedulerConfig::default());
    }

    #[test]
    fn errors_name_the_field() {
        let e = Config::from_toml_str("[scheduler]\nslot_lease_timeout = \"0s\"\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("scheduler.slot_lease_timeout must be between 1ms"),
            "{e}"
        );
        let e = Config::from_toml_str("[scheduler]\nmax_concurent = 5\n").unwrap_err();
        assert!(e.to_string().contains("max_concurent"), "{e}");
        let e = Config::from_toml_str("[resources.db]\nmax_concurrent = 0\n").unwrap_err();
        assert!(e.to_string().starts_with("resources.db.max_concurrent"), "{e}");
        let e = Config::from_toml_str("[scheduler]\nmax_concurrent = \"many\"\n").unwrap_err();
        assert!(e.to_string().contains("max_concurrent"), "{e}");
    }
}
