//! The `limit-shift` scenario file (`config/limit-shift.toml`): arrivals, the store whose
//! limit moves, and weir's configuration shared by the policies.

use std::time::Duration;

use serde::Deserialize;
use weir::{allowed::MAX_CONCURRENT, Real};

use crate::simulate::providers::scenario::ArrivalSpec;
use crate::simulate::scenario::{parse, LatencySpec, ScenarioError, REJECT_LATENCY};

/// The built-in `limit-shift` scenario.
pub const LIMIT_SHIFT_TOML: &str = include_str!("../../../../config/limit-shift.toml");

/// The resource (and store) every job is submitted to.
pub const RESOURCE: &str = "store";

/// A `limit-shift` scenario.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitShiftScenario {
    /// Always `limit-shift`.
    pub kind: String,
    /// Seeds the arrivals and the store's latencies (overridden by `--seed`).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// When jobs arrive.
    pub workload: ArrivalSpec,
    /// The simulated store.
    pub store: StoreSpec,
    /// weir's configuration (`[weir.…]`), checked as weir checks it; resource `store`.
    pub weir: weir::Config,
}

fn default_seed() -> u64 {
    1
}

/// The store: its limit over time, its latency and how it refuses.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSpec {
    /// A served query's latency when the store is idle.
    pub latency: LatencySpec,
    /// How much latency grows with load: x (1 + load_latency x in progress / limit)
    /// (0 ..= 100).
    #[serde(default)]
    pub load_latency: f64,
    /// How long a refusal takes (0 ..= 1 min; default 5 ms).
    #[serde(default = "default_reject_latency", with = "humantime_serde")]
    pub reject_latency: Duration,
    /// The limit from each instant on; the first from 0 s, then in time order.
    pub limits: Vec<LimitStep>,
}

fn default_reject_latency() -> Duration {
    Duration::from_millis(5)
}

/// The store's limit from `from` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitStep {
    /// When it takes effect (scenario time).
    #[serde(with = "humantime_serde")]
    pub from: Duration,
    /// Queries served at once (1 ..= 1,000,000).
    pub limit: u32,
}

const LOAD_LATENCY: Real = Real {
    min: 0.0,
    min_included: true,
    max: 100.0,
};

impl StoreSpec {
    /// The store's limit at `at`.
    pub fn limit_at(&self, at: Duration) -> u32 {
        self.limits
            .iter()
            .take_while(|s| s.from <= at)
            .last()
            .map_or(1, |s| s.limit)
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        self.latency.validate("store.latency")?;
        LOAD_LATENCY.check("store.load_latency", self.load_latency)?;
        REJECT_LATENCY.check("store.reject_latency", self.reject_latency)?;
        let Some(first) = self.limits.first() else {
            return Err(ScenarioError::invalid(
                "store.limits",
                "at least one step",
                "none",
            ));
        };
        if first.from != Duration::ZERO {
            return Err(ScenarioError::invalid(
                "store.limits[0].from",
                "0s (the first step starts the run)",
                humantime::format_duration(first.from),
            ));
        }
        for (i, step) in self.limits.iter().enumerate() {
            MAX_CONCURRENT.check(&format!("store.limits[{i}].limit"), step.limit)?;
            if i > 0 && step.from <= self.limits[i - 1].from {
                return Err(ScenarioError::invalid(
                    format!("store.limits[{i}].from"),
                    format!(
                        "after the step before ({})",
                        humantime::format_duration(self.limits[i - 1].from)
                    ),
                    humantime::format_duration(step.from),
                ));
            }
        }
        Ok(())
    }
}

impl LimitShiftScenario {
    /// Parses and validates a `limit-shift` scenario.
    ///
    /// ```
    /// use weir_cli::simulate::limit_shift::scenario::{LimitShiftScenario, LIMIT_SHIFT_TOML};
    /// let s = LimitShiftScenario::from_toml_str(LIMIT_SHIFT_TOML).unwrap();
    /// assert_eq!(s.store.limit_at(std::time::Duration::from_secs(90)), 40);
    /// let bad = LIMIT_SHIFT_TOML.replace("limit = 40", "limit = 0");
    /// let e = LimitShiftScenario::from_toml_str(&bad).unwrap_err();
    /// assert_eq!(e.to_string(), "store.limits[1].limit must be between 1 and 1000000, got 0");
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Self, ScenarioError> {
        let s: LimitShiftScenario = parse(text)?;
        s.validate()?;
        Ok(s)
    }

    /// The built-in scenario.
    pub fn builtin() -> Self {
        Self::from_toml_str(LIMIT_SHIFT_TOML).expect("config/limit-shift.toml is valid")
    }

    /// Checks every field; errors name the dotted field (weir's under `weir.`).
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.kind != "limit-shift" {
            return Err(ScenarioError::invalid(
                "kind",
                "\"limit-shift\"",
                format!("{:?}", self.kind),
            ));
        }
        self.workload.validate()?;
        self.store.validate()?;
        self.weir.validate().map_err(ScenarioError::under_weir)?;
        if !self.weir.resources.contains_key(RESOURCE) {
            return Err(ScenarioError::invalid(
                format!("weir.resources.{RESOURCE}"),
                "a table (the resource every job is submitted to)",
                "none",
            ));
        }
        Ok(())
    }
}
