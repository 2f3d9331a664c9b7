//! Shutdown: stop intake, cancel what waits, give running jobs until the grace
//! deadline, then stop them; reply once every job has its outcome and every slot is back.

use std::time::Duration;

use actix::{ActorContext, AsyncContext, Context, Handler, Message};
use tokio::sync::oneshot;
use tokio::time::Instant;
use weir::Outcome;

use super::{Payload, Supervisor};
use crate::job::stop::StopReason;

/// What shutdown did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Jobs that had not started and ended `Cancelled`.
    pub cancelled_waiting: u64,
    /// Jobs still running at the deadline, stopped and ended `Cancelled`.
    pub cancelled_running: u64,
    /// Jobs that were running when shutdown began and ended on their own before the deadline.
    pub finished_in_grace: u64,
}

pub(super) struct ShutdownState {
    pub(super) report: ShutdownReport,
    pub(super) reply: Vec<oneshot::Sender<ShutdownReport>>,
    pub(super) deadline_passed: bool,
}

impl Supervisor {
    pub(super) fn finish_shutdown_if_idle(&mut self, ctx: &mut Context<Self>) {
        if self.shutdown.is_none() {
            return;
        }
        self.drain_inbox(ctx);
        let Some(state) = &mut self.shutdown else { return };
        if self.core.live_jobs() > 0 {
            return;
        }
        // Submissions that raced the close: refused like any submission during shutdown.
        // Nothing else can be pending: every job has ended.
        let mut refused = 0;
        self.link.close();
        for item in self.link.inbox().close() {
            for item in item.into_submissions() {
                refused += 1;
                item.body.resolve(Outcome::Cancelled);
            }
        }
        self.link.left_waiting(refused);
        for tx in state.reply.drain(..) {
            let _ = tx.send(state.report);
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        let now = Instant::now().saturating_duration_since(self.origin);
        if let Some(on_stopped) = self.on_stopped.take() {
            on_stopped(self.core.snapshot(now));
        }
        ctx.stop();
    }
}

/// Stop intake, cancel what waits, give running jobs until `grace`, then stop them.
pub(crate) struct Shutdown {
    pub(crate) grace: Duration,
    pub(crate) reply: oneshot::Sender<ShutdownReport>,
}

impl Message for Shutdown {
    type Result = ();
}

impl Handler<Shutdown> for Supervisor {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Context<Self>) {
        self.drain_inbox(ctx);
        self.drive(ctx);
        if let Some(state) = &mut self.shutdown {
            state.reply.push(msg.reply);
            self.finish_shutdown_if_idle(ctx);
            return;
        }
        let now = self.now();
        let mut report = ShutdownReport::default();
        let mut left_waiting = 0;
        for (key, payload) in self.core.cancel_waiting_at(now) {
            // One that waited for a global lease had left the queue already.
            let waited_for_lease = self.shared.release(key);
            if let Payload::Fresh(task) = payload {
                report.cancelled_waiting += 1;
                if !waited_for_lease {
                    left_waiting += 1;
                }
                task.body.resolve(Outcome::Cancelled);
            }
        }
        self.link.left_waiting(left_waiting);
        self.shutdown = Some(ShutdownState {
            report,
            reply: vec![msg.reply],
            deadline_passed: false,
        });
        ctx.run_later(msg.grace, |act, ctx| {
            if let Some(state) = &mut act.shutdown {
                state.deadline_passed = true;
            }
            for key in act.core.started() {
                if let Some(stop) = act.stop_of(key) {
                    stop.request(StopReason::Cancelled);
                }
            }
            act.finish_shutdown_if_idle(ctx);
        });
        self.finish_shutdown_if_idle(ctx);
    }
}
