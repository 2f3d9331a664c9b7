//! Tenant and global quotas: count windows and cost budgets, decided at admission with an
//! explicit `now`.
//!
//! # Implementation details
//!
//! Every configured quota of one scope counts the same admissions, so all windows of all
//! tenant-scoped quotas share one [`WindowLog`] per tenant, and all global windows share
//! one global log; cost budgets likewise share one [`CostLog`] per scope. A check is
//! O(windows + budgets) with no allocation unless it refuses (the refusal names the
//! quota). An admission is recorded in the tenant's and the global state together, and
//! only when every quota passes.
//!
//! A tenant's state exists only while it can still matter: once every admission and
//! charge it holds is older than the longest window and it has nothing reserved, the
//! next [`Quotas::sweep`] drops it. A min-heap keyed by "could be dropped at" holds one
//! entry per tracked tenant; an entry that falls due for a tenant that was active since
//! is pushed again at its new time, so the heap never holds more than one entry per
//! tenant and a sweep costs O(log tenants) per entry it looks at.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{QuotaConfig, QuotaScope};
use crate::job::{SkipReason, TenantId};
use crate::limit::budget::{CostLog, CostWait};
use crate::limit::window::WindowLog;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A refusal by a quota: which limit, and when a retry could pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QuotaRefusal {
    /// Passes after `retry_after`, if nothing else is admitted in the same scope meanwhile.
    NotUntil {
        /// The limit that refused: `quota/window` (`per_user/1m`) or `quota/cost`
        /// (shared, so a refusal under a flood allocates nothing).
        limit: Arc<str>,
        /// The earliest time from now at which a retry passes.
        retry_after: Duration,
    },
    /// The job's estimated cost alone is over a budget: it can never pass.
    Never {
        /// The budget that refused (`per_user/cost`).
        limit: Arc<str>,
        /// The job's estimate.
        estimate: u64,
        /// The budget.
        budget: u64,
    },
}

impl From<QuotaRefusal> for SkipReason {
    fn from(r: QuotaRefusal) -> Self {
        match r {
            QuotaRefusal::NotUntil { limit, retry_after } => SkipReason::QuotaExceeded {
                limit: limit.to_string(),
                retry_after,
            },
            QuotaRefusal::Never {
                limit,
                estimate,
                budget,
            } => SkipReason::OverBudget {
                limit: limit.to_string(),
                estimate,
                budget,
            },
        }
    }
}

/// One window's usage at an instant (serialized with these field names, durations as
/// seconds).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WindowUsage {
    /// The quota's name.
    pub quota: String,
    /// Whose admissions it counts.
    pub scope: QuotaScope,
    /// The window's length.
    #[serde(serialize_with = "crate::serde_secs::secs")]
    pub window: Duration,
    /// Admissions inside the window now.
    pub current: u32,
    /// Admissions allowed inside the window.
    pub limit: u32,
    /// `limit - current`.
    pub remaining: u32,
    /// Time until `current` falls to zero (the newest admission leaves the window).
    #[serde(serialize_with = "crate::serde_secs::secs")]
    pub reset: Duration,
}

/// One cost budget's usage at an instant (serialized with these field names, durations
/// as seconds).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CostUsage {
    /// The quota's name.
    pub quota: String,
    /// Whose cost it counts.
    pub scope: QuotaScope,
    /// The budget's window.
    #[serde(serialize_with = "crate::serde_secs::secs")]
    pub window: Duration,
    /// Charged (actual costs of ended jobs) inside the window.
    pub spent: u64,
    /// Estimates of admitted jobs that have not ended.
    pub reserved: u64,
    /// The budget.
    pub budget: u64,
    /// `budget - spent - reserved`, at least zero.
    pub remaining: u64,
}

/// A tenant's usage of every quota that applies to it (its own and the global ones);
/// serialized with these field names, durations as seconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct UsageSnapshot {
    /// When it was taken (time since the runtime started).
    #[serde(serialize_with = "crate::serde_secs::secs")]
    pub at: Duration,
    /// Every window, tenant-scoped first, in quota-name order.
    pub windows: Vec<WindowUsage>,
    /// Every cost budget, tenant-scoped first, in quota-name order.
    pub costs: Vec<CostUsage>,
}

