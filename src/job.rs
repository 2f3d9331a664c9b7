//! Jobs as the core sees them: identities, the spec a job is submitted with, and the
//! terminal outcomes every job ends in exactly once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Identifies one job within one runtime; assigned at submission, never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job-{}", self.0)
    }
}

macro_rules! label {
    ($(#[$doc:meta])* $name:ident, $default:literal) => {
        $(#[$doc])*
        ///
        /// Cheap to clone (a shared string); compares by content.
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Wraps a name.
            pub fn new(name: impl AsRef<str>) -> Self {
                Self(Arc::from(name.as_ref()))
            }
            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            /// The default name, shared: every `JobSpec::new` takes a default kind, and
            /// allocating it afresh was one of the allocations every job paid.
            fn default() -> Self {
                static DEFAULT: std::sync::OnceLock<Arc<str>> = std::sync::OnceLock::new();
                Self(DEFAULT.get_or_init(|| Arc::from($default)).clone())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self::new(s)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(Arc::from(s))
            }
        }
    };
}

label!(
    /// The tenant (organisation) on whose behalf a job runs; fair sharing is across tenants.
    TenantId,
    "default"
);
label!(
    /// A named downstream resource; each has its own slot pool (default name `"default"`).
    ResourceId,
    "default"
);
label!(
    /// A free-form label for what a job does (`"org"`, `"projection"`, `"query"`).
    JobKind,
    "job"
);

/// What happens to a job whose wait for a slot exceeds its wait timeout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnWaitTimeout {
    /// End the job `Skipped(NoSlot)` (the default, as the incident patch did, but counted).
    #[default]
    Skip,
    /// Put the job back at the end of its tenant's queue with a fresh wait timeout.
    Requeue,
}

/// Per-job options; `None` takes the resource's configured default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobOptions {
    /// How long a granted slot may be held before the job is cancelled (`TimedOut`).
    pub lease: Option<Duration>,
    /// How long the job may wait for a slot.
    pub wait_timeout: Option<Duration>,
    /// What to do when the wait timeout passes.
    pub on_wait_timeout: OnWaitTimeout,
    /// When a quota refuses the job, wait for it (the job is deferred to its retry time
    /// and checked again) instead of ending `Skipped(QuotaExceeded)`, as long as the retry
    /// time falls within the wait timeout counted from submission.
    pub wait_for_quota: bool,
}

/// Everything the core needs to schedule a job (the body lives in the runtime).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobSpec {
    /// Whose job it is.
    pub tenant: TenantId,
    /// Which slot pool it needs.
    pub resource: ResourceId,
    /// What it does (a label for stats and tracing).
    pub kind: JobKind,
    /// Cost in fair-share units (at least 1); a job of cost 3 uses 3 units of its tenant's turn.
    pub cost: u32,
    /// Estimated cost in the integer units the configured cost budgets use (for example
    /// micro-dollars); reserved at admission, replaced by the actual cost the job reports
    /// when it ends (default 0).
    pub estimated_cost: u64,
    /// Lease and wait settings.
    pub options: JobOptions,
}

impl JobSpec {
    /// A job of `tenant` on `resource`, cost 1, default options.
    pub fn new(tenant: impl Into<TenantId>, resource: impl Into<ResourceId>) -> Self {
        Self {
            tenant: tenant.into(),
            resource: resource.into(),
            kind: JobKind::default(),
            cost: 1,
            estimated_cost: 0,
            options: JobOptions::default(),
        }
    }

    /// Sets the kind label.
    pub fn kind(mut self, kind: impl Into<JobKind>) -> Self {
        self.kind = kind.into();
        self
    }

    /// Sets the fair-share cost (0 is treated as 1).
    pub fn cost(mut self, cost: u32) -> Self {
        self.cost = cost.max(1);
        self
    }

    /// Sets the lease.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.options.lease = Some(lease);
        self
    }

    /// Sets the wait timeout.
    pub fn wait_timeout(mut self, wait: Duration) -> Self {
        self.options.wait_timeout = Some(wait);
        self
    }

    /// Sets the estimated cost checked against cost budgets (integer units, e.g. micro-dollars).
    pub fn estimated_cost(mut self, cost: u64) -> Self {
        self.estimated_cost = cost;
        self
    }

    /// Waits for a refusing quota (up to the wait timeout) instead of being skipped.
    pub fn wait_for_quota(mut self) -> Self {
        self.options.wait_for_quota = true;
        self
    }

    /// Requeues instead of skipping when the wait timeout passes.
    pub fn requeue_on_wait_timeout(mut self) -> Self {
        self.options.on_wait_timeout = OnWaitTimeout::Requeue;
        self
    }
}

/// Why a job was skipped without running.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// No slot was granted within the job's wait timeout.
    NoSlot,
    /// A quota refused the job (HTTP 429 with Retry-After, in a service's terms).
    QuotaExceeded {
        /// Which limit: `quota/window` (`per_user/1m`) or `quota/cost`.
        limit: String,
        /// The earliest time from the refusal at which a retry passes, if nothing else
        /// is admitted in that quota's scope meanwhile; one tick earlier is refused.
        retry_after: Duration,
    },
    /// A quota shared through Redis (`on_failure = "fail_closed"`) could not be checked
    /// (Redis down, paused or unreachable) within the job's wait: nothing was admitted
    /// unchecked.
    QuotaUnavailable {
        /// The shared quotas' store: `redis` and the quota names it holds.
        limit: String,
    },
    /// The job's estimated cost alone is over a cost budget: no retry can pass.
    OverBudget {
        /// Which budget (`per_user/cost`).
        limit: String,
        /// The job's estimate.
        estimate: u64,
        /// The budget.
        budget: u64,
    },
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NoSlot => f.write_str("no slot within the wait timeout"),
            SkipReason::QuotaExceeded { limit, retry_after } => {
                write!(f, "quota {limit} exceeded, retry after {retry_after:?}")
            }
            SkipReason::QuotaUnavailable { limit } => {
                write!(f, "shared quota {limit} could not be checked (redis unavailable)")
            }
            SkipReason::OverBudget {
                limit,
                estimate,
                budget,
            } => write!(
                f,
                "estimated cost {estimate} is over the budget {limit} of {budget}"
            ),
        }
    }
}

