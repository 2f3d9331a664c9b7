//! One pending wake-up per actor, kept at the earliest deadline its pure core asks for.
//!
//! The supervisor, the coalescer and the recurring scheduler each drive a core that says
//! when it next needs to run (`next_deadline`). Each keeps exactly one timer armed for that instant and
//! re-arms it only when the deadline moves earlier, so a burst of messages does not pile
//! up timers in the actor's context.

use std::time::Duration;

use actix::{Actor, AsyncContext, Context, SpawnHandle};

/// The wake-up an actor has armed, if any, and the deadline it is for.
#[derive(Debug, Default)]
pub(crate) struct Wake(Option<(Duration, SpawnHandle)>);

impl Wake {
    /// Arms a wake-up for the deadline `at` (`now` is the actor's present on the same
    /// clock) unless one is armed for no later; an armed later one is cancelled. When it
    /// fires, `slot(actor)` is cleared and `fire` runs.
    pub(crate) fn arm<A>(
        &mut self,
        at: Duration,
        now: Duration,
        ctx: &mut Context<A>,
        slot: fn(&mut A) -> &mut Wake,
        fire: fn(&mut A, &mut Context<A>),
    ) where
        A: Actor<Context = Context<A>>,
    {
        if let Some((scheduled, handle)) = self.0 {
            if scheduled <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let mut delay = at.saturating_sub(now);
        if crate::failpoints::hit("weir::wake::early") {
            delay /= 2;
        }
        if crate::failpoints::hit("weir::wake::late") {
            delay += Duration::from_millis(50);
        }
        let handle = ctx.run_later(delay, move |act, ctx| {
            slot(act).0 = None;
            fire(act, ctx);
        });
        self.0 = Some((at, handle));
    }
}
