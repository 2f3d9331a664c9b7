//! Resources whose slots are shared through Redis: a job granted a local slot waits for
//! a global lease before it starts (the core's lease-wait stage); the brokers' answers
//! (leased, admitted fail-open, lost) come back here and go into the core.

use std::time::Duration;

use actix::{Context, Handler, Message};
use weir::JobKey;

use super::Supervisor;
use crate::job::stop::StopReason;
use crate::redis_pool::Answer;

impl Supervisor {
    /// Carries out the answers of the Redis brokers: each is an input to the core, which
    /// decides what the job does next.
    fn on_backend(&mut self, answers: Vec<Answer>, ctx: &mut Context<Self>) {
        let now = self.now();
        for answer in answers {
            match answer {
                Answer::Leased { key, token } => self.leased(key, Some(token), now),
                Answer::Admitted(key) => self.leased(key, None, now),
                Answer::Lost(key) => {
                    self.shared.lost(key);
                    if self.core.lease_lost(key, now).is_ok() {
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

    /// A lease (or a fail-open admission) arrived for `key`: the core starts the job at
    /// the next poll, or refuses because the job no longer waits for one (it was skipped,
    /// cancelled or ended, or its deadline is due), and then the lease goes back at once.
    fn leased(&mut self, key: JobKey, token: Option<u64>, now: Duration) {
        match self.core.lease_granted(key, now) {
            Ok(()) => self.shared.hold(key, token),
            Err(e) => {
                tracing::debug!(job = key.id().0, error = %e, "global lease not taken; returned");
                self.shared.return_orphan(key);
            }
        }
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
