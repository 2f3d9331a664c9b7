//! What each field allows, written once: [`Config::validate`](super::Config::validate)
//! checks against these values, its errors describe them, and [`for_path`] turns them
//! into the text a loader shows when a value has the wrong type.
//!
//! ```
//! use weir::allowed::{for_path, MAX_CONCURRENT};
//!
//! assert_eq!(MAX_CONCURRENT.describe(), "between 1 and 1000000");
//! assert_eq!(
//!     for_path("resources.db.max_concurrent").as_deref(),
//!     Some("a whole number between 1 and 1000000")
//! );
//! ```

use std::time::Duration;

use super::range::{bound, Count, Real, Span};

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);
const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

/// `max_concurrent` of the scheduler and of a resource: slots.
pub const MAX_CONCURRENT: Count = Count {
    min: 1,
    max: 1_000_000,
};
/// `slot_lease_timeout` of the scheduler and of a resource.
pub const SLOT_LEASE_TIMEOUT: Span = Span { min: MS, max: WEEK };
/// `slot_wait_timeout` of the scheduler and of a resource.
pub const SLOT_WAIT_TIMEOUT: Span = Span {
    min: Duration::ZERO,
    max: WEEK,
};
/// `scheduler.org_batch_size`.
pub const ORG_BATCH_SIZE: Count = Count {
    min: 1,
    max: 1_000_000,
};
/// `scheduler.batch_delay`.
pub const BATCH_DELAY: Span = Span {
    min: Duration::ZERO,
    max: HOUR,
};
/// `scheduler.max_queued`.
pub const MAX_QUEUED: Count = Count::at_least(1);
/// `scheduler.quantum`.
pub const QUANTUM: Count = Count {
    min: 1,
    max: 1_000_000,
};
/// `runtime.worker_threads`.
pub const WORKER_THREADS: Count = Count { min: 0, max: 1024 };
/// `runtime.inline_poll_limit`.
pub const INLINE_POLL_LIMIT: Span = Span {
    min: Duration::ZERO,
    max: SECOND,
};
/// `metrics.tenant_labels`: tenants named on the per-tenant series.
pub const TENANT_LABELS: Count = Count { min: 0, max: 1000 };
/// `tenants.NAME.weight`.
pub const WEIGHT: Count = Count { min: 1, max: 1000 };

/// `resources.NAME.fallback`.
pub const FALLBACK: &str = "the name of another resource configured under [resources]";
/// `rate_limit.requests`.
pub const RATE_LIMIT_REQUESTS: Count = Count {
    min: 1,
    max: 1_000_000_000,
};
/// `rate_limit.per`.
pub const RATE_LIMIT_PER: Span = Span { min: MS, max: DAY };
/// `rate_limit.safety_factor`.
pub const SAFETY_FACTOR: Real = Real {
    min: 0.0,
    min_included: false,
    max: 1.0,
};
/// `rate_limit.burst`; its upper bound is further `requests x safety_factor`.
pub const BURST: Count = Count {
    min: 1,
    max: 1_000_000_000,
};
/// `rate_limit.adaptive.min`; its upper bound is further `rate_limit.requests`.
pub const RATE_ADAPTIVE_MIN: Count = RATE_LIMIT_REQUESTS;
/// `breaker.error_rate`.
pub const ERROR_RATE: Real = Real {
    min: 0.0,
    min_included: false,
    max: 1.0,
};
/// `breaker.window`.
pub const BREAKER_WINDOW: Span = Span {
    min: SECOND,
    max: DAY,
};
/// `breaker.min_calls`.
pub const MIN_CALLS: Count = Count {
    min: 1,
    max: 1_000_000,
};
/// `breaker.cooldown`.
pub const COOLDOWN: Span = Span { min: MS, max: DAY };
/// `breaker.half_open_probes`.
pub const HALF_OPEN_PROBES: Count = Count { min: 1, max: 1000 };
/// `breaker.half_open_timeout`.
pub const HALF_OPEN_TIMEOUT: Span = Span { min: MS, max: DAY };
/// `retry.max_attempts`.
pub const MAX_ATTEMPTS: Count = Count { min: 1, max: 100 };
/// `retry.base`.
pub const RETRY_BASE: Span = Span { min: MS, max: HOUR };
/// `retry.cap`; its lower bound is further `retry.base`.
pub const RETRY_CAP: Span = Span { min: MS, max: DAY };
/// `jitter.min`.
pub const JITTER_MIN: Real = Real {
    min: 0.0,
    min_included: true,
    max: 100.0,
};
/// `jitter.max`; its lower bound is further `jitter.min`.
pub const JITTER_MAX: Real = Real {
    min: 0.0,
    min_included: true,
    max: 100.0,
};
/// `stagger.min`.
pub const STAGGER_MIN: Span = Span {
    min: Duration::ZERO,
    max: HOUR,
};
/// `stagger.max`; its lower bound is further `stagger.min`.
pub const STAGGER_MAX: Span = Span {
    min: Duration::ZERO,
    max: HOUR,
};
/// `adaptive.min`; its upper bound is further the resource's `max_concurrent`.
pub const ADAPTIVE_MIN: Count = MAX_CONCURRENT;
/// `adaptive.initial`; it lies further between `adaptive.min` and `max_concurrent`.
pub const ADAPTIVE_INITIAL: Count = MAX_CONCURRENT;
/// `call_budget.calls`.
pub const CALLS: Count = Count {
    min: 1,
    max: 1_000_000,
};

