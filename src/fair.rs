//! Which waiting job gets the next free slot: weighted deficit round robin (DRR) across
//! tenants, FIFO within a tenant.
//!
//! # Implementation details
//!
//! Backlogged tenants sit in a ring (`active`). The tenant at the front of the ring is
//! on its turn: when its turn starts it earns `q x w` units of credit (`deficit`; `q` the
//! quantum, `w` the tenant's weight), and it is served while its credit covers the cost
//! of its oldest job. When the credit does not cover it, the tenant goes to the back of
//! the ring with the credit it has left (so a costly job is served after enough turns);
//! when its queue empties it leaves the ring and forgets its credit, as DRR prescribes,
//! so an idle tenant cannot bank credit. A tenant that arrives joins the back of the ring.
//!
//! When a whole pass over the ring serves nothing (every head job costs more than its
//! tenant's credit), the queue adds the credit of the `k` further passes that would
//! serve nothing either, in one step (`fast_forward`): the result is exactly what plain
//! DRR would do, but a pop costs O(tenants) instead of O(tenants x cost / quantum).
//!
//! # Bounds (what the fairness suite, `tests/fairness.rs`, checks)
//!
//! Notation, per resource: `q` the quantum, `w_x` tenant x's weight, `c_x` the largest
//! cost of x's jobs, `D_x` x's credit. Units are cost units; with cost proportional to
//! service time (as the `sim` driver sets it) units are slot-time.
//!
//! **Credit.** A turn ends only when `D_x <` the head job's cost, so between turns
//! `0 <= D_x <= c_x - 1`, and during a turn `D_x <= q w_x + c_x - 1`. Fast-forwarding
//! adds whole passes, so it keeps these invariants.
//!
//! **Alternation.** Two tenants that stay in the ring keep their cyclic order (the ring
//! only rotates; others join at the back or leave), and a tenant that joins goes behind
//! every tenant that has already had its turn in the current pass. So between two turn
//! starts of tenant `i`, every other tenant starts at most one turn.
//!
//! **Service.** While x stays in the ring, units served to x over an interval equal
//! `n q w_x + D_x(start) - D_x(end)`, `n` its turn starts in the interval.
//!
//! **Fair share (pairwise).** Let `i` and `j` stay backlogged over an interval of the
//! grant sequence and `S_x` the units granted to x in it. Then
//! `|S_i / w_i - S_j / w_j| <= q + (c_i - 1) / w_i + (c_j - 1) / w_j`.
//! Proof: by alternation the turn starts `n_i, n_j` differ by at most one. If
//! `n_i = n_j + 1`, i's turns open and close the interval, so i is not mid-turn at its
//! start (`D_i(start) <= c_i - 1`) and j is not mid-turn at its end
//! (`D_j(end) <= c_j - 1`), giving `q + (c_i - 1)/w_i + (c_j - 1)/w_j`. If `n_i = n_j`,
//! at most one of "i mid-turn at the start" (`D_i(start) <= q w_i + c_i - 1`) and
//! "j mid-turn at the end" (`D_j(end) <= q w_j + c_j - 1`) can hold, so the same bound
//! follows; if `n_i = n_j - 1`, both can, and the `-q` of the missing turn pays for one
//! of the two `+q`. The other direction is symmetric. This is the exact DRR bound; it is
//! **not** "one maximal job": with `q = 1`, equal weights and maximal cost `c` it is
//! `2c - 1` units, just under two maximal jobs. No non-preemptive scheduler can do
//! better than about one job, since a job is granted whole.
//!
//! **No starvation.** Let `m_i = ceil(c_i / (q w_i))`, the turns i needs to afford any
//! of its jobs. From the moment i becomes backlogged (or is granted while staying
//! backlogged), i is granted within its next `m_i` turn starts; before that, by
//! alternation and the credit bounds, every other tenant `j` is granted at most
//! `U_j = m_i q w_j + c_j - 1` units (a tenant that leaves and rejoins restarts from
//! zero credit, which only lowers this). So at most `U = sum over j != i of U_j` units go
//! to others first. In time: with `C` slots, every job holding a slot for at most `S`
//! (its service time, capped by its lease) and at most `r` time per cost unit, and a
//! work-conserving owner (no slot idles while i waits), the `C` slots are busy from the
//! moment i starts waiting until its grant with the jobs running then (at most `C x S`
//! slot-time left) and the jobs granted meanwhile (at most `r x U`), so i waits at most
//! `S + r U / C`. For equal weights, `q >= c` (so `m_i = 1`) and `n` tenants:
//! `S + (n - 1)(q + c - 1) r / C`.
//!
//! Tenants whose queues empty are removed, so memory is proportional to waiting jobs,
//! not to tenants ever seen. Written by hand because this ordering is the heart of
//! weir's fairness promise and no maintained crate offers DRR with lazy removal.

