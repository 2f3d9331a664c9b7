//! Questions callers ask the supervisor: statistics, a tenant's usage, the slot
//! backends' statistics. Each drains the inbox and drives the core first, so a caller's
//! earlier submissions and the stop reports of jobs it saw end are counted.

use actix::{Context, Handler, Message};
use weir::{StatsSnapshot, TenantId, UsageSnapshot};

use super::Supervisor;
use crate::redis_pool::BackendSnapshot;

/// Asks for the slot backends' statistics.
pub(crate) struct GetBackendStats;

impl Message for GetBackendStats {
    type Result = std::collections::BTreeMap<String, BackendSnapshot>;
}

impl Handler<GetBackendStats> for Supervisor {
    type Result = actix::MessageResult<GetBackendStats>;

    fn handle(&mut self, _: GetBackendStats, ctx: &mut Context<Self>) -> Self::Result {
        self.drain_inbox(ctx);
        self.drive(ctx);
        let mut stats = self.shared.snapshot();
        if let Some(store) = &self.quota_store {
            stats.insert("quotas".into(), store.snapshot());
        }
        actix::MessageResult(stats)
    }
}

/// Asks for a tenant's quota usage.
pub(crate) struct GetUsage(pub(crate) TenantId);

impl Message for GetUsage {
    type Result = UsageSnapshot;
}

impl Handler<GetUsage> for Supervisor {
    type Result = actix::MessageResult<GetUsage>;

    fn handle(&mut self, msg: GetUsage, ctx: &mut Context<Self>) -> Self::Result {
        self.drain_inbox(ctx);
        self.drive(ctx);
        actix::MessageResult(self.core.usage(&msg.0, self.now()))
    }
}

/// Asks for a statistics snapshot.
pub(crate) struct GetStats;

impl Message for GetStats {
    type Result = StatsSnapshot;
}

impl Handler<GetStats> for Supervisor {
    type Result = actix::MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, ctx: &mut Context<Self>) -> Self::Result {
        self.drain_inbox(ctx);
        self.drive(ctx);
        // A caller that scrapes metrics asks for stats first and so sees exact counts.
        let now = self.now();
        actix::MessageResult(self.publish_metrics(now))
    }
}
