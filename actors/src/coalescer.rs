//! The coalescing job kind: many small requests answered by one downstream call.
//!
//! A [`Coalescer`] is an actor that owns a [`weir::engine::CoalesceBuffer`]. A job (or any task)
//! sends it a keyed request and awaits its own answer; the core decides when a batch is
//! flushed (flush interval, max batch, max wait) and the actor wakes at the core's next
//! deadline. A flush submits **one** job through the [`Runtime`], so the batched call runs
//! in one slot of its resource, under that resource's cap, like any other job. Its body
//! calls the user's batch function with every distinct item key; when the job ends, each
//! waiting request gets its own item's answer, or the batch's outcome (its error,
//! `TimedOut`, `Skipped`, `Cancelled`).
//!
//! Every request ends in exactly one [`Outcome`]:
//! - answered by its batch (as above);
//! - `Failed` with a message if the batch answer has no value for its item;
//! - `Cancelled` if the runtime refused the batch job because it is shutting down,
//!   `Failed` if it refused it as `QueueFull`;
//! - after [`Coalescer::shutdown`] (which flushes every buffered request first), or if
//!   the actor's system stopped, `Failed(RuntimeStopped)`.
//!
//! The buffer bounds the wait *in the buffer* by `max_wait`; the batch job then waits
//! for a slot like any job, bounded by its resource's `slot_wait_timeout`.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorContext, Addr, Context, Handler, Message, MessageResult};
use futures::future::LocalBoxFuture;
use futures::FutureExt;
use tokio::sync::oneshot;
use tokio::time::Instant;
use weir::engine::{Batch, CoalesceBuffer, CoalesceSettingsError, FlushReason, Waiting};
use weir::{CoalesceConfig, JobError, JobKind, JobSpec, Outcome, ResourceId};

use crate::job::context::JobContext;
use crate::job::link::SubmitError;
use crate::runtime::Runtime;
use crate::wake::Wake;

type Reply<V> = oneshot::Sender<Outcome<V>>;
type BatchFn<B, I, V> =
    Arc<dyn Fn(B, Vec<I>) -> LocalBoxFuture<'static, Result<HashMap<I, V>, JobError>> + Send + Sync>;

/// Why a coalescer did not start.
#[derive(Debug, thiserror::Error)]
pub enum CoalescerError {
    /// The kind's settings are invalid.
    #[error("coalesce.{kind}: {source}")]
    Settings {
        /// The job kind.
        kind: String,
        /// What was wrong.
        source: CoalesceSettingsError,
    },
    /// `Runtime::coalescer` was called outside an actix system; the coalescer actor needs
    /// an arbiter to run on (call it inside `#[actix_rt::main]`, an `actix_rt::System`,
    /// or a job body).
    #[error("a coalescer must be started inside an actix system (no current arbiter)")]
    NoArbiter,
}

/// Counters of one coalescer, for reports and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoalesceStats {
    /// Requests received.
    pub requests: u64,
    /// Requests whose item was already in their batch (merged, not sent again).
    pub merged: u64,
    /// Batches flushed, i.e. batch jobs submitted: one downstream call each.
    pub batches: u64,
    /// Item keys sent downstream in all batches.
    pub items: u64,
    /// Batches flushed because they were full.
    pub full: u64,
    /// Batches flushed because their flush interval passed.
    pub interval: u64,
    /// Batches flushed early so that a request would not wait past its max wait.
    pub max_wait: u64,
    /// Batches flushed by shutdown.
    pub drained: u64,
    /// Requests buffered now.
    pub buffered: u64,
}

/// A handle to a coalescer; cheap to clone, usable from any thread.
pub struct Coalescer<B, I, V>
where
    B: Hash + Eq + Clone + Send + 'static,
    I: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    addr: Addr<CoalesceActor<B, I, V>>,
}

impl<B, I, V> Clone for Coalescer<B, I, V>
where
    B: Hash + Eq + Clone + Send + 'static,
    I: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    fn clone(&self) -> Self {
        Self {
            addr: self.addr.clone(),
        }
    }
}

impl<B, I, V> std::fmt::Debug for Coalescer<B, I, V>
where
    B: Hash + Eq + Clone + Send + 'static,
    I: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer").finish_non_exhaustive()
    }
}

fn stopped<V>() -> Outcome<V> {
    Outcome::Failed(JobError::RuntimeStopped("the coalescer is stopped".into()))
}

