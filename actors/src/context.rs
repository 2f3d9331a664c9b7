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

use weir::{JobError, JobKey, JobSpec, Outcome, ResourceId, TenantId};

use crate::runtime::{Runtime, SubmitError};
use crate::{Job, JobHandle};

/// Handed to every job body: its identity and the way to fan out children.
#[derive(Debug, Clone)]
pub struct JobContext {
    key: JobKey,
    tenant: TenantId,
    resource: ResourceId,
    runtime: Runtime,
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
    pub(crate) fn new(key: JobKey, tenant: TenantId, resource: ResourceId, runtime: Runtime) -> Self {
        Self {
            key,
            tenant,
            resource,
            runtime,
        }
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

    /// The runtime the job runs in.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// A spec for a child of the same tenant on `resource`.
    pub fn child_spec(&self, resource: impl Into<ResourceId>) -> JobSpec {
        JobSpec::new(self.tenant.clone(), resource)
    }

    /// Submits children, released in fan-out batches (`org_batch_size`, `batch_delay`).
    pub fn spawn<T, F, Fut>(
        &self,
        children: impl IntoIterator<Item = (JobSpec, F)>,
    ) -> Result<Children<T>, SubmitError>
    where
        F: FnOnce(JobContext) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, JobError>> + 'static,
        T: Send + 'static,
    {
        let (jobs, handles): (Vec<Job>, Vec<JobHandle<T>>) = children
            .into_iter()
            .map(|(spec, body)| Job::new(spec, body))
            .unzip();
        let handles = self.runtime.submit_jobs(jobs, handles, true)?;
        Ok(Children { handles })
    }

    /// Waits for children without holding a slot: the slot is given back while waiting
    /// and taken again (waiting in the fair queue like any job) before this returns.
    pub async fn join<T>(&self, children: Children<T>) -> Vec<Outcome<T>> {
        self.runtime.park(self.key);
        let outcomes = futures::future::join_all(children.handles).await;
        self.runtime.unpark(self.key).await;
        outcomes
    }
}
