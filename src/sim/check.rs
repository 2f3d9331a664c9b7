//! The fairness suite's properties as plain functions of a workload and its trace, so
//! a user can check their own weights and workloads (the `testing` feature wraps them
//! in proptest strategies). Each returns the first [`Violation`] it finds.
//!
//! The bounds are derived in the docs of weir's fair queue (`src/fair.rs`, "Bounds");
//! [`starvation_bound`] and [`fair_share_bound`] compute them for one workload.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use super::{run, Order, Trace, TraceKind, Workload};
use crate::job::{OutcomeKind, ResourceId, TenantId};

/// The properties of the fairness suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Property {
    /// 1. A resource never has more slots held than its cap.
    Cap,
    /// 2. Every job reaches exactly one terminal outcome, by a legal path.
    OneOutcome,
    /// 3. A backlogged tenant is granted a slot within [`starvation_bound`].
    NoStarvation,
    /// 4. Two tenants backlogged over an interval are granted units within
    ///    [`fair_share_bound`] of their weighted shares.
    FairShare,
    /// 5. No slot idles while a job of its resource waits.
    WorkConserving,
    /// 6. The same workload gives the same trace.
    Determinism,
}

/// A property that does not hold, where and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{property:?} violated at {at:?}: {detail}")]
pub struct Violation {
    /// Which property.
    pub property: Property,
    /// Virtual time of the offending event.
    pub at: Duration,
    /// What was seen, with the job and tenant involved.
    pub detail: String,
}

fn violation(property: Property, at: Duration, detail: impl fmt::Display) -> Violation {
    Violation {
        property,
        at,
        detail: detail.to_string(),
    }
}

/// Runs properties 1 to 5 over a trace of `workload`.
pub fn check_all(workload: &Workload, trace: &Trace) -> Result<(), Violation> {
    check_one_outcome(workload, trace)?;
    check_cap(workload, trace)?;
    check_work_conserving(workload, trace)?;
    check_no_starvation(workload, trace)?;
    check_fair_share(workload, trace)
}

/// Per-resource facts of a workload the properties need.
struct Resources {
    index: HashMap<ResourceId, usize>,
    /// Per job: its resource's index.
    of_job: Vec<usize>,
    caps: Vec<u32>,
}

impl Resources {
    fn of(workload: &Workload) -> Self {
        let mut index = HashMap::new();
        let mut caps = Vec::new();
        let of_job = workload
            .jobs
            .iter()
            .map(|j| {
                *index.entry(j.resource.clone()).or_insert_with(|| {
                    caps.push(workload.config.resource(j.resource.as_str()).max_concurrent);
                    caps.len() - 1
                })
            })
            .collect();
        Self { index, of_job, caps }
    }
}

/// Property 2: every job arrives once, then is either granted once and ends once
/// (`Completed`/`Failed` after its service, `TimedOut` right after its lease expiry), or
/// ends once without a grant (`Skipped`/`Cancelled`); nothing follows its end; every job
/// of the workload ends; times never decrease; and the core's outcome counts agree.
pub fn check_one_outcome(workload: &Workload, trace: &Trace) -> Result<(), Violation> {
    #[derive(Clone, Copy, PartialEq)]
    enum S {
        New,
        Waiting,
        Running,
        Expired,
        Ended,
    }
    let p = Property::OneOutcome;
    let mut state = vec![S::New; workload.jobs.len()];
    let mut last = Duration::ZERO;
    for e in &trace.events {
        if e.at < last {
            return Err(violation(p, e.at, format!("time went back from {last:?}")));
        }
        last = e.at;
        let Some(s) = state.get_mut(e.job as usize) else {
            return Err(violation(p, e.at, format!("event for unknown job {}", e.job)));
        };
        let next = match (*s, e.kind) {
            (S::New, TraceKind::Arrived) => S::Waiting,
            (S::Waiting, TraceKind::Granted) => S::Running,
            (S::Waiting, TraceKind::Ended(OutcomeKind::Skipped | OutcomeKind::Cancelled)) => S::Ended,
            (S::Running, TraceKind::LeaseExpired) => S::Expired,
            (S::Running, TraceKind::Ended(OutcomeKind::Completed | OutcomeKind::Failed)) => S::Ended,
            (S::Expired, TraceKind::Ended(OutcomeKind::TimedOut)) => S::Ended,
            _ => {
                return Err(violation(
                    p,
                    e.at,
                    format!(
                        "job {} ({}): {:?} in the wrong stage",
                        e.job, workload.jobs[e.job as usize].tenant, e.kind
                    ),
                ))
            }
        };
        *s = next;
    }
    if let Some(job) = state.iter().position(|s| *s != S::Ended) {
        return Err(violation(
            p,
            trace.end,
            format!("job {job} never reached an outcome"),
        ));
    }
    let (counted, submitted) = (trace.stats.outcomes().total(), trace.stats.submitted());
    let jobs = workload.jobs.len() as u64;
    if counted != jobs || submitted != jobs {
        return Err(violation(
            p,
            trace.end,
            format!("core counted {submitted} submitted and {counted} outcomes for {jobs} jobs"),
        ));
    }
    Ok(())
}