impl Runtime {
    /// Starts a coalescer for job kind `kind`, configured by `[coalesce.KIND]` (defaults
    /// if absent). `batch_fn(batch_key, item_keys)` makes the one downstream call of a
    /// batch and returns each item's answer; it runs inside a job of the kind's resource.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use std::time::Duration;
    /// use weir::{Config, JobError, Outcome};
    /// use weir_actors::Runtime;
    ///
    /// actix_rt::System::new().block_on(async {
    ///     let runtime = Runtime::start(Config::default()).unwrap();
    ///     // One call answers every group of a project.
    ///     let counts = runtime
    ///         .coalescer("counts", |project: u32, groups: Vec<u32>| async move {
    ///             Ok::<_, JobError>(groups.into_iter().map(|g| (g, project * 100 + g)).collect::<HashMap<_, _>>())
    ///         })
    ///         .unwrap();
    ///     let (a, b) = futures::join!(counts.request(1, 7), counts.request(1, 8));
    ///     assert_eq!((a, b), (Outcome::Completed(107), Outcome::Completed(108)));
    ///     assert_eq!(counts.stats().await.batches, 1);
    ///     counts.shutdown().await;
    ///     runtime.shutdown(Duration::from_secs(1)).await;
    /// });
    /// ```
    pub fn coalescer<B, I, V, F, Fut>(
        &self,
        kind: &str,
        batch_fn: F,
    ) -> Result<Coalescer<B, I, V>, CoalescerError>
    where
        B: Hash + Eq + Clone + Send + 'static,
        I: Hash + Eq + Clone + Send + 'static,
        V: Clone + Send + 'static,
        F: Fn(B, Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<HashMap<I, V>, JobError>> + 'static,
    {
        let config = self.config().coalesce_kind(kind);
        Coalescer::start(self.clone(), kind, &config, batch_fn)
    }
}

impl<B, I, V> Coalescer<B, I, V>
where
    B: Hash + Eq + Clone + Send + 'static,
    I: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// Starts a coalescer on the current arbiter with explicit settings (see
    /// [`Runtime::coalescer`]).
    pub fn start<F, Fut>(
        runtime: Runtime,
        kind: &str,
        config: &CoalesceConfig,
        batch_fn: F,
    ) -> Result<Self, CoalescerError>
    where
        F: Fn(B, Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<HashMap<I, V>, JobError>> + 'static,
    {
        let buffer = CoalesceBuffer::new(config.settings()).map_err(|source| CoalescerError::Settings {
            kind: kind.to_string(),
            source,
        })?;
        if actix_rt::Arbiter::try_current().is_none() || actix_rt::System::try_current().is_none() {
            return Err(CoalescerError::NoArbiter);
        }
        let batch_fn: BatchFn<B, I, V> = Arc::new(move |b, items| batch_fn(b, items).boxed_local());
        let actor = CoalesceActor {
            buffer: Box::new(buffer),
            runtime,
            kind: JobKind::new(kind),
            resource: ResourceId::new(&config.resource),
            batch_fn,
            origin: Instant::now(),
            wake: Wake::default(),
            stats: CoalesceStats::default(),
        };
        Ok(Self { addr: actor.start() })
    }

    /// Asks for `item` in batch `batch`; resolves to this request's own outcome.
    pub fn request(&self, batch: B, item: I) -> impl Future<Output = Outcome<V>> + Send + 'static {
        let (reply, rx) = oneshot::channel();
        self.addr.do_send(Request { batch, item, reply });
        async move { rx.await.unwrap_or_else(|_| stopped()) }
    }

    /// The coalescer's counters.
    pub async fn stats(&self) -> CoalesceStats {
        self.addr.send(GetStats).await.unwrap_or_default()
    }

    /// Flushes every buffered request now (each batch as one job; if the runtime is
    /// shutting down those jobs end `Cancelled` and so do their requests), then stops:
    /// later requests end `Failed(RuntimeStopped)`. Returns the final counters.
    pub async fn shutdown(&self) -> CoalesceStats {
        self.addr.send(Stop).await.unwrap_or_default()
    }
}

impl JobContext {
    /// Asks a coalescer for `item` without holding this job's slot while the batch is
    /// pending: the slot is given back while waiting and taken again before this
    /// returns (as [`JobContext::join`] does), so requesting jobs cannot starve the batch
    /// job of slots, even in the same resource.
    pub async fn request<B, I, V>(&self, coalescer: &Coalescer<B, I, V>, batch: B, item: I) -> Outcome<V>
    where
        B: Hash + Eq + Clone + Send + 'static,
        I: Hash + Eq + Clone + Send + 'static,
        V: Clone + Send + 'static,
    {
        self.without_slot(coalescer.request(batch, item)).await
    }
}

struct CoalesceActor<B, I, V> {
    /// Boxed so the actor is `Unpin` whatever the key types are.
    buffer: Box<CoalesceBuffer<B, I, Reply<V>>>,
    runtime: Runtime,
    kind: JobKind,
    resource: ResourceId,
    batch_fn: BatchFn<B, I, V>,
    origin: Instant,
    /// The wake-up scheduled for the buffer's next deadline.
    wake: Wake,
    stats: CoalesceStats,
}

