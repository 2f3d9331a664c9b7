//! When the members of a fan-out are released: in batches of `batch_size`, `delay` apart.

use std::time::Duration;

/// The release schedule of one fan-out (a batch submission or a parent's children).
///
/// ```
/// use std::time::Duration;
/// let s = weir::engine::BatchSchedule::new(25, Duration::from_secs(2));
/// assert_eq!(s.offset(24), Duration::ZERO);
/// assert_eq!(s.offset(25), Duration::from_secs(2));
/// assert_eq!(s.batches(51), 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSchedule {
    batch_size: u32,
    delay: Duration,
}

impl BatchSchedule {
    /// Batches of `batch_size` (at least 1), `delay` apart.
    pub fn new(batch_size: u32, delay: Duration) -> Self {
        Self {
            batch_size: batch_size.max(1),
            delay,
        }
    }

    /// How long after the fan-out starts its `i`-th member (from 0) is released.
    pub fn offset(&self, i: usize) -> Duration {
        let batch = (i / self.batch_size as usize) as u32;
        self.delay.saturating_mul(batch)
    }

    /// How many batches `n` members take.
    pub fn batches(&self, n: usize) -> usize {
        n.div_ceil(self.batch_size as usize)
    }
}
