//! The slot pool of one resource: how many slots it has and how many are held.
//!
//! A plain counter owned by one actor (never shared between threads): the bound on
//! concurrency is that only the owner grants, and it grants only while `held < cap`.

// Public for benches and property tests only, through `weir::testing` (feature `testing`).
#![cfg_attr(not(feature = "testing"), allow(unreachable_pub, dead_code))]

/// Slots of one resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotPool {
    cap: u32,
    held: u32,
    peak: u32,
    granted_total: u64,
}

/// Returned by [`SlotPool::release`] when no slot was held: a bug in the caller, reported
/// instead of wrapping the count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("release with no slot held")]
pub struct NothingHeld;

impl SlotPool {
    /// A pool of `cap` slots (at least 1, enforced by configuration validation).
    pub fn new(cap: u32) -> Self {
        Self {
            cap,
            held: 0,
            peak: 0,
            granted_total: 0,
        }
    }

    /// Takes a slot if one is free.
    pub fn try_grant(&mut self) -> bool {
        if self.held < self.cap {
            self.held += 1;
            self.peak = self.peak.max(self.held);
            self.granted_total += 1;
            true
        } else {
            false
        }
    }

    /// Changes the number of slots (at least 1). Slots held above a lowered cap stay held
    /// until released: nothing is taken back, no new grant is made until `held < cap`.
    pub fn set_cap(&mut self, cap: u32) {
        self.cap = cap.max(1);
    }

    /// Returns a slot.
    pub fn release(&mut self) -> Result<(), NothingHeld> {
        self.held = self.held.checked_sub(1).ok_or(NothingHeld)?;
        Ok(())
    }

    /// True when a slot is free.
    pub fn has_free(&self) -> bool {
        self.held < self.cap
    }

    /// Slots in the pool.
    pub fn cap(&self) -> u32 {
        self.cap
    }

    /// Slots currently held.
    pub fn held(&self) -> u32 {
        self.held
    }

    /// Most slots ever held at once.
    pub fn peak(&self) -> u32 {
        self.peak
    }

    /// Grants made since the pool was created.
    pub fn granted_total(&self) -> u64 {
        self.granted_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_grants_past_cap_and_release_is_checked() {
        let mut p = SlotPool::new(2);
        assert!(p.try_grant());
        assert!(p.try_grant());
        assert!(!p.try_grant());
        assert_eq!(p.peak(), 2);
        p.release().unwrap();
        p.release().unwrap();
        assert_eq!(p.release(), Err(NothingHeld));
        assert_eq!(p.held(), 0);
    }

    #[test]
    fn a_lowered_cap_takes_nothing_back() {
        let mut p = SlotPool::new(3);
        assert!(p.try_grant() && p.try_grant() && p.try_grant());
        p.set_cap(1);
        assert_eq!(p.held(), 3);
        assert!(!p.has_free());
        p.release().unwrap();
        p.release().unwrap();
        assert!(!p.try_grant(), "one held of a cap of one");
        p.release().unwrap();
        assert!(p.try_grant());
    }
}
