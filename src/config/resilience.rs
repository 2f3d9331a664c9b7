//! Per-resource resilience settings: rate limit, circuit breaker, retries, fallback,
//! jitter, start stagger and call budget, as written under `[resources.NAME]`.
//!
//! ```toml
//! [resources.primary]
//! max_concurrent = 2
//! fallback = "secondary"                       # used while primary's breaker is open
//! rate_limit = { requests = 60, per = "60s", safety_factor = 0.9 }
//! breaker = { error_rate = 0.05, window = "120s", min_calls = 20, cooldown = "60s" }
//! retry = { max_attempts = 3, base = "1s", cap = "60s" }
//! jitter = { min = 0.9, max = 1.6 }            # on limiter waits and Retry-After
//! stagger = { min = "100ms", max = "500ms" }   # before a job's first attempt
//! call_budget = { calls = 5, include_children = true }
//! ```
//!
//! Every section is optional; a resource without any of them is scheduled exactly as
//! before (slots only). Validation names the dotted field and what is allowed.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::allowed::{
    BREAKER_WINDOW, BURST, CALLS, COOLDOWN, ERROR_RATE, FALLBACK, HALF_OPEN_PROBES, HALF_OPEN_TIMEOUT,
    JITTER_MAX, JITTER_MIN, MAX_ATTEMPTS, MIN_CALLS, RATE_ADAPTIVE_MIN, RATE_LIMIT_PER, RATE_LIMIT_REQUESTS,
    RETRY_BASE, RETRY_CAP, SAFETY_FACTOR, STAGGER_MAX, STAGGER_MIN,
};
use super::{ConfigError, Count, ResourceConfig, Span};

/// `rate_limit`: at most `requests x safety_factor` calls per `per`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// The provider's limit: requests per `per` (1 ..= 1,000,000,000).
    pub requests: u32,
    /// The interval the limit is counted over (1 ms ..= 1 day; default 1 s).
    #[serde(with = "humantime_serde")]
    pub per: Duration,
    /// The share of the provider's limit weir uses (0 < f <= 1; default 1).
    pub safety_factor: f64,
    /// Calls that may start back to back before pacing sets in (1 ..= requests; default
    /// 1, which keeps every window of length `per` within the limit).
    pub burst: u32,
    /// `in_process` (the default) or `redis`: the limiter's state (GCRA's theoretical
    /// arrival time) lives in Redis, so the rate holds across every replica with the
    /// same `url`, `key_prefix` and resource name. The safety factor and jitter are
    /// applied by each process before it asks.
    pub backend: super::BackendKind,
    /// The Redis server; required with `backend = "redis"`.
    pub url: String,
    /// Prefix of the limiter's key (default `weir`).
    pub key_prefix: String,
    /// What a shared rate does while Redis cannot answer (default `fail_closed`).
    pub on_failure: super::SharedFailure,
    /// A rate learned from the downstream's overload refusals, with `requests` per `per`
    /// as its ceiling (see [`AdaptiveRateConfig`]); `None` (the default): the rate is
    /// `requests` per `per`, fixed.
    pub adaptive: Option<AdaptiveRateConfig>,
}

/// `rate_limit.adaptive`: the bounds of a learned rate, in requests per `per`.
///
/// ```toml
/// [resources.provider]
/// # The ceiling: well above what the provider is believed to take.
/// rate_limit = { requests = 500, per = "1s", adaptive = { min = 1, initial = 10 } }
/// ```
///
/// An overload refusal ([`crate::JobError::overload`]) cuts the rate by 10 % (once per
/// generation of grants), a Retry-After it carries pauses every call of the resource
/// until then, and calls that succeed while the rate is in use raise it. The safety
/// factor and the resource's jitter apply to the learned rate as to a fixed one.
///
/// With `backend = "redis"` the learned rate is shared by every replica: the rate, its
/// generation and the pause live in Redis, changed by scripts on the server's clock, so
/// a cut by one replica is a cut for all; each process also keeps its own learned gate.
/// Without Redis each replica learns on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveRateConfig {
    /// The rate never goes below this (1 ..= requests; default 1).
    pub min: u32,
    /// The rate at start (min ..= requests; default `min`).
    pub initial: Option<u32>,
}