#[derive(Debug)]
struct Window {
    quota: Arc<str>,
    label: Arc<str>,
    limit: u32,
    per: u64,
}

#[derive(Debug)]
struct Budget {
    quota: Arc<str>,
    label: Arc<str>,
    budget: u64,
    window: u64,
}

/// The compiled quotas of one scope.
#[derive(Debug, Default)]
struct Rules {
    windows: Vec<Window>,
    budgets: Vec<Budget>,
    /// Admissions the log keeps: the largest limit.
    keep: usize,
    /// The longest count window.
    longest: u64,
    /// The longest cost window.
    longest_cost: u64,
}

impl Rules {
    fn compile<'a>(quotas: impl Iterator<Item = (&'a String, &'a QuotaConfig)>) -> Self {
        let mut rules = Rules::default();
        for (name, q) in quotas {
            let quota: Arc<str> = Arc::from(name.as_str());
            for w in &q.windows {
                let label = format!("{name}/{}", humantime::format_duration(w.per));
                rules.windows.push(Window {
                    quota: quota.clone(),
                    label: Arc::from(label),
                    limit: w.limit,
                    per: nanos(w.per),
                });
            }
            if let (Some(budget), Some(window)) = (q.cost_budget, q.cost_window) {
                rules.budgets.push(Budget {
                    quota: quota.clone(),
                    label: Arc::from(format!("{name}/cost")),
                    budget,
                    window: nanos(window),
                });
            }
        }
        rules.keep = rules.windows.iter().map(|w| w.limit as usize).max().unwrap_or(0);
        rules.longest = rules.windows.iter().map(|w| w.per).max().unwrap_or(0);
        rules.longest_cost = rules.budgets.iter().map(|b| b.window).max().unwrap_or(0);
        rules
    }

    fn is_empty(&self) -> bool {
        self.windows.is_empty() && self.budgets.is_empty()
    }

    /// The latest retry time among the limits that refuse (a retry passes only when all
    /// do), or the first budget the estimate can never fit.
    fn check(&self, usage: &Usage, estimate: u64, now: u64) -> Result<(), QuotaRefusal> {
        let mut worst: Option<(u64, &Arc<str>)> = None;
        for w in &self.windows {
            if let Some(wait) = usage.log.wait(w.limit, w.per, now) {
                if later_than(&worst, wait) {
                    worst = Some((wait, &w.label));
                }
            }
        }
        for b in &self.budgets {
            match usage.cost.wait(b.budget, b.window, estimate, now) {
                Some(CostWait::Never) => {
                    return Err(QuotaRefusal::Never {
                        limit: b.label.clone(),
                        estimate,
                        budget: b.budget,
                    })
                }
                Some(CostWait::For(wait)) if later_than(&worst, wait) => worst = Some((wait, &b.label)),
                None | Some(CostWait::For(_)) => {}
            }
        }
        match worst {
            None => Ok(()),
            Some((wait, label)) => Err(QuotaRefusal::NotUntil {
                limit: label.clone(),
                retry_after: Duration::from_nanos(wait),
            }),
        }
    }

    fn record(&self, usage: &mut Usage, estimate: u64, now: u64) {
        if !self.windows.is_empty() {
            usage.log.record(now, self.keep, self.longest);
        }
        if !self.budgets.is_empty() {
            usage.cost.reserve(estimate);
        }
    }

    fn settle(&self, usage: &mut Usage, estimate: u64, actual: u64, now: u64) {
        if !self.budgets.is_empty() {
            usage.cost.settle(estimate, actual, now, self.longest_cost);
        }
    }

    fn prune(&self, usage: &mut Usage, now: u64) {
        usage.log.prune(now, self.keep, self.longest);
        usage.cost.prune(now, self.longest_cost);
    }

    /// When `usage` could next be dropped, if nothing happens to it meanwhile.
    fn idle_at(&self, usage: &Usage, now: u64) -> u64 {
        let log = usage.log.last().map_or(0, |t| t.saturating_add(self.longest));
        let cost = usage
            .cost
            .last()
            .map_or(0, |t| t.saturating_add(self.longest_cost));
        // Reservations end only when their jobs do: look again a longest window later.
        let reserved = if usage.cost.reserved > 0 {
            now.saturating_add(self.longest.max(self.longest_cost).max(1))
        } else {
            0
        };
        log.max(cost).max(reserved).max(now.saturating_add(1))
    }

    fn snapshot(&self, usage: Option<&Usage>, scope: QuotaScope, now: u64, out: &mut UsageSnapshot) {
        let empty = Usage::default();
        let usage = usage.unwrap_or(&empty);
        for w in &self.windows {
            let current = usage.log.count(w.per, now).min(w.limit as usize) as u32;
            out.windows.push(WindowUsage {
                quota: w.quota.to_string(),
                scope,
                window: Duration::from_nanos(w.per),
                current,
                limit: w.limit,
                remaining: w.limit - current,
                reset: Duration::from_nanos(if current == 0 {
                    0
                } else {
                    usage.log.until_empty(w.per, now)
                }),
            });
        }
        for b in &self.budgets {
            let spent = usage.cost.spent(b.window, now);
            let reserved = usage.cost.reserved;
            let clamp = |v: u128| u64::try_from(v).unwrap_or(u64::MAX);
            out.costs.push(CostUsage {
                quota: b.quota.to_string(),
                scope,
                window: Duration::from_nanos(b.window),
                spent: clamp(spent),
                reserved: clamp(reserved),
                budget: b.budget,
                remaining: clamp(u128::from(b.budget).saturating_sub(spent + reserved)),
            });
        }
    }
}

