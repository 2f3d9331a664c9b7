//! Per-tenant fairness accounting of one resource, kept by the scheduler: each tenant's
//! share of the slot-time granted while it was backlogged (for Jain's index) and its
//! wait histogram (for the worst tenant's p99 wait).
//!
//! # Implementation details
//!
//! **What a tenant is owed.** Every grant of `c` cost units is owed to the tenants
//! backlogged on the resource at that moment (the granted one included), in proportion
//! to their weights: tenant x is owed `c w_x / W` (`W` the backlogged tenants' total
//! weight), the fluid fair share of that slot-time. Charging every backlogged tenant at
//! every grant would cost O(tenants); instead a running sum `owed_per_weight` grows by
//! `c / W` per grant, and a tenant's backlog period is owed `w_x` times the growth of that
//! sum over the period (the virtual-time trick of fair-queueing schedulers), O(1) per
//! event.
//!
//! **Jain's index.** With `r_x` the units x received and `e_x` the units it was owed,
//! its service ratio is `r_x / e_x` (1 when it got exactly its share). The index is
//! Jain's index of the ratios, each tenant counted in proportion to what it was owed:
//! `J = (sum r)^2 / (sum e x sum r^2 / e) = 1 / (1 + Var_e(ratio))`, in `(0, 1]`.
//! A tenant starved while backlogged is owed more and more while its ratio falls, so
//! starvation drives `J` down; unweighted, a tenant owed a fraction of one job would
//! swing the index on the granularity of a single grant.
//!
//! **Bounded memory.** A tenant's entry lives while it has jobs waiting for or holding a
//! slot of the resource. When it has none, the entry is folded into running sums (its
//! `r`, `e`, `r^2 / e` and its p99 wait against the worst so far) and dropped, so memory
//! follows the tenants active now, not every tenant ever seen. So a tenant's p99 is over
//! one *activity period* (first job until it has none left), and a tenant that comes
//! and goes counts as one tenant per period. An entry allocates nothing for its waits
//! until the tenant has more than a few in the period (`tenant_waits`), so a tenant with
//! one job costs its map entry, not a histogram.
//!
//! Units are cost units: with costs proportional to service time, that is slot-time.

use crate::hash::FastMap;
use std::time::Duration;

use crate::job::TenantId;
use crate::tenant_waits::TenantWaits;

#[derive(Debug)]
struct TenantEntry {
    weight: f64,
    waiting: u32,
    holding: u32,
    /// `owed_per_weight` when the current backlog period began.
    backlog_mark: f64,
    owed: f64,
    received: f64,
    /// Its waits for a slot: inline while few, a histogram once many.
    waits: TenantWaits,
}

impl TenantEntry {
    /// Neither waiting nor holding a slot: its entry can be folded and dropped.
    fn is_idle(&self) -> bool {
        self.waiting == 0 && self.holding == 0
    }
}

/// One job of the tenant stops waiting: when it was the last, its backlog period ends and
/// what it was owed over the period is added up.
fn leave_queue(entry: &mut TenantEntry, owed_per_weight: f64, backlogged_weight: &mut f64) {
    entry.waiting = entry.waiting.saturating_sub(1);
    if entry.waiting == 0 {
        entry.owed += entry.weight * (owed_per_weight - entry.backlog_mark);
        *backlogged_weight = (*backlogged_weight - entry.weight).max(0.0);
    }
}

/// Fairness accounting of one resource (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct TenantLedger {
    owed_per_weight: f64,
    backlogged_weight: f64,
    tenants: FastMap<TenantId, TenantEntry>,
    /// Sums over dropped tenants' activity periods: received, owed, received^2 / owed.
    folded: (f64, f64, f64),
    worst_folded: Option<(Duration, TenantId)>,
}

