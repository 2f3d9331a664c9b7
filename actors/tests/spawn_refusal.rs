//! `?` on a refused spawn inside a body, and a refusal in the caller's terms (issue 15
//! item 6): a spawn of more children than `max_queued` is refused before any child's
//! body is built, naming `max_queued` and the number asked for.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::paused;
use weir::{Config, JobError, JobSpec, Outcome};
use weir_actors::Runtime;

#[test]
fn a_spawn_larger_than_max_queued_is_refused_before_building_bodies_and_fails_the_parent() {
    paused(async {
        let config = Config::from_toml_str("[scheduler]\nmax_queued = 1000\n").unwrap();
        let runtime = Runtime::start(config).unwrap();
        let built = Arc::new(AtomicU64::new(0));
        let count = built.clone();
        let parent = runtime
            .submit(JobSpec::new("acme", "orgs"), move |ctx| async move {
                let children = ctx.spawn((0..2_000_000u32).map(|p| {
                    count.fetch_add(1, Ordering::Relaxed);
                    (ctx.child_spec("store"), move |_ctx| async move {
                        Ok::<_, JobError>(p)
                    })
                }))?; // no map_err: SubmitError converts into JobError
                Ok::<_, JobError>(ctx.join(children).await.len())
            })
            .unwrap();
        let Outcome::Failed(error) = parent.await else {
            panic!("the parent should fail on the refused spawn")
        };
        assert_eq!(
            error.to_string(),
            "2000000 jobs asked for at once, more than max_queued (1000) can ever hold; \
             submit them in parts or raise scheduler.max_queued"
        );
        assert_eq!(built.load(Ordering::Relaxed), 0, "no child body was built");
        assert_eq!(runtime.waiting(), 0);
        runtime.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn a_spawn_that_fits_max_queued_runs_with_question_mark() {
    paused(async {
        let config = Config::from_toml_str("[scheduler]\nmax_queued = 1000\n").unwrap();
        let runtime = Runtime::start(config).unwrap();
        let parent = runtime
            .submit(JobSpec::new("acme", "orgs"), |ctx| async move {
                let children = ctx.spawn((0..500u32).map(|p| {
                    (ctx.child_spec("store"), move |_ctx| async move {
                        Ok::<_, JobError>(p)
                    })
                }))?;
                Ok::<_, JobError>(ctx.join(children).await.len())
            })
            .unwrap();
        assert_eq!(parent.await, Outcome::Completed(500));
        runtime.shutdown(Duration::from_secs(1)).await;
    });
}
