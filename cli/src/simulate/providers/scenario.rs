//! The `providers` scenario file (`config/providers.toml`) and the arrivals drawn from
//! its seed.
//!
//! Ranges are checked with weir's range values ([`weir::Count`],
//! [`weir::Span`]) and the `[weir]` table with weir's own [`weir::Config::validate`], its field paths
//! prefixed with `weir.`: every error names the dotted field and what is allowed.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde::Deserialize;

use weir::{Count, Span};

use crate::simulate::scenario::{parse, LatencySpec, ScenarioError, HOUR, REJECT_LATENCY};

/// The built-in `providers` scenario (`config/providers.toml`).
pub const PROVIDERS_TOML: &str = include_str!("../../../../config/providers.toml");

/// The resource (and provider) every job is submitted to.
pub const PRIMARY: &str = "a";
/// The other provider (a's fallback in the built-in weir configuration).
pub const SECONDARY: &str = "b";

/// A `providers` scenario: jobs arriving in batches, two simulated providers, and the
/// settings of the two policies.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersScenario {
    /// Always `providers`.
    pub kind: String,
    /// Seeds the arrivals and the providers' latencies (overridden by `--seed`).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// When jobs arrive.
    pub workload: ArrivalSpec,
    /// The two simulated providers.
    pub providers: Providers,
    /// The `none` policy.
    #[serde(default)]
    pub none: NoneSpec,
    /// weir's configuration for the `weir` policy (`[weir.…]`), checked as weir checks it.
    #[serde(default)]
    pub weir: weir::Config,
}

fn default_seed() -> u64 {
    1
}

/// Jobs arrive in `batches` batches, `every` apart, the first at time 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArrivalSpec {
    /// Batches (1 ..= 10,000).
    pub batches: u32,
    /// Time between batches (0 ..= 1 h).
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// Jobs per batch, drawn uniformly.
    pub batch_size: SizeRange,
}

/// `min ..= max`, drawn uniformly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeRange {
    /// Fewest (1 ..= 10,000).
    pub min: u32,
    /// Most (min ..= 10,000).
    pub max: u32,
}

/// The providers, by name.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Providers {
    /// The provider jobs call first.
    pub a: ProviderSpec,
    /// The other one.
    pub b: ProviderSpec,
}

/// What one simulated provider enforces from its own side.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSpec {
    /// Calls it serves at once; one more is rejected (1 ..= 1,000,000).
    pub max_concurrent: u32,
    /// Calls it accepts per `per`, counted over a sliding window; one more is rejected
    /// (1 ..= 1,000,000).
    pub requests: u32,
    /// The window of `requests` (1 ms ..= 1 day).
    #[serde(with = "humantime_serde")]
    pub per: Duration,
    /// A served call's latency (lognormal; p50 1 ms ..= 1 h, p99 p50 ..= 1 h).
    pub latency: LatencySpec,
    /// How long a rejection or a burst's 429 takes (0 ..= 1 min; default 50 ms).
    #[serde(default = "default_reject_latency", with = "humantime_serde")]
    pub reject_latency: Duration,
    /// The Retry-After of a burst's 429 (0 ..= 1 h; default 1 s).
    #[serde(default = "default_retry_after", with = "humantime_serde")]
    pub retry_after: Duration,
    /// When it fails every call it accepts (none by default).
    #[serde(default)]
    pub bursts: Vec<Burst>,
    /// Limits that move during the run (none by default): from each phase's `at` on, the
    /// provider enforces its `max_concurrent` and `requests` instead (issue 26).
    #[serde(default)]
    pub phases: Vec<Phase>,
}

/// From `at` on (until the next phase), the provider's own limits are these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// When it starts (0 ..= 1 day; after the previous phase's).
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// Calls served at once (1 ..= 1,000,000).
    pub max_concurrent: u32,
    /// Calls accepted per `per` (1 ..= 1,000,000).
    pub requests: u32,
}

fn default_reject_latency() -> Duration {
    Duration::from_millis(50)
}

