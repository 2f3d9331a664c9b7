//! Limits on admission: sliding-window quotas and cost budgets (per tenant and global),
//! and the per-resource request rate limit.

pub(crate) mod budget;
pub(crate) mod quota;
pub(crate) mod rate;
pub(crate) mod window;
