//! Which thread runs a body (issue 14): with body threads, a resource whose bodies poll
//! briefly runs them on the supervisor's thread, and one whose body computed for longer
//! than `runtime.inline_poll_limit` there has its later bodies run on a body thread.
//! `worker_threads = 0` keeps every body on the supervisor's thread, and
//! `inline_poll_limit = "0s"` none; a resource's `bodies` setting overrides both ways.
//!
//! Runtimes start from a plain thread, so the supervisor runs on weir's own thread,
//! named `weir-supervisor`; body threads are actix arbiters with other names. The limit
//! is set far above any preemption an empty body could suffer (50 ms), and the computing
//! body spins for three times that, so the placement does not depend on the machine's
//! load.

use std::time::{Duration, Instant};

use weir::{Bodies, Config, JobError, JobSpec, Outcome, ResourceConfig};
use weir_actors::Runtime;

const SUPERVISOR: &str = "weir-supervisor";
const LIMIT: Duration = Duration::from_millis(50);

fn config(worker_threads: u32, limit: Duration) -> Config {
    let mut config = Config::default();
    config.runtime.worker_threads = Some(worker_threads);
    config.runtime.inline_poll_limit = limit;
    config
}

fn runtime(worker_threads: u32, limit: Duration) -> Runtime {
    Runtime::start(config(worker_threads, limit)).expect("starts")
}

fn with_bodies(mut config: Config, resource: &str, bodies: Bodies) -> Config {
    config.resources.insert(
        resource.into(),
        ResourceConfig {
            bodies,
            ..ResourceConfig::default()
        },
    );
    config
}

fn spin(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// Runs `n` jobs of `resource` one after another, each computing for `compute`; returns
/// the name of the thread each body ran on.
fn threads_of(runtime: &Runtime, resource: &str, n: usize, compute: Duration) -> Vec<String> {
    (0..n)
        .map(|_| {
            let ticket = runtime
                .submit_blocking(JobSpec::new("t", resource), move |_| async move {
                    spin(compute);
                    let name = std::thread::current().name().unwrap_or("").to_string();
                    Ok::<_, JobError>(name)
                })
                .expect("accepted");
            match ticket.wait() {
                Outcome::Completed(name) => name,
                other => panic!("the job completes, got {other:?}"),
            }
        })
        .collect()
}

#[test]
fn brief_bodies_run_on_the_supervisors_thread_and_a_computing_resource_moves_off_it() {
    let rt = runtime(1, LIMIT);
    let quick = threads_of(&rt, "quick", 20, Duration::ZERO);
    assert!(
        quick.iter().all(|t| t == SUPERVISOR),
        "brief bodies run where the grant is: {quick:?}"
    );
    // The first job of a resource is its probe, on the supervisor's thread.
    let probe = threads_of(&rt, "compute", 1, LIMIT * 3);
    assert_eq!(probe, [SUPERVISOR]);
    let later = threads_of(&rt, "compute", 5, Duration::from_millis(1));
    assert!(
        later.iter().all(|t| t != SUPERVISOR),
        "after a poll over the limit, the resource's bodies run on a body thread: {later:?}"
    );
    let quick = threads_of(&rt, "quick", 20, Duration::ZERO);
    assert!(
        quick.iter().all(|t| t == SUPERVISOR),
        "the other resource stays: {quick:?}"
    );
    rt.shutdown_blocking(Duration::from_secs(5));
}

#[test]
fn no_body_threads_keep_every_body_on_the_supervisors_thread() {
    let rt = runtime(0, LIMIT);
    let probe = threads_of(&rt, "compute", 1, LIMIT * 3);
    let later = threads_of(&rt, "compute", 3, Duration::ZERO);
    assert!(
        probe.iter().chain(&later).all(|t| t == SUPERVISOR),
        "{probe:?} {later:?}"
    );
    rt.shutdown_blocking(Duration::from_secs(5));
}

#[test]
fn a_zero_limit_runs_every_body_on_a_body_thread() {
    let rt = runtime(1, Duration::ZERO);
    let quick = threads_of(&rt, "quick", 10, Duration::ZERO);
    assert!(quick.iter().all(|t| t != SUPERVISOR), "{quick:?}");
    rt.shutdown_blocking(Duration::from_secs(5));
}

#[test]
fn a_resources_bodies_setting_overrides_what_its_polls_show() {
    let cfg = with_bodies(config(1, LIMIT), "always_off", Bodies::Threads);
    let rt = Runtime::start(with_bodies(cfg, "always_on", Bodies::Inline)).expect("starts");
    let off = threads_of(&rt, "always_off", 10, Duration::ZERO);
    assert!(
        off.iter().all(|t| t != SUPERVISOR),
        "\"threads\": not even a probe on the supervisor's thread: {off:?}"
    );
    let on = threads_of(&rt, "always_on", 2, LIMIT * 3);
    assert!(
        on.iter().all(|t| t == SUPERVISOR),
        "\"inline\": kept there even after polls over the limit: {on:?}"
    );
    rt.shutdown_blocking(Duration::from_secs(5));
}

#[test]
fn threads_without_body_threads_is_refused_by_name() {
    let e = Runtime::start(with_bodies(config(0, LIMIT), "store", Bodies::Threads)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("resources.store.bodies must be \"auto\" or \"inline\""),
        "{e}"
    );
}

#[test]
fn a_reconfigured_bodies_setting_applies_to_later_jobs() {
    let cfg = config(1, LIMIT);
    let rt = Runtime::start(cfg.clone()).expect("starts");
    let before = threads_of(&rt, "store", 5, Duration::ZERO);
    assert!(before.iter().all(|t| t == SUPERVISOR), "{before:?}");
    let changes = futures::executor::block_on(rt.reconfigure(with_bodies(cfg, "store", Bodies::Threads)))
        .expect("bodies may change live");
    assert!(
        changes.iter().any(|c| c.field == "resources.store.bodies"),
        "{changes}"
    );
    let after = threads_of(&rt, "store", 5, Duration::ZERO);
    assert!(after.iter().all(|t| t != SUPERVISOR), "{after:?}");
    rt.shutdown_blocking(Duration::from_secs(5));
}
