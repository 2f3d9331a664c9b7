//! The shared slot pool of one resource, as three atomic Lua scripts on one Redis.
//!
//! # Implementation details
//!
//! * Keys (one hash tag per resource, so a Redis Cluster keeps them on one shard):
//!   `{prefix:resource}:leases`, a sorted set of lease id -> deadline in milliseconds on
//!   the **Redis server's** clock (`TIME`), and `{prefix:resource}:fence`, the counter of
//!   fencing tokens. No client clock is ever sent: the scripts read `TIME` themselves, so
//!   processes whose clocks disagree see the same leases.
//! * `acquire` removes expired leases (a dead holder's slots come back at the next
//!   acquire after its deadline), then adds up to `cap - held` of the caller's lease ids.
//!   The caller chooses the ids before the call, so an acquire whose answer is lost (the
//!   future dropped, a timeout, a broken connection) can be undone: its ids are released
//!   by the next call on this pool. Nothing of it stays held beyond that, and at worst
//!   (the process dies first) until its deadline.
//! * `renew` extends a lease only while its deadline is in the future; an expired lease
//!   is removed and reported lost, never taken again (another holder may have its slot).
//! * `release` is idempotent and says whether the lease was still held, had expired, or
//!   was not held at all.
//!
//! Round trips: one `acquire` grants up to `n` leases, one `release` returns any number,
//! one `renew` extends any number. A grant therefore costs `1/a + 1/r` round trips for
//! batches of `a` grants and `r` releases, plus one renewal batch per
//! `renewal_interval` for all leases held at that time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;

/// Names one lease in the shared pool; chosen by this process, unique across processes.
pub type LeaseId = String;

/// A lease granted by the shared pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The lease's id (what renew and release name).
    pub id: LeaseId,
    /// The fencing token: larger than every token granted before it on this pool. A
    /// downstream that records the largest token it has seen can refuse a holder whose
    /// lease has since expired.
    pub token: u64,
}

/// What one `acquire` call did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acquired {
    /// Leases granted, at most the number asked for; fewer when the pool is full.
    pub leases: Vec<Lease>,
    /// Expired leases (of holders that stopped renewing) removed by this call.
    pub reclaimed: u64,
}

/// What releasing one lease found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Released {
    /// It was held until now.
    Held,
    /// Its deadline had passed: the holder outlived its lease (another process may have
    /// had the slot meanwhile).
    Expired,
    /// It was not in the pool: released before, or expired and reclaimed by an acquire.
    NotHeld,
}

/// Why a call to the shared pool failed. The call may or may not have run on the server;
/// the pool treats it as not run and undoes any acquire it made.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Redis answered with an error, or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within the operation timeout.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The script answered something it never answers (another program wrote the keys).
    #[error("unexpected answer from the pool script: {0}")]
    Protocol(String),
}

/// Settings of one shared pool.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// `redis://host:port/db`.
    pub url: String,
    /// Prefix of the keys.
    pub key_prefix: String,
    /// The resource whose slots the pool holds.
    pub resource: String,
    /// Slots shared by every process (each process must configure the same cap).
    pub cap: u32,
    /// Lease lifetime without renewal, on the server's clock.
    pub lease_ttl: Duration,
    /// How long one call may take before it is abandoned (and any acquire undone).
    pub op_timeout: Duration,
}

/// One resource's slot pool shared through Redis. Cheap calls, safe to use from many
/// tasks: the connection is multiplexed and reconnects with backoff.
pub struct RedisPool {
    settings: PoolSettings,
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    leases_key: String,
    fence_key: String,
    ttl_ms: u64,
    id_prefix: String,
    next_id: AtomicU64,
    /// Ids of acquires whose answer was lost: released by the next call.
    orphans: Mutex<Vec<LeaseId>>,
    acquire: Script,
    renew: Script,
    release: Script,
    held: Script,
}

impl std::fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPool")
            .field("leases_key", &self.leases_key)
            .field("cap", &self.settings.cap)
            .finish_non_exhaustive()
    }
}

/// Puts the ids of an acquire back for release unless the acquire's answer was read.
struct Undo<'a> {
    pool: &'a RedisPool,
    ids: Option<Vec<LeaseId>>,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if let Some(ids) = self.ids.take() {
            self.pool
                .orphans
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(ids);
        }
    }
}

const HELD_LUA: &str = "local t = redis.call('TIME')\n\
    local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n\
    return redis.call('ZCOUNT', KEYS[1], '(' .. now_ms, '+inf')";

