//! Live changes to the configuration, decided by the core (which checks them as at
//! start); the supervisor carries what the core does not hold (the fan-out schedule,
//! which budgets exist), publishes the configuration in force for the handle, then
//! drives the core, so a raised cap grants at once.

use std::sync::{Arc, Mutex};

use actix::{Context, Handler, Message};
use weir::engine::BatchSchedule;
use weir::{Changes, Config, ConfigError, ResourceId};

use super::Supervisor;

/// The configuration in force, written by the supervisor after each accepted change and
/// read by [`Runtime::config`](crate::Runtime::config).
pub(crate) type Published = Arc<Mutex<Arc<Config>>>;

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
        if changed.is_ok() {
            self.publish_config();
        }
        self.drive(ctx);
        changed
    }
}

/// Applies a whole new configuration.
pub(crate) struct Reconfigure(pub(crate) Config);

impl Message for Reconfigure {
    type Result = Result<Changes, ConfigError>;
}

impl Handler<Reconfigure> for Supervisor {
    type Result = Result<Changes, ConfigError>;

    fn handle(&mut self, msg: Reconfigure, ctx: &mut Context<Self>) -> Self::Result {
        // Submissions and stop reports already in the inbox are taken under the old
        // configuration first: the change applies from this instant on.
        self.drain_inbox(ctx);
        let now = self.now();
        let changes = self.core.reconfigure(&msg.0, now)?;
        if !changes.is_empty() {
            let config = self.core.config();
            self.schedule = BatchSchedule::new(config.scheduler.org_batch_size, config.scheduler.batch_delay);
            self.any_budget = config.resources.values().any(|r| r.call_budget.is_some());
            if changes.iter().any(|c| c.field.ends_with(".bodies")) {
                // A resource's `bodies` changed: placement starts over from each
                // resource's setting (what `"auto"` learnt is forgotten too).
                self.placements.reset();
            }
            self.publish_config();
        }
        self.drive(ctx);
        self.finish_shutdown_if_idle(ctx);
        Ok(changes)
    }
}

impl Supervisor {
    fn publish_config(&self) {
        if let Ok(mut published) = self.published.lock() {
            *published = Arc::new(self.core.config().clone());
        }
    }
}