impl Default for AdaptiveRateConfig {
    fn default() -> Self {
        Self {
            min: 1,
            initial: None,
        }
    }
}

impl AdaptiveRateConfig {
    /// The rate at start, requests per `per`.
    pub fn initial_rate(&self) -> u32 {
        self.initial.unwrap_or(self.min)
    }
}

// Validation refuses NaN, so equality is total.
impl Eq for RateLimitConfig {}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            requests: 1,
            per: Duration::from_secs(1),
            safety_factor: 1.0,
            burst: 1,
            backend: super::BackendKind::InProcess,
            url: String::new(),
            key_prefix: super::shared::default_key_prefix(),
            on_failure: super::SharedFailure::default(),
            adaptive: None,
        }
    }
}

impl RateLimitConfig {
    /// Calls admitted per `per`: `floor(requests x safety_factor)`, at least 1.
    pub fn effective_requests(&self) -> u32 {
        ((f64::from(self.requests) * self.safety_factor).floor() as u32).max(1)
    }

    /// Time between calls once the burst is spent.
    pub fn interval(&self) -> Duration {
        (self.per / self.effective_requests()).max(Duration::from_nanos(1))
    }
}

/// `breaker`: when to stop calling a failing resource, and how to try it again.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Failure share of the window at which it opens (0 < r <= 1; default 0.05).
    pub error_rate: f64,
    /// Sliding window the rate is measured over (1 s ..= 1 day; default 120 s).
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Outcomes the window must hold before it may open (1 ..= 1,000,000; default 20).
    pub min_calls: u32,
    /// How long it stays open before probing (1 ms ..= 1 day; default 60 s).
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// Probe calls admitted half-open; that many successes close it (1 ..= 1,000; default 1).
    pub half_open_probes: u32,
    /// Probes not resolved this long after the first one reopen it (1 ms ..= 1 day;
    /// default 30 s).
    #[serde(with = "humantime_serde")]
    pub half_open_timeout: Duration,
    /// Whether an overload refusal ([`crate::JobError::overload`]: a 429, a 503) counts
    /// as a failure in the window (default false). A refusal says the downstream is
    /// busy, not broken: the rate limit and the adaptive limit answer it by slowing
    /// down, and counting it too would open the breaker on a healthy downstream and
    /// send its work to the fallback (resilience4j's `ignoreExceptions` for the same
    /// reason). Errors and lease time-outs always count.
    pub count_overload: bool,
}

// Validation refuses NaN, so equality is total.
impl Eq for BreakerConfig {}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            error_rate: 0.05,
            window: Duration::from_secs(120),
            min_calls: 20,
            cooldown: Duration::from_secs(60),
            half_open_probes: 1,
            half_open_timeout: Duration::from_secs(30),
            count_overload: false,
        }
    }
}

/// `retry`: how often and how late a failed job runs again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts in all, the first included (1 ..= 100; default 3).
    pub max_attempts: u32,
    /// Backoff ceiling after the first attempt, doubled per attempt (1 ms ..= 1 h; default 1 s).
    #[serde(with = "humantime_serde")]
    pub base: Duration,
    /// Largest backoff ceiling (at least `base`, at most 1 day; default 60 s).
    #[serde(with = "humantime_serde")]
    pub cap: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        }
    }
}

/// `jitter`: the factor range applied to limiter waits and Retry-After waits, and the
/// seed of the resource's random draws.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JitterConfig {
    /// Smallest factor (0 ..= 100; default 0.9). A wait is never shortened below the
    /// instant the limiter or the server named: factors under 1 are clamped there.
    pub min: f64,
    /// Largest factor (min ..= 100; default 1.6).
    pub max: f64,
    /// Seed of the draws; by default derived from the resource's name.
    pub seed: Option<u64>,
}

// Validation refuses NaN, so equality is total.
impl Eq for JitterConfig {}

impl Default for JitterConfig {
    fn default() -> Self {
        Self {
            min: 0.9,
            max: 1.6,
            seed: None,
        }
    }
}

