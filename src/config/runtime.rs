//! `[runtime]`: the threads of the actor runtime.

use serde::{Deserialize, Serialize};

use super::allowed::WORKER_THREADS;
use super::ConfigError;

/// Threads of the actor runtime.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Threads that run job bodies (0 ..= 1,024). Unset (the default): one per core, so
    /// bodies use every core and a body that computes never delays a grant; on tokio's
    /// paused clock (tests, `weir simulate`) none, since other threads cannot share that
    /// clock. 0 runs bodies on the supervisor's thread: one core in all, and a body that
    /// computes holds back every grant while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<u32>,
    /// Runs the supervisor on an arbiter of its own instead of the caller's (default false).
    pub own_thread: bool,
}

impl RuntimeConfig {
    /// Checks every field; errors name `runtime.FIELD`.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match self.worker_threads {
            Some(n) => WORKER_THREADS.check("runtime.worker_threads", n),
            None => Ok(()),
        }
    }

    /// The threads that run job bodies on a machine with `cores` cores, when the runtime's
    /// clock is (or is not) tokio's paused clock: `worker_threads` if set, else one per
    /// core, or none on a paused clock.
    ///
    /// ```
    /// use weir::RuntimeConfig;
    ///
    /// let default = RuntimeConfig::default();
    /// assert_eq!(default.body_threads(8, false), 8);
    /// assert_eq!(default.body_threads(8, true), 0);
    /// let two = RuntimeConfig { worker_threads: Some(2), ..RuntimeConfig::default() };
    /// assert_eq!(two.body_threads(8, true), 2);
    /// ```
    pub fn body_threads(&self, cores: u32, clock_paused: bool) -> u32 {
        match self.worker_threads {
            Some(n) => n,
            None if clock_paused => 0,
            None => cores.clamp(1, u32::try_from(WORKER_THREADS.max).unwrap_or(u32::MAX)),
        }
    }
}