/// True when `wait` is later than the worst wait found so far.
fn later_than(worst: &Option<(u64, &Arc<str>)>, wait: u64) -> bool {
    match worst {
        None => true,
        Some((w, _)) => *w < wait,
    }
}

/// What one scope has used.
#[derive(Debug, Default, Clone)]
struct Usage {
    log: WindowLog,
    cost: CostLog,
}

impl Usage {
    fn is_idle(&self) -> bool {
        self.log.is_empty() && self.cost.is_empty()
    }
}

/// The quotas of one runtime and what every tenant has used of them.
///
/// ```
/// use std::time::Duration;
/// use weir::{Config, Quotas, QuotaRefusal, TenantId};
///
/// let config = Config::from_toml_str(
///     "[quotas.per_user]\nwindows = [{ limit = 10, per = \"1m\" }]\n",
/// ).unwrap();
/// let mut quotas = Quotas::new(&config.quotas);
/// let alice = TenantId::new("alice");
/// let mut now = Duration::ZERO;
/// for _ in 0..10 {
///     assert!(quotas.admit(&alice, 0, now).is_ok());
///     now += Duration::from_secs(1);
/// }
/// // The eleventh inside a minute is refused until the first leaves the window.
/// let refusal = quotas.admit(&alice, 0, now).unwrap_err();
/// assert_eq!(refusal, QuotaRefusal::NotUntil {
///     limit: "per_user/1m".into(),
///     retry_after: Duration::from_secs(50),
/// });
/// assert!(quotas.admit(&alice, 0, Duration::from_secs(60)).is_ok());
/// ```
#[derive(Debug, Default)]
pub struct Quotas {
    tenant_rules: Rules,
    global_rules: Rules,
    tenants: crate::hash::FastMap<TenantId, Usage>,
    global: Usage,
    /// `(could be dropped at, tenant)`, one entry per tracked tenant.
    idle: BinaryHeap<Reverse<(u64, TenantId)>>,
    /// Admissions so far (each passed every quota that applies to it).
    admitted: u64,
}

impl Quotas {
    /// Compiles the configured quotas (validated by [`Config::validate`](crate::Config::validate)).
    pub fn new(config: &BTreeMap<String, QuotaConfig>) -> Self {
        let of = |scope| config.iter().filter(move |(_, q)| q.scope == scope);
        Self {
            tenant_rules: Rules::compile(of(QuotaScope::Tenant)),
            global_rules: Rules::compile(of(QuotaScope::Global)),
            ..Self::default()
        }
    }

