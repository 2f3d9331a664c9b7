//! What a running job can do: know who it is, and fan out children without holding its
//! slot while it waits for them.
//!
//! # Why a cascade cannot deadlock the pool
//!
//! Children submitted through a context come back as [`Children`], which is not a future:
//! the only way to wait for them is [`JobContext::join`]. `join` first gives the parent's
//! slot back to the supervisor (the parent is *parked*), then waits, then asks for a slot
//! again and resumes only once it is granted. So a job holds a slot only while it runs its
//! own code, never while it waits for another job; every held slot is therefore held by a
//! job that can finish without any other job's help, and a cascade of any depth completes
//! with a pool of one slot. (A body that captures a [`Runtime`](crate::Runtime) and awaits a
//! plain [`JobHandle`] itself steps outside this guarantee; its lease still bounds the wait.)

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use weir::{JobError, JobKey, JobSpec, LeaseError, Outcome, ResourceId, TenantId};

use super::budget::CallBudget;
use super::handle::JobHandle;
use super::link::{Link, SubmitError};
use super::stop::{Stop, StopReason};
use super::Job;

/// Handed to every job body: its identity and the way to fan out children.
#[derive(Debug, Clone)]
pub struct JobContext {
    key: JobKey,
    tenant: TenantId,
    resource: ResourceId,
    stop: Arc<Stop>,
    link: Link,
    budget: Option<Arc<CallBudget>>,
    fencing_token: Option<u64>,
}

/// Children submitted by a running job; wait for them with [`JobContext::join`].
#[derive(Debug)]
#[must_use = "children are awaited with JobContext::join"]
pub struct Children<T> {
    handles: Vec<JobHandle<T>>,
}

impl<T> Children<T> {
    /// How many children.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Cancels every child.
    pub fn cancel(&self) {
        self.handles.iter().for_each(JobHandle::cancel);
    }
}

impl JobContext {
    pub(crate) fn new(
        key: JobKey,
        tenant: TenantId,
        resource: ResourceId,
        stop: Arc<Stop>,
        link: Link,
    ) -> Self {
        Self {
            key,
            tenant,
            resource,
            stop,
            link,
            budget: None,
            fencing_token: None,
        }
    }

    pub(crate) fn with_budget(mut self, budget: Option<Arc<CallBudget>>) -> Self {
        self.budget = budget;
        self
    }

    pub(crate) fn budget(&self) -> Option<&Arc<CallBudget>> {
        self.budget.as_ref()
    }

    pub(crate) fn stop(&self) -> &Arc<Stop> {
        &self.stop
    }

    /// Counts one downstream call against the job's call budget (its resource's
    /// `call_budget`, shared by all its attempts and, with `include_children`, by its
    /// children). Over budget it refuses with [`JobError::BudgetExhausted`]; return that
    /// error (`ctx.call()?`) and the job ends `Failed(BudgetExhausted)`, not retried.
    /// Without a budget it always allows. Call it before each downstream request.
    pub fn call(&self) -> Result<(), JobError> {
        match &self.budget {
            Some(budget) => budget.charge().map(drop),
            None => Ok(()),
        }
    }

    /// Calls counted so far against the job's budget and the budget, if it has one.
    pub fn calls(&self) -> Option<(u32, u32)> {
        self.budget.as_ref().map(|b| (b.used(), b.limit()))
    }

    pub(crate) fn with_fencing_token(mut self, token: Option<u64>) -> Self {
        self.fencing_token = token;
        self
    }

    /// The fencing token of the job's lease, for a resource whose slots are shared
    /// through Redis (`None` otherwise, and for a job admitted without a lease under
    /// `fail_open_local`). Tokens only grow: a downstream that remembers the largest
    /// token it has seen and refuses smaller ones turns away a holder whose lease expired
    /// while it was paused, which is the protection beyond the lease.
    pub fn fencing_token(&self) -> Option<u64> {
        self.fencing_token
    }

