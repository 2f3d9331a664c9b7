//! `[tenants.NAME]`: the fair-share weight of each tenant.

use serde::{Deserialize, Serialize};

use super::allowed::WEIGHT;
use super::ConfigError;

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

impl TenantConfig {
    /// Checks every field of tenant `name`; errors name `tenants.NAME.FIELD`.
    pub(super) fn validate(&self, name: &str) -> Result<(), ConfigError> {
        WEIGHT.check(&format!("tenants.{name}.weight"), self.weight)
    }
}
