//! `weir simulate`: reproduces the incident against a simulated downstream and shows the
//! fix side by side.
//!
//! A scenario is a TOML file whose top-level `kind` picks its runner from [`KINDS`]; with
//! no `--scenario` the built-in `incident` (config/incident.toml) runs. The `incident` kind
//! runs the same seeded workload under each chosen policy (`weir`: the real
//! [`Runtime`](weir_actors::Runtime); `naive`: every job at once, as the cascade did; `counter`:
//! the patch's shared counter) against a store with a hard concurrency limit, on a paused
//! tokio clock (`--speed max`, the default: scenario minutes take milliseconds and runs
//! repeat exactly) or on the real clock compressed N times (`--speed N`). Every reported
//! duration is in scenario time.
//!
//! A new kind implements [`ScenarioKind`] in a module of its own and adds itself to
//! [`KINDS`]; the command line, `--policy`, `--json`, `--plot` and the progress bar come
//! with it.

pub mod alerts;
pub mod downstream;
pub mod incident;
pub mod limit_shift;
pub mod plot;
pub mod policies;
pub mod providers;
pub mod report;
pub mod scenario;
pub mod unknown_rate;
pub mod workload;

use std::path::{Path, PathBuf};
use std::str::FromStr;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use self::plot::PlotError;
use self::policies::RunError;
use self::scenario::{kind_of, ScenarioError};

/// Arguments of `weir simulate`.
#[derive(Clone, Debug, clap::Args)]
pub struct SimulateArgs {
    /// A TOML scenario file [default: the built-in incident, config/incident.toml].
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// The policy to run: one of the scenario kind's (incident: weir, naive, counter;
    /// providers: weir, none; limit-shift: static-50, static-30, adaptive, oracle), or
    /// all (side by side).
    #[arg(long, default_value = "weir", value_name = "POLICY")]
    pub policy: String,
    /// `max`: virtual time, as fast as the CPU allows (reproducible); a number N: real
    /// time, N scenario seconds per second.
    #[arg(long, default_value = "max", value_name = "max|N")]
    pub speed: Speed,
    /// Write the reports as JSON (an object, or an array with --policy all).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Draw the kind's plot over scenario time as an SVG (incident: queries in flight at
    /// the store per policy; providers: calls each provider rejected, per policy;
    /// limit-shift: the store's limit and queries in flight at it per policy).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Seed of the workload [default: the scenario's `seed`].
    #[arg(long)]
    pub seed: Option<u64>,
}

impl Default for SimulateArgs {
    fn default() -> Self {
        Self {
            scenario: None,
            policy: "weir".into(),
            speed: Speed::Max,
            json: None,
            plot: None,
            seed: None,
        }
    }
}

/// How scenario time maps to wall time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Speed {
    /// A paused tokio clock: time jumps to the next timer whenever every task is idle.
    #[default]
    Max,
    /// The real clock, every scenario duration divided by this factor (> 0).
    Times(f64),
}

impl FromStr for Speed {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "max" {
            return Ok(Speed::Max);
        }
        match s.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 && f <= 1e6 => Ok(Speed::Times(f)),
            _ => Err(format!(
                "must be \"max\" or a number between 0 and 1000000 (exclusive of 0), got {s:?}"
            )),
        }
    }
}

/// What a scenario kind is given to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The policies to run (names from [`ScenarioKind::policies`]).
    pub policies: Vec<String>,
    /// Overrides the scenario's seed.
    pub seed: Option<u64>,
    /// Virtual or compressed real time.
    pub speed: Speed,
    /// Advance it by one per finished job; the kind sets its length.
    pub progress: ProgressBar,
}

impl RunOptions {
    /// The policies of `all` that were asked for, in `all`'s order.
    pub fn selected<'a>(&self, all: &[&'a str]) -> Vec<&'a str> {
        all.iter()
            .copied()
            .filter(|p| self.policies.iter().any(|n| n == p))
            .collect()
    }
}

/// One kind of scenario (the file's top-level `kind`).
pub trait ScenarioKind: Sync + std::fmt::Debug {
    /// The `kind` value it handles.
    fn name(&self) -> &'static str;
    /// Its built-in scenario (TOML).
    fn builtin(&self) -> &'static str;
    /// The policies it can run, in display order.
    fn policies(&self) -> &'static [&'static str];
    /// Parses and validates `text`, then runs the chosen policies.
    fn run(&self, text: &str, options: &RunOptions) -> Result<Box<dyn ScenarioResults>, SimulateError>;
}

