//! The supervisor's I/O side of the Redis-backed resources: the brokers that talk to
//! Redis, and which job asked for or holds which global lease (with its fencing token).
//!
//! Every decision about such a job is the core's (`weir::Scheduler`'s lease-wait stage):
//! a job granted a local slot of a shared resource waits there for its global lease (the
//! core reports `LeaseWanted`), starts when the core is told the lease came, is skipped
//! when the core's wait deadline passes, and is stopped when the core is told it lost
//! the lease. What is kept here is only what the core does not need: the lease ids.
//! On release, park, cancel or stop, the lease goes back.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use weir::{BackendKind, Config, JobKey, ResourceId};

use super::broker::{Answer, Broker, Cmd, Ended};
use super::pool::{PoolSettings, RedisPool};
use super::rate_broker::{RateBroker, RateStore};
use super::stats::{BackendSnapshot, BackendStats};

struct BrokerHandle {
    tx: mpsc::UnboundedSender<Cmd>,
    stats: Arc<Mutex<BackendStats>>,
}

/// Redis-backed resources of one supervisor.
pub(crate) struct SharedSlots {
    brokers: HashMap<ResourceId, BrokerHandle>,
    /// Jobs whose global lease was asked for, by the resource asked.
    wanted: HashMap<JobKey, ResourceId>,
    /// Jobs holding a global lease: its resource and fencing token (`None`: admitted
    /// without a lease under a fail-open policy).
    held: HashMap<JobKey, (ResourceId, Option<u64>)>,
}

impl std::fmt::Debug for SharedSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSlots")
            .field("resources", &self.brokers.len())
            .field("wanted", &self.wanted.len())
            .field("held", &self.held.len())
            .finish()
    }
}

impl SharedSlots {
    /// No shared resources (before the supervisor has started).
    pub(crate) fn none() -> Self {
        Self {
            brokers: HashMap::new(),
            wanted: HashMap::new(),
            held: HashMap::new(),
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
        // Shared rate limits speak the same protocol: a job granted a local slot waits in
        // the core's lease-wait stage until the shared limiter admits it.
        for (resource, r) in &config.resources {
            let Some(rate) = r.rate_limit.as_ref().filter(|l| l.backend == BackendKind::Redis) else {
                continue;
            };
            let store = match RateStore::new(resource, rate) {
                Ok(store) => store,
                Err(e) => {
                    tracing::error!(resource = %resource, error = %e, "cannot use the redis rate limit");
                    continue;
                }
            };
            let (tx, rx) = mpsc::unbounded_channel();
            let stats = Arc::new(Mutex::new(BackendStats::default()));
            let broker = RateBroker::new(
                store,
                rate.on_failure,
                rx,
                Box::new(answer.clone()),
                stats.clone(),
            );
            actix_rt::spawn(broker.run());
            brokers.insert(ResourceId::new(resource.clone()), BrokerHandle { tx, stats });
        }
        Self {
            brokers,
            wanted: HashMap::new(),
            held: HashMap::new(),
        }
    }

    /// The resources whose broker started: the core makes their jobs wait for a global
    /// lease.
    pub(crate) fn resources(&self) -> impl Iterator<Item = &ResourceId> {
        self.brokers.keys()
    }

    fn send(&self, resource: &ResourceId, cmd: Cmd) {
        if let Some(b) = self.brokers.get(resource) {
            let _ = b.tx.send(cmd);
        }
    }

    /// Asks `resource`'s broker for a global lease for `key`. No deadline: the core
    /// decides when the job stops waiting, and this side is told to forget it then.
    pub(crate) fn want(&mut self, key: JobKey, resource: ResourceId) {
        self.send(&resource, Cmd::Want(key));
        self.wanted.insert(key, resource);
    }

    /// The core took the lease the broker granted `key` (`token`: its fencing token;
    /// `None` for a fail-open admission).
    pub(crate) fn hold(&mut self, key: JobKey, token: Option<u64>) {
        if let Some(resource) = self.wanted.remove(&key) {
            self.held.insert(key, (resource, token));
        }
    }

    /// True when `key` holds a global lease (or was admitted fail-open).
    pub(crate) fn holds(&self, key: JobKey) -> bool {
        !self.held.is_empty() && self.held.contains_key(&key)
    }

    /// Returns a lease the core did not take (the job no longer waited for it) to every
    /// broker: the one that granted it returns it, the others have nothing for `key`.
    pub(crate) fn return_orphan(&self, key: JobKey) {
        for b in self.brokers.values() {
            let _ = b.tx.send(Cmd::Return(key));
        }
    }

    /// The fencing token of the lease `key` holds, if any.
    pub(crate) fn token(&self, key: JobKey) -> Option<u64> {
        self.held.get(&key).and_then(|(_, token)| *token)
    }

    /// The broker lost `key`'s lease (it is no longer held).
    pub(crate) fn lost(&mut self, key: JobKey) {
        self.held.remove(&key);
    }

    /// Tells the broker that admitted `key` how it ended (before [`Self::release`]), for
    /// a shared learned rate; nothing when `key` holds no shared admission.
    pub(crate) fn ended(&self, key: JobKey, ended: Ended) {
        if self.held.is_empty() {
            return;
        }
        if let Some((resource, _)) = self.held.get(&key) {
            self.send(resource, Cmd::Ended(key, ended));
        }
    }

    /// Gives back whatever `key` has: its lease if it holds one, its request if it is
    /// still waiting, or a lease the core refused (the job no longer waited for it).
    /// Called when a job stops, parks, is cancelled or skipped, or its lease expired.
    /// True when it was still waiting for a lease.
    pub(crate) fn release(&mut self, key: JobKey) -> bool {
        // Every job's end comes here: with no shared resource there is nothing to look up.
        if self.brokers.is_empty() {
            return false;
        }
        if let Some((resource, _)) = self.held.remove(&key) {
            self.send(&resource, Cmd::Return(key));
        }
        match self.wanted.remove(&key) {
            Some(resource) => {
                // A lease granted meanwhile, still on its way, is returned by the broker too.
                self.send(&resource, Cmd::Forget(key));
                true
            }
            None => false,
        }
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
