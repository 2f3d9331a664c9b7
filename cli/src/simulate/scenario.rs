//! Scenario files: TOML, with a top-level `kind` that picks the runner, and typed errors
//! that name the field (its dotted path) and what is allowed.
//!
//! This module holds what every kind shares ([`ScenarioError`], [`kind_of`], [`parse`])
//! and the `incident` kind's scenario ([`IncidentScenario`]).

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use weir::{Count, Real, Span};

/// The built-in `incident` scenario (`config/incident.toml`).
pub const INCIDENT_TOML: &str = include_str!("../../../config/incident.toml");

/// Why a scenario was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// A value is out of its allowed range.
    #[error("{field} must be {allowed}, got {got}")]
    Invalid {
        /// Dotted path of the field (`workload.organisations`).
        field: String,
        /// What is allowed.
        allowed: String,
        /// What was given.
        got: String,
    },
    /// The text could not be read as this kind of scenario (syntax, unknown key, type).
    #[error("{field}: {message}")]
    Parse {
        /// Dotted path of the field, or `scenario` for the file as a whole.
        field: String,
        /// What was wrong, with the line.
        message: String,
    },
}

impl ScenarioError {
    /// An out-of-range value.
    pub fn invalid(field: impl Into<String>, allowed: impl Into<String>, got: impl ToString) -> Self {
        ScenarioError::Invalid {
            field: field.into(),
            allowed: allowed.into(),
            got: got.to_string(),
        }
    }

    /// An error of the scenario's `[weir]` table (a whole weir configuration), its field
    /// paths prefixed with `weir.`.
    pub fn under_weir(e: weir::ConfigError) -> Self {
        match e {
            weir::ConfigError::Invalid { field, allowed, got } => ScenarioError::Invalid {
                field: format!("weir.{field}"),
                allowed,
                got,
            },
            weir::ConfigError::Parse(message) => ScenarioError::Parse {
                field: "weir".into(),
                message,
            },
        }
    }

    /// The field the error names.
    pub fn field(&self) -> &str {
        match self {
            ScenarioError::Invalid { field, .. } | ScenarioError::Parse { field, .. } => field,
        }
    }
}

impl From<weir::ConfigError> for ScenarioError {
    fn from(e: weir::ConfigError) -> Self {
        match e {
            // The scenario's `[scheduler]` table is weir's, so the paths coincide.
            weir::ConfigError::Invalid { field, allowed, got } => {
                ScenarioError::Invalid { field, allowed, got }
            }
            weir::ConfigError::Parse(message) => ScenarioError::Parse {
                field: "scheduler".into(),
                message,
            },
        }
    }
}

/// Reads the top-level `kind` of a scenario.
///
/// ```
/// use weir_cli::simulate::scenario::kind_of;
/// assert_eq!(kind_of("kind = \"incident\"\n").unwrap(), "incident");
/// assert_eq!(kind_of("seed = 1\n").unwrap_err().field(), "kind");
/// ```
pub fn kind_of(text: &str) -> Result<String, ScenarioError> {
    #[derive(Deserialize)]
    struct KindOnly {
        kind: Option<toml::Value>,
    }
    let k: KindOnly = parse(text)?;
    match k.kind {
        Some(toml::Value::String(s)) => Ok(s),
        Some(other) => Err(ScenarioError::invalid(
            "kind",
            "a string naming the scenario kind",
            other,
        )),
        None => Err(ScenarioError::invalid(
            "kind",
            "set (for example kind = \"incident\")",
            "nothing",
        )),
    }
}

/// Deserializes TOML text; an error names the dotted path of the offending field.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ScenarioError> {
    let de = toml::Deserializer::parse(text).map_err(|e| parse_error(text, ".".into(), e))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        parse_error(text, path, e.into_inner())
    })
}

/// A TOML error as a scenario error: the field's dotted path (or `scenario` for the file as
/// a whole) and the message with its line.
fn parse_error(text: &str, path: String, inner: toml::de::Error) -> ScenarioError {
    let line = inner
        .span()
        .map(|s| {
            format!(
                " (line {})",
                text[..s.start.min(text.len())].lines().count().max(1)
            )
        })
        .unwrap_or_default();
    ScenarioError::Parse {
        field: if path == "." { "scenario".into() } else { path },
        message: format!("{}{line}", inner.message().trim_end()),
    }
}