    /// Takes new quotas while it runs, keeping what every tenant (and the global scope)
    /// has used: the admissions and costs in the windows stay, and count against the new
    /// limits. The log held only what the old quotas needed (their largest limit of
    /// admissions, over their longest window), so a raised limit or a longer window
    /// counts at most that much of the past until the log fills again.
    pub fn reconfigure(&mut self, config: &BTreeMap<String, QuotaConfig>) {
        let fresh = Self::new(config);
        self.tenant_rules = fresh.tenant_rules;
        self.global_rules = fresh.global_rules;
    }

    /// True when no quota is configured (every check passes and nothing is tracked).
    pub fn is_empty(&self) -> bool {
        self.tenant_rules.is_empty() && self.global_rules.is_empty()
    }

    /// Checks without recording: would an admission of `tenant` with `estimate` pass now?
    pub fn check(&self, tenant: &TenantId, estimate: u64, now: Duration) -> Result<(), QuotaRefusal> {
        let now = nanos(now);
        let empty = Usage::default();
        let usage = self.tenants.get(tenant).unwrap_or(&empty);
        let mine = self.tenant_rules.check(usage, estimate, now);
        let all = self.global_rules.check(&self.global, estimate, now);
        match (mine, all) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(e @ QuotaRefusal::Never { .. }), _) | (_, Err(e @ QuotaRefusal::Never { .. })) => Err(e),
            (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
            (Err(a), Err(b)) => Err(later(a, b)),
        }
    }

    /// Admits one job of `tenant` with an estimated cost: counts it in every window and
    /// reserves the estimate in every budget, or refuses and records nothing.
    pub fn admit(&mut self, tenant: &TenantId, estimate: u64, now: Duration) -> Result<(), QuotaRefusal> {
        if self.is_empty() {
            return Ok(());
        }
        self.check(tenant, estimate, now)?;
        self.record(tenant, estimate, now);
        Ok(())
    }

    /// Counts one admission of `tenant` in every window and reserves `estimate` in every
    /// budget, without checking (for a limit that was checked elsewhere: the process's
    /// own copy of a quota shared through Redis, which must know what this process
    /// admitted if it is to stand in while Redis is down).
    pub fn record(&mut self, tenant: &TenantId, estimate: u64, now: Duration) {
        if self.is_empty() {
            return;
        }
        let t = nanos(now);
        self.global_rules.record(&mut self.global, estimate, t);
        if !self.tenant_rules.is_empty() {
            let usage = match self.tenants.get_mut(tenant) {
                Some(usage) => usage,
                None => {
                    let at = t.saturating_add(self.tenant_rules.longest.max(self.tenant_rules.longest_cost));
                    self.idle.push(Reverse((at, tenant.clone())));
                    self.tenants.entry(tenant.clone()).or_default()
                }
            };
            self.tenant_rules.record(usage, estimate, t);
        }
        self.admitted += 1;
    }

    /// Jobs admitted so far while any quota is configured (each counted in every window
    /// and budget that applies to it); refusals are reported one by one as skips.
    pub fn admitted(&self) -> u64 {
        self.admitted
    }

    /// A job admitted with `estimate` ended having cost `actual` (the estimate when it
    /// ran and did not say, 0 when it never ran): its reservation becomes a charge.
    pub fn settle(&mut self, tenant: &TenantId, estimate: u64, actual: u64, now: Duration) {
        let t = nanos(now);
        self.global_rules.settle(&mut self.global, estimate, actual, t);
        if let Some(usage) = self.tenants.get_mut(tenant) {
            self.tenant_rules.settle(usage, estimate, actual, t);
        }
    }

    /// Drops the state of tenants whose windows have all passed; call now and then (the
    /// scheduler calls it on every poll). Costs O(log tenants) per tenant it looks at.
    pub fn sweep(&mut self, now: Duration) {
        let t = nanos(now);
        self.global_rules.prune(&mut self.global, t);
        while let Some(Reverse((at, _))) = self.idle.peek() {
            if *at > t {
                break;
            }
            let Some(Reverse((_, tenant))) = self.idle.pop() else {
                break;
            };
            let Some(usage) = self.tenants.get_mut(&tenant) else {
                continue;
            };
            self.tenant_rules.prune(usage, t);
            if usage.is_idle() {
                self.tenants.remove(&tenant);
            } else {
                let again = self.tenant_rules.idle_at(usage, t);
                self.idle.push(Reverse((again, tenant)));
            }
        }
    }

    /// Tenants whose usage is held in memory.
    pub fn tracked_tenants(&self) -> usize {
        self.tenants.len()
    }

    /// `tenant`'s usage of its own quotas and of the global ones at `now`.
    pub fn usage(&self, tenant: &TenantId, now: Duration) -> UsageSnapshot {
        let t = nanos(now);
        let mut out = UsageSnapshot {
            at: now,
            ..UsageSnapshot::default()
        };
        self.tenant_rules
            .snapshot(self.tenants.get(tenant), QuotaScope::Tenant, t, &mut out);
        self.global_rules
            .snapshot(Some(&self.global), QuotaScope::Global, t, &mut out);
        out
    }
}