/// `stagger`: a random delay before a job's first attempt, so a batch does not call at once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StaggerConfig {
    /// Shortest delay (0 ..= 1 h).
    #[serde(with = "humantime_serde")]
    pub min: Duration,
    /// Longest delay (min ..= 1 h).
    #[serde(with = "humantime_serde")]
    pub max: Duration,
}

/// `call_budget`: downstream calls a job may make (counted by `JobContext::call`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallBudgetConfig {
    /// Calls allowed over all of a job's attempts (1 ..= 1,000,000; default 5).
    pub calls: u32,
    /// Children spawned by the job draw from the same budget (default false).
    pub include_children: bool,
}

impl Default for CallBudgetConfig {
    fn default() -> Self {
        Self {
            calls: 5,
            include_children: false,
        }
    }
}

/// Checks `rate_limit.adaptive` against its ceiling (`rate_limit.requests`).
fn validate_adaptive_rate(
    f: &impl Fn(&str) -> String,
    l: &RateLimitConfig,
    a: &AdaptiveRateConfig,
) -> Result<(), ConfigError> {
    let ceiling = u64::from(l.requests);
    let min = Count {
        max: RATE_ADAPTIVE_MIN.max.min(ceiling),
        ..RATE_ADAPTIVE_MIN
    };
    if !min.contains(u64::from(a.min)) {
        let allowed = format!("between {} and rate_limit.requests ({ceiling})", min.min);
        return Err(ConfigError::invalid(f("rate_limit.adaptive.min"), allowed, a.min));
    }
    if let Some(initial) = a.initial {
        if !(u64::from(a.min)..=ceiling).contains(&u64::from(initial)) {
            let allowed = format!(
                "between rate_limit.adaptive.min ({}) and rate_limit.requests ({ceiling})",
                a.min
            );
            return Err(ConfigError::invalid(
                f("rate_limit.adaptive.initial"),
                allowed,
                initial,
            ));
        }
    }
    Ok(())
}

