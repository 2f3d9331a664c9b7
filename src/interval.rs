//! Evaluation intervals by time window: a check over a long window does not need to run
//! as often as one over a short window (a 24-hour count barely moves in a minute).
//!
//! An [`IntervalTable`] maps a rule's window to how often it is evaluated: the first
//! step whose `window` is at least the rule's window applies; windows longer than every
//! step take the last step's interval.
//!
//! ```
//! use std::time::Duration;
//! use weir::IntervalTable;
//!
//! let table = IntervalTable::default(); // <= 10 min: 1 min; <= 1 h: 2 min; <= 1 day: 5 min
//! let min = |m: u64| Duration::from_secs(60 * m);
//! assert_eq!(table.interval_for(min(5)), min(1));
//! assert_eq!(table.interval_for(min(60)), min(2));
//! assert_eq!(table.interval_for(min(24 * 60)), min(5));
//! assert_eq!(table.interval_for(min(7 * 24 * 60)), min(5)); // past the table: the last step
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// One row of the table: windows up to `window` are evaluated every `every`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntervalStep {
    /// The longest window this row covers.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How often a rule with such a window is evaluated (1 ms ..= `window`).
    #[serde(with = "humantime_serde")]
    pub every: Duration,
}

/// The table (`[[intervals]]` in the configuration): non-empty, windows strictly
/// ascending, intervals never decreasing and never longer than their window (a longer
/// interval would let events slip between two evaluations unseen).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IntervalTable {
    steps: Vec<IntervalStep>,
}

const MINUTE: Duration = Duration::from_secs(60);

impl Default for IntervalTable {
    fn default() -> Self {
        let step = |window_min: u64, every_min: u64| IntervalStep {
            window: MINUTE * window_min as u32,
            every: MINUTE * every_min as u32,
        };
        Self {
            steps: vec![step(10, 1), step(60, 2), step(24 * 60, 5)],
        }
    }
}

fn fmt(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

impl IntervalTable {
    /// A validated table; `field` names it in errors (`intervals`).
    pub fn new(steps: Vec<IntervalStep>) -> Result<Self, ConfigError> {
        let table = Self { steps };
        table.validate("intervals")?;
        Ok(table)
    }

    /// A table that evaluates every window every `every` (no table, in effect).
    pub fn flat(every: Duration) -> Self {
        Self {
            steps: vec![IntervalStep {
                window: Duration::MAX,
                every,
            }],
        }
    }

    /// The rows, windows ascending.
    pub fn steps(&self) -> &[IntervalStep] {
        &self.steps
    }

    /// How often a rule over `window` is evaluated.
    pub fn interval_for(&self, window: Duration) -> Duration {
        self.steps
            .iter()
            .find(|s| window <= s.window)
            .or(self.steps.last())
            .map_or(MINUTE, |s| s.every)
    }

    /// Checks the table; errors name `field[i].window` or `field[i].every`.
    pub fn validate(&self, field: &str) -> Result<(), ConfigError> {
        if self.steps.is_empty() {
            return Err(ConfigError::invalid(field, "at least one step", "none"));
        }
        let mut previous: Option<IntervalStep> = None;
        for (i, s) in self.steps.iter().enumerate() {
            if s.every.is_zero() || s.every > s.window {
                return Err(ConfigError::invalid(
                    format!("{field}[{i}].every"),
                    format!("between 1ms and its window ({})", fmt(s.window)),
                    fmt(s.every),
                ));
            }
            if let Some(p) = previous {
                if s.window <= p.window {
                    return Err(ConfigError::invalid(
                        format!("{field}[{i}].window"),
                        format!("longer than the previous step's window ({})", fmt(p.window)),
                        fmt(s.window),
                    ));
                }
                if s.every < p.every {
                    return Err(ConfigError::invalid(
                        format!("{field}[{i}].every"),
                        format!("at least the previous step's interval ({})", fmt(p.every)),
                        fmt(s.every),
                    ));
                }
            }
            previous = Some(*s);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(window_s: u64, every_s: u64) -> IntervalStep {
        IntervalStep {
            window: Duration::from_secs(window_s),
            every: Duration::from_secs(every_s),
        }
    }

    #[test]
    fn bad_tables_name_the_field() {
        let e = IntervalTable::new(vec![]).unwrap_err();
        assert_eq!(e.to_string(), "intervals must be at least one step, got none");
        let e = IntervalTable::new(vec![step(600, 60), step(600, 120)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "intervals[1].window must be longer than the previous step's window (10m), got 10m"
        );
        let e = IntervalTable::new(vec![step(600, 120), step(3600, 60)]).unwrap_err();
        assert!(
            e.to_string().starts_with("intervals[1].every must be at least"),
            "{e}"
        );
        let e = IntervalTable::new(vec![step(60, 120)]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("intervals[0].every must be between 1ms and its window"),
            "{e}"
        );
        let e = IntervalTable::new(vec![step(60, 0)]).unwrap_err();
        assert!(e.to_string().starts_with("intervals[0].every"), "{e}");
    }

    #[test]
    fn boundaries_belong_to_the_shorter_step() {
        let t = IntervalTable::new(vec![step(600, 60), step(3600, 120)]).unwrap();
        assert_eq!(t.interval_for(Duration::from_secs(600)), Duration::from_secs(60));
        assert_eq!(t.interval_for(Duration::from_secs(601)), Duration::from_secs(120));
        assert_eq!(t.interval_for(Duration::ZERO), Duration::from_secs(60));
        assert!(IntervalTable::default().validate("intervals").is_ok());
        assert_eq!(
            IntervalTable::flat(Duration::from_secs(60)).interval_for(Duration::from_secs(86400)),
            Duration::from_secs(60)
        );
    }
}