/// Fairness figures of one resource, in [`crate::ResourceSnapshot::fairness`].
///
/// Serialized with these field names; `worst_p99_wait` as `{"tenant": .., "wait": secs}`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct TenantFairness {
    /// Jain's index over the tenants' slot-time while backlogged, weighted by what each
    /// was owed (see the `tenant_ledger` module docs: 1.0 is a perfectly fair share);
    /// `None` before the first grant.
    pub jain_index: Option<f64>,
    /// The tenant with the largest p99 wait for a slot over one activity period, and
    /// that wait (2 significant figures).
    #[serde(serialize_with = "crate::serde_secs::tenant_wait")]
    pub worst_p99_wait: Option<(TenantId, Duration)>,
    /// Tenants with jobs waiting for or holding a slot now (the entries kept).
    pub active_tenants: usize,
}

/// `jain_index` is never NaN (it is computed only when something was owed), so equality
/// is an equivalence.
impl Eq for TenantFairness {}

impl TenantLedger {
    /// A job of `tenant` starts waiting for a slot.
    pub(crate) fn enqueued(&mut self, tenant: &TenantId, weight: u32) {
        let mark = self.owed_per_weight;
        let entry = self.tenants.entry(tenant.clone()).or_insert_with(|| TenantEntry {
            weight: f64::from(weight.max(1)),
            waiting: 0,
            holding: 0,
            backlog_mark: mark,
            owed: 0.0,
            received: 0.0,
            // Nothing allocated until the tenant has more than a few waits.
            waits: TenantWaits::default(),
        });
        entry.waiting += 1;
        if entry.waiting == 1 {
            entry.backlog_mark = mark;
            self.backlogged_weight += entry.weight;
        }
    }

    /// Sets every tracked tenant's weight to `weight_of(tenant)` (a live reconfiguration).
    /// A backlogged tenant closes what it was owed so far at its old weight and goes on
    /// at the new one, so the figures stay those of the weights in force at each moment.
    pub(crate) fn set_weights(&mut self, mut weight_of: impl FnMut(&TenantId) -> u32) {
        for (tenant, entry) in self.tenants.iter_mut() {
            let weight = f64::from(weight_of(tenant).max(1));
            if entry.waiting > 0 {
                entry.owed += entry.weight * (self.owed_per_weight - entry.backlog_mark);
                entry.backlog_mark = self.owed_per_weight;
                self.backlogged_weight = (self.backlogged_weight - entry.weight + weight).max(0.0);
            }
            entry.weight = weight;
        }
    }

    /// A waiting job of `tenant` is granted a slot after waiting `waited`.
    pub(crate) fn granted(&mut self, tenant: &TenantId, cost: u32, waited: Duration) {
        if self.backlogged_weight > 0.0 {
            self.owed_per_weight += f64::from(cost) / self.backlogged_weight;
        }
        // One lookup per call: this runs for every job (issue 9).
        let Some(entry) = self.tenants.get_mut(tenant) else {
            return;
        };
        entry.received += f64::from(cost);
        entry.waits.record(waited);
        entry.holding += 1;
        leave_queue(entry, self.owed_per_weight, &mut self.backlogged_weight);
        // It holds a slot now, so it is not idle.
    }

    /// A waiting job of `tenant` stops waiting (skipped, cancelled, requeued).
    pub(crate) fn unqueued(&mut self, tenant: &TenantId) {
        let Some(entry) = self.tenants.get_mut(tenant) else {
            return;
        };
        leave_queue(entry, self.owed_per_weight, &mut self.backlogged_weight);
        if entry.is_idle() {
            self.drop_tenant(tenant);
        }
    }

    /// A job of `tenant` gives its slot back.
    pub(crate) fn released(&mut self, tenant: &TenantId) {
        let Some(entry) = self.tenants.get_mut(tenant) else {
            return;
        };
        entry.holding = entry.holding.saturating_sub(1);
        if entry.is_idle() {
            self.drop_tenant(tenant);
        }
    }

    /// Folds an idle tenant's figures into the resource's and forgets the tenant.
    fn drop_tenant(&mut self, tenant: &TenantId) {
        let Some(entry) = self.tenants.remove(tenant) else {
            return;
        };
        if entry.owed > 0.0 {
            let (r, e, spread) = &mut self.folded;
            *r += entry.received;
            *e += entry.owed;
            *spread += entry.received * entry.received / entry.owed;
        }
        if let Some(p99) = entry.waits.p99() {
            if self.worst_folded.as_ref().is_none_or(|(w, _)| p99 > *w) {
                self.worst_folded = Some((p99, tenant.clone()));
            }
        }
    }

