//! The `unknown-rate` scenario file (`config/unknown-rate.toml`): the workload and the
//! two providers as in the providers kind (a's limits move through its `phases`), weir's
//! shared configuration, and what each policy says about resource a.

use serde::Deserialize;
use weir::Count;

use crate::simulate::providers::scenario::{ArrivalSpec, Providers, PRIMARY, SECONDARY};
use crate::simulate::scenario::{parse, ScenarioError};

/// The built-in `unknown-rate` scenario (`config/unknown-rate.toml`).
pub const UNKNOWN_RATE_TOML: &str = include_str!("../../../../config/unknown-rate.toml");

/// An `unknown-rate` scenario.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnknownRateScenario {
    /// Always `unknown-rate`.
    pub kind: String,
    /// Seeds the arrivals and the providers' latencies (overridden by `--seed`).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// When jobs arrive.
    pub workload: ArrivalSpec,
    /// The two simulated providers; a's limits move through its `phases`.
    pub providers: Providers,
    /// weir's configuration shared by every policy (`[weir.…]`).
    #[serde(default)]
    pub weir: weir::Config,
    /// What the policies say about resource a.
    pub policies: PolicySpecs,
}

fn default_seed() -> u64 {
    1
}

/// Resource a's settings under each policy (the oracle's come from the provider).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicySpecs {
    /// A fixed rate and cap above the provider's.
    pub static_guess_high: StaticSpec,
    /// A fixed rate and cap below it.
    pub static_guess_low: StaticSpec,
    /// Ceilings for the learned rate and concurrency limit.
    pub adaptive: AdaptiveSpec,
    /// Runtimes of `adaptive-replicas`: as many processes without Redis, each with
    /// `adaptive`'s settings and every n-th job, learning on its own (1 ..= 64).
    pub replicas: u32,
}

/// A fixed cap and rate (`requests` per a's `per`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticSpec {
    /// Slots of resource a (1 ..= 1,000,000).
    pub max_concurrent: u32,
    /// Its rate (1 ..= 1,000,000).
    pub requests: u32,
}

/// The ceilings and start of the learned rate and concurrency limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveSpec {
    /// The concurrency limit's ceiling (1 ..= 1,000,000).
    pub max_concurrent: u32,
    /// The rate's ceiling, requests per a's `per` (1 ..= 1,000,000).
    pub requests: u32,
    /// Floor of both (1 ..= either ceiling).
    pub min: u32,
    /// Start of both (min ..= either ceiling).
    pub initial: u32,
}

const COUNT: Count = Count {
    min: 1,
    max: 1_000_000,
};

impl UnknownRateScenario {
    /// Parses and validates an `unknown-rate` scenario.
    ///
    /// ```
    /// use weir_cli::simulate::unknown_rate::scenario::{UnknownRateScenario, UNKNOWN_RATE_TOML};
    /// let s = UnknownRateScenario::from_toml_str(UNKNOWN_RATE_TOML).unwrap();
    /// assert_eq!(s.providers.a.phases.len(), 3);
    /// let bad = UNKNOWN_RATE_TOML.replace("requests = 15 }", "requests = 0 }");
    /// let e = UnknownRateScenario::from_toml_str(&bad).unwrap_err();
    /// assert_eq!(
    ///     e.to_string(),
    ///     "policies.static-guess-low.requests must be between 1 and 1000000, got 0"
    /// );
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Self, ScenarioError> {
        let s: UnknownRateScenario = parse(text)?;
        s.validate()?;
        Ok(s)
    }

    /// The built-in scenario.
    pub fn builtin() -> Self {
        Self::from_toml_str(UNKNOWN_RATE_TOML).expect("config/unknown-rate.toml is valid")
    }

    /// Checks every field; the error names the first one out of range. Each policy's
    /// weir configuration is checked as weir checks it, under `weir.`.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.kind != "unknown-rate" {
            return Err(ScenarioError::invalid(
                "kind",
                "\"unknown-rate\"",
                format!("{:?}", self.kind),
            ));
        }
        self.workload.validate()?;
        self.providers.a.validate(PRIMARY)?;
        self.providers.b.validate(SECONDARY)?;
        let p = &self.policies;
        for (name, s) in [
            ("static-guess-high", p.static_guess_high),
            ("static-guess-low", p.static_guess_low),
        ] {
            COUNT.check(&format!("policies.{name}.max_concurrent"), s.max_concurrent)?;
            COUNT.check(&format!("policies.{name}.requests"), s.requests)?;
        }
        COUNT.check("policies.adaptive.max_concurrent", p.adaptive.max_concurrent)?;
        COUNT.check("policies.adaptive.requests", p.adaptive.requests)?;
        Count { min: 1, max: 64 }.check("policies.replicas", p.replicas)?;
        for policy in super::POLICIES {
            super::policy_config(self, policy)
                .validate()
                .map_err(ScenarioError::under_weir)?;
        }
        Ok(())
    }
}
