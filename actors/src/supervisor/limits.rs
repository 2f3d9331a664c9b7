//! Live changes to a resource's limits, decided by the core (which checks them as at
//! start); the supervisor then drives it, so a raised cap grants at once.

use actix::{Context, Handler, Message};
use weir::{ConfigError, ResourceId};

use super::Supervisor;

/// Sets a resource's `max_concurrent`.
pub(crate) struct SetMaxConcurrent {
    pub(crate) resource: ResourceId,
    pub(crate) max_concurrent: u32,
}

impl Message for SetMaxConcurrent {
    type Result = Result<(), ConfigError>;
}

impl Handler<SetMaxConcurrent> for Supervisor {
    type Result = Result<(), ConfigError>;

    fn handle(&mut self, msg: SetMaxConcurrent, ctx: &mut Context<Self>) -> Self::Result {
        // Stop reports already in the inbox count against the old cap first.
        self.drain_inbox(ctx);
        let changed = self.core.set_max_concurrent(&msg.resource, msg.max_concurrent);
        self.drive(ctx);
        changed
    }
}