impl RedisPool {
    /// A pool for `settings`; connects lazily (the first call connects), so a pool can be
    /// made while Redis is down. Fails only on a malformed URL.
    pub fn new(settings: PoolSettings) -> Result<Self, PoolError> {
        let client = redis::Client::open(settings.url.as_str())?;
        let tag = format!("{{{}:{}}}", settings.key_prefix, settings.resource);
        let ttl_ms = u64::try_from(settings.lease_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Ok(Self {
            client,
            conn: tokio::sync::Mutex::new(None),
            leases_key: format!("{tag}:leases"),
            fence_key: format!("{tag}:fence"),
            ttl_ms,
            id_prefix: format!("{:016x}", rand::random::<u64>()),
            next_id: AtomicU64::new(0),
            orphans: Mutex::new(Vec::new()),
            acquire: Script::new(include_str!("acquire.lua")),
            renew: Script::new(include_str!("renew.lua")),
            release: Script::new(include_str!("release.lua")),
            held: Script::new(HELD_LUA),
            settings,
        })
    }

    /// The settings this pool was made with.
    pub fn settings(&self) -> &PoolSettings {
        &self.settings
    }

    /// The sorted set of leases (for inspection and tests).
    pub fn leases_key(&self) -> &str {
        &self.leases_key
    }

    async fn connection(&self) -> Result<ConnectionManager, PoolError> {
        let mut guard = self.conn.lock().await;
        if let Some(conn) = guard.as_ref() {
            return Ok(conn.clone());
        }
        let timeout = self.settings.op_timeout;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let conn = tokio::time::timeout(
            timeout,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| PoolError::Timeout(timeout))??;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    async fn run<T: redis::FromRedisValue>(&self, inv: redis::ScriptInvocation<'_>) -> Result<T, PoolError> {
        let timeout = self.settings.op_timeout;
        let mut conn = self.connection().await?;
        tokio::time::timeout(timeout, inv.invoke_async(&mut conn))
            .await
            .map_err(|_| PoolError::Timeout(timeout))?
            .map_err(PoolError::from)
    }

    fn fresh_ids(&self, n: usize) -> Vec<LeaseId> {
        (0..n)
            .map(|_| {
                let i = self.next_id.fetch_add(1, Ordering::Relaxed);
                format!("{}-{i}", self.id_prefix)
            })
            .collect()
    }

    /// Releases the ids of acquires whose answers were lost.
    async fn flush_orphans(&self) -> Result<(), PoolError> {
        let orphans = std::mem::take(&mut *self.orphans.lock().unwrap_or_else(|e| e.into_inner()));
        if orphans.is_empty() {
            return Ok(());
        }
        let mut undo = Undo {
            pool: self,
            ids: Some(orphans.clone()),
        };
        self.release_now(&orphans).await?;
        undo.ids = None;
        Ok(())
    }

    /// Asks for up to `n` leases in one round trip. A full pool grants fewer (or none);
    /// that is not an error. If the call fails, is timed out or its future is dropped,
    /// whatever it may have been granted is released by the next call on this pool.
    pub async fn acquire(&self, n: usize) -> Result<Acquired, PoolError> {
        self.flush_orphans().await?;
        if n == 0 {
            return Ok(Acquired::default());
        }
        let ids = self.fresh_ids(n);
        let mut undo = Undo {
            pool: self,
            ids: Some(ids.clone()),
        };
        let mut inv = self.acquire.prepare_invoke();
        inv.key(&self.leases_key)
            .key(&self.fence_key)
            .arg(self.settings.cap)
            .arg(self.ttl_ms)
            .arg(&ids);
        let reply: Vec<redis::Value> = self.run(inv).await?;
        let parsed = parse_acquired(&reply);
        // The answer was read: the server's decision is known, nothing to undo.
        undo.ids = None;
        let (reclaimed, leases) = parsed?;
        Ok(Acquired { leases, reclaimed })
    }

    /// Extends each lease that is still held by `lease_ttl` from now (server clock);
    /// `false` for a lease that was lost (its deadline had passed). One round trip.
    pub async fn renew(&self, ids: &[LeaseId]) -> Result<Vec<bool>, PoolError> {
        self.flush_orphans().await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.renew.prepare_invoke();
        inv.key(&self.leases_key).arg(self.ttl_ms).arg(ids);
        let reply: Vec<i64> = self.run(inv).await?;
        Ok(reply.into_iter().map(|v| v == 1).collect())
    }

    /// Returns leases, one round trip; idempotent.
    pub async fn release(&self, ids: &[LeaseId]) -> Result<Vec<Released>, PoolError> {
        self.flush_orphans().await?;
        self.release_now(ids).await
    }

    async fn release_now(&self, ids: &[LeaseId]) -> Result<Vec<Released>, PoolError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = self.release.prepare_invoke();
        inv.key(&self.leases_key).arg(ids);
        let reply: Vec<i64> = self.run(inv).await?;
        reply
            .into_iter()
            .map(|v| match v {
                0 => Ok(Released::Held),
                1 => Ok(Released::Expired),
                2 => Ok(Released::NotHeld),
                other => Err(PoolError::Protocol(format!("release answered {other}"))),
            })
            .collect()
    }

    /// Leases held now across every process (deadline in the future on the server's
    /// clock); releases lost acquires first.
    pub async fn held(&self) -> Result<u64, PoolError> {
        self.flush_orphans().await?;
        let mut inv = self.held.prepare_invoke();
        inv.key(&self.leases_key);
        self.run(inv).await
    }
}

fn parse_acquired(reply: &[redis::Value]) -> Result<(u64, Vec<Lease>), PoolError> {
    let int = |v: &redis::Value| match v {
        redis::Value::Int(i) => u64::try_from(*i).map_err(|_| PoolError::Protocol(format!("negative {i}"))),
        other => Err(PoolError::Protocol(format!("expected an integer, got {other:?}"))),
    };
    let (first, rest) = reply
        .split_first()
        .ok_or_else(|| PoolError::Protocol("empty acquire answer".into()))?;
    let reclaimed = int(first)?;
    if rest.len() % 2 != 0 {
        return Err(PoolError::Protocol("odd acquire answer".into()));
    }
    let (ids, tokens) = rest.split_at(rest.len() / 2);
    let leases = ids
        .iter()
        .zip(tokens)
        .map(|(id, token)| {
            let id = redis::from_redis_value_ref::<String>(id).map_err(redis::RedisError::from)?;
            Ok(Lease {
                id,
                token: int(token)?,
            })
        })
        .collect::<Result<Vec<_>, PoolError>>()?;
    Ok((reclaimed, leases))
}
