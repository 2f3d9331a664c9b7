//! Fairness figures of a run, computed from its trace: each tenant's p99 wait and Jain's
//! index over the tenants' granted slot-time while backlogged.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::{Trace, TraceKind, Workload};
use crate::job::{OutcomeKind, ResourceId, TenantId};

/// Fairness figures of one run (see [`fairness_report`]).
#[derive(Clone, Debug, PartialEq)]
pub struct FairnessReport {
    /// Per tenant: the 99th percentile (nearest rank) of its jobs' waits, from arrival to
    /// grant, over jobs that were granted.
    pub wait_p99: BTreeMap<TenantId, Duration>,
    /// Per resource: Jain's index over the tenants' service ratios (see
    /// [`fairness_report`]); `None` where nothing was granted.
    pub jain_index: BTreeMap<ResourceId, f64>,
    /// When the last job ended (the drain time of a workload queued at time zero).
    pub end: Duration,
}

impl FairnessReport {
    /// The tenant with the largest p99 wait among those `include` accepts, and that wait.
    pub fn worst_p99_wait(&self, include: impl Fn(&TenantId) -> bool) -> Option<(TenantId, Duration)> {
        self.wait_p99
            .iter()
            .filter(|(t, _)| include(t))
            .max_by_key(|(t, d)| (**d, std::cmp::Reverse((*t).clone())))
            .map(|(t, d)| (t.clone(), *d))
    }

    /// The lowest Jain's index over resources (1.0 when nothing was granted).
    pub fn min_jain_index(&self) -> f64 {
        self.jain_index.values().copied().fold(1.0, f64::min)
    }
}

/// Computes the fairness figures of a run.
///
/// **Jain's index over slot-time while backlogged.** Every grant of `c` cost units is
/// owed to the tenants backlogged on its resource at that moment (the granted one
/// included), in proportion to their weights: tenant x is *owed* `c w_x / W` (`W` the
/// backlogged tenants' total weight), the fluid fair share of that slot-time. Over the
/// run, tenant x receives `r_x` units and is owed `e_x`; its service ratio is
/// `x_x = r_x / e_x` (1 for a perfectly fair share). The index is Jain's index of the
/// ratios with each tenant counted in proportion to what it was owed:
/// `J = (sum r)^2 / (sum e x sum r^2/e) = 1 / (1 + Var_e(x))`, in `(0, 1]`, 1 when
/// every backlogged tenant got exactly its share. A tenant starved while backlogged is
/// owed more and more while its ratio falls, so starvation drives `J` down. Units are
/// cost units (slot-time when cost is proportional to service time).
pub fn fairness_report(workload: &Workload, trace: &Trace) -> FairnessReport {
    let mut arrived: Vec<Duration> = vec![Duration::ZERO; workload.jobs.len()];
    let mut waits: BTreeMap<TenantId, Vec<Duration>> = BTreeMap::new();
    let mut ledgers: BTreeMap<ResourceId, Ledger> = BTreeMap::new();
    for e in &trace.events {
        let job = &workload.jobs[e.job as usize];
        let weight = f64::from(workload.config.weight(job.tenant.as_str()).max(1));
        let ledger = ledgers.entry(job.resource.clone()).or_default();
        match e.kind {
            TraceKind::Arrived => {
                arrived[e.job as usize] = e.at;
                ledger.arrive(&job.tenant, weight);
            }
            TraceKind::Granted => {
                waits
                    .entry(job.tenant.clone())
                    .or_default()
                    .push(e.at - arrived[e.job as usize]);
                ledger.grant(&job.tenant, f64::from(job.cost.max(1)));
            }
            TraceKind::Ended(OutcomeKind::Skipped | OutcomeKind::Cancelled) => ledger.leave(&job.tenant),
            _ => {}
        }
    }
    FairnessReport {
        wait_p99: waits.into_iter().map(|(t, w)| (t, p99(w))).collect(),
        jain_index: ledgers
            .into_iter()
            .filter_map(|(r, l)| l.jain_index().map(|j| (r, j)))
            .collect(),
        end: trace.end,
    }
}

fn p99(mut waits: Vec<Duration>) -> Duration {
    waits.sort_unstable();
    let rank = (waits.len() * 99).div_ceil(100).max(1);
    waits[rank - 1]
}

/// Owed and received units per tenant on one resource (whole run, per tenant).
#[derive(Default)]
struct Ledger {
    /// Owed units per unit of weight, summed over grants (`c / W` each).
    owed_per_weight: f64,
    backlogged_weight: f64,
    /// tenant -> (weight, waiting jobs, `owed_per_weight` when its backlog began, owed, received)
    tenants: HashMap<TenantId, (f64, u32, f64, f64, f64)>,
}

impl Ledger {
    fn arrive(&mut self, tenant: &TenantId, weight: f64) {
        let t = self
            .tenants
            .entry(tenant.clone())
            .or_insert((weight, 0, 0.0, 0.0, 0.0));
        t.1 += 1;
        if t.1 == 1 {
            t.2 = self.owed_per_weight;
            self.backlogged_weight += t.0;
        }
    }

    fn grant(&mut self, tenant: &TenantId, cost: f64) {
        self.owed_per_weight += cost / self.backlogged_weight;
        self.tenants.get_mut(tenant).expect("granted tenant arrived").4 += cost;
        self.leave(tenant);
    }

    fn leave(&mut self, tenant: &TenantId) {
        let t = self.tenants.get_mut(tenant).expect("tenant arrived");
        t.1 -= 1;
        if t.1 == 0 {
            t.3 += t.0 * (self.owed_per_weight - t.2);
            self.backlogged_weight -= t.0;
        }
    }

    fn jain_index(&self) -> Option<f64> {
        let (mut received, mut owed, mut spread) = (0.0, 0.0, 0.0);
        for &(_, _, _, e, r) in self.tenants.values() {
            if e > 0.0 {
                received += r;
                owed += e;
                spread += r * r / e;
            }
        }
        (owed > 0.0).then(|| received * received / (owed * spread))
    }
}
