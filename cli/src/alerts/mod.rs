//! The alerts scenario (issue 7): many small count checks, answered one query each or
//! coalesced into one query per project, with every rule evaluated at a base interval or
//! at the interval its window maps to.
//!
//! Each run drives the real actors ([`Runtime`], [`Coalescer`], [`RecurringChecks`]) on
//! a paused tokio clock, so the scenario's minutes pass in milliseconds and a run repeats
//! exactly. Every rule of every project is a recurring check; when it falls due it
//! checks each group that received events since its last run, counting the group's
//! events in `(due - window, due]`. Because each count names its own time range, a check
//! has one right answer whenever its query runs; [`AlertsReport::answers_match`] compares
//! every check's answer with and without coalescing.
//!
//! ```no_run
//! use weir_cli::alerts::{run_all, AlertsScenario, ALERTS_TOML};
//! let report = run_all(&AlertsScenario::from_toml_str(ALERTS_TOML).unwrap()).unwrap();
//! println!("{}", report.table());
//! ```

mod scenario;

pub use scenario::{AlertsError, AlertsScenario, Event, Rule, StoreSpec, ALERTS_TOML};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::time::Instant;
use weir::{IntervalTable, JobError, JobSpec, Outcome};

use weir_actors::{Coalescer, Job, JobHandle, RecurringChecks, Runtime};

/// One check: (project, rule index, group, due instant in ms).
pub type CheckKey = (u32, usize, u32, u64);

/// What one count asks: a group's events in `(at - window, at]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CountKey {
    /// The group.
    pub group: u32,
    /// The window.
    pub window: Duration,
    /// The end of the range (the check's due instant).
    pub at: Duration,
}

/// The figures of one run.
#[derive(Clone, Debug)]
pub struct AlertsRun {
    /// `per-check` or `coalesced`, `+intervals` when the table was used.
    pub name: String,
    /// Checks were coalesced.
    pub coalesce: bool,
    /// The interval table was used (otherwise every rule ran every `base_interval`).
    pub intervals: bool,
    /// Checks run.
    pub checks: u64,
    /// Checks that did not complete (should be 0).
    pub failed_checks: u64,
    /// Queries the store received (served or refused).
    pub queries: u64,
    /// Queries the store refused for being over its limit.
    pub rejected: u64,
    /// Most queries the store served at once.
    pub peak_concurrency: u64,
    /// Items (group, window) counted in all queries.
    pub items_counted: u64,
    /// Median time from a check falling due to its answer (scenario time).
    pub latency_p50: Duration,
    /// 99th percentile of the same.
    pub latency_p99: Duration,
    /// Every check's answer.
    pub answers: BTreeMap<CheckKey, u64>,
    /// Queries in flight at the store after each change: (scenario time, count).
    pub in_flight: Vec<(Duration, u32)>,
}

/// The four runs side by side.
#[derive(Clone, Debug)]
pub struct AlertsReport {
    /// The runs, in the order asked.
    pub runs: Vec<AlertsRun>,
    /// The store's concurrency limit.
    pub store_limit: u32,
    /// weir's cap on the store's resource.
    pub store_cap: u32,
}

impl AlertsReport {
    fn find(&self, coalesce: bool, intervals: bool) -> Option<&AlertsRun> {
        self.runs
            .iter()
            .find(|r| r.coalesce == coalesce && r.intervals == intervals)
    }

    /// Queries per check without coalescing over queries with it (same interval setting).
    pub fn query_reduction(&self, intervals: bool) -> Option<f64> {
        let plain = self.find(false, intervals)?;
        let coalesced = self.find(true, intervals)?;
        Some(plain.queries as f64 / coalesced.queries.max(1) as f64)
    }

    /// True when every check got the same answer with and without coalescing (same
    /// interval setting), and both ran the same checks.
    pub fn answers_match(&self, intervals: bool) -> Option<bool> {
        let plain = self.find(false, intervals)?;
        let coalesced = self.find(true, intervals)?;
        Some(plain.answers == coalesced.answers)
    }

    /// The report as a table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<22} {:>8} {:>9} {:>9} {:>6} {:>12} {:>12} {:>7}\n",
            "run", "checks", "queries", "rejected", "peak", "latency p50", "latency p99", "failed"
        );
        for r in &self.runs {
            out += &format!(
                "{:<22} {:>8} {:>9} {:>9} {:>6} {:>12} {:>12} {:>7}\n",
                r.name,
                r.checks,
                r.queries,
                r.rejected,
                r.peak_concurrency,
                format!("{}ms", r.latency_p50.as_millis()),
                format!("{}ms", r.latency_p99.as_millis()),
                r.failed_checks
            );
        }
        for intervals in [false, true] {
            if let (Some(x), Some(same)) = (self.query_reduction(intervals), self.answers_match(intervals)) {
                out += &format!(
                    "coalescing{}: {x:.1}x fewer queries, answers {}\n",
                    if intervals {
                        " (with the interval table)"
                    } else {
                        ""
                    },
                    if same {
                        "identical for every check"
                    } else {
                        "DIFFER"
                    }
                );
            }
        }
        out
    }
}

