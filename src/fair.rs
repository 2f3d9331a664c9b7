//! Which waiting job gets the next free slot: weighted deficit round robin across
//! tenants, FIFO within a tenant.
//!
//! # Implementation details
//!
//! Backlogged tenants sit in a ring (`active`). The tenant at the front of the ring is
//! on its turn: when its turn starts it earns `quantum x weight` units of credit
//! (`deficit`), and it is served while its credit covers the cost of its oldest job. When
//! the credit does not cover it, the tenant goes to the back of the ring with the credit
//! it has left (so a costly job is served after enough turns); when its queue empties it
//! leaves the ring and forgets its credit, as DRR prescribes, so an idle tenant cannot
//! bank credit. A tenant that arrives joins the back of the ring.
//!
//! Bound this gives (proved in the fairness suite): a tenant that is backlogged waits
//! for at most one turn of every other backlogged tenant before it is served, that is for
//! at most `sum over other tenants of (quantum x weight + max_cost - 1)` units of grants.
//!
//! Tenants whose queues empty are removed, so memory is proportional to waiting jobs,
//! not to tenants ever seen. Written by hand because this ordering is the heart of
//! weir's fairness promise and no maintained crate offers DRR with lazy removal.

use std::collections::{HashMap, VecDeque};

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
/// use weir::{FairQueue, TenantId};
/// let mut q = FairQueue::new(1);
/// for i in 0..3 { q.push(TenantId::new("big"), 1, 1, i); }
/// q.push(TenantId::new("small"), 1, 1, 100);
/// let order: Vec<_> = std::iter::from_fn(|| q.pop()).map(|(_, v)| v).collect();
/// assert_eq!(order, vec![0, 100, 1, 2]);
/// ```
#[derive(Debug)]
pub struct FairQueue<T> {
    quantum: u64,
    index: HashMap<TenantId, usize>,
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
            index: HashMap::new(),
            tenants: Vec::new(),
            free: Vec::new(),
            active: VecDeque::new(),
            len: 0,
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
    pub fn push(&mut self, tenant: TenantId, weight: u32, cost: u32, item: T) {
        let weight = u64::from(weight.max(1));
        let slot = match self.index.get(&tenant) {
            Some(&slot) => slot,
            None => {
                let queue = TenantQueue {
                    tenant: tenant.clone(),
                    weight,
                    deficit: 0,
                    turn_started: false,
                    items: VecDeque::new(),
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
    }

    /// Takes the next item by DRR order.
    pub fn pop(&mut self) -> Option<(TenantId, T)> {
        self.pop_live(|_| true)
    }

    /// Takes the next item by DRR order, discarding (without charging their tenant)
    /// items for which `is_live` is false: the owner's lazy removal of expired waiters.
    pub fn pop_live(&mut self, mut is_live: impl FnMut(&T) -> bool) -> Option<(TenantId, T)> {
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