/// `coalesce.KIND.flush_interval`.
pub const FLUSH_INTERVAL: Span = Span {
    min: Duration::ZERO,
    max: HOUR,
};
/// `coalesce.KIND.max_batch`.
pub const MAX_BATCH: Count = Count {
    min: 1,
    max: 1_000_000,
};
/// `coalesce.KIND.max_wait`.
pub const MAX_WAIT: Span = Span {
    min: Duration::ZERO,
    max: HOUR,
};
/// `coalesce.KIND.resource`.
pub const COALESCE_RESOURCE: &str = "a non-empty resource name";

/// `quotas.NAME.windows[i].limit`: the log keeps this many timestamps per scope.
pub const WINDOW_LIMIT: Count = Count {
    min: 1,
    max: 1_000_000,
};
/// `quotas.NAME.windows[i].per` and `quotas.NAME.cost_window`.
pub const WINDOW: Span = Span {
    min: MS,
    max: Duration::from_secs(366 * 24 * 3600),
};
/// `quotas.NAME.cost_budget`.
pub const COST_BUDGET: Count = Count::at_least(1);

/// `backends.NAME.url`.
pub const REDIS_URL: &str = "a redis:// or rediss:// URL";
/// `backends.NAME.key_prefix`: it goes inside a `{...}` hash tag, which a brace would break.
pub const KEY_PREFIX: &str = "non-empty, without '{' or '}'";
/// `backends.NAME.lease_ttl`.
pub const LEASE_TTL: Span = Span {
    min: Duration::from_millis(100),
    max: HOUR,
};
/// `backends.NAME.renewal_interval`; its upper bound is further half of `lease_ttl`.
pub const RENEWAL_INTERVAL: Span = Span {
    min: Duration::from_millis(10),
    max: Duration::from_secs(1800),
};
/// `backends.NAME.local_cap`.
pub const LOCAL_CAP: Count = Count {
    min: 1,
    max: 1_000_000,
};

