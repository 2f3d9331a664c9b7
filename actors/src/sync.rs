//! The synchronisation primitives of the structures shared across threads on the job path
//! (today the supervisor's inbox), taken from loom under the `loom` feature (test only) so that their loom
//! models check every interleaving. `scripts/test` runs those models.

#[cfg(feature = "loom")]
pub(crate) use loom::sync::Mutex;
#[cfg(not(feature = "loom"))]
pub(crate) use std::sync::Mutex;