// Public for benches and property tests only, through `weir::testing` (feature `testing`).
#![cfg_attr(not(feature = "testing"), allow(unreachable_pub, dead_code))]

use std::collections::VecDeque;

use crate::hash::FastMap;

use crate::job::TenantId;

#[derive(Debug)]
struct TenantQueue<T> {
    tenant: TenantId,
    weight: u64,
    deficit: u64,
    turn_started: bool,
    items: VecDeque<(u32, T)>,
}

/// A weighted deficit-round-robin queue over tenants, FIFO within each tenant.
///
/// ```
/// use weir::testing::FairQueue;
/// use weir::TenantId;
/// let mut q = FairQueue::new(1);
/// for i in 0..3 { q.push(TenantId::new("big"), 1, 1, i); }
/// q.push(TenantId::new("small"), 1, 1, 100);
/// let order: Vec<_> = std::iter::from_fn(|| q.pop()).map(|(_, v)| v).collect();
/// assert_eq!(order, vec![0, 100, 1, 2]);
/// ```
#[derive(Debug)]
pub struct FairQueue<T> {
    quantum: u64,
    index: FastMap<TenantId, usize>,
    tenants: Vec<Option<TenantQueue<T>>>,
    free: Vec<usize>,
    active: VecDeque<usize>,
    len: usize,
}

impl<T> FairQueue<T> {
    /// An empty queue; each turn earns `quantum x weight` units (quantum at least 1).
    pub fn new(quantum: u32) -> Self {
        Self {
            quantum: u64::from(quantum.max(1)),
            index: FastMap::default(),
            tenants: Vec::new(),
            free: Vec::new(),
            active: VecDeque::new(),
            len: 0,
        }
    }

    /// Sets the quantum (at least 1) for the turns that start from now; queued items
    /// keep their order and each tenant its credit.
    pub fn set_quantum(&mut self, quantum: u32) {
        self.quantum = u64::from(quantum.max(1));
    }

    /// Sets the weight (at least 1) of every tenant queued now to `weight_of(tenant)`,
    /// from its next turn; queued items keep their order and each tenant its credit.
    pub fn set_weights(&mut self, mut weight_of: impl FnMut(&TenantId) -> u32) {
        for queue in self.tenants.iter_mut().flatten() {
            queue.weight = u64::from(weight_of(&queue.tenant).max(1));
        }
    }

    /// Number of queued items (including ones a caller will find stale).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of tenants with queued items.
    pub fn backlogged_tenants(&self) -> usize {
        self.active.len()
    }

    /// Queues `item` for `tenant` with `cost` units (at least 1) and `weight` (at least 1;
    /// the weight of a tenant already queued is updated).
    ///
    /// Returns the tenant's name as the queue keeps it: a caller that stores the name per
    /// item keeps this one (a shared pointer) and drops its own copy, so a tenant with many
    /// waiting jobs costs one name, not one per job.
    pub fn push(&mut self, tenant: TenantId, weight: u32, cost: u32, item: T) -> &TenantId {
        let weight = u64::from(weight.max(1));
        let slot = match self.index.get(&tenant) {
            Some(&slot) => slot,
            None => {
                let queue = TenantQueue {
                    tenant: tenant.clone(),
                    weight,
                    deficit: 0,
                    turn_started: false,
                    // Room for one: most tenants have one job waiting, and a first push
                    // into `VecDeque::new()` reserves four (issue 24: memory per tenant).
                    items: VecDeque::with_capacity(1),
                };
                let slot = match self.free.pop() {
                    Some(slot) => {
                        self.tenants[slot] = Some(queue);
                        slot
                    }
                    None => {
                        self.tenants.push(Some(queue));
                        self.tenants.len() - 1
                    }
                };
                self.index.insert(tenant, slot);
                self.active.push_back(slot);
                slot
            }
        };
        let queue = self.tenants[slot].as_mut().expect("indexed tenant exists");
        queue.weight = weight;
        queue.items.push_back((cost.max(1), item));
        self.len += 1;
        &queue.tenant
    }