/// What is allowed in the field at a dotted `path` (`resources.db.max_concurrent`,
/// `quotas.q.windows[0].limit`), written for someone who gave a value of the wrong type:
/// `a whole number between 1 and 1000000`. Names of resources, tenants, kinds, quotas
/// and backends, and list indices, may be anything. `None` for a section or a list as a
/// whole, and for paths that name no field.
///
/// ```
/// use weir::allowed::for_path;
/// assert_eq!(
///     for_path("scheduler.slot_lease_timeout").as_deref(),
///     Some("a duration between 1ms and 7days, like \"300s\"")
/// );
/// assert_eq!(for_path("backends.store.on_failure").as_deref(), Some("\"fail_closed\" or \"fail_open_local\""));
/// assert_eq!(for_path("scheduler"), None);
/// ```
pub fn for_path(path: &str) -> Option<String> {
    let whole = |c: Count| match c.max {
        u64::MAX => format!("a whole number of {}", c.describe()),
        _ => format!("a whole number {}", c.describe()),
    };
    let duration = |s: Span, like: &str| format!("a duration {}, like \"{like}\"", s.describe());
    let number = |r: Real| format!("a number {}", r.describe());
    let text = match pattern(path).as_str() {
        "scheduler.max_concurrent" | "resources.*.max_concurrent" => whole(MAX_CONCURRENT),
        "scheduler.slot_lease_timeout" | "resources.*.slot_lease_timeout" => {
            duration(SLOT_LEASE_TIMEOUT, "300s")
        }
        "scheduler.slot_wait_timeout" | "resources.*.slot_wait_timeout" => duration(SLOT_WAIT_TIMEOUT, "60s"),
        "scheduler.org_batch_size" => whole(ORG_BATCH_SIZE),
        "scheduler.batch_delay" => duration(BATCH_DELAY, "2s"),
        "scheduler.max_queued" => whole(MAX_QUEUED),
        "scheduler.quantum" => whole(QUANTUM),
        "runtime.worker_threads" => whole(WORKER_THREADS),
        "runtime.inline_poll_limit" => duration(INLINE_POLL_LIMIT, "50us"),
        "resources.*.bodies" => "\"auto\", \"inline\" or \"threads\"".into(),
        "runtime.own_thread" | "resources.*.call_budget.include_children" => "true or false".into(),
        "tenants.*.weight" => whole(WEIGHT),
        "metrics.tenant_labels" => whole(TENANT_LABELS),

        "resources.*.fallback" => FALLBACK.into(),
        "resources.*.rate_limit.requests" => whole(RATE_LIMIT_REQUESTS),
        "resources.*.rate_limit.per" => duration(RATE_LIMIT_PER, "1s"),
        "resources.*.rate_limit.safety_factor" => number(SAFETY_FACTOR),
        "resources.*.rate_limit.burst" => {
            format!(
                "a whole number between {} and requests x safety_factor",
                BURST.min
            )
        }
        "resources.*.rate_limit.adaptive.min" => format!(
            "a whole number between {} and rate_limit.requests",
            RATE_ADAPTIVE_MIN.min
        ),
        "resources.*.rate_limit.adaptive.initial" => {
            "a whole number between rate_limit.adaptive.min and rate_limit.requests".into()
        }
        "resources.*.breaker.count_overload" => "true or false".into(),
        "resources.*.breaker.error_rate" => number(ERROR_RATE),
        "resources.*.breaker.window" => duration(BREAKER_WINDOW, "120s"),
        "resources.*.breaker.min_calls" => whole(MIN_CALLS),
        "resources.*.breaker.cooldown" => duration(COOLDOWN, "60s"),
        "resources.*.breaker.half_open_probes" => whole(HALF_OPEN_PROBES),
        "resources.*.breaker.half_open_timeout" => duration(HALF_OPEN_TIMEOUT, "30s"),
        "resources.*.retry.max_attempts" => whole(MAX_ATTEMPTS),
        "resources.*.retry.base" => duration(RETRY_BASE, "1s"),
        "resources.*.retry.cap" => format!(
            "a duration between retry.base and {}, like \"60s\"",
            bound(RETRY_CAP.max)
        ),
        "resources.*.jitter.min" => number(JITTER_MIN),
        "resources.*.jitter.max" => format!("a number between jitter.min and {}", JITTER_MAX.max),
        "resources.*.jitter.seed" => "a whole number".into(),
        "resources.*.stagger.min" => duration(STAGGER_MIN, "100ms"),
        "resources.*.stagger.max" => format!(
            "a duration between stagger.min and {}, like \"500ms\"",
            bound(STAGGER_MAX.max)
        ),
        "resources.*.call_budget.calls" => whole(CALLS),
        "resources.*.adaptive.algorithm" => "\"aimd\" or \"gradient2\"".into(),
        "resources.*.adaptive.min" => {
            format!("a whole number between {} and max_concurrent", ADAPTIVE_MIN.min)
        }
        "resources.*.adaptive.initial" => "a whole number between adaptive.min and max_concurrent".into(),

        "coalesce.*.flush_interval" => duration(FLUSH_INTERVAL, "1s"),
        "coalesce.*.max_batch" => whole(MAX_BATCH),
        "coalesce.*.max_wait" => duration(MAX_WAIT, "2s"),
        "coalesce.*.resource" => COALESCE_RESOURCE.into(),

        "quotas.*.scope" => "\"tenant\" or \"global\"".into(),
        "quotas.*.windows[*].limit" => whole(WINDOW_LIMIT),
        "quotas.*.windows[*].per" => duration(WINDOW, "1h"),
        "quotas.*.cost_budget" => whole(COST_BUDGET),
        "quotas.*.cost_window" => duration(WINDOW, "1day"),
        "quotas.*.backend" | "resources.*.rate_limit.backend" => "\"in_process\" or \"redis\"".into(),
        "quotas.*.url" | "resources.*.rate_limit.url" => REDIS_URL.into(),
        "quotas.*.key_prefix" | "resources.*.rate_limit.key_prefix" => format!("a string, {KEY_PREFIX}"),
        "quotas.*.on_failure" | "resources.*.rate_limit.on_failure" => {
            "\"fail_open\", \"fail_closed\" or \"fail_open_local\"".into()
        }

        "backends.*.backend" => "\"in_process\" or \"redis\"".into(),
        "backends.*.url" => REDIS_URL.into(),
        "backends.*.key_prefix" => KEY_PREFIX.into(),
        "backends.*.lease_ttl" => duration(LEASE_TTL, "30s"),
        "backends.*.renewal_interval" => format!(
            "a duration between {} and half of lease_ttl, like \"10s\"",
            bound(RENEWAL_INTERVAL.min)
        ),
        "backends.*.on_failure" => "\"fail_closed\" or \"fail_open_local\"".into(),
        "backends.*.local_cap" => whole(LOCAL_CAP),

        "intervals[*].window" => "a duration, like \"10m\"".into(),
        "intervals[*].every" => "a duration between 1ms and its window, like \"1m\"".into(),
        _ => return None,
    };
    Some(text)
}

