//! A tower [`Layer`] that runs each call of an inner service as a weir job (feature
//! `tower`).
//!
//! The layer is cloneable configuration (the runtime, the resource, how to find a
//! request's tenant); the service owns the inner service. A call becomes one job on the
//! named resource for the request's tenant, so the resource's slot cap, fair queue,
//! quotas, rate limit and breaker all apply to it; the inner service is called inside the
//! job, holding the slot until its response is ready. A refusal comes back as a
//! [`WeirError`] that says why and, where one exists, when to come back: the HTTP layer
//! above turns it into 429 or 503 with `Retry-After`.
//!
//! `poll_ready` is always ready: waiting for a slot happens in the runtime's queue, where
//! the wait timeout and fairness apply, not in tower's back-pressure.
//!
//! Dropping the response future cancels the call's job, as tower's `ConcurrencyLimit`
//! releases its permit when its response future is dropped: a call still waiting for a
//! slot leaves the queue, and a running one has its inner future dropped and its slot
//! given back at once. An HTTP client that hangs up (the server drops the handler's
//! future) thus frees its slot for the next caller, instead of holding it until the inner
//! call ends or the lease runs out.
//!
//! A refusal for want of a slot is worded from what the supervisor recorded at the
//! refusal (the resource's breaker state then), not from a [`Runtime::stats`] round trip:
//! under overload every refusal would otherwise cost a snapshot.
//!
//! ```
//! use std::time::Duration;
//! use tower_service::Service;
//! use weir::{Config, TenantId};
//! use weir_actors::tower::WeirLayer;
//! use weir_actors::Runtime;
//!
//! # actix_rt::System::new().block_on(async {
//! let runtime = Runtime::start(Config::default()).unwrap();
//! let layer = WeirLayer::new(runtime.clone(), "store", |req: &(String, u32)| {
//!     TenantId::new(&req.0)
//! });
//! let inner = tower::service_fn(|req: (String, u32)| async move {
//!     Ok::<_, std::io::Error>(req.1 * 2)
//! });
//! let mut service = tower_layer::Layer::layer(&layer, inner);
//! let answer = service.call(("acme".to_string(), 21)).await.unwrap();
//! assert_eq!(answer, 42);
//! # runtime.shutdown(Duration::from_secs(1)).await;
//! # });
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

pub use tower_layer::Layer;
pub use tower_service::Service;
use weir::{JobError, JobSpec, Outcome, ResourceId, SkipReason, TenantId};

use crate::{JobHandle, Runtime, SubmitError};

/// Why a call through [`WeirService`] did not return the inner service's response.
#[derive(Debug, thiserror::Error)]
pub enum WeirError<E> {
    /// The inner service answered with an error (the job counts as `Failed`).
    #[error("{0}")]
    Inner(E),
    /// A quota refused the call; a retry after `retry_after` can pass (HTTP 429).
    #[error("quota {limit} exceeded, retry after {retry_after:?}")]
    QuotaExceeded {
        /// The limit that refused (`per_user/1m`).
        limit: String,
        /// When a retry could pass.
        retry_after: Duration,
    },
    /// The call's estimated cost alone is over a budget: no retry can pass.
    #[error("over budget {limit}: the estimate {estimate} is over the budget {budget}")]
    OverBudget {
        /// The budget that refused.
        limit: String,
        /// The call's estimate.
        estimate: u64,
        /// The budget.
        budget: u64,
    },
    /// No slot came within the resource's wait timeout (HTTP 503).
    #[error("no slot of {resource} within the wait timeout of {wait_timeout:?}")]
    NoSlot {
        /// The resource.
        resource: ResourceId,
        /// How long the call waited.
        wait_timeout: Duration,
    },
    /// The resource's circuit breaker is open (HTTP 503); it lets a probe through after
    /// at most `cooldown`.
    #[error("the breaker of {resource} is open; it probes again within {cooldown:?}")]
    BreakerOpen {
        /// The resource.
        resource: ResourceId,
        /// The breaker's configured cooldown: an upper bound on when to come back.
        cooldown: Duration,
    },
    /// The call outlived its lease, was cancelled, or the runtime refused or lost it.
    #[error("{0}")]
    Stopped(String),
}

impl<E> WeirError<E> {
    /// When a retry makes sense, if the refusal says: the quota's `retry_after`, the
    /// wait timeout, or the breaker's cooldown.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            WeirError::QuotaExceeded { retry_after, .. } => Some(*retry_after),
            WeirError::NoSlot { wait_timeout, .. } => Some(*wait_timeout),
            WeirError::BreakerOpen { cooldown, .. } => Some(*cooldown),
            _ => None,
        }
    }
}

impl<E> From<SubmitError> for WeirError<E> {
    fn from(e: SubmitError) -> Self {
        WeirError::Stopped(e.to_string())
    }
}

/// Who a call is for and what it is expected to cost: what the layer's user function
/// returns (a bare [`TenantId`] converts, with no cost estimate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The tenant the job runs for (fair share, tenant quotas).
    pub tenant: TenantId,
    /// The estimate charged against cost budgets (the job runs the inner service, which
    /// cannot report an actual cost, so the estimate is what is charged); 0 for none.
    pub estimated_cost: u64,
}

impl From<TenantId> for Call {
    fn from(tenant: TenantId) -> Self {
        Call {
            tenant,
            estimated_cost: 0,
        }
    }
}

/// Runs each call of the wrapped service as a weir job (see the module docs).
pub struct WeirLayer<F> {
    runtime: Runtime,
    resource: ResourceId,
    tenant_of: F,
}