fn default_retry_after() -> Duration {
    Duration::from_secs(1)
}

/// A window of scenario time during which a provider answers 429 to every call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Burst {
    /// When it starts (0 ..= 1 day).
    #[serde(with = "humantime_serde")]
    pub start: Duration,
    /// How long it lasts (1 ms ..= 1 day).
    #[serde(with = "humantime_serde")]
    pub length: Duration,
}

impl Burst {
    /// Whether `at` falls inside it.
    pub fn covers(&self, at: Duration) -> bool {
        at >= self.start && at < self.start + self.length
    }
}

/// The `none` policy: immediate retries, nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoneSpec {
    /// Calls a job makes at most, the first included, back to back (1 ..= 100; default 1:
    /// no retry).
    pub max_attempts: u32,
}

impl Default for NoneSpec {
    fn default() -> Self {
        Self { max_attempts: 1 }
    }
}

const MAX_JOBS: u64 = 1_000_000;
const DAY: Duration = Duration::from_secs(86_400);
const MS: Duration = Duration::from_millis(1);
const BATCHES: Count = Count { min: 1, max: 10_000 };
const EVERY: Span = Span {
    min: Duration::ZERO,
    max: HOUR,
};
const BATCH_SIZE: Count = Count { min: 1, max: 10_000 };
const MAX_CONCURRENT: Count = Count {
    min: 1,
    max: 1_000_000,
};
const REQUESTS: Count = Count {
    min: 1,
    max: 1_000_000,
};
const PER: Span = Span { min: MS, max: DAY };
const RETRY_AFTER: Span = Span {
    min: Duration::ZERO,
    max: HOUR,
};
const BURST_START: Span = Span {
    min: Duration::ZERO,
    max: DAY,
};
const BURST_LENGTH: Span = Span { min: MS, max: DAY };
const NONE_ATTEMPTS: Count = Count { min: 1, max: 100 };

impl ProviderSpec {
    pub(crate) fn validate(&self, name: &str) -> Result<(), ScenarioError> {
        let f = |k: &str| format!("providers.{name}.{k}");
        MAX_CONCURRENT.check(&f("max_concurrent"), self.max_concurrent)?;
        REQUESTS.check(&f("requests"), self.requests)?;
        PER.check(&f("per"), self.per)?;
        self.latency.validate(&f("latency"))?;
        REJECT_LATENCY.check(&f("reject_latency"), self.reject_latency)?;
        RETRY_AFTER.check(&f("retry_after"), self.retry_after)?;
        for (i, b) in self.bursts.iter().enumerate() {
            BURST_START.check(&f(&format!("bursts[{i}].start")), b.start)?;
            BURST_LENGTH.check(&f(&format!("bursts[{i}].length")), b.length)?;
        }
        let mut after = Duration::ZERO;
        for (i, p) in self.phases.iter().enumerate() {
            let f = |k: &str| f(&format!("phases[{i}].{k}"));
            Span {
                min: after,
                ..BURST_START
            }
            .check(&f("at"), p.at)?;
            MAX_CONCURRENT.check(&f("max_concurrent"), p.max_concurrent)?;
            REQUESTS.check(&f("requests"), p.requests)?;
            after = p.at + MS;
        }
        Ok(())
    }

    /// `(max_concurrent, requests)` it enforces at `at`: the last phase begun, else its own.
    pub fn limits_at(&self, at: Duration) -> (u32, u32) {
        self.phases
            .iter()
            .rev()
            .find(|p| p.at <= at)
            .map_or((self.max_concurrent, self.requests), |p| {
                (p.max_concurrent, p.requests)
            })
    }

    /// Whether a burst covers `at`.
    pub fn bursting(&self, at: Duration) -> bool {
        self.bursts.iter().any(|b| b.covers(at))
    }
}

