//! Quotas shared by every replica: exact sliding windows and cost budgets kept in Redis,
//! checked and recorded for a whole batch of admissions by one atomic script
//! (`quota.lua`) on the Redis server's clock.
//!
//! # Implementation details
//!
//! * One sorted set per quota and subject (a tenant, or everyone) holds admission times
//!   in microseconds of the server's `TIME`; all windows of a quota count the same set,
//!   as the in-process log does. Cost budgets keep one more set of charges (the
//!   estimate, charged at admission, replaced by the reported cost when the job ends,
//!   `settle.lua`). No client clock is ever sent.
//! * A refusal's `retry_after` is exact at the instant the script ran: the blocking
//!   admission (the `limit`-th most recent in the window) or the charge that must leave
//!   the window, plus the window, minus now. It reaches the job one round trip later.
//! * Every key expires after its quota's longest window: a tenant idle that long leaves
//!   nothing in Redis.
//! * Admissions of one call are decided in order, each seeing the ones before it; the
//!   script is one atomic step for all of them, so no other replica's admission can fall
//!   between a check and its record.

use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use weir::{BackendKind, Config, JobId, QuotaRefusal, QuotaScope, TenantId};

use super::conn::Conn;
use super::PoolError;

/// One window or budget of a shared quota, as the script reads it.
struct Rule {
    quota: String,
    scope: QuotaScope,
    cost: bool,
    limit: u64,
    per_us: u64,
    /// How a refusal names it, as the in-process quotas do (`per_user/1m`, `per_user/cost`).
    label: Arc<str>,
}

/// The store's answer for one admission.
#[derive(Debug)]
pub(crate) enum Verdict {
    Admitted,
    Refused(QuotaRefusal),
}

pub(crate) struct QuotaStore {
    conn: Conn,
    prefix: String,
    rules: Vec<Rule>,
    nonce: String,
    script: Script,
    settle: Script,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

impl QuotaStore {
    /// The store of `config`'s Redis-backed quotas; `None` when there are none.
    pub(crate) fn new(config: &Config, timeout: Duration) -> Option<Result<(Self, String), PoolError>> {
        let shared: Vec<_> = config
            .quotas
            .iter()
            .filter(|(_, q)| q.backend == BackendKind::Redis)
            .collect();
        let (_, first) = shared.first()?;
        let mut rules = Vec::new();
        for (name, q) in &shared {
            for w in &q.windows {
                rules.push(Rule {
                    quota: (*name).clone(),
                    scope: q.scope,
                    cost: false,
                    limit: u64::from(w.limit),
                    per_us: micros(w.per),
                    label: Arc::from(format!("{name}/{}", humantime::format_duration(w.per))),
                });
            }
            if let (Some(budget), Some(window)) = (q.cost_budget, q.cost_window) {
                rules.push(Rule {
                    quota: (*name).clone(),
                    scope: q.scope,
                    cost: true,
                    limit: budget,
                    per_us: micros(window),
                    label: Arc::from(format!("{name}/cost")),
                });
            }
        }
        let url = first.url.clone();
        Some(Conn::new(&url, timeout).map(|conn| {
            (
                Self {
                    conn,
                    prefix: first.key_prefix.clone(),
                    rules,
                    nonce: format!("{:016x}", rand::random::<u64>()),
                    script: Script::new(include_str!("quota.lua")),
                    settle: Script::new(include_str!("settle.lua")),
                },
                url,
            )
        }))
    }

    /// The id of a job's admission records: unique across processes (a random per-process
    /// part and the job's id, which only grows).
    fn admission_id(&self, job: JobId) -> String {
        format!("{}:{}", self.nonce, job.0)
    }

    /// Checks and records `batch` (job, tenant, estimate) in one round trip.
    pub(crate) async fn check(&self, batch: &[(JobId, TenantId, u64)]) -> Result<Vec<Verdict>, PoolError> {
        let mut inv = self.script.prepare_invoke();
        inv.arg(&self.prefix).arg(self.rules.len());
        for r in &self.rules {
            let scope = match r.scope {
                QuotaScope::Tenant => "t",
                QuotaScope::Global => "g",
            };
            inv.arg(&r.quota)
                .arg(scope)
                .arg(if r.cost { "c" } else { "w" })
                .arg(r.limit)
                .arg(r.per_us);
        }
        for (job, tenant, estimate) in batch {
            inv.arg(tenant.as_str())
                .arg(*estimate)
                .arg(self.admission_id(*job));
        }
        let reply: Vec<i64> = self.conn.run(inv).await?;
        if reply.len() != batch.len() * 3 {
            return Err(PoolError::Protocol(format!(
                "quota script answered {} values for {} admissions",
                reply.len(),
                batch.len()
            )));
        }
        reply
            .chunks(3)
            .zip(batch)
            .map(|(v, (_, _, estimate))| {
                let rule = |i: i64| {
                    usize::try_from(i - 1)
                        .ok()
                        .and_then(|i| self.rules.get(i))
                        .ok_or_else(|| PoolError::Protocol(format!("quota script named rule {i}")))
                };
                match v[0] {
                    0 => Ok(Verdict::Admitted),
                    1 => Ok(Verdict::Refused(QuotaRefusal::NotUntil {
                        limit: rule(v[2])?.label.clone(),
                        retry_after: Duration::from_micros(u64::try_from(v[1]).unwrap_or(0)),
                    })),
                    2 => {
                        let r = rule(v[2])?;
                        Ok(Verdict::Refused(QuotaRefusal::Never {
                            limit: r.label.clone(),
                            estimate: *estimate,
                            budget: r.limit,
                        }))
                    }
                    other => Err(PoolError::Protocol(format!("quota script status {other}"))),
                }
            })
            .collect()
    }

    /// Replaces the estimates charged for `batch` (job, tenant, estimate, actual) by the
    /// reported costs, one round trip; returns the charges replaced.
    pub(crate) async fn settle(&self, batch: &[(JobId, TenantId, u64, u64)]) -> Result<u64, PoolError> {
        let costs: Vec<&Rule> = self.rules.iter().filter(|r| r.cost).collect();
        if costs.is_empty() || batch.is_empty() {
            return Ok(0);
        }
        let mut inv = self.settle.prepare_invoke();
        inv.arg(&self.prefix).arg(costs.len());
        for r in costs {
            inv.arg(&r.quota).arg(match r.scope {
                QuotaScope::Tenant => "t",
                QuotaScope::Global => "g",
            });
        }
        for (job, tenant, estimate, actual) in batch {
            inv.arg(tenant.as_str())
                .arg(self.admission_id(*job))
                .arg(*estimate)
                .arg(*actual);
        }
        self.conn.run(inv).await
    }
}