impl<F: Clone> Clone for WeirLayer<F> {
    fn clone(&self) -> Self {
        Self {
            runtime: self.runtime.clone(),
            resource: self.resource.clone(),
            tenant_of: self.tenant_of.clone(),
        }
    }
}

impl<F> fmt::Debug for WeirLayer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeirLayer")
            .field("resource", &self.resource)
            .finish_non_exhaustive()
    }
}

impl<F> WeirLayer<F> {
    /// Calls go to `resource` of `runtime`, each for the tenant `tenant_of` reads from
    /// the request (a [`TenantId`], or a [`Call`] with a cost estimate).
    pub fn new(runtime: Runtime, resource: impl Into<ResourceId>, tenant_of: F) -> Self {
        Self {
            runtime,
            resource: resource.into(),
            tenant_of,
        }
    }
}

impl<S, F: Clone> Layer<S> for WeirLayer<F> {
    type Service = WeirService<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        WeirService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`WeirLayer`].
pub struct WeirService<S, F> {
    inner: S,
    layer: WeirLayer<F>,
}

impl<S: Clone, F: Clone> Clone for WeirService<S, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S, F> fmt::Debug for WeirService<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeirService")
            .field("resource", &self.layer.resource)
            .finish_non_exhaustive()
    }
}

/// The response future of [`WeirService`].
pub type ResponseFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, WeirError<E>>> + Send>>;

impl<S, F, C, Req> Service<Req> for WeirService<S, F>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Response: Send + 'static,
    S::Error: fmt::Display + Send + 'static,
    S::Future: 'static,
    F: Fn(&Req) -> C,
    C: Into<Call>,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = WeirError<S::Error>;
    type Future = ResponseFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let call: Call = (self.layer.tenant_of)(&req).into();
        let mut spec = JobSpec::new(call.tenant, self.layer.resource.clone());
        if call.estimated_cost > 0 {
            spec = spec.estimated_cost(call.estimated_cost);
        }
        let resource = self.layer.resource.clone();
        let runtime = self.layer.runtime.clone();
        // The clone that was made ready is the one called (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // The inner error goes back to the caller as it was; the job sees its text, so
        // the breaker and the stats count the failure.
        let stash: Arc<Mutex<Option<S::Error>>> = Arc::default();
        let put = stash.clone();
        let submitted = runtime.submit(spec, move |_ctx| async move {
            let ready = futures::future::poll_fn(|cx| inner.poll_ready(cx)).await;
            let result = match ready {
                Ok(()) => inner.call(req).await,
                Err(e) => Err(e),
            };
            result.map_err(|e| {
                let error = JobError::msg(e.to_string());
                *put.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                error
            })
        });
        // Made here, not in the future: a response future dropped before its first poll
        // cancels the job too.
        let job = submitted.map(CancelOnDrop::new);
        Box::pin(async move {
            let outcome = job?.await;
            match outcome {
                Outcome::Completed(response) => Ok(response),
                Outcome::Failed(error) => {
                    let inner = stash.lock().unwrap_or_else(|p| p.into_inner()).take();
                    Err(inner.map_or_else(|| WeirError::Stopped(error.to_string()), WeirError::Inner))
                }
                Outcome::Skipped(SkipReason::QuotaExceeded { limit, retry_after }) => {
                    Err(WeirError::QuotaExceeded { limit, retry_after })
                }
                Outcome::Skipped(SkipReason::OverBudget {
                    limit,
                    estimate,
                    budget,
                }) => Err(WeirError::OverBudget {
                    limit,
                    estimate,
                    budget,
                }),
                // A shared quota that could not be checked (fail_closed): unavailable, 503.
                Outcome::Skipped(reason @ SkipReason::QuotaUnavailable { .. }) => {
                    Err(WeirError::Stopped(reason.to_string()))
                }
                Outcome::Skipped(_) => Err(no_slot(&runtime, resource)),
                Outcome::TimedOut => Err(WeirError::Stopped("the call outlived its lease".into())),
                Outcome::Cancelled => Err(WeirError::Stopped("the call was cancelled".into())),
            }
        })
    }
}

/// The job of a call whose response future is still held: dropping it before the outcome
/// came cancels the job (see the module docs).
struct CancelOnDrop<T> {
    handle: JobHandle<T>,
    ended: bool,
}

impl<T> CancelOnDrop<T> {
    fn new(handle: JobHandle<T>) -> Self {
        Self { handle, ended: false }
    }
}

impl<T> Future for CancelOnDrop<T> {
    type Output = Outcome<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = Pin::new(&mut self.handle).poll(cx);
        if outcome.is_ready() {
            self.ended = true;
        }
        outcome
    }
}

impl<T> Drop for CancelOnDrop<T> {
    fn drop(&mut self) {
        if !self.ended {
            self.handle.cancel();
        }
    }
}

/// A call that got no slot: an open breaker holds every slot back, else the pool was
/// busy for the whole wait. The breaker's state is the one the supervisor recorded at
/// this refusal (no stats round trip).
fn no_slot<E>(runtime: &Runtime, resource: ResourceId) -> WeirError<E> {
    let config = runtime.config();
    let breaker = config
        .resources
        .get(resource.as_str())
        .and_then(|r| r.breaker.as_ref())
        .map(|b| b.cooldown);
    if let Some(cooldown) = breaker {
        if runtime.breaker_was_open_at_refusal(&resource) {
            return WeirError::BreakerOpen { resource, cooldown };
        }
    }
    let wait_timeout = config.resource(resource.as_str()).wait_timeout;
    WeirError::NoSlot {
        resource,
        wait_timeout,
    }
}