/// The `incident` scenario: organisations fan out projection jobs, one query each,
/// against a store with a hard concurrency limit.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentScenario {
    /// Always `incident`.
    pub kind: String,
    /// Seeds the workload (overridden by `--seed`).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// What is run.
    pub workload: WorkloadSpec,
    /// The simulated store.
    pub downstream: DownstreamSpec,
    /// weir's scheduler settings; `counter` takes its cap, wait timeout and lease.
    #[serde(default)]
    pub scheduler: weir::SchedulerConfig,
    /// The patch's shared counter.
    #[serde(default)]
    pub counter: CounterSpec,
    /// weir's per-job options.
    #[serde(default)]
    pub weir: WeirSpec,
}

fn default_seed() -> u64 {
    1
}

/// Organisations and their projections.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// Organisations (tenants), 1 ..= 100,000.
    pub organisations: u32,
    /// Projection jobs (one query each) per organisation.
    pub projections: Projections,
}

/// How many projections an organisation has.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "distribution", rename_all = "lowercase", deny_unknown_fields)]
pub enum Projections {
    /// Every organisation has `count`.
    Fixed {
        /// Projections per organisation.
        count: u32,
    },
    /// Uniform over `min ..= max`.
    Uniform {
        /// Fewest.
        min: u32,
        /// Most.
        max: u32,
    },
    /// Zipf over `1 ..= max` with `exponent` (few organisations have many projections).
    Zipf {
        /// Most.
        max: u32,
        /// Exponent (0 is uniform; larger is more skewed).
        exponent: f64,
    },
}

impl Projections {
    /// The most projections one organisation can have.
    pub fn max(&self) -> u32 {
        match *self {
            Projections::Fixed { count } => count,
            Projections::Uniform { max, .. } | Projections::Zipf { max, .. } => max,
        }
    }
}

/// The simulated store.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamSpec {
    /// Queries served at once; a query arriving over it fails with RateLimitExceeded.
    pub limit: u32,
    /// Query latency.
    pub latency: LatencySpec,
    /// Share of served queries that fail anyway (0 ..= 1).
    #[serde(default)]
    pub error_rate: f64,
    /// How long the store takes to refuse a query.
    #[serde(default = "default_reject_latency", with = "humantime_serde")]
    pub reject_latency: Duration,
}

fn default_reject_latency() -> Duration {
    Duration::from_millis(50)
}

/// A lognormal latency given by its median and 99th percentile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySpec {
    /// Median.
    #[serde(with = "humantime_serde")]
    pub p50: Duration,
    /// 99th percentile (at least p50; equal to p50 makes every query take p50).
    #[serde(with = "humantime_serde")]
    pub p99: Duration,
}

/// The patch's shared counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterSpec {
    /// How often a waiting task polls the counter.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for CounterSpec {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
        }
    }
}

/// weir's per-job options in the scenario.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeirSpec {
    /// What a job still waiting at the wait timeout does.
    #[serde(default)]
    pub on_wait_timeout: WaitTimeoutAction,
}

/// `skip` or `requeue` (see [`weir::OnWaitTimeout`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitTimeoutAction {
    /// End the job `Skipped(NoSlot)` (weir's default).
    #[default]
    Skip,
    /// Put it back in its tenant's queue.
    Requeue,
}

const ORGANISATIONS: Count = Count { min: 1, max: 100_000 };
const PROJECTIONS: Count = Count { min: 1, max: 10_000 };
const EXPONENT: Real = Real {
    min: 0.0,
    min_included: true,
    max: 100.0,
};
const MAX_QUERIES: u64 = 1_000_000;
const DOWNSTREAM_LIMIT: Count = Count {
    min: 1,
    max: 1_000_000,
};
const ERROR_RATE: Real = Real {
    min: 0.0,
    min_included: true,
    max: 1.0,
};
pub(crate) const HOUR: Duration = Duration::from_secs(3600);
/// A query's median latency; its p99 lies between the median and the same maximum.
pub(crate) const LATENCY_P50: Span = Span {
    min: Duration::from_millis(1),
    max: HOUR,
};
/// How long a refusal takes.
pub(crate) const REJECT_LATENCY: Span = Span {
    min: Duration::ZERO,
    max: Duration::from_secs(60),
};
const POLL_INTERVAL: Span = Span {
    min: Duration::from_millis(1),
    max: HOUR,
};