/// What a run produced, in the command's three forms.
pub trait ScenarioResults: std::fmt::Debug {
    /// The table printed on stdout.
    fn table(&self) -> String;
    /// The `--json` document.
    fn json(&self) -> serde_json::Value;
    /// Draws the `--plot` SVG.
    fn plot(&self, path: &Path) -> Result<(), PlotError>;
}

/// The `--json` document of per-policy reports: one object for one policy, an array in
/// policy order for `--policy all`.
pub(crate) fn reports_json<'a, R: serde::Serialize + 'a>(
    reports: impl IntoIterator<Item = &'a R>,
) -> serde_json::Value {
    let mut reports: Vec<serde_json::Value> = reports
        .into_iter()
        .map(|r| serde_json::to_value(r).expect("a report serializes"))
        .collect();
    if reports.len() == 1 {
        reports.pop().expect("one report")
    } else {
        serde_json::Value::Array(reports)
    }
}

/// Every scenario kind, by `kind`; the first is the default.
pub static KINDS: &[&dyn ScenarioKind] = &[
    &incident::Incident,
    &alerts::Alerts,
    &providers::ProvidersKind,
    &limit_shift::LimitShiftKind,
    &unknown_rate::UnknownRateKind,
];

/// Why `weir simulate` did not run or could not write its results.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The scenario file could not be read.
    #[error("cannot read the scenario {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The scenario is invalid.
    #[error("invalid scenario: {0}")]
    Scenario(#[from] ScenarioError),
    /// An argument is invalid.
    #[error("{arg} must be {allowed}, got {got:?}")]
    Argument {
        /// The argument (`--policy`).
        arg: &'static str,
        /// What is allowed.
        allowed: String,
        /// What was given.
        got: String,
    },
    /// A policy could not run.
    #[error("the run failed: {0}")]
    Run(#[from] RunError),
    /// An output file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The plot could not be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// The kind named `name`.
pub fn find_kind(name: &str) -> Result<&'static dyn ScenarioKind, ScenarioError> {
    KINDS.iter().copied().find(|k| k.name() == name).ok_or_else(|| {
        let names: Vec<String> = KINDS.iter().map(|k| format!("\"{}\"", k.name())).collect();
        ScenarioError::invalid(
            "kind",
            format!("one of {}", names.join(", ")),
            format!("{name:?}"),
        )
    })
}

/// The policies `--policy` names for `kind`: one of its policies, or `all`.
pub fn choose_policies(kind: &dyn ScenarioKind, policy: &str) -> Result<Vec<String>, SimulateError> {
    let known = kind.policies();
    if policy == "all" {
        return Ok(known.iter().map(|p| p.to_string()).collect());
    }
    if known.contains(&policy) {
        return Ok(vec![policy.to_string()]);
    }
    Err(SimulateError::Argument {
        arg: "--policy",
        allowed: format!("one of {}, all", known.join(", ")),
        got: policy.to_string(),
    })
}

/// Runs the scenario `args` names and returns its results (nothing printed or written).
pub fn simulate(
    args: &SimulateArgs,
    progress: ProgressBar,
) -> Result<Box<dyn ScenarioResults>, SimulateError> {
    let text = match &args.scenario {
        Some(path) => std::fs::read_to_string(path).map_err(|source| SimulateError::Read {
            path: path.display().to_string(),
            source,
        })?,
        None => KINDS[0].builtin().to_string(),
    };
    let kind = find_kind(&kind_of(&text)?)?;
    let options = RunOptions {
        policies: choose_policies(kind, &args.policy)?,
        seed: args.seed,
        speed: args.speed,
        progress,
    };
    kind.run(&text, &options)
}

/// Runs `weir simulate`: the table on stdout, a progress bar on stderr, then the JSON and
/// the plot if asked. Returns the process exit code (0 once the run completed, whatever
/// the policies scored).
pub fn run(args: &SimulateArgs) -> Result<u8, SimulateError> {
    let progress = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    progress.set_style(
        ProgressStyle::with_template("{spinner} {msg:>8} [{bar:40}] {pos}/{len} jobs")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    let results = simulate(args, progress.clone());
    progress.finish_and_clear();
    let results = results?;
    print!("{}", results.table());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&results.json()).expect("JSON values serialize");
        std::fs::write(path, text + "\n").map_err(|source| SimulateError::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    if let Some(path) = &args.plot {
        results.plot(path)?;
    }
    Ok(0)
}
