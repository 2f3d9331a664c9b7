//! A range a field allows, as a value: it checks a given value and describes itself, so
//! the check and the error message cannot disagree.
//!
//! ```
//! use std::time::Duration;
//! use weir::{Count, Span};
//!
//! const SLOTS: Count = Count { min: 1, max: 1_000_000 };
//! assert_eq!(SLOTS.describe(), "between 1 and 1000000");
//! let e = SLOTS.check("scheduler.max_concurrent", 0u32).unwrap_err();
//! assert_eq!(e.to_string(), "scheduler.max_concurrent must be between 1 and 1000000, got 0");
//!
//! let lease = Span { min: Duration::from_millis(1), max: Duration::from_secs(7 * 86_400) };
//! assert_eq!(lease.describe(), "between 1ms and 7days");
//! assert!(lease.check("scheduler.slot_lease_timeout", Duration::from_secs(300)).is_ok());
//! ```

use std::time::Duration;

use super::ConfigError;

/// Whole numbers from `min` to `max`, both included (`max = u64::MAX`: no upper bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count {
    /// Smallest allowed.
    pub min: u64,
    /// Largest allowed.
    pub max: u64,
}

impl Count {
    /// `min` and up, without an upper bound.
    pub const fn at_least(min: u64) -> Self {
        Self { min, max: u64::MAX }
    }

    /// Whether `v` is allowed.
    pub fn contains(&self, v: u64) -> bool {
        (self.min..=self.max).contains(&v)
    }

    /// What is allowed: `between 1 and 1000000`, or `at least 1` without an upper bound.
    pub fn describe(&self) -> String {
        if self.max == u64::MAX {
            format!("at least {}", self.min)
        } else {
            format!("between {} and {}", self.min, self.max)
        }
    }

    /// Refuses `got` outside the range; the error names `field` and [`Count::describe`].
    pub fn check(&self, field: &str, got: impl Into<u64>) -> Result<(), ConfigError> {
        let got = got.into();
        if self.contains(got) {
            return Ok(());
        }
        Err(ConfigError::invalid(field, self.describe(), got))
    }
}

/// Durations from `min` to `max`, both included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Shortest allowed.
    pub min: Duration,
    /// Longest allowed.
    pub max: Duration,
}

impl Span {
    /// Whether `v` is allowed.
    pub fn contains(&self, v: Duration) -> bool {
        (self.min..=self.max).contains(&v)
    }

    /// What is allowed: `between 1ms and 7days`.
    pub fn describe(&self) -> String {
        format!("between {} and {}", bound(self.min), bound(self.max))
    }

    /// Refuses `got` outside the span; the error names `field` and [`Span::describe`], and
    /// shows `got` as a humantime duration (`30days`).
    pub fn check(&self, field: &str, got: Duration) -> Result<(), ConfigError> {
        if self.contains(got) {
            return Ok(());
        }
        Err(ConfigError::invalid(field, self.describe(), show(got)))
    }
}

/// Real numbers from `min` to `max`; `min` itself only if `min_included`. NaN is never
/// allowed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Real {
    /// Lower bound.
    pub min: f64,
    /// Whether `min` itself is allowed (a share of 0 is not; a jitter factor of 0 is).
    pub min_included: bool,
    /// Largest allowed.
    pub max: f64,
}

impl Real {
    /// Whether `v` is allowed (never for NaN: every comparison with it is false).
    pub fn contains(&self, v: f64) -> bool {
        let above = if self.min_included {
            v >= self.min
        } else {
            v > self.min
        };
        above && v <= self.max
    }

    /// What is allowed: `between 0 and 100`, or `greater than 0 and at most 1`.
    pub fn describe(&self) -> String {
        if self.min_included {
            format!("between {} and {}", self.min, self.max)
        } else {
            format!("greater than {} and at most {}", self.min, self.max)
        }
    }

    /// Refuses `got` outside the range; the error names `field` and [`Real::describe`].
    pub fn check(&self, field: &str, got: f64) -> Result<(), ConfigError> {
        if self.contains(got) {
            return Ok(());
        }
        Err(ConfigError::invalid(field, self.describe(), got))
    }
}

/// A given duration as humantime writes it (`300ms`, `5m`, `30days`).
pub(crate) fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

const DAY: u64 = 24 * 3600;

/// A bound as an allowed text writes it. Whole days are written as days: humantime counts
/// a year as 365.25 days and a month as 30.44, so 366 days would read `1year 18h`.
pub(super) fn bound(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() == 0 && secs >= DAY && secs.is_multiple_of(DAY) {
        match secs / DAY {
            1 => "1day".to_string(),
            days => format!("{days}days"),
        }
    } else {
        show(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_read_as_the_messages_always_did() {
        let day = Duration::from_secs(DAY);
        let span = |min: Duration, max: Duration| Span { min, max }.describe();
        assert_eq!(
            span(Duration::ZERO, Duration::from_secs(3600)),
            "between 0s and 1h"
        );
        assert_eq!(span(Duration::from_millis(1), day * 7), "between 1ms and 7days");
        assert_eq!(
            span(Duration::from_millis(1), day * 366),
            "between 1ms and 366days"
        );
        assert_eq!(span(Duration::from_secs(1), day), "between 1s and 1day");
        assert_eq!(span(Duration::from_secs(1), day * 30), "between 1s and 30days");
        assert_eq!(Count::at_least(1).describe(), "at least 1");
        let share = Real {
            min: 0.0,
            min_included: false,
            max: 1.0,
        };
        assert_eq!(share.describe(), "greater than 0 and at most 1");
        assert!(!share.contains(f64::NAN) && !share.contains(0.0) && share.contains(1.0));
    }
}
