//! The three ways to run the incident's workload against the store, and what every run
//! records. Each policy runs on the current actix system; a paused tokio clock makes the
//! scenario's minutes pass in milliseconds.
//!
//! * [`Policy::Weir`]: the real [`Runtime`](weir_actors::Runtime): organisations are a fan-out
//!   batch, each organisation job spawns its projection jobs and joins them.
//! * [`Policy::Naive`]: the cascade as it was: organisations released in the same batches,
//!   every projection's query started at once.
//! * [`Policy::Counter`]: the patch: a shared counter (capped, with leases) that a task polls
//!   until it gets in or has waited the wait timeout, then skips.

mod counter;
mod naive;
mod weir_runtime;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::ProgressBar;
use tokio::time::Instant;
use weir::OutcomeKind;

use super::downstream::{QueryError, Store};
use super::scenario::IncidentScenario;
use super::workload::Workload;

/// How the workload is scheduled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// weir's runtime.
    Weir,
    /// Everything at once.
    Naive,
    /// The shared counter with a wait timeout and skip.
    Counter,
}

impl Policy {
    /// Every policy, in the order reports list them.
    pub const ALL: [Policy; 3] = [Policy::Naive, Policy::Counter, Policy::Weir];

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Weir => "weir",
            Policy::Naive => "naive",
            Policy::Counter => "counter",
        }
    }

    /// The policy of that name.
    pub fn from_name(name: &str) -> Option<Policy> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// What happened to one query job, in scenario time from the start of the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryRecord {
    /// Its organisation.
    pub org: usize,
    /// When its job was submitted (None: its organisation never submitted it).
    pub submitted: Option<Duration>,
    /// When its query started.
    pub started: Option<Duration>,
    /// When its job ended.
    pub ended: Option<Duration>,
    /// How it ended.
    pub outcome: Option<OutcomeKind>,
}

/// Everything one policy's run produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunRecord {
    /// One record per query of the workload, by query id.
    pub queries: Vec<QueryRecord>,
    /// Most queries in flight at once as the policy itself counted (weir: its scheduler;
    /// counter: the counter; naive: its own tally).
    pub peak_in_flight: u64,
    /// What the store saw.
    pub store: super::downstream::StoreReport,
}

/// Collects per-query times; shared by the policy's tasks (all on one thread, but weir's
/// job bodies must be `Send`).
#[derive(Debug)]
pub struct Recorder {
    origin: Instant,
    queries: Mutex<Vec<QueryRecord>>,
    progress: ProgressBar,
}

impl Recorder {
    /// A recorder for `workload`; its clock starts now.
    pub fn new(workload: &Workload, progress: ProgressBar) -> Self {
        let queries = workload
            .orgs
            .iter()
            .flat_map(|o| &o.queries)
            .map(|q| QueryRecord {
                org: q.org,
                ..QueryRecord::default()
            })
            .collect();
        Self {
            origin: Instant::now(),
            queries: Mutex::new(queries),
            progress,
        }
    }

    fn with(&self, id: usize, f: impl FnOnce(&mut QueryRecord, Duration)) {
        let at = self.origin.elapsed();
        let mut q = self.queries.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut q[id], at);
    }

    /// The query's job was submitted.
    pub fn submitted(&self, id: usize) {
        self.with(id, |q, at| q.submitted = Some(at));
    }

    /// Its query started.
    pub fn started(&self, id: usize) {
        self.with(id, |q, at| q.started = Some(at));
    }

    /// Its job ended now with `outcome` (a second report keeps the first).
    pub fn ended(&self, id: usize, outcome: OutcomeKind) {
        let mut first = false;
        self.with(id, |q, at| {
            if q.outcome.is_none() {
                first = true;
                q.outcome = Some(outcome);
                q.ended = Some(at);
            }
        });
        if first {
            self.progress.inc(1);
        }
    }

    /// The records; a submitted job with no outcome (its organisation stopped first) is
    /// counted `Cancelled` at the end of the run.
    pub fn finish(&self) -> Vec<QueryRecord> {
        let at = self.origin.elapsed();
        let mut q = self.queries.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for r in q
            .iter_mut()
            .filter(|r| r.submitted.is_some() && r.outcome.is_none())
        {
            r.outcome = Some(OutcomeKind::Cancelled);
            r.ended = Some(at);
        }
        q
    }
}

/// The outcome kind of a query's result.
fn outcome_of(result: &Result<(), QueryError>) -> OutcomeKind {
    match result {
        Ok(()) => OutcomeKind::Completed,
        Err(_) => OutcomeKind::Failed,
    }
}

/// Why a policy could not run (weir's runtime refused to start or to take the batch).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The runtime did not start.
    #[error(transparent)]
    Start(#[from] weir_actors::StartError),
    /// The runtime refused the organisations.
    #[error(transparent)]
    Submit(#[from] weir_actors::SubmitError),
}

/// Runs `policy` on `workload` against a fresh store; call inside an actix system.
pub async fn run(
    policy: Policy,
    scenario: &IncidentScenario,
    workload: Arc<Workload>,
    progress: ProgressBar,
) -> Result<RunRecord, RunError> {
    let store = Arc::new(Store::new(
        scenario.downstream.limit,
        scenario.downstream.reject_latency,
    ));
    let recorder = Arc::new(Recorder::new(&workload, progress));
    let peak_in_flight = match policy {
        Policy::Naive => naive::run(&workload, &scenario.scheduler, &store, &recorder).await,
        Policy::Counter => counter::run(&workload, scenario, &store, &recorder).await,
        Policy::Weir => weir_runtime::run(workload.clone(), scenario, &store, &recorder).await?,
    };
    Ok(RunRecord {
        queries: recorder.finish(),
        peak_in_flight,
        store: store.report(),
    })
}