/// One way to run the scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    /// Coalesce the checks' queries.
    pub coalesce: bool,
    /// Evaluate each rule at its window's interval (else every `base_interval`).
    pub intervals: bool,
}

impl Variant {
    /// per-check, coalesced, per-check+intervals, coalesced+intervals.
    pub const ALL: [Variant; 4] = [
        Variant {
            coalesce: false,
            intervals: false,
        },
        Variant {
            coalesce: true,
            intervals: false,
        },
        Variant {
            coalesce: false,
            intervals: true,
        },
        Variant {
            coalesce: true,
            intervals: true,
        },
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match (self.coalesce, self.intervals) {
            (false, false) => "per-check",
            (true, false) => "coalesced",
            (false, true) => "per-check+intervals",
            (true, true) => "coalesced+intervals",
        }
    }
}

/// Runs the four variants.
pub fn run_all(scenario: &AlertsScenario) -> Result<AlertsReport, AlertsError> {
    run_variants(scenario, &Variant::ALL, |_| {})
}

/// Runs the given variants in order; `done` is called after each.
pub fn run_variants(
    scenario: &AlertsScenario,
    variants: &[Variant],
    mut done: impl FnMut(&AlertsRun),
) -> Result<AlertsReport, AlertsError> {
    let mut runs = Vec::new();
    for v in variants {
        let run = run_one(scenario, v.coalesce, v.intervals)?;
        done(&run);
        runs.push(run);
    }
    Ok(AlertsReport {
        runs,
        store_limit: scenario.store.limit,
        store_cap: scenario.weir.resource("store").max_concurrent,
    })
}

/// Runs one variant on a paused clock, on a thread of its own.
pub fn run_one(scenario: &AlertsScenario, coalesce: bool, intervals: bool) -> Result<AlertsRun, AlertsError> {
    scenario.validate()?;
    let scenario = scenario.clone();
    std::thread::spawn(move || {
        actix_rt::System::with_tokio_rt(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .expect("a current-thread tokio runtime")
        })
        .block_on(drive(scenario, coalesce, intervals))
    })
    .join()
    .map_err(|_| AlertsError::Parse("the run panicked".into()))
}

/// The simulated store: every event is stored up front, a count names its own time
/// range, and a query over `limit` at once is refused.
#[derive(Debug)]
struct Store {
    spec: StoreSpec,
    start: Instant,
    /// (time since start, queries in flight) after each change.
    timeline: Mutex<Vec<(Duration, u32)>>,
    events: HashMap<(u32, u32), Vec<Duration>>,
    current: AtomicU64,
    peak: AtomicU64,
    queries: AtomicU64,
    rejected: AtomicU64,
    items: AtomicU64,
}

impl Store {
    fn mark(&self, in_flight: u64) {
        let at = self.start.elapsed();
        self.timeline.lock().unwrap().push((at, in_flight as u32));
    }

    async fn count(&self, project: u32, items: Vec<CountKey>) -> Result<HashMap<CountKey, u64>, JobError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        if now > u64::from(self.spec.limit) {
            self.current.fetch_sub(1, Ordering::SeqCst);
            self.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(JobError::msg("RateLimitExceeded"));
        }
        self.peak.fetch_max(now, Ordering::SeqCst);
        self.mark(now);
        self.items.fetch_add(items.len() as u64, Ordering::Relaxed);
        let latency = self.spec.latency + self.spec.per_item * items.len() as u32;
        tokio::time::sleep(latency).await;
        let now = self.current.fetch_sub(1, Ordering::SeqCst) - 1;
        self.mark(now);
        let counts = items
            .into_iter()
            .map(|k| {
                let times = self
                    .events
                    .get(&(project, k.group))
                    .map_or(&[][..], Vec::as_slice);
                let from = k.at.saturating_sub(k.window);
                // (from, at]: events strictly after `from`, up to and including `at`.
                let n = times.partition_point(|t| *t <= k.at) - times.partition_point(|t| *t <= from);
                (k, n as u64)
            })
            .collect();
        Ok(counts)
    }
}

type Dirty = Arc<Mutex<HashMap<(u32, usize), HashSet<u32>>>>;

#[derive(Default)]
struct Results {
    answers: BTreeMap<CheckKey, u64>,
    latency: Option<Histogram<u64>>,
    failed: u64,
    handles: Vec<JobHandle<()>>,
}