impl<B, I, V> Actor for CoalesceActor<B, I, V>
where
    B: Hash + Eq + Clone + Send + 'static,
    I: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    type Context = Context<Self>;
}

impl<B, I, V> CoalesceActor<B, I, V>
where
    B: Hash + Eq + Clone + Send + 'static,
    I: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }

    fn dispatch(&mut self, batch: Batch<B, I, Reply<V>>) {
        let s = &mut self.stats;
        s.batches += 1;
        s.items += batch.items.len() as u64;
        match batch.reason {
            FlushReason::Full => s.full += 1,
            FlushReason::Interval => s.interval += 1,
            FlushReason::MaxWait => s.max_wait += 1,
            _ => s.drained += 1,
        }
        let (keys, waiters): (Vec<I>, Vec<_>) = batch
            .items
            .into_iter()
            .map(|i| (i.item.clone(), (i.item, i.requests)))
            .unzip();
        let batch_fn = self.batch_fn.clone();
        let key = batch.key;
        let spec = JobSpec::new(weir::TenantId::default(), self.resource.clone()).kind(self.kind.clone());
        let submitted = self
            .runtime
            .submit(spec, move |_ctx| async move { batch_fn(key, keys).await });
        match submitted {
            Ok(handle) => {
                actix_rt::spawn(async move { answer(handle.await, waiters) });
            }
            Err(SubmitError::ShuttingDown) => answer(Outcome::Cancelled, waiters),
            Err(e) => answer(Outcome::Failed(e.into()), waiters),
        }
    }

    fn drive(&mut self, ctx: &mut Context<Self>) {
        let now = self.now();
        let mut flushed = Vec::new();
        self.buffer.poll(now, &mut flushed);
        for batch in flushed {
            self.dispatch(batch);
        }
        self.schedule_wake(now, ctx);
    }

    fn schedule_wake(&mut self, now: Duration, ctx: &mut Context<Self>) {
        if let Some(at) = self.buffer.next_deadline() {
            self.wake
                .arm(at, now, ctx, |act| &mut act.wake, |act, ctx| act.drive(ctx));
        }
    }
}

/// Sends each waiting request its item's answer, or the batch's outcome.
fn answer<I: Hash + Eq, V: Clone>(
    outcome: Outcome<HashMap<I, V>>,
    waiters: Vec<(I, Vec<Waiting<Reply<V>>>)>,
) {
    match outcome {
        Outcome::Completed(mut answers) => {
            for (item, requests) in waiters {
                let outcome = match answers.remove(&item) {
                    Some(v) => Outcome::Completed(v),
                    None => Outcome::Failed(JobError::msg("the batch answer has no value for this item")),
                };
                for w in requests {
                    let _ = w.request.send(outcome.clone());
                }
            }
        }
        other => {
            let outcome = other.map(|_| unreachable!("only Completed carries a value"));
            for w in waiters.into_iter().flat_map(|(_, requests)| requests) {
                let _ = w.request.send(outcome.clone());
            }
        }
    }
}

struct Request<B, I, V> {
    batch: B,
    item: I,
    reply: Reply<V>,
}

impl<B, I, V: 'static> Message for Request<B, I, V> {
    type Result = ();
}

impl<B, I, V> Handler<Request<B, I, V>> for CoalesceActor<B, I, V>
where
    B: Hash + Eq + Clone + Send + 'static,
    I: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    type Result = ();

    fn handle(&mut self, msg: Request<B, I, V>, ctx: &mut Context<Self>) {
        let now = self.now();
        self.stats.requests += 1;
        let items_before = self.buffer.buffered_items();
        // A duplicate never fills a batch (it adds no item), so a flush means a new item.
        match self.buffer.push(msg.batch, msg.item, msg.reply, now) {
            Some(full) => self.dispatch(full),
            None if self.buffer.buffered_items() == items_before => self.stats.merged += 1,
            None => {}
        }
        self.schedule_wake(now, ctx);
    }
}

struct GetStats;

impl Message for GetStats {
    type Result = CoalesceStats;
}

impl<B, I, V> Handler<GetStats> for CoalesceActor<B, I, V>
where
    B: Hash + Eq + Clone + Send + 'static,
    I: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(CoalesceStats {
            buffered: self.buffer.buffered() as u64,
            ..self.stats
        })
    }
}

struct Stop;

impl Message for Stop {
    type Result = CoalesceStats;
}

impl<B, I, V> Handler<Stop> for CoalesceActor<B, I, V>
where
    B: Hash + Eq + Clone + Send + 'static,
    I: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    type Result = MessageResult<Stop>;

    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) -> Self::Result {
        let now = self.now();
        for batch in self.buffer.drain(now) {
            self.dispatch(batch);
        }
        ctx.stop();
        MessageResult(self.stats)
    }
}