/// Why a job failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The job's own code returned an error.
    #[error("{message}")]
    Job {
        /// What the job said.
        message: String,
        /// How long the downstream asked the caller to wait before retrying, if it said.
        retry_after: Option<Duration>,
        /// The downstream refused the call as over its capacity ([`JobError::overload`]):
        /// an adaptive limit takes it as a signal to lower itself.
        overload: bool,
    },
    /// The job's code panicked; the panic was caught and the slot returned.
    #[error("job panicked: {0}")]
    Panicked(String),
    /// The runtime stopped before the job could report (it was shut down or lost its worker).
    #[error("runtime stopped: {0}")]
    RuntimeStopped(String),
    /// The job asked for more downstream calls than its resource's `call_budget` allows.
    #[error("call budget exhausted: call {calls} refused, the budget is {limit}")]
    BudgetExhausted {
        /// Calls asked for, the refused one included.
        calls: u32,
        /// The budget.
        limit: u32,
    },
    /// The job's lease in a pool shared through Redis expired before it could be renewed
    /// (another process may have had the slot since), so the job was stopped.
    #[error("lease lost: the shared lease expired before renewal; the job was stopped")]
    LeaseLost,
}

impl JobError {
    /// A job error with a message.
    pub fn msg(message: impl Into<String>) -> Self {
        JobError::Job {
            message: message.into(),
            retry_after: None,
            overload: false,
        }
    }

    /// A job error carrying a downstream's Retry-After.
    pub fn retry_after(message: impl Into<String>, after: Duration) -> Self {
        JobError::Job {
            message: message.into(),
            retry_after: Some(after),
            overload: false,
        }
    }

    /// The downstream refused the call because it has too much to do: an HTTP 429 or
    /// 503, a `RateLimitExceeded`, PostgreSQL's SQLSTATE 53300 (too many connections).
    /// Set it only for refusals over capacity, not for other failures: on a resource
    /// with `[resources.NAME.adaptive]`, each one lowers the limit. A retrying job runs
    /// again as for any error of its own.
    ///
    /// ```
    /// let e = weir::JobError::overload("store: too many connections (53300)");
    /// assert!(e.is_overload());
    /// assert!(!weir::JobError::msg("no such row").is_overload());
    /// ```
    pub fn overload(message: impl Into<String>) -> Self {
        JobError::Job {
            message: message.into(),
            retry_after: None,
            overload: true,
        }
    }

    /// This error marked as an overload ([`JobError::overload`]), keeping its message and
    /// Retry-After; other kinds of error are returned as they are.
    pub fn overloaded(self) -> Self {
        match self {
            JobError::Job {
                message, retry_after, ..
            } => JobError::Job {
                message,
                retry_after,
                overload: true,
            },
            other => other,
        }
    }

    /// Whether the downstream refused the call as over its capacity.
    pub fn is_overload(&self) -> bool {
        matches!(self, JobError::Job { overload: true, .. })
    }
}

/// The single terminal state every submitted job reaches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    /// The job ran and returned a value.
    Completed(T),
    /// The job ran and failed.
    Failed(JobError),
    /// The job outlived its lease and was cancelled (its future dropped).
    TimedOut,
    /// The job never ran.
    Skipped(SkipReason),
    /// The job was cancelled by its caller or by shutdown.
    Cancelled,
}

impl<T> Outcome<T> {
    /// Which terminal state this is, without the payload.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Completed(_) => OutcomeKind::Completed,
            Outcome::Failed(_) => OutcomeKind::Failed,
            Outcome::TimedOut => OutcomeKind::TimedOut,
            Outcome::Skipped(_) => OutcomeKind::Skipped,
            Outcome::Cancelled => OutcomeKind::Cancelled,
        }
    }

    /// True for `Completed`.
    pub fn is_completed(&self) -> bool {
        matches!(self, Outcome::Completed(_))
    }

    /// Maps the completed value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Outcome::Completed(v) => Outcome::Completed(f(v)),
            Outcome::Failed(e) => Outcome::Failed(e),
            Outcome::TimedOut => Outcome::TimedOut,
            Outcome::Skipped(r) => Outcome::Skipped(r),
            Outcome::Cancelled => Outcome::Cancelled,
        }
    }
}

/// The terminal states, without payloads (for counting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutcomeKind {
    /// See [`Outcome::Completed`].
    Completed,
    /// See [`Outcome::Failed`].
    Failed,
    /// See [`Outcome::TimedOut`].
    TimedOut,
    /// See [`Outcome::Skipped`].
    Skipped,
    /// See [`Outcome::Cancelled`].
    Cancelled,
}

impl OutcomeKind {
    /// All kinds, in a fixed order.
    pub const ALL: [OutcomeKind; 5] = [
        OutcomeKind::Completed,
        OutcomeKind::Failed,
        OutcomeKind::TimedOut,
        OutcomeKind::Skipped,
        OutcomeKind::Cancelled,
    ];

    /// Index in [`OutcomeKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}