    /// The figures now (live tenants count with what they were owed so far).
    pub(crate) fn snapshot(&self) -> TenantFairness {
        let (mut r, mut e, mut spread) = self.folded;
        let mut worst = self.worst_folded.clone();
        for (tenant, entry) in &self.tenants {
            let pending = if entry.waiting > 0 {
                entry.weight * (self.owed_per_weight - entry.backlog_mark)
            } else {
                0.0
            };
            let owed = entry.owed + pending;
            if owed > 0.0 {
                r += entry.received;
                e += owed;
                spread += entry.received * entry.received / owed;
            }
            if let Some(p99) = entry.waits.p99() {
                let worse = worst
                    .as_ref()
                    .is_none_or(|(w, t)| p99 > *w || (p99 == *w && tenant < t));
                if worse {
                    worst = Some((p99, tenant.clone()));
                }
            }
        }
        TenantFairness {
            jain_index: (e > 0.0 && spread > 0.0).then(|| (r * r / (e * spread)).min(1.0)),
            worst_p99_wait: worst.map(|(d, t)| (t, d)),
            active_tenants: self.tenants.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str) -> TenantId {
        TenantId::new(name)
    }

    #[test]
    fn equal_turns_score_one_and_idle_tenants_are_dropped() {
        let mut l = TenantLedger::default();
        for _ in 0..3 {
            l.enqueued(&t("a"), 1);
            l.enqueued(&t("b"), 1);
        }
        for _ in 0..3 {
            l.granted(&t("a"), 1, Duration::from_millis(1));
            l.granted(&t("b"), 1, Duration::from_millis(5));
        }
        assert_eq!(l.snapshot().active_tenants, 2);
        for _ in 0..3 {
            l.released(&t("a"));
            l.released(&t("b"));
        }
        let snap = l.snapshot();
        assert_eq!(snap.active_tenants, 0);
        assert!((snap.jain_index.unwrap() - 1.0).abs() < 0.05, "{snap:?}");
        let (worst, p99) = snap.worst_p99_wait.unwrap();
        assert_eq!(worst, t("b"));
        assert!(
            p99.abs_diff(Duration::from_millis(5)) <= Duration::from_micros(50),
            "{p99:?}"
        );
    }

    #[test]
    fn one_job_tenants_report_their_exact_wait_and_leave_nothing_behind() {
        // Issue 24: a tenant with few waits keeps them inline, so its p99 is exact (a
        // two-significant-figure histogram would report 5,695 us or so for 5,678 us).
        let mut l = TenantLedger::default();
        for (name, wait) in [("a", 1_234), ("b", 5_678), ("c", 42)] {
            l.enqueued(&t(name), 1);
            l.granted(&t(name), 1, Duration::from_micros(wait));
        }
        let live = l.snapshot();
        assert_eq!(live.worst_p99_wait, Some((t("b"), Duration::from_micros(5_678))));
        for name in ["a", "b", "c"] {
            l.released(&t(name));
        }
        let idle = l.snapshot();
        assert_eq!(
            idle.active_tenants, 0,
            "idle tenants are dropped with their waits"
        );
        assert_eq!(idle.worst_p99_wait, Some((t("b"), Duration::from_micros(5_678))));
    }

    #[test]
    fn a_tenant_passed_over_while_backlogged_lowers_the_index() {
        let mut l = TenantLedger::default();
        l.enqueued(&t("starved"), 1);
        for _ in 0..50 {
            l.enqueued(&t("hog"), 1);
            l.granted(&t("hog"), 1, Duration::ZERO);
            l.released(&t("hog"));
        }
        l.granted(&t("starved"), 1, Duration::from_secs(1));
        let jain = l.snapshot().jain_index.unwrap();
        // Each was owed about half of the 51 units; the hog got 50, the other 1.
        assert!(jain < 0.6, "{jain}");
    }
}
