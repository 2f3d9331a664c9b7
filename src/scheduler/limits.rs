//! Live changes to a resource's limits, checked exactly as configuration is at start.

use crate::config::allowed::MAX_CONCURRENT;
use crate::config::{ConfigError, Count};
use crate::job::ResourceId;

use super::Scheduler;

impl<T> Scheduler<T> {
    /// Sets `resource`'s `max_concurrent` while jobs run (for an adaptive resource: its
    /// ceiling, which must stay at least `adaptive.min`). Checked as at start, the error
    /// naming `resources.NAME.max_concurrent`; a refused value changes nothing. Raising
    /// it grants at the next poll; lowering it below the jobs in flight preempts nothing:
    /// no new grant until fewer than the new cap are in flight. Queued jobs keep their
    /// order, and counts and windows their history.
    pub fn set_max_concurrent(
        &mut self,
        resource: &ResourceId,
        max_concurrent: u32,
    ) -> Result<(), ConfigError> {
        let field = format!("resources.{resource}.max_concurrent");
        let r = self.resource_index(resource);
        let res = &mut self.resources[r as usize];
        match &res.adaptive {
            Some(adaptive) => Count {
                min: u64::from(adaptive.min()),
                max: MAX_CONCURRENT.max,
            }
            .check(&field, max_concurrent)
            .map_err(|_| {
                ConfigError::invalid(
                    &field,
                    format!(
                        "between adaptive.min ({}) and {}",
                        adaptive.min(),
                        MAX_CONCURRENT.max
                    ),
                    max_concurrent,
                )
            })?,
            None => MAX_CONCURRENT.check(&field, max_concurrent)?,
        }
        let before = res.settings.max_concurrent;
        res.settings.max_concurrent = max_concurrent;
        let limit = match &mut res.adaptive {
            Some(adaptive) => adaptive.set_ceiling(max_concurrent),
            None => max_concurrent,
        };
        res.pool.set_cap(limit);
        tracing::info!(%resource, max_concurrent, before, limit, in_flight = res.pool.held(), "max_concurrent changed");
        self.config
            .resources
            .entry(resource.to_string())
            .or_default()
            .max_concurrent = Some(max_concurrent);
        self.reconfigurations += 1;
        self.mark_dirty(r);
        Ok(())
    }
}
