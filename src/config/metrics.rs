//! `[metrics]`: what the runtime exports through the `metrics` facade.

use serde::{Deserialize, Serialize};

use super::allowed::TENANT_LABELS;
use super::ConfigError;

/// Settings of the exported metrics (the series are listed in the README).
///
/// ```
/// let cfg = weir::Config::from_toml_str("[metrics]\ntenant_labels = 20\n").unwrap();
/// assert_eq!(cfg.metrics.tenant_labels, 20);
/// let err = weir::Config::from_toml_str("[metrics]\ntenant_labels = 5000\n").unwrap_err();
/// assert_eq!(err.to_string(), "metrics.tenant_labels must be between 0 and 1000, got 5000");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Tenants that get a label of their own on the per-tenant series: the first this
    /// many tenants seen, by name; every later tenant is counted as `other`, so a scrape
    /// stays bounded however many tenants there are. 0 (the default) exports no
    /// per-tenant series (0 ..= 1,000).
    pub tenant_labels: u32,
}

impl MetricsConfig {
    /// Checks every field; errors name `metrics.FIELD`.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        TENANT_LABELS.check("metrics.tenant_labels", self.tenant_labels)
    }
}
