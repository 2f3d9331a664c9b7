//! Call budgets: how many downstream calls one job (and, if configured, its children)
//! may make, counted by [`JobContext::call`](crate::JobContext::call).
//!
//! The count is shared between a job's attempts (a retry does not get a fresh budget)
//! and, with `include_children`, with the children it spawns. It only counts: it admits
//! no slot (that stays the supervisor's decision), so an atomic is enough.

use std::sync::atomic::{AtomicU32, Ordering};

use weir::{CallBudgetConfig, JobError};

/// The calls left to one job (see the module docs).
#[derive(Debug)]
pub(crate) struct CallBudget {
    limit: u32,
    used: AtomicU32,
    include_children: bool,
}

impl CallBudget {
    pub(crate) fn new(cfg: CallBudgetConfig) -> Self {
        Self {
            limit: cfg.calls,
            used: AtomicU32::new(0),
            include_children: cfg.include_children,
        }
    }

    /// Counts one call; refused (and still counted) over the limit.
    pub(crate) fn charge(&self) -> Result<u32, JobError> {
        let calls = self.used.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        if calls > self.limit {
            return Err(JobError::BudgetExhausted {
                calls,
                limit: self.limit,
            });
        }
        Ok(calls)
    }

    /// Calls counted so far (refused ones included).
    pub(crate) fn used(&self) -> u32 {
        self.used.load(Ordering::Acquire)
    }

    /// The budget.
    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }

    /// Children draw from this budget too.
    pub(crate) fn include_children(&self) -> bool {
        self.include_children
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_the_call_over_the_limit_and_names_the_count() {
        let b = CallBudget::new(CallBudgetConfig {
            calls: 2,
            include_children: false,
        });
        assert_eq!(b.charge(), Ok(1));
        assert_eq!(b.charge(), Ok(2));
        assert_eq!(b.charge(), Err(JobError::BudgetExhausted { calls: 3, limit: 2 }));
        assert_eq!(b.used(), 3);
    }
}