/// `path` with the name under a named section and every list index replaced by `*`:
/// `resources.db.retry.base` -> `resources.*.retry.base`, `intervals[2].every` ->
/// `intervals[*].every`.
fn pattern(path: &str) -> String {
    const NAMED: [&str; 5] = ["resources", "tenants", "coalesce", "quotas", "backends"];
    let mut parts: Vec<String> = path
        .split('.')
        .map(|part| match part.split_once('[') {
            Some((head, _)) => format!("{head}[*]"),
            None => part.to_string(),
        })
        .collect();
    if parts.len() > 2 && NAMED.contains(&parts[0].as_str()) {
        parts[1] = "*".into();
    }
    parts.join(".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::resilience::*;
    use crate::config::*;

    /// Every leaf path of `value`, with `[i]` for list items.
    fn leaves(prefix: &str, value: &toml::Value, out: &mut Vec<String>) {
        match value {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    leaves(&path, v, out);
                }
            }
            toml::Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    leaves(&format!("{prefix}[{i}]"), v, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }

    #[test]
    fn every_field_has_an_allowed_text() {
        let mut cfg = Config::default();
        cfg.resources.insert(
            "db".into(),
            ResourceConfig {
                max_concurrent: Some(1),
                slot_lease_timeout: Some(HOUR),
                slot_wait_timeout: Some(HOUR),
                rate_limit: Some(RateLimitConfig {
                    adaptive: Some(AdaptiveRateConfig {
                        initial: Some(1),
                        ..AdaptiveRateConfig::default()
                    }),
                    ..RateLimitConfig::default()
                }),
                breaker: Some(BreakerConfig::default()),
                retry: Some(RetryConfig::default()),
                fallback: Some("other".into()),
                jitter: Some(JitterConfig {
                    seed: Some(7),
                    ..JitterConfig::default()
                }),
                stagger: Some(StaggerConfig::default()),
                call_budget: Some(CallBudgetConfig::default()),
                adaptive: Some(AdaptiveConfig {
                    initial: Some(1),
                    ..AdaptiveConfig::default()
                }),
                bodies: crate::Bodies::Threads,
            },
        );
        cfg.tenants.insert("acme".into(), TenantConfig::default());
        cfg.coalesce.insert("counts".into(), CoalesceConfig::default());
        cfg.backends.insert("db".into(), BackendConfig::default());
        cfg.quotas.insert(
            "q".into(),
            QuotaConfig {
                windows: vec![WindowConfig { limit: 1, per: HOUR }],
                cost_budget: Some(1),
                cost_window: Some(DAY),
                ..QuotaConfig::default()
            },
        );
        let value = toml::Value::try_from(&cfg).unwrap();
        let mut paths = Vec::new();
        leaves("", &value, &mut paths);
        assert!(paths.len() > 50, "{paths:?}");
        for path in paths {
            assert!(for_path(&path).is_some(), "no allowed text for {path}");
        }
    }

    #[test]
    fn the_texts_a_loader_showed_before_stay() {
        let text = |p| for_path(p).unwrap();
        assert_eq!(text("scheduler.max_queued"), "a whole number of at least 1");
        assert_eq!(
            text("runtime.worker_threads"),
            "a whole number between 0 and 1024"
        );
        assert_eq!(text("tenants.acme.weight"), "a whole number between 1 and 1000");
        assert_eq!(
            text("resources.db.slot_wait_timeout"),
            "a duration between 0s and 7days, like \"60s\""
        );
        assert_eq!(
            text("scheduler.batch_delay"),
            "a duration between 0s and 1h, like \"2s\""
        );
        assert_eq!(
            text("quotas.q.windows[3].per"),
            "a duration between 1ms and 366days, like \"1h\""
        );
        assert_eq!(for_path("resources.db"), None);
    }
}
