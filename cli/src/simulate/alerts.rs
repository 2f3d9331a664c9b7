//! The `alerts` scenario kind (issue 7): the alerts scenario ([`crate::alerts`]) behind
//! `weir simulate --scenario config/alerts.toml`.
//!
//! Its policies are the scenario's variants: `per-check`, `coalesced`,
//! `per-check+intervals`, `coalesced+intervals`. `weir` (the command's default) runs
//! all four side by side, because the scenario's point is the comparison: queries with
//! and without coalescing, and every check's answer compared between the two.

use std::path::Path;

use super::plot::{self, Level, PlotError, Series};
use super::scenario::ScenarioError;
use super::{RunOptions, ScenarioKind, ScenarioResults, SimulateError, Speed};
use crate::alerts::{run_variants, AlertsError, AlertsReport, AlertsScenario, Variant, ALERTS_TOML};

/// The `alerts` kind (see [`ScenarioKind`]).
#[derive(Debug)]
pub struct Alerts;

impl From<AlertsError> for ScenarioError {
    fn from(e: AlertsError) -> Self {
        match e {
            AlertsError::Invalid { field, allowed, got } => ScenarioError::Invalid { field, allowed, got },
            AlertsError::Parse(message) => ScenarioError::Parse {
                field: "scenario".into(),
                message,
            },
        }
    }
}

impl ScenarioKind for Alerts {
    fn name(&self) -> &'static str {
        "alerts"
    }

    fn builtin(&self) -> &'static str {
        ALERTS_TOML
    }

    fn policies(&self) -> &'static [&'static str] {
        &[
            "weir",
            "per-check",
            "coalesced",
            "per-check+intervals",
            "coalesced+intervals",
        ]
    }

    fn run(&self, text: &str, options: &RunOptions) -> Result<Box<dyn ScenarioResults>, SimulateError> {
        let mut scenario = AlertsScenario::from_toml_str(text).map_err(ScenarioError::from)?;
        if let Some(seed) = options.seed {
            scenario.seed = seed;
        }
        if let Speed::Times(f) = options.speed {
            return Err(SimulateError::Argument {
                arg: "--speed",
                allowed: "max for the alerts scenario (it runs on virtual time only)".into(),
                got: f.to_string(),
            });
        }
        let variants: Vec<Variant> = if options.policies.iter().any(|p| p == "weir") {
            Variant::ALL.to_vec()
        } else {
            Variant::ALL
                .into_iter()
                .filter(|v| options.policies.iter().any(|p| p == v.name()))
                .collect()
        };
        options.progress.set_length(variants.len() as u64);
        let report = run_variants(&scenario, &variants, |run| {
            options.progress.set_message(run.name.clone());
            options.progress.inc(1);
        })
        .map_err(ScenarioError::from)?;
        Ok(Box::new(AlertsResults(report)))
    }
}

/// The results of an alerts scenario.
#[derive(Debug)]
pub struct AlertsResults(pub AlertsReport);

impl ScenarioResults for AlertsResults {
    fn table(&self) -> String {
        self.0.table()
    }

    fn json(&self) -> serde_json::Value {
        let runs: Vec<serde_json::Value> = self
            .0
            .runs
            .iter()
            .map(|r| {
                serde_json::json!({
                    "run": r.name,
                    "coalesce": r.coalesce,
                    "intervals": r.intervals,
                    "checks": r.checks,
                    "failed_checks": r.failed_checks,
                    "queries": r.queries,
                    "rejected": r.rejected,
                    "peak_concurrency": r.peak_concurrency,
                    "items_counted": r.items_counted,
                    "latency_p50_ms": r.latency_p50.as_secs_f64() * 1e3,
                    "latency_p99_ms": r.latency_p99.as_secs_f64() * 1e3,
                })
            })
            .collect();
        let compare = |intervals| {
            serde_json::json!({
                "query_reduction": self.0.query_reduction(intervals),
                "answers_match": self.0.answers_match(intervals),
            })
        };
        serde_json::json!({
            "runs": runs,
            "coalescing": compare(false),
            "coalescing_with_intervals": compare(true),
        })
    }

    fn plot(&self, path: &Path) -> Result<(), PlotError> {
        let series: Vec<Series<'_>> = self
            .0
            .runs
            .iter()
            .map(|r| Series {
                name: &r.name,
                points: &r.in_flight,
            })
            .collect();
        let levels = [
            Level {
                name: "cap (resources.store.max_concurrent)",
                value: self.0.store_cap,
            },
            Level {
                name: "store limit",
                value: self.0.store_limit,
            },
        ];
        plot::write_svg(path, "alerts: store queries in flight", &series, &levels)
    }
}
