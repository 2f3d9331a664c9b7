//! What many processes share through Redis: one slot pool per resource, quotas and
//! cost budgets (`quota_store.rs`, `quota_broker.rs`) and rate limits (`rate_broker.rs`).
//!
//! [`RedisPool`] is the pool itself: leases with their own ids, deadlines on the Redis
//! server's clock, fencing tokens that only grow, renewals that never re-take a lost
//! lease, and idempotent releases. The runtime uses it for every resource whose backend is
//! `redis` (see [`weir::BackendConfig`]); it can also be used on its own.
//!
//! ```no_run
//! # async fn demo() -> Result<(), weir_actors::redis_pool::PoolError> {
//! use std::time::Duration;
//! use weir_actors::redis_pool::{PoolSettings, RedisPool};
//! let pool = RedisPool::new(PoolSettings {
//!     url: "redis://127.0.0.1:6379".into(),
//!     key_prefix: "weir".into(),
//!     resource: "store".into(),
//!     cap: 20,
//!     lease_ttl: Duration::from_secs(30),
//!     op_timeout: Duration::from_secs(1),
//! })?;
//! let got = pool.acquire(4).await?; // up to 4 leases, one round trip
//! let ids: Vec<_> = got.leases.iter().map(|l| l.id.clone()).collect();
//! pool.renew(&ids).await?;
//! pool.release(&ids).await?;
//! # Ok(()) }
//! ```

mod broker;
mod conn;
mod pool;
mod quota_broker;
mod quota_store;
mod rate_broker;
mod shared;
mod stats;

pub(crate) use broker::{Answer, Ended};
pub(crate) use conn::ping;
pub use pool::{Acquired, Lease, LeaseId, PoolError, PoolSettings, RedisPool, Released};
pub(crate) use quota_broker::{QuotaAnswer, Settle, SharedQuotaStore, Want};
pub(crate) use shared::SharedSlots;
pub use stats::BackendSnapshot;