/// Checks the resilience fields of resource `name`; `exists` says whether another
/// resource is configured (for `fallback`).
pub(crate) fn validate(
    name: &str,
    r: &ResourceConfig,
    exists: impl Fn(&str) -> bool,
) -> Result<(), ConfigError> {
    let f = |k: &str| format!("resources.{name}.{k}");
    if let Some(l) = &r.rate_limit {
        RATE_LIMIT_REQUESTS.check(&f("rate_limit.requests"), l.requests)?;
        RATE_LIMIT_PER.check(&f("rate_limit.per"), l.per)?;
        SAFETY_FACTOR.check(&f("rate_limit.safety_factor"), l.safety_factor)?;
        let burst = Count {
            max: u64::from(l.effective_requests()),
            ..BURST
        };
        burst.check(&f("rate_limit.burst"), l.burst)?;
        super::shared::validate(
            |k| f(&format!("rate_limit.{k}")),
            l.backend,
            &l.url,
            &l.key_prefix,
        )?;
        if let Some(a) = &l.adaptive {
            validate_adaptive_rate(&f, l, a)?;
        }
    }
    if let Some(b) = &r.breaker {
        ERROR_RATE.check(&f("breaker.error_rate"), b.error_rate)?;
        BREAKER_WINDOW.check(&f("breaker.window"), b.window)?;
        MIN_CALLS.check(&f("breaker.min_calls"), b.min_calls)?;
        COOLDOWN.check(&f("breaker.cooldown"), b.cooldown)?;
        HALF_OPEN_PROBES.check(&f("breaker.half_open_probes"), b.half_open_probes)?;
        HALF_OPEN_TIMEOUT.check(&f("breaker.half_open_timeout"), b.half_open_timeout)?;
    }
    if let Some(t) = &r.retry {
        MAX_ATTEMPTS.check(&f("retry.max_attempts"), t.max_attempts)?;
        RETRY_BASE.check(&f("retry.base"), t.base)?;
        let cap = Span {
            min: t.base,
            ..RETRY_CAP
        };
        cap.check(&f("retry.cap"), t.cap)?;
    }
    if let Some(j) = &r.jitter {
        JITTER_MIN.check(&f("jitter.min"), j.min)?;
        // The lower bound is another field's value; the message names that field.
        if !(JITTER_MAX.contains(j.max) && j.max >= j.min) {
            let allowed = format!("between jitter.min ({}) and {}", j.min, JITTER_MAX.max);
            return Err(ConfigError::invalid(f("jitter.max"), allowed, j.max));
        }
    }
    if let Some(s) = &r.stagger {
        STAGGER_MIN.check(&f("stagger.min"), s.min)?;
        let max = Span {
            min: s.min,
            ..STAGGER_MAX
        };
        max.check(&f("stagger.max"), s.max)?;
    }
    if let Some(b) = &r.call_budget {
        CALLS.check(&f("call_budget.calls"), b.calls)?;
    }
    if let Some(fb) = &r.fallback {
        if fb == name || !exists(fb) {
            return Err(ConfigError::invalid(f("fallback"), FALLBACK, format!("{fb:?}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn err(text: &str) -> String {
        Config::from_toml_str(text).unwrap_err().to_string()
    }

    #[test]
    fn a_full_section_parses() {
        let cfg = Config::from_toml_str(
            r#"
            [resources.primary]
            max_concurrent = 2
            fallback = "secondary"
            rate_limit = { requests = 60, per = "60s", safety_factor = 0.9 }
            breaker = { error_rate = 0.05, window = "120s", min_calls = 20, cooldown = "60s", half_open_probes = 2 }
            retry = { max_attempts = 4, base = "1s", cap = "60s" }
            jitter = { min = 0.9, max = 1.6, seed = 7 }
            stagger = { min = "100ms", max = "500ms" }
            call_budget = { calls = 5, include_children = true }
            [resources.secondary]
            max_concurrent = 1
            "#,
        )
        .unwrap();
        let p = &cfg.resources["primary"];
        assert_eq!(p.rate_limit.as_ref().unwrap().effective_requests(), 54);
        assert_eq!(p.breaker.unwrap().half_open_probes, 2);
        assert_eq!(p.retry.unwrap().max_attempts, 4);
        assert_eq!(p.call_budget.unwrap().calls, 5);
        assert_eq!(p.fallback.as_deref(), Some("secondary"));
    }

    #[test]
    fn errors_name_the_field_and_what_is_allowed() {
        let e = err("[resources.p]\nrate_limit = { requests = 10, safety_factor = 1.5 }\n");
        assert_eq!(
            e,
            "resources.p.rate_limit.safety_factor must be greater than 0 and at most 1, got 1.5"
        );
        let e = err("[resources.p]\nbreaker = { error_rate = 0.0 }\n");
        assert!(e.starts_with("resources.p.breaker.error_rate must be"), "{e}");
        let e = err("[resources.p]\nretry = { max_attempts = 0 }\n");
        assert_eq!(
            e,
            "resources.p.retry.max_attempts must be between 1 and 100, got 0"
        );
        let e = err("[resources.p]\nretry = { base = \"2s\", cap = \"1s\" }\n");
        assert!(e.starts_with("resources.p.retry.cap must be between 2s"), "{e}");
        let e = err("[resources.p]\nfallback = \"nowhere\"\n");
        assert!(
            e.starts_with("resources.p.fallback must be the name of another resource"),
            "{e}"
        );
        let e = err("[resources.p]\nfallback = \"p\"\n");
        assert!(e.starts_with("resources.p.fallback"), "{e}");
        let e = err("[resources.p]\njitter = { min = 2.0, max = 1.0 }\n");
        assert!(e.starts_with("resources.p.jitter.max must be between"), "{e}");
        let e = err("[resources.p]\nbreaker = { min_call = 3 }\n");
        assert!(e.contains("min_call"), "{e}");
        let e = err("[resources.p]\nrate_limit = { requests = 10, burst = 11 }\n");
        assert!(
            e.starts_with("resources.p.rate_limit.burst must be between 1 and 10"),
            "{e}"
        );
    }
}