    /// Takes the next item by DRR order.
    pub fn pop(&mut self) -> Option<(TenantId, T)> {
        self.pop_live(|_| true)
    }

    /// Takes the next item by DRR order, discarding (without charging their tenant)
    /// items for which `is_live` is false: the owner's lazy removal of expired waiters.
    pub fn pop_live(&mut self, mut is_live: impl FnMut(&T) -> bool) -> Option<(TenantId, T)> {
        // Turns in a row that served nothing; a full pass of them triggers a fast-forward.
        let mut missed = 0;
        loop {
            let &slot = self.active.front()?;
            let queue = self.tenants[slot].as_mut().expect("active tenant exists");
            while let Some((_, item)) = queue.items.front() {
                if is_live(item) {
                    break;
                }
                queue.items.pop_front();
                self.len -= 1;
            }
            let Some(&(cost, _)) = queue.items.front() else {
                self.retire_front();
                missed = 0;
                continue;
            };
            if !queue.turn_started {
                queue.turn_started = true;
                queue.deficit += self.quantum * queue.weight;
            }
            if queue.deficit >= u64::from(cost) {
                queue.deficit -= u64::from(cost);
                let (_, item) = queue.items.pop_front().expect("front checked");
                self.len -= 1;
                let tenant = queue.tenant.clone();
                if queue.items.is_empty() {
                    self.retire_front();
                }
                return Some((tenant, item));
            }
            queue.turn_started = false;
            self.active.rotate_left(1);
            missed += 1;
            if missed >= self.active.len() {
                self.fast_forward();
                missed = 0;
            }
        }
    }

    /// Every tenant in the ring just had a turn that served nothing: adds at once the
    /// credit of the further passes that would serve nothing either, so the next pass
    /// serves someone (exactly what plain DRR would reach, turn by turn).
    fn fast_forward(&mut self) {
        let quantum = self.quantum;
        let passes_needed = |q: &TenantQueue<T>| {
            let cost = q.items.front().map_or(0, |(c, _)| u64::from(*c));
            cost.saturating_sub(q.deficit).div_ceil(quantum * q.weight)
        };
        let tenants = &mut self.tenants;
        let Some(min) = self
            .active
            .iter()
            .map(|&slot| passes_needed(tenants[slot].as_ref().expect("active tenant exists")))
            .min()
        else {
            return;
        };
        let idle_passes = min.saturating_sub(1);
        if idle_passes == 0 {
            return;
        }
        for &slot in &self.active {
            let q = tenants[slot].as_mut().expect("active tenant exists");
            q.deficit += idle_passes * quantum * q.weight;
        }
    }

