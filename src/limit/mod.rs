//! Limits on admission: sliding-window quotas and cost budgets (per tenant and global).

pub(crate) mod budget;
pub(crate) mod quota;
pub(crate) mod quota_config;
pub(crate) mod window;
