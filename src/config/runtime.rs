//! `[runtime]`: the threads of the actor runtime.

use serde::{Deserialize, Serialize};

use super::allowed::WORKER_THREADS;
use super::ConfigError;

/// Threads of the actor runtime.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Worker arbiters (threads) that run job bodies; 0 runs them on the supervisor's
    /// thread, which is fastest for tiny jobs and lets tests use tokio's paused clock
    /// (0 ..= 1,024; default 0).
    pub worker_threads: u32,
    /// Runs the supervisor on an arbiter of its own instead of the caller's (default false).
    pub own_thread: bool,
}

impl RuntimeConfig {
    /// Checks every field; errors name `runtime.FIELD`.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        WORKER_THREADS.check("runtime.worker_threads", self.worker_threads)
    }
}
