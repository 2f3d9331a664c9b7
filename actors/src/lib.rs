//! # weir-actors: the actix runtime around the weir core
//!
//! A [`Runtime`] is a Supervisor actor that owns the scheduler core ([`weir::Scheduler`])
//! and is the only place a slot is granted, plus worker arbiters that run job bodies.
//! Services submit [`Job`]s and await [`JobHandle`]s; every job ends in exactly one
//! [`weir::Outcome`].
//!
//! ```
//! use std::time::Duration;
//! use weir::{Config, JobError, JobSpec, Outcome};
//! use weir_actors::Runtime;
//!
//! actix_rt::System::new().block_on(async {
//!     let runtime = Runtime::start(Config::default()).unwrap();
//!     // An organisation job fans out one query per projection and waits for them
//!     // without holding a slot.
//!     let org = runtime
//!         .submit(JobSpec::new("acme", "orgs"), |ctx| async move {
//!             let children = ctx
//!                 .spawn((0..3u32).map(|p| {
//!                     (ctx.child_spec("store"), move |_ctx| async move { Ok::<_, JobError>(p * 10) })
//!                 }))?;
//!             let outcomes = ctx.join(children).await;
//!             Ok::<_, JobError>(outcomes.iter().filter(|o| o.is_completed()).count())
//!         })
//!         .unwrap();
//!     assert_eq!(org.await, Outcome::Completed(3));
//!     runtime.shutdown(Duration::from_secs(1)).await;
//! });
//! ```

mod coalescer;
mod config;
mod failpoints;
mod job;
mod metrics;
mod poll_timer;
mod recurring;
pub mod redis_pool;
mod runtime;
mod supervisor;
mod sync;
#[cfg(feature = "tower")]
pub mod tower;
mod wake;
mod worker;
// The README and the guide's chapters (docs/), whose Rust blocks run as doc tests.
#[cfg(doctest)]
mod guide;

pub use crate::metrics::DURATION_BUCKETS;
pub use coalescer::{CoalesceStats, Coalescer, CoalescerError};
pub use config::{load_config, load_config_from, profile_toml, PROFILES, PROFILE_VAR};
pub use job::context::{Children, JobContext};
pub use job::handle::{BlockingTicket, JobHandle};
pub use job::link::SubmitError;
pub use job::Job;
pub use recurring::RecurringChecks;
pub use runtime::{Runtime, StartError};
pub use supervisor::ShutdownReport;
/// Re-exported for [`JobHandle::cancel_on`] and [`JobContext::cancellation_token`].
pub use tokio_util::sync::CancellationToken;
