//! Recurring checks: jobs submitted at an interval derived from each check's time window.
//!
//! [`RecurringChecks`] is an actor that owns a [`weir::engine::Recurring`] schedule. A check is
//! scheduled with its window; the runtime's interval table (`[[intervals]]`) gives its
//! evaluation interval, so a 24-hour rule is evaluated less often than a 5-minute one.
//! When a check falls due the actor calls the user's `make` function, which returns the
//! jobs to run for it (none, one, or one per item that changed), and submits them to the
//! [`Runtime`] like any job: they wait for slots under the cap. A check that falls due
//! while the previous run's jobs still run is not held back; a late wake-up never
//! produces catch-up runs (the missed count is in [`DueRun::missed`]).
//!
//! A new interval table (after [`Runtime::reconfigure`](crate::Runtime::reconfigure), say)
//! is taken with [`RecurringChecks::set_intervals`]: every check scheduled by its window
//! moves to the interval the new table gives it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::{Actor, ActorContext, Addr, Context, Handler, Message, MessageResult};
use tokio::time::Instant;
use weir::engine::{DueRun, Recurring};
use weir::IntervalTable;

use crate::coalescer::CoalescerError;
use crate::wake::Wake;
use crate::{Job, Runtime};

/// A handle to a recurring-checks actor; cheap to clone.
pub struct RecurringChecks<K: Hash + Eq + Clone + Send + 'static> {
    addr: Addr<RecurringActor<K>>,
    /// The table in force, shared by every clone of the handle.
    table: Arc<Mutex<IntervalTable>>,
}

impl<K: Hash + Eq + Clone + Send + 'static> Clone for RecurringChecks<K> {
    fn clone(&self) -> Self {
        Self {
            addr: self.addr.clone(),
            table: self.table.clone(),
        }
    }
}

impl<K: Hash + Eq + Clone + Send + 'static> std::fmt::Debug for RecurringChecks<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecurringChecks").finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone + Send + 'static> RecurringChecks<K> {
    /// Starts the actor on the current arbiter; intervals come from `table` (usually
    /// `runtime.config().intervals`). `make(run)` returns the jobs of one due run.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir::{Config, JobError, JobSpec};
    /// use weir_actors::{Job, RecurringChecks, Runtime};
    ///
    /// actix_rt::System::new().block_on(async {
    ///     let runtime = Runtime::start(Config::default()).unwrap();
    ///     let table = runtime.config().intervals.clone();
    ///     let checks = RecurringChecks::start(runtime.clone(), table, |run| {
    ///         let (job, _handle) = Job::new(JobSpec::new("acme", "store"), move |_| async move {
    ///             Ok::<_, JobError>(run.key)
    ///         });
    ///         vec![job]
    ///     })
    ///     .unwrap();
    ///     // A one-hour window: evaluated every 2 minutes by the default table.
    ///     assert_eq!(checks.schedule("errors-per-hour", Duration::from_secs(3600)), Duration::from_secs(120));
    ///     assert_eq!(checks.shutdown().await, 0);
    ///     runtime.shutdown(Duration::from_secs(1)).await;
    /// });
    /// ```
    pub fn start<F>(runtime: Runtime, table: IntervalTable, make: F) -> Result<Self, CoalescerError>
    where
        F: FnMut(DueRun<K>) -> Vec<Job> + 'static,
    {
        if actix_rt::Arbiter::try_current().is_none() || actix_rt::System::try_current().is_none() {
            return Err(CoalescerError::NoArbiter);
        }
        let actor = RecurringActor {
            schedule: Box::new(Recurring::new()),
            table: table.clone(),
            windows: HashMap::new(),
            runtime,
            make: Box::new(make),
            origin: Instant::now(),
            wake: Wake::default(),
            runs: 0,
        };
        Ok(Self {
            addr: actor.start(),
            table: Arc::new(Mutex::new(table)),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, IntervalTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a new interval table: every check scheduled by its window
    /// ([`RecurringChecks::schedule`]) whose interval the new table changes runs at the new
    /// interval from the next multiple of it; checks scheduled with
    /// [`RecurringChecks::schedule_every`] keep theirs. Logged as a tracing event.
    pub fn set_intervals(&self, table: IntervalTable) {
        *self.table() = table.clone();
        self.addr.do_send(Retable(table));
    }

    /// Evaluates `key` at the interval its `window` maps to (first at the next multiple
    /// of that interval); replaces the key's previous schedule. Returns the interval.
    pub fn schedule(&self, key: K, window: Duration) -> Duration {
        let every = self.table().interval_for(window);
        self.addr.do_send(Schedule(key, Plan::Window(window)));
        every
    }

    /// Evaluates `key` every `every` (at least 1 ms), whatever its window.
    pub fn schedule_every(&self, key: K, every: Duration) {
        self.addr.do_send(Schedule(key, Plan::Every(every)));
    }

    /// Stops evaluating `key`.
    pub fn remove(&self, key: K) {
        self.addr.do_send(Schedule(key, Plan::Remove));
    }

    /// Stops every schedule and the actor; returns how many runs fell due in all. Jobs
    /// already submitted run on.
    pub async fn shutdown(&self) -> u64 {
        self.addr.send(StopChecks).await.unwrap_or_default()
    }
}

type Make<K> = Box<dyn FnMut(DueRun<K>) -> Vec<Job>>;

struct RecurringActor<K> {
    /// Boxed so the actor is `Unpin` whatever `K` is.
    schedule: Box<Recurring<K>>,
    /// The interval table in force (the actor's copy decides; the handle's answers
    /// `schedule`).
    table: IntervalTable,
    /// Checks scheduled by window, with the interval their window was given.
    windows: HashMap<K, (Duration, Duration)>,
    runtime: Runtime,
    make: Make<K>,
    origin: Instant,
    wake: Wake,
    runs: u64,
}

// The actor is never pinned in place (actix moves it freely); a key type that is not
// `Unpin` must not make the map beside the schedule unmovable.
impl<K> Unpin for RecurringActor<K> {}

impl<K: Hash + Eq + Clone + Send + 'static> Actor for RecurringActor<K> {
    type Context = Context<Self>;
}

impl<K: Hash + Eq + Clone + Send + 'static> RecurringActor<K> {
    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }

