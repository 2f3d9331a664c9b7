//! Resources whose slots are shared through Redis: a job granted a local slot waits for
//! a global lease before it starts; the brokers' answers (leased, skipped, lost) come
//! back here.

use std::time::Duration;

use actix::{Context, Handler, Message};
use weir::{JobKey, Outcome, ResourceId, SkipReason};

use super::{Payload, Supervisor, Task};
use crate::job::stop::StopReason;
use crate::redis_pool::Answer;

impl Supervisor {
    /// Ends a job that was granted a local slot but never started (it waited for a
    /// global lease): resolves it and returns its slot.
    pub(super) fn end_unstarted(
        &mut self,
        key: JobKey,
        payload: Payload,
        outcome: Outcome<()>,
        now: Duration,
    ) {
        // A parked parent's waker: dropping it tells the parent it has no slot; its task
        // is being stopped and reports Done itself.
        let Payload::Fresh(task) = payload else { return };
        let kind = outcome.kind();
        task.body.resolve(outcome);
        if let Err(e) = self.core.complete(key, kind, now) {
            tracing::error!(job = key.id().0, error = %e, "unstarted job unknown to the core");
        }
    }

    /// Carries out the answers of the Redis brokers.
    fn on_backend(&mut self, answers: Vec<Answer>, ctx: &mut Context<Self>) {
        let now = self.now();
        for answer in answers {
            match answer {
                Answer::Leased { key, token } => self.leased(key, Some(token)),
                Answer::Admitted(key) => self.leased(key, None),
                Answer::Skip(key) => {
                    if let Some(payload) = self.shared.skipped(key) {
                        self.end_unstarted(key, payload, Outcome::Skipped(SkipReason::NoSlot), now);
                    }
                }
                Answer::Lost(key) => {
                    if self.shared.lost(key) {
                        if let Some(stop) = self.stop_of(key) {
                            stop.request(StopReason::LeaseLost);
                        }
                    }
                }
            }
        }
        self.drive(ctx);
        self.finish_shutdown_if_idle(ctx);
    }

    fn leased(&mut self, key: JobKey, token: Option<u64>) {
        match self.shared.granted(key) {
            Some(Payload::Fresh(task)) => self.start(key, task, token),
            Some(Payload::Resume(tx)) => {
                let _ = tx.send(());
            }
            None => {}
        }
    }

    /// The resource whose global lease a just-granted job must hold before it starts, if
    /// its slot is shared through Redis. That is the resource the core granted, which
    /// after a fallback is not the one the job was submitted to.
    pub(super) fn shared_resource(&self, key: JobKey, task: &Task) -> Option<ResourceId> {
        if !self.shared.any() {
            return None;
        }
        let granted = self.core.resource_of(key).unwrap_or(&task.resource);
        self.shared.is_shared(granted).then(|| granted.clone())
    }
}

/// Answers of the Redis brokers (leases granted, skipped, lost).
pub(crate) struct BackendAnswers(pub(crate) Vec<Answer>);

impl Message for BackendAnswers {
    type Result = ();
}

impl Handler<BackendAnswers> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: BackendAnswers, ctx: &mut Context<Self>) {
        self.on_backend(msg.0, ctx);
    }
}