    /// The job's key in the scheduler.
    pub fn key(&self) -> JobKey {
        self.key
    }

    /// The job's tenant.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The job's resource.
    pub fn resource(&self) -> &ResourceId {
        &self.resource
    }

    /// Reports what this job actually cost, in the units of the configured cost budgets
    /// (for example micro-dollars: tokens in and out times a price). It replaces the
    /// estimate the job was admitted with when the job ends; the last report counts. A job
    /// that ran and never reports is charged its estimate.
    pub fn report_cost(&self, cost: u64) {
        self.link.report_cost(self.key, cost);
    }

    /// A spec for a child of the same tenant on `resource`.
    pub fn child_spec(&self, resource: impl Into<ResourceId>) -> JobSpec {
        JobSpec::new(self.tenant.clone(), resource)
    }

    /// Submits children, released in fan-out batches (`org_batch_size`, `batch_delay`).
    ///
    /// A refusal ([`SubmitError`]) converts into [`JobError`], so `?` works in a body.
    /// When the iterator knows how many children it yields (a range, a `Vec`), a spawn
    /// that `max_queued` cannot take is refused before any child's body is built.
    pub fn spawn<T, F, Fut>(
        &self,
        children: impl IntoIterator<Item = (JobSpec, F)>,
    ) -> Result<Children<T>, SubmitError>
    where
        F: FnOnce(JobContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, JobError>> + 'static,
        T: Send + 'static,
    {
        let children = children.into_iter();
        self.link.precheck(children.size_hint().0 as u64)?;
        let (jobs, handles): (Vec<Job>, Vec<JobHandle<T>>) =
            children.map(|(spec, body)| Job::new(spec, body)).unzip();
        let shared = self.budget.as_ref().filter(|b| b.include_children());
        let jobs = jobs
            .into_iter()
            .map(|mut job| {
                job.budget = shared.cloned();
                job
            })
            .collect();
        self.link.send_jobs(jobs, true)?;
        let handles = handles
            .into_iter()
            .map(|mut handle| {
                handle.attach(&self.link);
                handle
            })
            .collect();
        Ok(Children { handles })
    }

    /// Renews the job's lease while it makes progress: the lease now ends one lease
    /// length (`slot_lease_timeout`, or the job's own) from now.
    ///
    /// Fails with a [`LeaseError`] and changes nothing once the lease has expired or the
    /// job was cancelled (it is being stopped: a late renewal never takes the slot back),
    /// or while the job is parked in [`JobContext::join`] (it holds no slot then).
    pub async fn renew_lease(&self) -> Result<(), LeaseError> {
        match self.stop.reason() {
            Some(StopReason::TimedOut) => return Err(LeaseError::Expired),
            Some(StopReason::Cancelled) => return Err(LeaseError::Cancelled),
            Some(StopReason::LeaseLost) => return Err(LeaseError::Expired),
            None => {}
        }
        self.link.renew(self.key).await.map(|_| ())
    }

    /// Runs blocking code (a synchronous client, `std::thread::sleep`, heavy CPU work) on
    /// tokio's blocking pool and waits for it, so it never stalls an arbiter.
    ///
    /// Blocking code cannot be cancelled. If the job's lease expires (or the job is
    /// cancelled) while `f` runs, the job's future is dropped and its outcome is
    /// `TimedOut` (or `Cancelled`), but its slot stays held, and its handle unresolved,
    /// until `f` returns: the cap counts `f` for as long as it can reach the downstream.
    /// Meanwhile the job is counted in the resource's `overdue` statistic (after a lease
    /// expiry) and a warning is traced. A panic in `f` becomes `Err(JobError::Panicked)`.
    ///
    /// ```
    /// # use weir::{Config, JobError, JobSpec, Outcome};
    /// # actix_rt::System::new().block_on(async {
    /// let runtime = weir_actors::Runtime::start(Config::default()).unwrap();
    /// let job = runtime
    ///     .submit(JobSpec::new("acme", "legacy-db"), |ctx| async move {
    ///         ctx.run_blocking(|| {
    ///             std::thread::sleep(std::time::Duration::from_millis(5)); // a blocking client
    ///             42
    ///         })
    ///         .await
    ///     })
    ///     .unwrap();
    /// assert_eq!(job.await, Outcome::Completed(42));
    /// # runtime.shutdown(std::time::Duration::from_secs(1)).await;
    /// # });
    /// ```
    pub async fn run_blocking<R, F>(&self, f: F) -> Result<R, JobError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        // The guard moves into the closure: it is dropped on the blocking thread when `f`
        // returns or panics (or with the closure, if the pool refuses it), never when this
        // future is dropped.
        let section = self.stop.enter_blocking();
        let task = tokio::task::spawn_blocking(move || {
            let _section = section;
            f()
        });
        match task.await {
            Ok(value) => Ok(value),
            Err(e) if e.is_panic() => Err(JobError::Panicked(super::body::panic_message(&*e.into_panic()))),
            Err(e) => Err(JobError::RuntimeStopped(format!("blocking section: {e}"))),
        }
    }

