//! `[resources.NAME.adaptive]`: a concurrency limit that follows the downstream instead
//! of a fixed cap. The resource's `max_concurrent` is its ceiling.
//!
//! ```toml
//! [resources.store]
//! max_concurrent = 150                     # the ceiling the limit never exceeds
//! adaptive = { algorithm = "aimd", min = 5, initial = 20 }
//! ```

use serde::{Deserialize, Serialize};

use super::allowed::{ADAPTIVE_INITIAL, ADAPTIVE_MIN};
use super::{ConfigError, Count};

/// How the limit moves (see the `adaptive` module of the core for the rules).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdaptiveAlgorithm {
    /// Additive increase (one slot per limit's worth of completions while the limit is
    /// in use), multiplicative decrease (x 0.9) on overload or timeout. Follows a
    /// downstream that says "too many".
    #[default]
    Aimd,
    /// Netflix's Gradient2: the limit follows the ratio of long-term to recent latency,
    /// and decreases like AIMD on overload or timeout. Follows a downstream that slows
    /// down before it refuses.
    Gradient2,
}

/// `adaptive`: the limit's algorithm and its bounds below the ceiling (`max_concurrent`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveConfig {
    /// How the limit moves (`"aimd"` or `"gradient2"`; default `"aimd"`).
    pub algorithm: AdaptiveAlgorithm,
    /// The limit never goes below this (1 ..= max_concurrent; default 1).
    pub min: u32,
    /// The limit at start (min ..= max_concurrent; default `min`).
    pub initial: Option<u32>,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            algorithm: AdaptiveAlgorithm::Aimd,
            min: 1,
            initial: None,
        }
    }
}

impl AdaptiveConfig {
    /// The limit at start.
    pub fn initial_limit(&self) -> u32 {
        self.initial.unwrap_or(self.min)
    }

    /// Checks `min` and `initial` of resource `name` against its `ceiling` (its effective
    /// `max_concurrent`); errors name `resources.NAME.adaptive.FIELD`.
    pub(super) fn validate(&self, name: &str, ceiling: u32) -> Result<(), ConfigError> {
        let field = |f: &str| format!("resources.{name}.adaptive.{f}");
        let bounded = |range: Count| Count {
            min: range.min,
            max: range.max.min(u64::from(ceiling)),
        };
        bounded(ADAPTIVE_MIN)
            .check(&field("min"), self.min)
            .map_err(|e| with_ceiling(e, ceiling))?;
        if let Some(initial) = self.initial {
            let range = Count {
                min: u64::from(self.min),
                max: ADAPTIVE_INITIAL.max.min(u64::from(ceiling)),
            };
            if !range.contains(u64::from(initial)) {
                return Err(ConfigError::invalid(
                    field("initial"),
                    format!(
                        "between adaptive.min ({}) and max_concurrent ({ceiling})",
                        self.min
                    ),
                    initial,
                ));
            }
        }
        Ok(())
    }
}

/// Says where the upper bound comes from: `between 1 and max_concurrent (150)`.
fn with_ceiling(e: ConfigError, ceiling: u32) -> ConfigError {
    match e {
        ConfigError::Invalid { field, got, .. } => ConfigError::invalid(
            field,
            format!("between {} and max_concurrent ({ceiling})", ADAPTIVE_MIN.min),
            got,
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn errors_name_the_field_and_the_ceiling() {
        let e = Config::from_toml_str("[resources.db]\nmax_concurrent = 10\nadaptive = { min = 0 }\n")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "resources.db.adaptive.min must be between 1 and max_concurrent (10), got 0"
        );
        let e = Config::from_toml_str("[resources.db]\nmax_concurrent = 10\nadaptive = { min = 11 }\n")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "resources.db.adaptive.min must be between 1 and max_concurrent (10), got 11"
        );
        let e = Config::from_toml_str(
            "[resources.db]\nmax_concurrent = 10\nadaptive = { min = 4, initial = 2 }\n",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "resources.db.adaptive.initial must be between adaptive.min (4) and max_concurrent (10), got 2"
        );
        let e = Config::from_toml_str("[resources.db]\nadaptive = { algorithm = \"vegas\" }\n").unwrap_err();
        assert!(e.to_string().contains("algorithm"), "{e}");
        // The ceiling is the scheduler's max_concurrent when the resource sets none.
        let e = Config::from_toml_str(
            "[scheduler]\nmax_concurrent = 8\n[resources.db]\nadaptive = { initial = 9 }\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("max_concurrent (8), got 9"), "{e}");
        let ok = Config::from_toml_str(
            "[resources.db]\nmax_concurrent = 150\nadaptive = { algorithm = \"gradient2\", min = 5, initial = 20 }\n",
        )
        .unwrap();
        assert_eq!(ok.resources["db"].adaptive.unwrap().initial_limit(), 20);
    }
}