impl LatencySpec {
    /// Checks p50 and p99 (at least p50); errors name `{field}.p50` and `{field}.p99`.
    pub(crate) fn validate(&self, field: &str) -> Result<(), ScenarioError> {
        LATENCY_P50.check(&format!("{field}.p50"), self.p50)?;
        let p99 = Span {
            min: self.p50,
            ..LATENCY_P50
        };
        p99.check(&format!("{field}.p99"), self.p99)?;
        Ok(())
    }
}

impl IncidentScenario {
    /// Parses and validates an `incident` scenario.
    ///
    /// ```
    /// use weir_cli::simulate::scenario::{IncidentScenario, INCIDENT_TOML};
    /// let s = IncidentScenario::from_toml_str(INCIDENT_TOML).unwrap();
    /// assert_eq!(s.downstream.limit, 100);
    /// let bad = INCIDENT_TOML.replace("limit = 100", "limit = 0");
    /// let e = IncidentScenario::from_toml_str(&bad).unwrap_err();
    /// assert_eq!(e.to_string(), "downstream.limit must be between 1 and 1000000, got 0");
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Self, ScenarioError> {
        let s: IncidentScenario = parse(text)?;
        s.validate()?;
        Ok(s)
    }

    /// The built-in scenario.
    pub fn builtin() -> Self {
        Self::from_toml_str(INCIDENT_TOML).expect("config/incident.toml is valid")
    }

    /// Checks every field; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.kind != "incident" {
            return Err(ScenarioError::invalid(
                "kind",
                "\"incident\"",
                format!("{:?}", self.kind),
            ));
        }
        let w = &self.workload;
        ORGANISATIONS.check("workload.organisations", w.organisations)?;
        match w.projections {
            Projections::Fixed { count } => PROJECTIONS.check("workload.projections.count", count)?,
            Projections::Uniform { min, max } => {
                PROJECTIONS.check("workload.projections.min", min)?;
                let above_min = Count {
                    min: u64::from(min),
                    ..PROJECTIONS
                };
                above_min.check("workload.projections.max", max)?;
            }
            Projections::Zipf { max, exponent } => {
                PROJECTIONS.check("workload.projections.max", max)?;
                EXPONENT.check("workload.projections.exponent", exponent)?;
            }
        }
        let most = u64::from(w.organisations) * u64::from(w.projections.max());
        if most > MAX_QUERIES {
            return Err(ScenarioError::invalid(
                "workload",
                format!("at most {MAX_QUERIES} queries (organisations x most projections)"),
                most,
            ));
        }
        let d = &self.downstream;
        DOWNSTREAM_LIMIT.check("downstream.limit", d.limit)?;
        d.latency.validate("downstream.latency")?;
        ERROR_RATE.check("downstream.error_rate", d.error_rate)?;
        REJECT_LATENCY.check("downstream.reject_latency", d.reject_latency)?;
        let config = weir::Config {
            scheduler: self.scheduler.clone(),
            ..weir::Config::default()
        };
        config.validate()?;
        POLL_INTERVAL.check("counter.poll_interval", self.counter.poll_interval)?;
        Ok(())
    }

    /// Every duration of the scenario divided by `factor` (for `--speed N` on the real
    /// clock); reports multiply measured durations back.
    pub fn time_compressed(&self, factor: f64) -> Self {
        let div = |d: Duration| Duration::from_secs_f64(d.as_secs_f64() / factor);
        let mut s = self.clone();
        s.downstream.latency.p50 = div(s.downstream.latency.p50);
        s.downstream.latency.p99 = div(s.downstream.latency.p99);
        s.downstream.reject_latency = div(s.downstream.reject_latency);
        s.scheduler.slot_wait_timeout = div(s.scheduler.slot_wait_timeout);
        s.scheduler.slot_lease_timeout = div(s.scheduler.slot_lease_timeout).max(Duration::from_millis(1));
        s.scheduler.batch_delay = div(s.scheduler.batch_delay);
        s.counter.poll_interval = div(s.counter.poll_interval).max(Duration::from_millis(1));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_incident_is_valid() {
        let s = IncidentScenario::builtin();
        assert_eq!(s.kind, "incident");
        assert_eq!(s.scheduler.max_concurrent, 50);
        assert_eq!(s.weir.on_wait_timeout, WaitTimeoutAction::Requeue);
    }
}
