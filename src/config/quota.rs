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
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

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

/// One named quota: any number of windows and an optional cost budget.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// Most admissions one window may allow: the log keeps this many timestamps per scope.
pub(crate) const MAX_WINDOW_LIMIT: u32 = 1_000_000;
/// Longest window or cost window.
pub(crate) const MAX_WINDOW: Duration = Duration::from_secs(366 * 24 * 3600);

fn invalid(field: String, allowed: &str, got: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        field,
        allowed: allowed.into(),
        got: got.to_string(),
    }
}

fn check_window(field: String, v: Duration) -> Result<(), ConfigError> {
    if v < Duration::from_millis(1) || v > MAX_WINDOW {
        return Err(invalid(
            field,
            "between 1ms and 366days",
            humantime::format_duration(v),
        ));
    }
    Ok(())
}

/// Checks every quota; the error names the first bad field (`quotas.per_user.windows[0].limit`).
pub(crate) fn validate(quotas: &BTreeMap<String, QuotaConfig>) -> Result<(), ConfigError> {
    for (name, q) in quotas {
        let at = |field: &str| format!("quotas.{name}.{field}");
        if name.is_empty() {
            return Err(invalid("quotas".into(), "non-empty quota names", "\"\""));
        }
        if q.windows.is_empty() && q.cost_budget.is_none() {
            return Err(invalid(
                at("windows"),
                "at least one window, or a cost_budget",
                "none",
            ));
        }
        for (i, w) in q.windows.iter().enumerate() {
            if w.limit == 0 || w.limit > MAX_WINDOW_LIMIT {
                return Err(invalid(
                    at(&format!("windows[{i}].limit")),
                    "between 1 and 1000000",
                    w.limit,
                ));
            }
            check_window(at(&format!("windows[{i}].per")), w.per)?;
        }
        match (q.cost_budget, q.cost_window) {
            (Some(0), _) => return Err(invalid(at("cost_budget"), "at least 1", 0)),
            (Some(_), None) => {
                return Err(invalid(
                    at("cost_window"),
                    "set when cost_budget is set",
                    "nothing",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    at("cost_budget"),
                    "set when cost_window is set",
                    "nothing",
                ))
            }
            (Some(_), Some(w)) => check_window(at("cost_window"), w)?,
            (None, None) => {}
        }
    }
    Ok(())
}