    /// A token that is cancelled when this job is asked to stop: its lease expired, its
    /// handle (or a token it was tied to with [`JobHandle::cancel_on`]) cancelled it, the
    /// runtime shuts down, or its shared lease was lost.
    ///
    /// The body's own future is dropped at that moment, so the token serves work the body
    /// handed elsewhere: a task it spawned, a blocking section
    /// ([`JobContext::run_blocking_with_token`]), a client that takes a token.
    pub fn cancellation_token(&self) -> CancellationToken {
        self.stop.token()
    }

    /// Resolves when this job is asked to stop (see [`JobContext::cancellation_token`]).
    pub fn cancelled(&self) -> WaitForCancellationFutureOwned {
        self.cancellation_token().cancelled_owned()
    }

    /// [`JobContext::run_blocking`] for code that can stop early: `f` gets a token that
    /// is cancelled when the job is asked to stop, polls it, and returns. The job's slot
    /// comes back as soon as `f` returns.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use weir::{Config, JobError, JobSpec, Outcome};
    /// # actix_rt::System::new().block_on(async {
    /// let runtime = weir_actors::Runtime::start(Config::default()).unwrap();
    /// let job = runtime
    ///     .submit(JobSpec::new("acme", "legacy-db"), |ctx| async move {
    ///         ctx.run_blocking_with_token(|token| {
    ///             let mut rows = 0;
    ///             while rows < 1_000 && !token.is_cancelled() {
    ///                 rows += 1; // one row of a long synchronous scan
    ///             }
    ///             rows
    ///         })
    ///         .await
    ///     })
    ///     .unwrap();
    /// assert_eq!(job.await, Outcome::Completed(1_000));
    /// # runtime.shutdown(Duration::from_secs(1)).await;
    /// # });
    /// ```
    pub async fn run_blocking_with_token<R, F>(&self, f: F) -> Result<R, JobError>
    where
        F: FnOnce(CancellationToken) -> R + Send + 'static,
        R: Send + 'static,
    {
        let token = self.cancellation_token();
        self.run_blocking(move || f(token)).await
    }

    /// Waits for children without holding a slot: the slot is given back while waiting
    /// and taken again (waiting in the fair queue like any job) before this returns.
    pub async fn join<T>(&self, children: Children<T>) -> Vec<Outcome<T>> {
        self.without_slot(futures::future::join_all(children.handles))
            .await
    }

    /// Runs `wait` without holding the job's slot (see the module docs): what
    /// [`JobContext::join`] and [`JobContext::request`] do while they wait.
    pub(crate) async fn without_slot<R>(&self, wait: impl Future<Output = R>) -> R {
        self.link.without_slot(self.key, wait).await
    }
}
