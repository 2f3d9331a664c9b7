//! The slot a started job holds, returned to the supervisor exactly once.

use std::time::Duration;

use weir::{JobKey, OutcomeKind};

use super::link::{Done, Link};
use super::retrying::Rearm;

/// Reports a started job's end to the supervisor, exactly once: when it is dropped.
///
/// Created when the slot is granted and carried with the job (in the `Run` message, then
/// in the job's task), so the slot comes back however the job ends: normally, by a panic
/// (also one raised while dropping a stopped body), because a worker died with the job
/// in its mailbox, or because the executor dropped the task. A job that ends abnormally
/// is reported `Failed`, and its handle, whose sender is dropped with it, resolves
/// `Failed(RuntimeStopped)`.
pub(crate) struct SlotReturn {
    key: JobKey,
    link: Link,
    kind: OutcomeKind,
    /// `Some(retry_after)`: the attempt failed with [`weir::JobError::overload`].
    overload: Option<Option<Duration>>,
    rearm: Option<Box<Rearm>>,
}

impl SlotReturn {
    pub(crate) fn new(key: JobKey, link: Link) -> Self {
        Self {
            key,
            link,
            kind: OutcomeKind::Failed,
            overload: None,
            rearm: None,
        }
    }

    /// Returns the slot with a failed attempt that may run again (a retrying job).
    pub(crate) fn rearm(mut self, rearm: Rearm) {
        self.kind = OutcomeKind::Failed;
        self.overload = super::body::refusal_of(&rearm.error);
        self.rearm = Some(Box::new(rearm));
    }

    /// Returns the slot with the job's outcome; `overload` is `Some(retry_after)` when it
    /// failed with [`weir::JobError::overload`].
    pub(crate) fn finish(mut self, kind: OutcomeKind, overload: Option<Option<Duration>>) {
        self.kind = kind;
        self.overload = overload;
    }
}

impl Drop for SlotReturn {
    fn drop(&mut self) {
        self.link.report_done(Done {
            key: self.key,
            kind: self.kind,
            overload: self.overload,
            rearm: self.rearm.take(),
        });
    }
}
