//! The synchronisation primitives of the structures shared across threads on the job path
//! (the supervisor's inbox, the body queue, a job's stop signal), taken from loom under the `loom` feature (test only) so that their loom
//! models check every interleaving. `scripts/test` runs those models.

#[cfg(feature = "loom")]
pub(crate) use loom::sync::Mutex;
#[cfg(not(feature = "loom"))]
pub(crate) use std::sync::Mutex;

#[cfg(feature = "loom")]
pub(crate) use loom::future::AtomicWaker;
#[cfg(feature = "loom")]
pub(crate) use loom::sync::atomic::AtomicU8;

#[cfg(not(feature = "loom"))]
pub(crate) use futures::task::AtomicWaker;
#[cfg(not(feature = "loom"))]
pub(crate) use std::sync::atomic::AtomicU8;

/// Registers `waker` in `slot` (loom's `AtomicWaker` takes it under another name).
pub(crate) fn register(slot: &AtomicWaker, waker: &std::task::Waker) {
    #[cfg(feature = "loom")]
    slot.register_by_ref(waker);
    #[cfg(not(feature = "loom"))]
    slot.register(waker);
}
