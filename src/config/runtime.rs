//! `[runtime]`: the threads of the actor runtime, and which job bodies run on which.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::allowed::{INLINE_POLL_LIMIT, WORKER_THREADS};
use super::ConfigError;

/// Where a resource's job bodies run (`resources.NAME.bodies`) when the runtime has body
/// threads (with `runtime.worker_threads = 0` every body runs on the supervisor's thread).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bodies {
    /// On the supervisor's thread while their polls there stay under
    /// `runtime.inline_poll_limit`, else on body threads (the default).
    #[default]
    Auto,
    /// Always on the supervisor's thread: no hand-off, and a poll that computes delays every
    /// grant while it runs.
    Inline,
    /// Always on body threads: a body never runs on the supervisor's thread.
    Threads,
}

impl Bodies {
    /// Whether this is the default, `"auto"`.
    pub fn is_auto(&self) -> bool {
        *self == Bodies::Auto
    }
}

/// Threads of the actor runtime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Threads that run job bodies beside the supervisor's (0 ..= 1,024). Unset (the
    /// default): one fewer than the cores, and at least one (see
    /// [`RuntimeConfig::body_threads`]); on tokio's paused clock (tests, `weir simulate`)
    /// none, since other threads cannot share that clock. 0 runs every body on the
    /// supervisor's thread: one core in all, and a body that computes holds back every
    /// grant while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<u32>,
    /// With body threads, a resource's bodies run on the supervisor's own thread (no
    /// hand-off between threads) for as long as none of its polls there takes longer than
    /// this; after one that does, its later bodies run on body threads (0s ..= 1s; default
    /// 50us). `0s` runs every body on a body thread.
    #[serde(with = "humantime_serde")]
    pub inline_poll_limit: Duration,
    /// Runs the supervisor on an arbiter of its own instead of the caller's (default false).
    pub own_thread: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            worker_threads: None,
            inline_poll_limit: Duration::from_micros(50),
            own_thread: false,
        }
    }
}

impl RuntimeConfig {
    /// Checks every field; errors name `runtime.FIELD`.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(n) = self.worker_threads {
            WORKER_THREADS.check("runtime.worker_threads", n)?;
        }
        INLINE_POLL_LIMIT.check("runtime.inline_poll_limit", self.inline_poll_limit)
    }

    /// The threads that run job bodies on a machine with `cores` cores, when the runtime's
    /// clock is (or is not) tokio's paused clock: `worker_threads` if set, else one fewer
    /// than the cores and at least one, or none on a paused clock.
    ///
    /// Why one fewer: bodies whose polls are short run on the supervisor's thread (see
    /// `inline_poll_limit`), so that thread is a body thread too, and keeping a core for it
    /// means a body that computes on the others never delays a grant.
    ///
    /// ```
    /// use weir::RuntimeConfig;
    ///
    /// let default = RuntimeConfig::default();
    /// assert_eq!(default.body_threads(8, false), 7);
    /// assert_eq!(default.body_threads(1, false), 1);
    /// assert_eq!(default.body_threads(8, true), 0);
    /// let two = RuntimeConfig { worker_threads: Some(2), ..RuntimeConfig::default() };
    /// assert_eq!(two.body_threads(8, true), 2);
    /// ```
    pub fn body_threads(&self, cores: u32, clock_paused: bool) -> u32 {
        match self.worker_threads {
            Some(n) => n,
            None if clock_paused => 0,
            None => cores
                .saturating_sub(1)
                .clamp(1, u32::try_from(WORKER_THREADS.max).unwrap_or(u32::MAX)),
        }
    }
}
