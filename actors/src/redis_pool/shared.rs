//! The supervisor's side of the Redis-backed resources: which jobs wait for a global
//! lease, which hold one, and the brokers that talk to Redis.
//!
//! The supervisor grants a local slot as for any resource (the local pool bounds this
//! process's concurrency), then, for a resource whose backend is `redis`, parks the job's
//! payload here and asks the resource's broker for a global lease. Only when the lease is
//! granted does the job start. Its local slot is held meanwhile, so a job waiting for a
//! global lease counts against the local cap, never above it. On release, park, cancel or
//! stop, the lease goes back. `P` is the supervisor's payload type.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use weir::{BackendKind, Config, JobKey, ResourceId};

use super::broker::{Answer, Broker, Cmd};
use super::pool::{PoolSettings, RedisPool};
use super::stats::{BackendSnapshot, BackendStats};

struct BrokerHandle {
    tx: mpsc::UnboundedSender<Cmd>,
    stats: Arc<Mutex<BackendStats>>,
}

/// Redis-backed resources of one supervisor.
pub(crate) struct SharedSlots<P> {
    brokers: HashMap<ResourceId, BrokerHandle>,
    /// Granted locally, waiting for a global lease.
    pending: HashMap<JobKey, (ResourceId, P)>,
    /// Holding a global lease (or admitted fail-open).
    leased: HashMap<JobKey, ResourceId>,
    /// Parked parents of Redis-backed resources (they gave their lease back).
    parked: HashMap<JobKey, ResourceId>,
}

impl<P> std::fmt::Debug for SharedSlots<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSlots")
            .field("resources", &self.brokers.len())
            .field("pending", &self.pending.len())
            .field("leased", &self.leased.len())
            .finish()
    }
}

impl<P> SharedSlots<P> {
    /// No shared resources (before the supervisor has started).
    pub(crate) fn none() -> Self {
        Self {
            brokers: HashMap::new(),
            pending: HashMap::new(),
            leased: HashMap::new(),
            parked: HashMap::new(),
        }
    }

    /// Starts one broker per Redis-backed resource of `config` on the current arbiter;
    /// `answer` carries the brokers' answers to the supervisor.
    pub(crate) fn start(config: &Config, answer: impl Fn(Vec<Answer>) + Clone + Send + 'static) -> Self {
        let mut brokers = HashMap::new();
        for (resource, backend) in &config.backends {
            if backend.backend != BackendKind::Redis {
                continue;
            }
            let settings = PoolSettings {
                url: backend.url.clone(),
                key_prefix: backend.key_prefix.clone(),
                resource: resource.clone(),
                cap: config.resource(resource).max_concurrent,
                lease_ttl: backend.lease_ttl,
                // A call that outlasts a quarter of the lease is treated as failed.
                op_timeout: (backend.lease_ttl / 4).clamp(Duration::from_millis(25), Duration::from_secs(2)),
            };
            let pool = match RedisPool::new(settings) {
                Ok(pool) => Arc::new(pool),
                Err(e) => {
                    // The URL passed validation but the client refused it: the resource
                    // grants nothing (fail closed) and says why.
                    tracing::error!(resource = %resource, error = %e, "cannot use the redis backend");
                    continue;
                }
            };
            let (tx, rx) = mpsc::unbounded_channel();
            let stats = Arc::new(Mutex::new(BackendStats::default()));
            let broker = Broker::new(pool, backend.clone(), rx, Box::new(answer.clone()), stats.clone());
            actix_rt::spawn(broker.run());
            brokers.insert(ResourceId::new(resource.clone()), BrokerHandle { tx, stats });
        }
        Self {
            brokers,
            pending: HashMap::new(),
            leased: HashMap::new(),
            parked: HashMap::new(),
        }
    }

    /// True when any resource's slots are shared through Redis.
    pub(crate) fn any(&self) -> bool {
        !self.brokers.is_empty()
    }

    /// True when `resource`'s slots are shared through Redis.
    pub(crate) fn is_shared(&self, resource: &ResourceId) -> bool {
        !self.brokers.is_empty() && self.brokers.contains_key(resource)
    }

    fn send(&self, resource: &ResourceId, cmd: Cmd) {
        if let Some(b) = self.brokers.get(resource) {
            let _ = b.tx.send(cmd);
        }
    }

    /// A job granted a local slot of a shared resource waits here for its global lease;
    /// it is skipped after `wait_left` (never, for `None`).
    pub(crate) fn want(
        &mut self,
        key: JobKey,
        resource: ResourceId,
        payload: P,
        wait_left: Option<Duration>,
    ) {
        let deadline = wait_left.map(|w| Instant::now() + w);
        self.send(&resource, Cmd::Want { key, deadline });
        self.pending.insert(key, (resource, payload));
    }

    /// A lease (or a fail-open admission) arrived for `key`: its payload, to start. `None`
    /// when the job no longer waits; the lease is returned at once.
    pub(crate) fn granted(&mut self, key: JobKey) -> Option<P> {
        match self.pending.remove(&key) {
            Some((resource, payload)) => {
                self.leased.insert(key, resource);
                Some(payload)
            }
            None => {
                self.return_orphan(key);
                None
            }
        }
    }

    fn return_orphan(&self, key: JobKey) {
        for b in self.brokers.values() {
            let _ = b.tx.send(Cmd::Return(key));
        }
    }

    /// The job waited too long for a lease: its payload, to resolve as skipped.
    pub(crate) fn skipped(&mut self, key: JobKey) -> Option<P> {
        self.pending.remove(&key).map(|(_, p)| p)
    }

    /// The job's lease was lost; true if it held one.
    pub(crate) fn lost(&mut self, key: JobKey) -> bool {
        self.leased.remove(&key).is_some()
    }

    /// The job stopped, was cancelled or its local lease expired: its lease goes back,
    /// and if it was still waiting for one, its payload is returned.
    pub(crate) fn release(&mut self, key: JobKey) -> Option<P> {
        // Every job's end comes here: with no shared resource there is nothing to look up.
        if self.brokers.is_empty() {
            return None;
        }
        if let Some(resource) = self.leased.remove(&key) {
            self.send(&resource, Cmd::Return(key));
        }
        self.parked.remove(&key);
        let (resource, payload) = self.pending.remove(&key)?;
        self.send(&resource, Cmd::Forget(key));
        Some(payload)
    }

    /// A parent gives its slot up while it waits for children: its lease goes back too.
    pub(crate) fn park(&mut self, key: JobKey) {
        if self.brokers.is_empty() {
            return;
        }
        if let Some(resource) = self.leased.remove(&key) {
            self.send(&resource, Cmd::Return(key));
            self.parked.insert(key, resource);
        }
    }

    /// The resource of a parked parent of a shared resource that is granted its local
    /// slot back (it then needs a lease again).
    pub(crate) fn resumed(&mut self, key: JobKey) -> Option<ResourceId> {
        if self.brokers.is_empty() {
            return None;
        }
        self.parked.remove(&key)
    }

    /// Every job still waiting for a lease (shutdown).
    pub(crate) fn drain_pending(&mut self) -> Vec<(JobKey, P)> {
        let keys: Vec<JobKey> = self.pending.keys().copied().collect();
        keys.into_iter()
            .filter_map(|k| self.release(k).map(|p| (k, p)))
            .collect()
    }

    /// Backend statistics of the shared resources.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, BackendSnapshot> {
        self.brokers
            .iter()
            .map(|(name, b)| {
                let stats = b.stats.lock().unwrap_or_else(|e| e.into_inner());
                (name.to_string(), stats.snapshot(BackendKind::Redis))
            })
            .collect()
    }
}
