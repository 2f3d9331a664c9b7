//! Cancellation the tokio way (issue 15 item 4): a job tied to a caller's
//! `CancellationToken` ends `Cancelled` and frees its slot; a blocking section that polls
//! its token returns early, and the slot comes back as soon as it does.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::paused;
use weir::{Config, JobError, JobSpec, Outcome};
use weir_actors::{CancellationToken, Runtime};

fn one_slot() -> Config {
    Config::from_toml_str("[scheduler]\nmax_concurrent = 1\n").unwrap()
}

#[test]
fn a_token_cancelled_mid_run_ends_the_job_cancelled_and_frees_its_slot() {
    paused(async {
        let runtime = Runtime::start(one_slot()).unwrap();
        let token = CancellationToken::new();
        let started = Arc::new(AtomicBool::new(false));
        let seen = started.clone();
        let job = runtime
            .submit(JobSpec::new("acme", "store"), move |_ctx| async move {
                seen.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<_, JobError>("finished")
            })
            .unwrap()
            .cancel_on(token.clone());
        // Cancelled after a second of virtual time, while the job runs.
        let canceller = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            canceller.cancel();
        });
        assert_eq!(job.await, Outcome::Cancelled);
        assert!(
            started.load(Ordering::SeqCst),
            "the job ran before it was cancelled"
        );
        let stats = runtime.stats().await;
        assert_eq!(stats.resources["store"].in_flight, 0);
        assert_eq!(stats.resources["store"].outcomes.cancelled, 1);
        // The one slot is free: the next job runs.
        let next = runtime
            .submit(JobSpec::new("acme", "store"), |_ctx| async {
                Ok::<_, JobError>(1)
            })
            .unwrap();
        assert_eq!(next.await, Outcome::Completed(1));
        runtime.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn a_job_cancelled_before_it_starts_never_runs() {
    paused(async {
        let runtime = Runtime::start(one_slot()).unwrap();
        let hold = runtime
            .submit(JobSpec::new("acme", "store"), |_ctx| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok::<_, JobError>(())
            })
            .unwrap();
        let token = CancellationToken::new();
        token.cancel();
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let waiting = runtime
            .submit(JobSpec::new("acme", "store"), move |_ctx| async move {
                flag.store(true, Ordering::SeqCst);
                Ok::<_, JobError>(())
            })
            .unwrap()
            .cancel_on(token);
        assert_eq!(waiting.await, Outcome::Cancelled);
        assert_eq!(hold.await, Outcome::Completed(()));
        assert!(!ran.load(Ordering::SeqCst));
        runtime.shutdown(Duration::from_secs(1)).await;
    });
}

/// Real time here: a blocking section runs on a real thread, and the paused clock would
/// jump to the lease's end while every task waits for it.
#[test]
fn a_blocking_section_polling_its_token_returns_early_and_the_slot_comes_back() {
    actix_rt::System::new().block_on(async {
        let runtime = Runtime::start(one_slot()).unwrap();
        let started = Arc::new(AtomicBool::new(false));
        let seen = started.clone();
        let job = runtime
            .submit(JobSpec::new("acme", "legacy-db"), move |ctx| async move {
                ctx.run_blocking_with_token(move |token| {
                    seen.store(true, Ordering::SeqCst);
                    let mut rows = 0u64;
                    // A scan that would take an hour unless stopped.
                    while rows < 3_600_000 && !token.is_cancelled() {
                        std::thread::sleep(Duration::from_millis(1));
                        rows += 1;
                    }
                    rows
                })
                .await
            })
            .unwrap();
        while !started.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        job.cancel();
        assert_eq!(job.await, Outcome::Cancelled);
        // The handle resolves after the slot's report (same mailbox, sent first): the
        // section has returned and the slot is back.
        let stats = runtime.stats().await;
        assert_eq!(stats.resources["legacy-db"].in_flight, 0);
        assert_eq!(stats.resources["legacy-db"].overdue, 0);
        let next = runtime
            .submit(JobSpec::new("acme", "legacy-db"), |_ctx| async {
                Ok::<_, JobError>(2)
            })
            .unwrap();
        assert_eq!(next.await, Outcome::Completed(2));
        runtime.shutdown(Duration::from_secs(1)).await;
    });
}