/// Property 1: after every event, each resource holds at most its cap (and the core's own
/// peak agrees).
pub fn check_cap(workload: &Workload, trace: &Trace) -> Result<(), Violation> {
    let res = Resources::of(workload);
    let mut held = vec![0u32; res.caps.len()];
    for e in &trace.events {
        let r = res.of_job[e.job as usize];
        match e.kind {
            TraceKind::Granted => {
                held[r] += 1;
                if held[r] > res.caps[r] {
                    let name = &workload.jobs[e.job as usize].resource;
                    return Err(violation(
                        Property::Cap,
                        e.at,
                        format!(
                            "{name} holds {} slots, cap {} (granting job {})",
                            held[r], res.caps[r], e.job
                        ),
                    ));
                }
            }
            TraceKind::Ended(OutcomeKind::Completed | OutcomeKind::Failed | OutcomeKind::TimedOut) => {
                held[r] -= 1
            }
            _ => {}
        }
    }
    for (name, snap) in &trace.stats.resources {
        if snap.peak_in_flight > snap.cap {
            return Err(violation(
                Property::Cap,
                trace.end,
                format!(
                    "core reports peak {} on {name}, cap {}",
                    snap.peak_in_flight, snap.cap
                ),
            ));
        }
    }
    Ok(())
}

/// Property 5: whenever virtual time moves on, a resource with a waiting job has every
/// slot held. (Checked between instants: within one instant the driver's steps are in
/// flight.)
pub fn check_work_conserving(workload: &Workload, trace: &Trace) -> Result<(), Violation> {
    let res = Resources::of(workload);
    let mut held = vec![0u32; res.caps.len()];
    let mut waiting = vec![0u32; res.caps.len()];
    let check = |at: Duration, held: &[u32], waiting: &[u32]| {
        for (r, (&h, &w)) in held.iter().zip(waiting).enumerate() {
            if w > 0 && h < res.caps[r] {
                let name = res.index.iter().find(|(_, &i)| i == r).map(|(n, _)| n.clone());
                return Err(violation(
                    Property::WorkConserving,
                    at,
                    format!(
                        "{:?}: {w} jobs wait while {} of {} slots idle",
                        name,
                        res.caps[r] - h,
                        res.caps[r]
                    ),
                ));
            }
        }
        Ok(())
    };
    for (i, e) in trace.events.iter().enumerate() {
        let r = res.of_job[e.job as usize];
        match e.kind {
            TraceKind::Arrived => waiting[r] += 1,
            TraceKind::Granted => {
                waiting[r] -= 1;
                held[r] += 1;
            }
            TraceKind::Ended(OutcomeKind::Skipped | OutcomeKind::Cancelled) => waiting[r] -= 1,
            TraceKind::Ended(_) => held[r] -= 1,
            TraceKind::LeaseExpired => {}
        }
        let instant_over = trace.events.get(i + 1).is_none_or(|n| n.at > e.at);
        if instant_over {
            check(e.at, &held, &waiting)?;
        }
    }
    Ok(())
}

/// Per (resource, tenant) facts for the fairness bounds.
struct Shares {
    quantum: u64,
    /// Per resource: tenant -> (weight, largest cost).
    tenants: Vec<HashMap<TenantId, (u64, u64)>>,
    /// Per resource: the longest slot hold, and the (hold, cost) pair with the largest
    /// hold per cost unit.
    holds: Vec<(Duration, (Duration, u64))>,
    caps: Vec<u32>,
}

impl Shares {
    fn of(workload: &Workload, res: &Resources) -> Self {
        let n = res.caps.len();
        let mut tenants = vec![HashMap::new(); n];
        let mut holds = vec![(Duration::ZERO, (Duration::ZERO, 1u64)); n];
        for (job, &r) in workload.jobs.iter().zip(&res.of_job) {
            let weight = u64::from(workload.config.weight(job.tenant.as_str()).max(1));
            let cost = u64::from(job.cost.max(1));
            let e = tenants[r].entry(job.tenant.clone()).or_insert((weight, 0));
            e.1 = e.1.max(cost);
            let lease = job
                .lease
                .unwrap_or(workload.config.resource(job.resource.as_str()).lease);
            let hold = job.service.min(lease);
            let (longest, (best_hold, best_cost)) = &mut holds[r];
            *longest = (*longest).max(hold);
            if hold.as_nanos() * u128::from(*best_cost) > best_hold.as_nanos() * u128::from(cost) {
                (*best_hold, *best_cost) = (hold, cost);
            }
        }
        Self {
            quantum: u64::from(workload.config.scheduler.quantum.max(1)),
            tenants,
            holds,
            caps: res.caps.clone(),
        }
    }

