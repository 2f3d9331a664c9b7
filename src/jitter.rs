//! Seeded randomness for the policies: jitter factors on waits and backoffs, start
//! staggers, full-jitter backoff draws.
//!
//! The core must be deterministic (the same seed and the same calls give the same
//! schedule, so virtual-time tests and `weir simulate` runs repeat), so every draw comes
//! from a [`SmallRng`] seeded from the configuration, never from the OS.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A deterministic random source owned by one resource's policies.
#[derive(Debug, Clone)]
pub(crate) struct Jitter {
    rng: SmallRng,
}

impl Jitter {
    /// A source seeded with `seed`.
    pub(crate) fn seeded(seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// A source seeded from a name (FNV-1a), so each resource draws its own sequence
    /// without anyone choosing seeds.
    pub(crate) fn for_name(name: &str, salt: u64) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Self::seeded(h)
    }

    /// `d` scaled by a factor drawn uniformly from `[min, max]` (`min <= max`).
    pub(crate) fn scale(&mut self, d: Duration, min: f64, max: f64) -> Duration {
        let f = if max > min {
            self.rng.random_range(min..=max)
        } else {
            min
        };
        d.mul_f64(f.max(0.0))
    }

    /// A duration drawn uniformly from `[lo, hi]`.
    pub(crate) fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo).as_nanos().min(u128::from(u64::MAX)) as u64;
        lo + Duration::from_nanos(self.rng.random_range(0..=span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws_and_draws_stay_in_range() {
        let mut a = Jitter::seeded(7);
        let mut b = Jitter::seeded(7);
        let base = Duration::from_secs(10);
        for _ in 0..1000 {
            let x = a.scale(base, 0.9, 1.6);
            assert_eq!(x, b.scale(base, 0.9, 1.6));
            assert!(
                x >= Duration::from_secs(9) && x <= Duration::from_secs(16),
                "{x:?}"
            );
            let y = a.between(Duration::from_millis(100), Duration::from_millis(500));
            assert_eq!(
                y,
                b.between(Duration::from_millis(100), Duration::from_millis(500))
            );
            assert!(y >= Duration::from_millis(100) && y <= Duration::from_millis(500));
        }
    }

    #[test]
    fn names_give_different_sequences() {
        let mut a = Jitter::for_name("primary", 0);
        let mut b = Jitter::for_name("fallback", 0);
        let d = Duration::from_secs(1);
        let xs: Vec<_> = (0..8).map(|_| a.between(Duration::ZERO, d)).collect();
        let ys: Vec<_> = (0..8).map(|_| b.between(Duration::ZERO, d)).collect();
        assert_ne!(xs, ys);
    }
}
