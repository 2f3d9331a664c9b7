//! What a soak run is asked to do: its length, its sampling, the size of its workload,
//! and the command-line arguments that set them. Every value is checked here, so a bad
//! one is refused with the argument's name and what is allowed, never a panic.

use std::path::PathBuf;
use std::time::Duration;

/// The shortest run `--duration` accepts: anything shorter has no warm-up to compare.
pub const MIN_DURATION: Duration = Duration::from_secs(1);
/// The longest run `--duration` accepts (a week).
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// The shortest `--sample-every`: sampling reads the supervisor's statistics, which
/// should stay a small share of its work.
pub const MIN_SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// A deliberate defect, for the test that shows each check can fail. Never set in a
/// real run; the command exposes it only as the hidden `--leak-for-test` flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TestDefect {
    /// Keep 4 KiB for every job that ends, forever: memory grows with the jobs run.
    Memory,
    /// Forget to count the first outcome a handle resolves to: the counts no longer add up.
    Outcome,
}

/// The settings of one soak run (see [`crate::soak::soak`]).
#[derive(Clone, Debug)]
pub struct SoakOptions {
    /// How long the workload is offered (the drain and shutdown come after).
    pub duration: Duration,
    /// Time between two samples.
    pub sample_every: Duration,
    /// Leaf jobs offered per second, over all kinds (approximate: the workload's mix is
    /// a share of it).
    pub rate: u32,
    /// Tenants active at any moment: the workload picks its tenants among them.
    pub active_tenants: u32,
    /// New tenants per second; as many of the oldest go idle for good.
    pub new_tenants_per_sec: u32,
    /// Seeds the workload's choices (tenants, faults, latencies).
    pub seed: u64,
    /// A Redis URL: adds a resource whose slots are leases in that Redis.
    pub redis: Option<String>,
    /// A deliberate defect (tests only).
    pub defect: Option<TestDefect>,
    /// Print a line per sample while the run goes.
    pub progress: bool,
}

impl Default for SoakOptions {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(60),
            sample_every: Duration::from_secs(5),
            rate: 2000,
            active_tenants: 200,
            new_tenants_per_sec: 20,
            seed: 1,
            redis: None,
            defect: None,
            progress: false,
        }
    }
}

/// A setting out of its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{argument} {message}")]
pub struct OptionError {
    /// The argument's name, as on the command line.
    pub argument: &'static str,
    /// What is allowed and what was given.
    pub message: String,
}

fn refuse(argument: &'static str, message: String) -> OptionError {
    OptionError { argument, message }
}

impl SoakOptions {
    /// Checks every setting against its range; the error names the argument.
    pub fn validate(&self) -> Result<(), OptionError> {
        check_duration("--duration", self.duration, MIN_DURATION, MAX_DURATION)?;
        check_duration(
            "--sample-every",
            self.sample_every,
            MIN_SAMPLE_EVERY,
            MAX_DURATION,
        )?;
        if self.sample_every > self.duration {
            return Err(refuse(
                "--sample-every",
                format!(
                    "must be at most --duration ({}), got {}",
                    humantime::format_duration(self.duration),
                    humantime::format_duration(self.sample_every)
                ),
            ));
        }
        check_range("--rate", self.rate, 1, 1_000_000)?;
        check_range("--tenants", self.active_tenants, 1, 1_000_000)?;
        check_range("--new-tenants-per-sec", self.new_tenants_per_sec, 0, 1_000_000)?;
        if let Some(url) = &self.redis {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(refuse(
                    "--redis",
                    format!("must be a URL starting with redis:// or rediss://, got {url:?}"),
                ));
            }
        }
        Ok(())
    }
}

fn check_duration(
    argument: &'static str,
    d: Duration,
    min: Duration,
    max: Duration,
) -> Result<(), OptionError> {
    if d < min || d > max {
        return Err(refuse(
            argument,
            format!(
                "must be between {} and {}, got {}",
                humantime::format_duration(min),
                humantime::format_duration(max),
                humantime::format_duration(d)
            ),
        ));
    }
    Ok(())
}

fn check_range(argument: &'static str, v: u32, min: u32, max: u32) -> Result<(), OptionError> {
    if v < min || v > max {
        return Err(refuse(
            argument,
            format!("must be between {min} and {max}, got {v}"),
        ));
    }
    Ok(())
}

/// Parses a duration argument such as `60s`, `10m` or `1h 30m` (humantime's syntax).
/// The message says what is allowed; clap adds the argument's name.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("must be a duration such as 60s, 10m or 1h 30m, got {text:?} ({e})"))
}

/// `weir soak`: a long mixed run with faults on the real clock; checks counts, caps,
/// slots, memory and tenant state at the end.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// How long to offer the workload, e.g. 60s, 10m (between 1s and 7days).
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub duration: Duration,
    /// Time between samples, e.g. 5s (at least 100ms, at most --duration).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub sample_every: Duration,
    /// Leaf jobs offered per second, over all kinds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: u32,
    /// Tenants active at any moment.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub tenants: u32,
    /// New tenants per second (as many old ones go idle).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub new_tenants_per_sec: u32,
    /// Seed of the workload's choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Redis URL: adds a resource whose slots are leases in that Redis.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Write the samples, totals and checks as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw RSS and jobs/s over time as SVG.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// A deliberate defect, to see a check fail (tests).
    #[arg(long, hide = true, value_enum)]
    pub leak_for_test: Option<TestDefect>,
}

impl SoakArgs {
    /// The run's options (not yet validated).
    pub fn options(&self) -> SoakOptions {
        SoakOptions {
            duration: self.duration,
            sample_every: self.sample_every,
            rate: self.rate,
            active_tenants: self.tenants,
            new_tenants_per_sec: self.new_tenants_per_sec,
            seed: self.seed,
            redis: self.redis.clone(),
            defect: self.leak_for_test,
            progress: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_duration_says_what_is_allowed() {
        let e = parse_duration("10x").unwrap_err();
        assert!(
            e.starts_with("must be a duration such as 60s, 10m or 1h 30m, got \"10x\""),
            "{e}"
        );
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
    }

    #[test]
    fn out_of_range_settings_name_their_argument() {
        let short = SoakOptions {
            duration: Duration::from_millis(10),
            ..SoakOptions::default()
        };
        assert_eq!(
            short.validate().unwrap_err().to_string(),
            "--duration must be between 1s and 7days, got 10ms"
        );
        let sparse = SoakOptions {
            sample_every: Duration::from_secs(120),
            ..SoakOptions::default()
        };
        assert_eq!(
            sparse.validate().unwrap_err().to_string(),
            "--sample-every must be at most --duration (1m), got 2m"
        );
        let redis = SoakOptions {
            redis: Some("localhost:6379".into()),
            ..SoakOptions::default()
        };
        assert_eq!(redis.validate().unwrap_err().argument, "--redis");
    }
}