    fn starvation_bound(&self, r: usize, tenant: &TenantId) -> Option<Duration> {
        let tenants = &self.tenants[r];
        let &(w_i, c_i) = tenants.get(tenant)?;
        let q = self.quantum;
        let turns = c_i.div_ceil(q * w_i);
        let units: u128 = tenants
            .iter()
            .filter(|(t, _)| *t != tenant)
            .map(|(_, &(w_j, c_j))| u128::from(turns * q * w_j + c_j - 1))
            .sum();
        let (longest, (hold, cost)) = self.holds[r];
        let cap = u128::from(self.caps[r].max(1));
        let others = (hold.as_nanos() * units).div_ceil(u128::from(cost) * cap);
        let others = Duration::from_nanos(u64::try_from(others).unwrap_or(u64::MAX));
        Some(longest.saturating_add(others))
    }

    /// The pairwise bound scaled by `w_i x w_j`, so it compares with integer units.
    fn scaled_share_bound(&self, r: usize, i: &TenantId, j: &TenantId) -> Option<i128> {
        let (&(w_i, c_i), &(w_j, c_j)) = (self.tenants[r].get(i)?, self.tenants[r].get(j)?);
        Some(i128::from(
            self.quantum * w_i * w_j + (c_i - 1) * w_j + (c_j - 1) * w_i,
        ))
    }
}

/// The longest `tenant` can stay backlogged on `resource` without a grant, in this
/// workload (fair.rs, "No starvation"): `S + r x U / C`, where `S` is the longest slot
/// hold (service time capped by lease), `r` the largest hold per cost unit, `C` the cap,
/// and `U = sum over other tenants j of (m q w_j + c_j - 1)` units, with
/// `m = ceil(c_i / (q w_i))`. `None` if the tenant has no job there.
pub fn starvation_bound(workload: &Workload, resource: &ResourceId, tenant: &TenantId) -> Option<Duration> {
    let res = Resources::of(workload);
    let &r = res.index.get(resource)?;
    Shares::of(workload, &res).starvation_bound(r, tenant)
}

/// The fair-share bound for tenants `i` and `j` on `resource` (fair.rs, "Fair share"):
/// over any stretch of grants in which both stay backlogged, with `S_x` the cost units
/// granted to x, `|S_i / w_i - S_j / w_j| <= q + (c_i - 1) / w_i + (c_j - 1) / w_j`
/// (`c_x` the largest cost of x's jobs). `None` if either has no job there.
pub fn fair_share_bound(
    workload: &Workload,
    resource: &ResourceId,
    i: &TenantId,
    j: &TenantId,
) -> Option<f64> {
    let res = Resources::of(workload);
    let &r = res.index.get(resource)?;
    let shares = Shares::of(workload, &res);
    let (w_i, w_j) = (shares.tenants[r].get(i)?.0, shares.tenants[r].get(j)?.0);
    Some(shares.scaled_share_bound(r, i, j)? as f64 / (w_i * w_j) as f64)
}

