//! The alerts scenario file (`config/alerts.toml`) and its seeded event stream.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use weir::ConfigError;
use weir::{Count, Span};

/// The built-in alerts scenario (`config/alerts.toml`).
pub const ALERTS_TOML: &str = include_str!("../../../config/alerts.toml");

/// Why a scenario was refused; errors name the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AlertsError {
    /// A value is out of range.
    #[error("{field} must be {allowed}, got {got}")]
    Invalid {
        /// Dotted path of the field (`store.limit`).
        field: String,
        /// What is allowed.
        allowed: String,
        /// What was given.
        got: String,
    },
    /// The text is not an alerts scenario (syntax, unknown key, wrong type).
    #[error("invalid alerts scenario: {0}")]
    Parse(String),
}

impl From<ConfigError> for AlertsError {
    fn from(e: ConfigError) -> Self {
        match e {
            ConfigError::Invalid { field, allowed, got } => AlertsError::Invalid { field, allowed, got },
            ConfigError::Parse(m) => AlertsError::Parse(m),
        }
    }
}

/// One alert rule: a count over the last `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The time window the rule counts over (1 s ..= 30 days).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

/// The simulated store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSpec {
    /// Queries served at once; more are refused (1 ..= 1,000,000).
    pub limit: u32,
    /// Base latency of a query (0 ..= 1 min).
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Added latency per item a query counts (0 ..= 1 s).
    #[serde(with = "humantime_serde")]
    pub per_item: Duration,
}

/// An alerts scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsScenario {
    /// Must be `"alerts"`.
    pub kind: String,
    /// Seed of the event stream.
    pub seed: u64,
    /// Projects (1 ..= 100,000); each has every rule.
    pub projects: u32,
    /// Groups per project (1 ..= 100,000).
    pub groups_per_project: u32,
    /// Events in the stream (1 ..= 10,000,000).
    pub events: u32,
    /// The span the events arrive over (1 s ..= 1 day).
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Every rule's interval when the interval table is off (1 s ..= 1 day).
    #[serde(with = "humantime_serde")]
    pub base_interval: Duration,
    /// The rules, at least one.
    pub rules: Vec<Rule>,
    /// The store.
    pub store: StoreSpec,
    /// weir's configuration for the run (`[weir.…]`), validated as usual.
    #[serde(default)]
    pub weir: weir::Config,
}

const SECOND: Duration = Duration::from_secs(1);
const DAY: Duration = Duration::from_secs(86_400);
const PROJECTS: Count = Count { min: 1, max: 100_000 };
const GROUPS_PER_PROJECT: Count = Count { min: 1, max: 100_000 };
const EVENTS: Count = Count {
    min: 1,
    max: 10_000_000,
};
const STREAM: Span = Span {
    min: SECOND,
    max: DAY,
};
const RULE_WINDOW: Span = Span {
    min: SECOND,
    max: Duration::from_secs(30 * 86_400),
};
const STORE_LIMIT: Count = Count {
    min: 1,
    max: 1_000_000,
};
const STORE_LATENCY: Span = Span {
    min: Duration::ZERO,
    max: Duration::from_secs(60),
};
const PER_ITEM: Span = Span {
    min: Duration::ZERO,
    max: SECOND,
};

impl AlertsScenario {
    /// Parses and validates a scenario.
    ///
    /// ```
    /// use weir_cli::alerts::{AlertsScenario, ALERTS_TOML};
    /// assert!(AlertsScenario::from_toml_str(ALERTS_TOML).is_ok());
    /// let bad = ALERTS_TOML.replace("limit = 40", "limit = 0");
    /// let err = AlertsScenario::from_toml_str(&bad).unwrap_err();
    /// assert_eq!(err.to_string(), "store.limit must be between 1 and 1000000, got 0");
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Self, AlertsError> {
        let s: AlertsScenario = toml::from_str(text).map_err(|e| AlertsError::Parse(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), AlertsError> {
        if self.kind != "alerts" {
            return Err(ConfigError::invalid("kind", "\"alerts\"", format!("{:?}", self.kind)).into());
        }
        PROJECTS.check("projects", self.projects)?;
        GROUPS_PER_PROJECT.check("groups_per_project", self.groups_per_project)?;
        EVENTS.check("events", self.events)?;
        STREAM.check("duration", self.duration)?;
        STREAM.check("base_interval", self.base_interval)?;
        if self.rules.is_empty() {
            return Err(ConfigError::invalid("rules", "at least one rule", "none").into());
        }
        for (i, r) in self.rules.iter().enumerate() {
            RULE_WINDOW.check(&format!("rules[{i}].window"), r.window)?;
        }
        STORE_LIMIT.check("store.limit", self.store.limit)?;
        STORE_LATENCY.check("store.latency", self.store.latency)?;
        PER_ITEM.check("store.per_item", self.store.per_item)?;
        self.weir.validate().map_err(|e| match e {
            ConfigError::Invalid { field, allowed, got } => AlertsError::Invalid {
                field: format!("weir.{field}"),
                allowed,
                got,
            },
            ConfigError::Parse(m) => AlertsError::Parse(m),
        })
    }

    /// The event stream, in time order: (arrival, project, group). Busy projects and
    /// groups are drawn more often (the square of a uniform draw). No event falls on a
    /// whole millisecond, so none coincides with a check's due instant.
    pub fn events(&self) -> Vec<Event> {
        let mut rng = SmallRng::seed_from_u64(self.seed);
        let span = self.duration.as_micros() as u64;
        let mut events: Vec<Event> = (0..self.events)
            .map(|_| {
                let skewed = |rng: &mut SmallRng, n: u32| {
                    let u: f64 = rng.random();
                    ((u * u * f64::from(n)) as u32).min(n - 1)
                };
                let micros = rng.random_range(0..span) / 1000 * 1000 + 500;
                Event {
                    at: Duration::from_micros(micros),
                    project: skewed(&mut rng, self.projects),
                    group: skewed(&mut rng, self.groups_per_project),
                }
            })
            .collect();
        events.sort_by_key(|e| e.at);
        events
    }
}

/// One event of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// When it arrives (scenario time).
    pub at: Duration,
    /// Its project.
    pub project: u32,
    /// Its group within the project.
    pub group: u32,
}
