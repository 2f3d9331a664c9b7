//! `[coalesce.KIND]`: how requests of one coalescing job kind are batched, and which
//! resource their downstream calls run in.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::allowed::{COALESCE_RESOURCE, FLUSH_INTERVAL, MAX_BATCH, MAX_WAIT};
use super::ConfigError;
use crate::coalesce::CoalesceSettings;

/// Settings of one coalescing job kind (`[coalesce.KIND]`).
///
/// ```
/// let cfg = weir::Config::from_toml_str(
///     "[coalesce.counts]\nflush_interval = \"1s\"\nmax_batch = 200\nmax_wait = \"2s\"\nresource = \"store\"\n",
/// )
/// .unwrap();
/// assert_eq!(cfg.coalesce_kind("counts").max_batch, 200);
/// let err = weir::Config::from_toml_str("[coalesce.counts]\nmax_batch = 0\n").unwrap_err();
/// assert_eq!(err.to_string(), "coalesce.counts.max_batch must be between 1 and 1000000, got 0");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoalesceConfig {
    /// How long a batch stays open after its first request (0 ..= 1 h; default 1 s).
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// The most distinct items per downstream call (1 ..= 1,000,000; default 1,000).
    pub max_batch: u32,
    /// The longest a request waits in the buffer (0 ..= 1 h; default 2 s). The batch's
    /// call then waits for a slot like any job (bounded by its resource's wait timeout).
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// The resource whose slots the batched calls run in (default `"default"`).
    pub resource: String,
}

impl Default for CoalesceConfig {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_secs(1),
            max_batch: 1000,
            max_wait: Duration::from_secs(2),
            resource: "default".into(),
        }
    }
}

impl CoalesceConfig {
    /// The buffer settings.
    pub fn settings(&self) -> CoalesceSettings {
        CoalesceSettings {
            flush_interval: self.flush_interval,
            max_batch: self.max_batch as usize,
            max_wait: self.max_wait,
        }
    }

    /// Checks every field; errors name `coalesce.KIND.FIELD`.
    pub fn validate(&self, kind: &str) -> Result<(), ConfigError> {
        let field = |name: &str| format!("coalesce.{kind}.{name}");
        FLUSH_INTERVAL.check(&field("flush_interval"), self.flush_interval)?;
        MAX_BATCH.check(&field("max_batch"), self.max_batch)?;
        MAX_WAIT.check(&field("max_wait"), self.max_wait)?;
        if self.resource.is_empty() {
            return Err(ConfigError::invalid(field("resource"), COALESCE_RESOURCE, "\"\""));
        }
        Ok(())
    }
}
