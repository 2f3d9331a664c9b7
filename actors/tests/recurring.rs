//! Recurring checks on the real actors, on a paused clock (issue 7): each check runs at
//! the interval its window maps to, inside a slot, and a removed check stops.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::paused;
use weir::{Config, JobError, JobSpec};
use weir_actors::{Job, RecurringChecks, Runtime};

fn min(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

type Runs = Arc<Mutex<Vec<(&'static str, Duration)>>>;

/// Checks on the runtime's interval table whose every run submits one job that records
/// the run's key and due time.
fn recording_checks(runtime: &Runtime) -> (RecurringChecks<&'static str>, Runs) {
    let runs: Runs = Arc::default();
    let seen = runs.clone();
    let checks = RecurringChecks::start(runtime.clone(), runtime.config().intervals.clone(), move |run| {
        let seen = seen.clone();
        let (job, _) = Job::new(JobSpec::new("acme", "store"), move |_| async move {
            seen.lock().unwrap().push((run.key, run.at));
            Ok::<_, JobError>(())
        });
        vec![job]
    })
    .unwrap();
    (checks, runs)
}

/// The due times of `key`'s runs, in order.
fn runs_of(runs: &[(&'static str, Duration)], key: &str) -> Vec<Duration> {
    runs.iter().filter(|r| r.0 == key).map(|r| r.1).collect()
}

#[test]
fn checks_run_at_the_interval_of_their_window_and_stop_when_removed() {
    let runs = paused(async {
        let runtime = Runtime::start(Config::default()).unwrap();
        let (checks, runs) = recording_checks(&runtime);
        // The default table: <= 10 min every 1 min, <= 1 h every 2 min, <= 1 day every 5 min.
        assert_eq!(checks.schedule("5m", min(5)), min(1));
        assert_eq!(checks.schedule("1h", min(60)), min(2));
        assert_eq!(checks.schedule("1d", min(24 * 60)), min(5));
        assert_eq!(checks.schedule("gone", min(5)), min(1));
        tokio::time::sleep(min(3) + Duration::from_secs(1)).await;
        checks.remove("gone");
        tokio::time::sleep(min(7)).await;
        let due = checks.shutdown().await;
        runtime.shutdown(Duration::from_secs(1)).await;
        let runs = runs.lock().unwrap().clone();
        assert_eq!(due, runs.len() as u64, "every due run submitted one job that ran");
        runs
    });
    let at = |key| runs_of(&runs, key);
    assert_eq!(at("5m"), (1..=10).map(min).collect::<Vec<_>>());
    assert_eq!(at("1h"), [2, 4, 6, 8, 10].map(min));
    assert_eq!(at("1d"), [5, 10].map(min));
    assert_eq!(at("gone"), [1, 2, 3].map(min));
}

/// Issue 17: a new interval table (as `Runtime::reconfigure` publishes it) moves every check
/// scheduled by its window to its new interval from the next multiple of it; a check
/// scheduled with an explicit interval keeps it.
#[test]
fn a_new_interval_table_moves_window_checks_to_their_new_interval() {
    let runs = paused(async {
        let runtime = Runtime::start(Config::default()).unwrap();
        let (checks, runs) = recording_checks(&runtime);
        // Default table: a 1 h window every 2 min.
        assert_eq!(checks.schedule("1h", min(60)), min(2));
        checks.schedule_every("fixed", min(2));
        tokio::time::sleep(min(4) + Duration::from_secs(1)).await;
        let faster = Config::from_toml_str(
            "[[intervals]]\nwindow = \"10m\"\nevery = \"1m\"\n\n[[intervals]]\nwindow = \"1h\"\nevery = \"1m\"\n",
        )
        .unwrap();
        let mut config = (*runtime.config()).clone();
        config.intervals = faster.intervals;
        runtime.reconfigure(config).await.unwrap();
        checks.set_intervals(runtime.config().intervals.clone());
        assert_eq!(
            checks.schedule("new-1h", min(60)),
            min(1),
            "new checks use the new table"
        );
        tokio::time::sleep(min(4)).await;
        checks.shutdown().await;
        runtime.shutdown(Duration::from_secs(1)).await;
        let runs = runs.lock().unwrap().clone();
        runs
    });
    let at = |key| runs_of(&runs, key);
    assert_eq!(
        at("1h"),
        [2, 4, 5, 6, 7, 8].map(min),
        "every 2 min, then every minute"
    );
    assert_eq!(at("fixed"), [2, 4, 6, 8].map(min), "an explicit interval stays");
    assert_eq!(at("new-1h"), [5, 6, 7, 8].map(min));
}
