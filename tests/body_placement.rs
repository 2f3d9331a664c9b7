//! Which thread runs a body (issue 14): with body threads, a resource whose bodies poll
//! briefly runs them on the supervisor's thread, and one whose body computed for longer
//! than `runtime.inline_poll_limit` there has its later bodies run on a body thread.
//! `worker_threads = 0` keeps every body on the supervisor's thread, and
//! `inline_poll_limit = "0s"` none.
//!
//! Runtimes start from a plain thread, so the supervisor runs on weir's own thread,
//! named `weir-supervisor`; body threads are actix arbiters with other names. The limit
//! is set far above any preemption an empty body could suffer (50 ms), and the computing
//! body spins for three times that, so the placement does not depend on the machine's
//! load.

use std::time::{Duration, Instant};

use weir::{Config, JobError, JobSpec, Outcome};
use weir_actors::Runtime;

const SUPERVISOR: &str = "weir-supervisor";
const LIMIT: Duration = Duration::from_millis(50);

fn runtime(worker_threads: u32, limit: Duration) -> Runtime {
    let mut config = Config::default();
    config.runtime.worker_threads = Some(worker_threads);
    config.runtime.inline_poll_limit = limit;
    Runtime::start(config).expect("starts")
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
