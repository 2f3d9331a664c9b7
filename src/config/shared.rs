//! Where a limit shared by every replica keeps its state (a quota's windows and cost
//! charges, a rate limit's GCRA state), and what it does while that store cannot be
//! reached.
//!
//! A quota or a rate limit is kept in this process unless it says `backend = "redis"`;
//! then its state lives in Redis, decided by atomic scripts on the Redis server's clock,
//! and every process configured with the same `url`, `key_prefix` and name counts
//! against the same limit. The fields have the same names as a slot backend's
//! (`[backends.NAME]`).
//!
//! ```toml
//! [quotas.per_user]
//! windows = [{ limit = 10, per = "1m" }]
//! backend = "redis"
//! url = "redis://127.0.0.1:6379"
//! key_prefix = "weir"
//! on_failure = "fail_open_local"
//!
//! [resources.api]
//! rate_limit = { requests = 60, per = "1m", backend = "redis", url = "redis://127.0.0.1:6379" }
//! ```

use serde::{Deserialize, Serialize};

use super::allowed::{KEY_PREFIX, REDIS_URL};
use super::{BackendKind, ConfigError};

/// What a limit kept in Redis does with an admission while Redis cannot answer (down,
/// paused past the call's timeout, unreachable).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharedFailure {
    /// Admit without the shared check; every such admission is counted
    /// (`fail_open_admissions`) and traced. The limit may be exceeded while Redis is down.
    FailOpen,
    /// Admit nothing the shared limit has not checked (the default): a job that waits
    /// for its quota (`wait_for_quota`) waits, within its wait timeout, for Redis to
    /// answer; any other job ends `Skipped(QuotaUnavailable)`. A job on a shared rate
    /// waits within its wait timeout, then ends `Skipped(NoSlot)`.
    #[default]
    FailClosed,
    /// Fall back to the same limit kept in this process: each process then holds the
    /// limit on its own (so all of them together may admit up to one limit each), every
    /// admission counted (`fail_open_admissions`) and traced.
    FailOpenLocal,
}

/// Checks the Redis fields of one shared limit; `at` makes a field's dotted name
/// (`quotas.per_user.url`). Nothing to check for a limit kept in this process.
pub(crate) fn validate(
    at: impl Fn(&str) -> String,
    backend: BackendKind,
    url: &str,
    key_prefix: &str,
) -> Result<(), ConfigError> {
    if backend == BackendKind::InProcess {
        return Ok(());
    }
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(ConfigError::invalid(at("url"), REDIS_URL, format!("{url:?}")));
    }
    if key_prefix.is_empty() || key_prefix.contains(['{', '}']) {
        return Err(ConfigError::invalid(
            at("key_prefix"),
            KEY_PREFIX,
            format!("{key_prefix:?}"),
        ));
    }
    Ok(())
}

/// The default key prefix (`weir`), as slot backends have it.
pub(crate) fn default_key_prefix() -> String {
    "weir".into()
}
