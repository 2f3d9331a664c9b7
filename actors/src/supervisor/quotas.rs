//! Quotas shared through Redis: the core's quota-wait stage asks (`QuotaWanted`, sent to
//! the quota broker once per pass), and the broker's answers come back here and go into
//! the core, which decides what each job does next.

use actix::{Context, Handler, Message};
use weir::SharedQuotaOutcome;

use super::Supervisor;
use crate::redis_pool::QuotaAnswer;

impl Supervisor {
    fn on_quota_answers(&mut self, answers: Vec<QuotaAnswer>, ctx: &mut Context<Self>) {
        let now = self.now();
        for answer in answers {
            // A job that no longer waits (cancelled, or its wait deadline came first) is
            // refused by the core; nothing else to do.
            let _ = match answer {
                QuotaAnswer::Admitted(key) => self.core.quota_admitted(key, now),
                QuotaAnswer::Refused(key, refusal) => self.core.quota_refused(key, refusal, now),
                QuotaAnswer::Unavailable(key) => self.core.quota_unavailable(key, now).map(|outcome| {
                    if outcome == SharedQuotaOutcome::AdmittedFailOpen {
                        if let Some(store) = &self.quota_store {
                            store.count_fail_open();
                        }
                    }
                }),
            };
        }
        self.drive(ctx);
        self.finish_shutdown_if_idle(ctx);
    }
}

/// Answers of the shared quota broker.
pub(crate) struct QuotaAnswers(pub(crate) Vec<QuotaAnswer>);

impl Message for QuotaAnswers {
    type Result = ();
}

impl Handler<QuotaAnswers> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: QuotaAnswers, ctx: &mut Context<Self>) {
        self.on_quota_answers(msg.0, ctx);
    }
}