    fn drive(&mut self, ctx: &mut Context<Self>) {
        let now = self.now();
        let mut due = Vec::new();
        self.schedule.poll(now, &mut due);
        for run in due {
            self.runs += 1;
            let jobs = (self.make)(run);
            if jobs.is_empty() {
                continue;
            }
            // Refused jobs (queue full, shutting down) resolve their own handles; the
            // next run is tried at its time as usual.
            if let Err(e) = self.runtime.link().send_jobs(jobs, false) {
                tracing::warn!(error = %e, "recurring check refused");
            }
        }
        self.schedule_wake(now, ctx);
    }

    fn schedule_wake(&mut self, now: Duration, ctx: &mut Context<Self>) {
        if let Some(at) = self.schedule.next_deadline() {
            self.wake
                .arm(at, now, ctx, |act| &mut act.wake, |act, ctx| act.drive(ctx));
        }
    }
}

/// What to do with one check.
enum Plan {
    /// At the interval the table gives this window.
    Window(Duration),
    /// At this interval.
    Every(Duration),
    Remove,
}

struct Schedule<K>(K, Plan);

impl<K> Message for Schedule<K> {
    type Result = ();
}

impl<K: Hash + Eq + Clone + Send + 'static> Handler<Schedule<K>> for RecurringActor<K> {
    type Result = ();

    fn handle(&mut self, Schedule(key, plan): Schedule<K>, ctx: &mut Context<Self>) {
        let now = self.now();
        match plan {
            Plan::Window(window) => {
                let every = self.table.interval_for(window);
                self.windows.insert(key.clone(), (window, every));
                self.schedule.insert(key, every, now);
            }
            Plan::Every(every) => {
                self.windows.remove(&key);
                self.schedule.insert(key, every, now);
            }
            Plan::Remove => {
                self.windows.remove(&key);
                self.schedule.remove(&key);
            }
        }
        self.schedule_wake(now, ctx);
    }
}

/// A new interval table (see [`RecurringChecks::set_intervals`]).
struct Retable(IntervalTable);

impl Message for Retable {
    type Result = ();
}

impl<K: Hash + Eq + Clone + Send + 'static> Handler<Retable> for RecurringActor<K> {
    type Result = ();

    fn handle(&mut self, Retable(table): Retable, ctx: &mut Context<Self>) {
        let now = self.now();
        let mut moved = 0u64;
        for (key, (window, every)) in self.windows.iter_mut() {
            let new = table.interval_for(*window);
            if new != *every {
                *every = new;
                self.schedule.insert(key.clone(), new, now);
                moved += 1;
            }
        }
        self.table = table;
        tracing::info!(moved, "recurring checks: new interval table");
        self.schedule_wake(now, ctx);
    }
}

struct StopChecks;

impl Message for StopChecks {
    type Result = u64;
}

impl<K: Hash + Eq + Clone + Send + 'static> Handler<StopChecks> for RecurringActor<K> {
    type Result = MessageResult<StopChecks>;

    fn handle(&mut self, _: StopChecks, ctx: &mut Context<Self>) -> Self::Result {
        ctx.stop();
        MessageResult(self.runs)
    }
}