/// Property 3: no tenant stays backlogged on a resource longer than its
/// [`starvation_bound`] without being granted a slot. The clock starts when the tenant
/// becomes backlogged and restarts at each of its grants while it stays backlogged; it is
/// checked at every grant and at every skip of the tenant's jobs.
pub fn check_no_starvation(workload: &Workload, trace: &Trace) -> Result<(), Violation> {
    let res = Resources::of(workload);
    let shares = Shares::of(workload, &res);
    // Per resource: tenant -> (waiting jobs, backlogged since, bound).
    let mut state: Vec<HashMap<TenantId, (u32, Duration, Duration)>> = vec![HashMap::new(); res.caps.len()];
    for e in &trace.events {
        let job = &workload.jobs[e.job as usize];
        let r = res.of_job[e.job as usize];
        let entry = state[r].entry(job.tenant.clone()).or_insert_with(|| {
            let bound = shares
                .starvation_bound(r, &job.tenant)
                .expect("the tenant has this job");
            (0, Duration::ZERO, bound)
        });
        let (waiting, since, bound) = entry;
        match e.kind {
            TraceKind::Arrived => {
                if *waiting == 0 {
                    *since = e.at;
                }
                *waiting += 1;
            }
            TraceKind::Granted | TraceKind::Ended(OutcomeKind::Skipped | OutcomeKind::Cancelled) => {
                let waited = e.at - *since;
                if waited > *bound {
                    return Err(violation(
                        Property::NoStarvation,
                        e.at,
                        format!(
                            "tenant {} on {} backlogged {waited:?} without a grant; bound {bound:?}",
                            job.tenant, job.resource
                        ),
                    ));
                }
                *waiting -= 1;
                if e.kind == TraceKind::Granted {
                    *since = e.at;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Property 4: for every resource and every two tenants `i`, `j`, over every stretch of
/// the grant sequence in which both stay backlogged (each has a job waiting; a tenant's
/// grant that empties its queue still counts), the cost units granted satisfy
/// `|S_i / w_i - S_j / w_j| <= `[`fair_share_bound`]. Measured in cost units at grant
/// time; with cost proportional to service time that is granted slot-time.
pub fn check_fair_share(workload: &Workload, trace: &Trace) -> Result<(), Violation> {
    let res = Resources::of(workload);
    let shares = Shares::of(workload, &res);
    // Per resource: tenants by dense index with weight, waiting jobs and units granted,
    // and per backlogged pair the (min, max) of `S_i w_j - S_j w_i` and the scaled bound.
    #[derive(Default)]
    struct Res {
        index: HashMap<TenantId, usize>,
        names: Vec<TenantId>,
        weights: Vec<i128>,
        waiting: Vec<u32>,
        units: Vec<i128>,
        pairs: HashMap<(usize, usize), (i128, i128, i128)>,
    }
    let mut per: Vec<Res> = (0..res.caps.len()).map(|_| Res::default()).collect();
    for e in &trace.events {
        let job = &workload.jobs[e.job as usize];
        let r = res.of_job[e.job as usize];
        let rs = &mut per[r];
        let t = match rs.index.get(&job.tenant) {
            Some(&t) => t,
            None => {
                rs.index.insert(job.tenant.clone(), rs.names.len());
                rs.names.push(job.tenant.clone());
                rs.weights
                    .push(i128::from(workload.config.weight(job.tenant.as_str()).max(1)));
                rs.waiting.push(0);
                rs.units.push(0);
                rs.names.len() - 1
            }
        };
        match e.kind {
            TraceKind::Arrived => {
                rs.waiting[t] += 1;
                if rs.waiting[t] == 1 {
                    // `t` becomes backlogged: watch its pair with every backlogged tenant.
                    for o in (0..rs.names.len()).filter(|&o| o != t && rs.waiting[o] > 0) {
                        let (i, j) = (t.min(o), t.max(o));
                        let bound = shares
                            .scaled_share_bound(r, &rs.names[i], &rs.names[j])
                            .expect("both have jobs here");
                        let d = rs.units[i] * rs.weights[j] - rs.units[j] * rs.weights[i];
                        rs.pairs.insert((i, j), (d, d, bound));
                    }
                }
            }
            TraceKind::Granted | TraceKind::Ended(OutcomeKind::Skipped | OutcomeKind::Cancelled) => {
                rs.waiting[t] -= 1;
                if e.kind == TraceKind::Granted {
                    rs.units[t] += i128::from(job.cost.max(1));
                    for (&(i, j), (lo, hi, bound)) in
                        rs.pairs.iter_mut().filter(|((i, j), _)| *i == t || *j == t)
                    {
                        let d = rs.units[i] * rs.weights[j] - rs.units[j] * rs.weights[i];
                        *lo = (*lo).min(d);
                        *hi = (*hi).max(d);
                        if *hi - *lo > *bound {
                            let scale = (rs.weights[i] * rs.weights[j]) as f64;
                            return Err(violation(
                                Property::FairShare,
                                e.at,
                                format!(
                                    "on {}: tenants {} and {} drifted {:.3} weighted units apart while both \
                                     were backlogged; bound {:.3}",
                                    job.resource,
                                    rs.names[i],
                                    rs.names[j],
                                    (*hi - *lo) as f64 / scale,
                                    *bound as f64 / scale
                                ),
                            ));
                        }
                    }
                }
                if rs.waiting[t] == 0 {
                    rs.pairs.retain(|(i, j), _| *i != t && *j != t);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Property 6: running `workload` twice gives the same trace, event for event.
pub fn check_deterministic(workload: &Workload, order: Order) -> Result<(), Violation> {
    let (a, b) = (run(workload, order), run(workload, order));
    if let Some(i) = (0..a.events.len().max(b.events.len())).find(|&i| a.events.get(i) != b.events.get(i)) {
        let at = a
            .events
            .get(i)
            .or(b.events.get(i))
            .map_or(Duration::ZERO, |e| e.at);
        return Err(violation(
            Property::Determinism,
            at,
            format!(
                "event {i} differs: {:?} vs {:?}",
                a.events.get(i),
                b.events.get(i)
            ),
        ));
    }
    if a != b {
        return Err(violation(Property::Determinism, a.end, "end statistics differ"));
    }
    Ok(())
}