fn later(a: QuotaRefusal, b: QuotaRefusal) -> QuotaRefusal {
    match (&a, &b) {
        (QuotaRefusal::NotUntil { retry_after: x, .. }, QuotaRefusal::NotUntil { retry_after: y, .. })
            if y > x =>
        {
            b
        }
        _ => a,
    }
}

/// What the scheduler keeps per job for its quotas.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct JobQuota {
    /// The declared estimate.
    pub(crate) estimate: u64,
    /// The cost the job reported, when `reported` (see [`JobQuota::actual`]). Not an
    /// `Option<u64>`: that is 16 bytes, and with the flag among the other flags every
    /// job's core entry is 8 bytes smaller.
    pub(crate) reported_cost: u64,
    /// The job reported its cost.
    pub(crate) reported: bool,
    /// The quotas counted the job and reserved its estimate.
    pub(crate) admitted: bool,
    /// Wait for a refusing quota instead of ending skipped...
    pub(crate) wait: bool,
    /// ...as long as the retry time is no later than this.
    pub(crate) deadline: Duration,
    /// Redis charged its estimate to the shared cost budgets (admitted by the shared
    /// store, not failed open): a different reported cost is settled there too.
    pub(crate) shared: bool,
    /// A release timer at `deadline` bounds its waits for the shared store (set once: the
    /// deadline never moves, and a job may ask again after a refusal).
    pub(crate) deadline_timer: bool,
}

impl JobQuota {
    /// The cost the job reported, if it did.
    pub(crate) fn actual(&self) -> Option<u64> {
        self.reported.then_some(self.reported_cost)
    }

    /// Records the cost the job reported (the last report counts).
    pub(crate) fn report(&mut self, cost: u64) {
        self.reported_cost = cost;
        self.reported = true;
    }
}

impl Quotas {
    /// A job that never ran ends: its reservation is released and nothing is charged.
    pub fn release(&mut self, tenant: &TenantId, estimate: u64) {
        if estimate == 0 {
            return;
        }
        self.global.cost.reserved = self.global.cost.reserved.saturating_sub(u128::from(estimate));
        if let Some(usage) = self.tenants.get_mut(tenant) {
            usage.cost.reserved = usage.cost.reserved.saturating_sub(u128::from(estimate));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn quotas(limit: u32) -> BTreeMap<String, QuotaConfig> {
        let text = format!("[quotas.per_user]\nwindows = [{{ limit = {limit}, per = \"1m\" }}]\n");
        Config::from_toml_str(&text).unwrap().quotas
    }

    /// Issue 17: a tenant's admissions stay in its window across a change of limit.
    #[test]
    fn reconfigure_keeps_what_each_tenant_used() {
        let mut q = Quotas::new(&quotas(2));
        let t = TenantId::new("t");
        let now = Duration::from_secs(1);
        q.admit(&t, 0, now).unwrap();
        q.admit(&t, 0, now).unwrap();
        assert!(q.admit(&t, 0, now).is_err());
        q.reconfigure(&quotas(3));
        q.admit(&t, 0, now).unwrap();
        assert!(
            q.admit(&t, 0, now).is_err(),
            "the two earlier admissions still count"
        );
        q.reconfigure(&quotas(1));
        assert!(q.admit(&t, 0, now).is_err());
        assert_eq!(q.admitted(), 3);
        assert!(
            q.admit(&t, 0, Duration::from_secs(61)).is_ok(),
            "the window passes as before"
        );
    }
}