    /// The front tenant's queue is empty: it leaves the ring and forgets its credit.
    fn retire_front(&mut self) {
        let slot = self.active.pop_front().expect("front exists");
        let queue = self.tenants[slot].take().expect("active tenant exists");
        self.index.remove(&queue.tenant);
        self.free.push(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut FairQueue<u32>) -> Vec<u32> {
        std::iter::from_fn(|| q.pop()).map(|(_, v)| v).collect()
    }

    /// `push` hands back the name the queue keeps, so a caller storing a name per item can
    /// share one allocation per tenant: a second job's own copy of the name is not kept.
    #[test]
    fn push_returns_the_queued_tenants_first_name() {
        let mut q = FairQueue::new(1);
        let first = q.push(TenantId::new("acme"), 1, 1, 1_u32).clone();
        let second = TenantId::new("acme");
        let kept = q.push(second.clone(), 1, 1, 2);
        assert_eq!(kept.as_str().as_ptr(), first.as_str().as_ptr());
        assert_ne!(kept.as_str().as_ptr(), second.as_str().as_ptr());
    }

    #[test]
    fn fifo_within_a_tenant() {
        let mut q = FairQueue::new(1);
        for i in 0..5 {
            q.push("a".into(), 1, 1, i);
        }
        assert_eq!(drain(&mut q), vec![0, 1, 2, 3, 4]);
        assert!(q.is_empty());
    }

    #[test]
    fn weights_give_proportional_turns() {
        let mut q = FairQueue::new(1);
        for i in 0..6 {
            q.push("heavy".into(), 2, 1, i);
            q.push("light".into(), 1, 1, 100 + i);
        }
        let order = drain(&mut q);
        assert_eq!(&order[..6], &[0, 1, 100, 2, 3, 101]);
    }

    #[test]
    fn costly_jobs_use_more_of_a_turn() {
        let mut q = FairQueue::new(2);
        q.push("a".into(), 1, 4, 1);
        q.push("a".into(), 1, 4, 2);
        for i in 0..4 {
            q.push("b".into(), 1, 1, 10 + i);
        }
        // a needs two turns (2 units each) per job; b serves 2 per turn.
        assert_eq!(drain(&mut q), vec![10, 11, 1, 12, 13, 2]);
    }

    /// Plain DRR, one turn at a time, as the reference the fast-forward must match.
    fn reference_drr(quantum: u64, jobs: &[(usize, u64, u64)]) -> Vec<u32> {
        let tenants = jobs.iter().map(|j| j.0).max().map_or(0, |m| m + 1);
        let mut queues: Vec<VecDeque<(u64, u32)>> = vec![VecDeque::new(); tenants];
        let mut weights = vec![1; tenants];
        let mut ring = VecDeque::new();
        for (i, &(t, w, c)) in jobs.iter().enumerate() {
            if queues[t].is_empty() && !ring.contains(&t) {
                ring.push_back(t);
            }
            weights[t] = w;
            queues[t].push_back((c, i as u32));
        }
        let mut deficit = vec![0; tenants];
        let mut out = Vec::new();
        while let Some(t) = ring.pop_front() {
            deficit[t] += quantum * weights[t];
            while let Some(&(c, id)) = queues[t].front() {
                if deficit[t] < c {
                    break;
                }
                deficit[t] -= c;
                queues[t].pop_front();
                out.push(id);
            }
            if queues[t].is_empty() {
                deficit[t] = 0;
            } else {
                ring.push_back(t);
            }
        }
        out
    }

    #[test]
    fn fast_forward_matches_turn_by_turn_drr() {
        // Costs far above the quantum, mixed weights: many passes serve nothing.
        let jobs = [
            (0, 1, 500),
            (1, 3, 40),
            (0, 1, 7),
            (2, 2, 999),
            (1, 3, 1),
            (2, 2, 3),
            (3, 1, 250),
            (0, 1, 1000),
            (3, 1, 250),
        ];
        let mut q = FairQueue::new(1);
        for (i, &(t, w, c)) in jobs.iter().enumerate() {
            q.push(TenantId::new(format!("t{t}")), w as u32, c as u32, i as u32);
        }
        assert_eq!(drain(&mut q), reference_drr(1, &jobs));
    }

    #[test]
    fn dead_items_are_skipped_without_charge() {
        let mut q = FairQueue::new(1);
        q.push("a".into(), 1, 1, 0);
        q.push("a".into(), 1, 1, 1);
        q.push("b".into(), 1, 1, 10);
        let got = q.pop_live(|v| *v != 0).map(|(_, v)| v);
        assert_eq!(got, Some(1));
        assert_eq!(q.pop().map(|(_, v)| v), Some(10));
        assert!(q.is_empty());
        assert_eq!(q.backlogged_tenants(), 0);
    }
}