impl ProvidersScenario {
    /// Parses and validates a `providers` scenario.
    ///
    /// ```
    /// use weir_cli::simulate::providers::scenario::{ProvidersScenario, PROVIDERS_TOML};
    /// let s = ProvidersScenario::from_toml_str(PROVIDERS_TOML).unwrap();
    /// assert_eq!(s.providers.a.max_concurrent, 2);
    /// let bad = PROVIDERS_TOML.replace("requests = 60\n", "requests = 0\n");
    /// let e = ProvidersScenario::from_toml_str(&bad).unwrap_err();
    /// assert_eq!(e.to_string(), "providers.a.requests must be between 1 and 1000000, got 0");
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Self, ScenarioError> {
        let s: ProvidersScenario = parse(text)?;
        s.validate()?;
        Ok(s)
    }

    /// The built-in scenario.
    pub fn builtin() -> Self {
        Self::from_toml_str(PROVIDERS_TOML).expect("config/providers.toml is valid")
    }

    /// Checks every field; the error names the first one out of range.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.kind != "providers" {
            return Err(ScenarioError::invalid(
                "kind",
                "\"providers\"",
                format!("{:?}", self.kind),
            ));
        }
        self.workload.validate()?;
        self.providers.a.validate(PRIMARY)?;
        self.providers.b.validate(SECONDARY)?;
        NONE_ATTEMPTS.check("none.max_attempts", self.none.max_attempts)?;
        self.weir.validate().map_err(ScenarioError::under_weir)
    }

    /// The provider called `name` (`a` or `b`).
    pub fn provider(&self, name: &str) -> &ProviderSpec {
        if name == SECONDARY {
            &self.providers.b
        } else {
            &self.providers.a
        }
    }

    /// The arrivals drawn from `seed`: one `(at, jobs)` per batch, in time order.
    pub fn arrivals(&self, seed: u64) -> Vec<(Duration, u32)> {
        self.workload.arrivals(seed)
    }
}

impl ArrivalSpec {
    /// Checks every field; errors name `workload.FIELD`.
    pub(crate) fn validate(&self) -> Result<(), ScenarioError> {
        let w = self;
        BATCHES.check("workload.batches", w.batches)?;
        EVERY.check("workload.every", w.every)?;
        BATCH_SIZE.check("workload.batch_size.min", w.batch_size.min)?;
        let above_min = Count {
            min: u64::from(w.batch_size.min),
            ..BATCH_SIZE
        };
        above_min.check("workload.batch_size.max", w.batch_size.max)?;
        let most = u64::from(w.batches) * u64::from(w.batch_size.max);
        if most > MAX_JOBS {
            return Err(ScenarioError::invalid(
                "workload",
                format!("at most {MAX_JOBS} jobs (batches x batch_size.max)"),
                most,
            ));
        }
        Ok(())
    }

    /// The arrivals drawn from `seed`: one `(at, jobs)` per batch, in time order.
    pub fn arrivals(&self, seed: u64) -> Vec<(Duration, u32)> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..self.batches)
            .map(|i| {
                let n = rng.random_range(self.batch_size.min..=self.batch_size.max);
                (self.every * i, n)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_scenario_is_valid_and_its_arrivals_repeat() {
        let s = ProvidersScenario::builtin();
        assert_eq!(s.none.max_attempts, 4);
        assert!(s.providers.a.bursting(Duration::from_secs(150)));
        assert!(!s.providers.a.bursting(Duration::from_secs(180)));
        assert!(!s.providers.b.bursting(Duration::from_secs(150)));
        assert_eq!(s.arrivals(3), s.arrivals(3));
        assert_ne!(s.arrivals(3), s.arrivals(4));
        let sizes = s.workload.batch_size;
        assert!(s
            .arrivals(3)
            .iter()
            .all(|&(_, n)| (sizes.min..=sizes.max).contains(&n)));
    }

    #[test]
    fn weir_errors_are_named_under_weir() {
        let bad = PROVIDERS_TOML.replace("safety_factor = 0.9", "safety_factor = 1.5");
        let e = ProvidersScenario::from_toml_str(&bad).unwrap_err();
        assert_eq!(
            e.to_string(),
            "weir.resources.a.rate_limit.safety_factor must be greater than 0 and at most 1, got 1.5"
        );
    }
}