async fn drive(scenario: AlertsScenario, coalesce: bool, intervals: bool) -> AlertsRun {
    let events = scenario.events();
    let mut by_group: HashMap<(u32, u32), Vec<Duration>> = HashMap::new();
    for e in &events {
        by_group.entry((e.project, e.group)).or_default().push(e.at);
    }
    let store = Arc::new(Store {
        spec: scenario.store,
        start: Instant::now(),
        timeline: Mutex::default(),
        events: by_group,
        current: AtomicU64::new(0),
        peak: AtomicU64::new(0),
        queries: AtomicU64::new(0),
        rejected: AtomicU64::new(0),
        items: AtomicU64::new(0),
    });
    let runtime = Runtime::start(scenario.weir.clone()).expect("the scenario's weir config is validated");
    let counts: Option<Coalescer<u32, CountKey, u64>> = coalesce.then(|| {
        let store = store.clone();
        runtime
            .coalescer("counts", move |project, items| {
                let store = store.clone();
                async move { store.count(project, items).await }
            })
            .expect("started inside the run's actix system")
    });
    let table = if intervals {
        scenario.weir.intervals.clone()
    } else {
        IntervalTable::flat(scenario.base_interval)
    };
    let dirty: Dirty = Arc::default();
    let results = Arc::new(Mutex::new(Results {
        latency: Some(Histogram::new(3).expect("3 significant figures")),
        ..Results::default()
    }));
    let rules = scenario.rules.clone();
    let make = {
        let (dirty, results, store, counts) = (dirty.clone(), results.clone(), store.clone(), counts.clone());
        move |run: weir::engine::DueRun<(u32, usize)>| -> Vec<Job> {
            let (project, rule) = run.key;
            let groups = dirty.lock().unwrap().remove(&run.key).unwrap_or_default();
            let mut groups: Vec<u32> = groups.into_iter().collect();
            groups.sort_unstable();
            let due = Instant::now();
            groups
                .into_iter()
                .map(|group| {
                    let key = CountKey {
                        group,
                        window: rules[rule].window,
                        at: run.at,
                    };
                    let check: CheckKey = (project, rule, group, run.at.as_millis() as u64);
                    let (sink, store, counts) = (results.clone(), store.clone(), counts.clone());
                    let tenant = format!("project-{project}");
                    let resource = if counts.is_some() { "checks" } else { "store" };
                    let (job, handle) = Job::new(
                        JobSpec::new(tenant, resource).kind("check"),
                        move |ctx| async move {
                            let answer = match &counts {
                                Some(c) => ctx.request(c, project, key).await,
                                None => match store.count(project, vec![key]).await {
                                    Ok(mut m) => Outcome::Completed(m.remove(&key).unwrap_or_default()),
                                    Err(e) => Outcome::Failed(e),
                                },
                            };
                            let mut r = sink.lock().unwrap();
                            let waited = due.elapsed().as_micros() as u64;
                            if let Some(h) = r.latency.as_mut() {
                                let _ = h.record(waited);
                            }
                            match answer {
                                Outcome::Completed(n) => {
                                    r.answers.insert(check, n);
                                    Ok(())
                                }
                                other => {
                                    r.failed += 1;
                                    Err(JobError::msg(format!("check failed: {other:?}")))
                                }
                            }
                        },
                    );
                    results.lock().unwrap().handles.push(handle);
                    job
                })
                .collect()
        }
    };
    let checks =
        RecurringChecks::start(runtime.clone(), table.clone(), make).expect("inside the run's actix system");
    let mut longest = Duration::ZERO;
    for project in 0..scenario.projects {
        for (i, rule) in scenario.rules.iter().enumerate() {
            longest = longest.max(checks.schedule((project, i), rule.window));
        }
    }
    // The stream: each event marks its group dirty for every rule of its project.
    let start = Instant::now();
    let rule_count = scenario.rules.len();
    for e in &events {
        tokio::time::sleep_until(start + e.at).await;
        let mut d = dirty.lock().unwrap();
        for rule in 0..rule_count {
            d.entry((e.project, rule)).or_default().insert(e.group);
        }
    }
    // Let every rule run once more after the last event, then stop and wait.
    tokio::time::sleep_until(start + scenario.duration + longest + Duration::from_millis(1)).await;
    checks.shutdown().await;
    let handles = std::mem::take(&mut results.lock().unwrap().handles);
    let outcomes = futures::future::join_all(handles).await;
    if let Some(c) = &counts {
        c.shutdown().await;
    }
    runtime.shutdown(Duration::from_secs(5)).await;
    let mut r = results.lock().unwrap();
    let latency = r.latency.take().expect("set above");
    let micros = |q: f64| Duration::from_micros(latency.value_at_quantile(q));
    let timeline = std::mem::take(&mut *store.timeline.lock().unwrap());
    AlertsRun {
        name: Variant { coalesce, intervals }.name().to_string(),
        coalesce,
        intervals,
        checks: outcomes.len() as u64,
        failed_checks: outcomes.iter().filter(|o| !o.is_completed()).count() as u64,
        queries: store.queries.load(Ordering::Relaxed),
        rejected: store.rejected.load(Ordering::Relaxed),
        peak_concurrency: store.peak.load(Ordering::Relaxed),
        items_counted: store.items.load(Ordering::Relaxed),
        latency_p50: micros(0.5),
        latency_p99: micros(0.99),
        answers: std::mem::take(&mut r.answers),
        in_flight: timeline,
    }
}
