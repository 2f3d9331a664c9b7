//! The `[quotas.NAME]` sections of the configuration.
//!
//! ```toml
//! [quotas.per_user]            # every tenant separately
//! windows = [{ limit = 10, per = "1m" }, { limit = 100, per = "1h" }, { limit = 500, per = "1day" }]
//! cost_budget = 5000000        # in the units jobs declare (here micro-dollars: $5)
//! cost_window = "1day"
//!
//! [quotas.everyone]
//! scope = "global"             # all tenants together
//! windows = [{ limit = 1000, per = "1h" }]
//! backend = "redis"            # shared by every replica (see `shared.rs`)
//! url = "redis://127.0.0.1:6379"
//! on_failure = "fail_open"
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::allowed::{COST_BUDGET, WINDOW, WINDOW_LIMIT};
use super::shared::default_key_prefix;
use super::{BackendKind, ConfigError, SharedFailure};

/// Whose admissions a quota counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaScope {
    /// Each tenant separately (the default).
    #[default]
    Tenant,
    /// All tenants together.
    Global,
}

/// One window: at most `limit` admissions in any interval of length `per`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Admissions allowed per window (1 ..= 1,000,000).
    pub limit: u32,
    /// The window's length (1 ms ..= 366 days).
    #[serde(with = "humantime_serde")]
    pub per: Duration,
}

/// One named quota: any number of windows and an optional cost budget, kept in this
/// process or shared by every replica through Redis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// Whose admissions it counts (`"tenant"`, the default, or `"global"`).
    pub scope: QuotaScope,
    /// Count limits over sliding windows.
    pub windows: Vec<WindowConfig>,
    /// Cost allowed per `cost_window`, in the integer units jobs declare (for example
    /// micro-dollars); at least 1.
    pub cost_budget: Option<u64>,
    /// The cost budget's window (1 ms ..= 366 days); required with `cost_budget`.
    #[serde(with = "humantime_serde")]
    pub cost_window: Option<Duration>,
    /// `in_process` (the default) or `redis`: its windows and charges live in Redis and
    /// count every replica's admissions.
    pub backend: BackendKind,
    /// The Redis server (`redis://host:port/db`); required with `backend = "redis"`.
    /// Every Redis-backed quota of a process uses the same server and prefix.
    pub url: String,
    /// Prefix of every key the quota writes (default `weir`).
    pub key_prefix: String,
    /// What a Redis-backed quota does while Redis cannot answer (default `fail_closed`).
    pub on_failure: SharedFailure,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        Self {
            scope: QuotaScope::default(),
            windows: Vec::new(),
            cost_budget: None,
            cost_window: None,
            backend: BackendKind::InProcess,
            url: String::new(),
            key_prefix: default_key_prefix(),
            on_failure: SharedFailure::default(),
        }
    }
}

/// Checks every quota; the error names the first bad field (`quotas.per_user.windows[0].limit`).
pub(crate) fn validate(quotas: &BTreeMap<String, QuotaConfig>) -> Result<(), ConfigError> {
    for (name, q) in quotas {
        let at = |field: &str| format!("quotas.{name}.{field}");
        if name.is_empty() {
            return Err(ConfigError::invalid("quotas", "non-empty quota names", "\"\""));
        }
        if q.windows.is_empty() && q.cost_budget.is_none() {
            return Err(ConfigError::invalid(
                at("windows"),
                "at least one window, or a cost_budget",
                "none",
            ));
        }
        for (i, w) in q.windows.iter().enumerate() {
            WINDOW_LIMIT.check(&at(&format!("windows[{i}].limit")), w.limit)?;
            WINDOW.check(&at(&format!("windows[{i}].per")), w.per)?;
        }
        if let Some(budget) = q.cost_budget {
            COST_BUDGET.check(&at("cost_budget"), budget)?;
        }
        match (q.cost_budget, q.cost_window) {
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    at("cost_window"),
                    "set when cost_budget is set",
                    "nothing",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    at("cost_budget"),
                    "set when cost_window is set",
                    "nothing",
                ))
            }
            (Some(_), Some(window)) => WINDOW.check(&at("cost_window"), window)?,
            (None, None) => {}
        }
        super::shared::validate(at, q.backend, &q.url, &q.key_prefix)?;
    }
    // One batch per supervisor pass carries every Redis-backed quota's checks: they must
    // live on one server under one prefix.
    let mut shared = quotas.iter().filter(|(_, q)| q.backend == BackendKind::Redis);
    if let Some((first, q0)) = shared.next() {
        for (name, q) in shared {
            if q.url != q0.url {
                return Err(ConfigError::invalid(
                    format!("quotas.{name}.url"),
                    format!("the same as quotas.{first}.url (one Redis holds every shared quota)"),
                    format!("{:?}", q.url),
                ));
            }
            if q.key_prefix != q0.key_prefix {
                return Err(ConfigError::invalid(
                    format!("quotas.{name}.key_prefix"),
                    format!("the same as quotas.{first}.key_prefix"),
                    format!("{:?}", q.key_prefix),
                ));
            }
        }
    }
    Ok(())
}
