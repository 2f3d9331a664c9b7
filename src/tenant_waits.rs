//! One tenant's waits for a slot, kept for its p99: inline while the tenant has few, an
//! hdrhistogram only once it has enough for a percentile to mean something.
//!
//! # Implementation details
//!
//! A tenant with one job used to cost an hdrhistogram (about 2 KB with its counts) from
//! its first enqueue: 100,000 one-job tenants cost 3 KB a waiting job (issue 24). Most
//! tenants of a busy resource have a handful of jobs in an activity period, and the p99
//! of fewer than 100 samples is their largest (nearest rank: `ceil(0.99 n) = n`), so a
//! histogram there only approximates what a few inline values give exactly.
//!
//! So the first [`FEW`] waits are kept inline (no allocation; the p99 is their exact
//! nearest-rank percentile), and the sample after them allocates the histogram (2
//! significant figures, auto-resizing, as before) and replays them into it. The entry
//! that holds this is dropped with its tenant when the tenant goes idle (see
//! `tenant_ledger`), so the histogram is freed then too.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Waits kept inline before a histogram is allocated. Eight `u32` microsecond values
/// are 32 bytes, less than the histogram's pointer and header would cost.
pub(crate) const FEW: usize = 8;

/// A tenant's waits in microseconds (see the module docs).
#[derive(Debug)]
pub(crate) enum TenantWaits {
    /// Fewer than [`FEW`] + 1 waits, the first `len` of `micros` (saturated at `u32::MAX`
    /// microseconds, 71 minutes, far beyond any slot wait timeout allowed).
    Few { len: u8, micros: [u32; FEW] },
    /// More: every wait, 2 significant figures.
    Many(Box<Histogram<u64>>),
}

impl Default for TenantWaits {
    fn default() -> Self {
        Self::Few {
            len: 0,
            micros: [0; FEW],
        }
    }
}

fn histogram() -> Histogram<u64> {
    let mut h = Histogram::new(2).expect("2 significant figures is a valid precision");
    h.auto(true);
    h
}

impl TenantWaits {
    /// Records one wait.
    pub(crate) fn record(&mut self, waited: Duration) {
        let us = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        match self {
            Self::Few { len, micros } if usize::from(*len) < FEW => {
                micros[usize::from(*len)] = u32::try_from(us).unwrap_or(u32::MAX);
                *len += 1;
            }
            Self::Few { micros, .. } => {
                let mut h = histogram();
                for &v in micros.iter() {
                    let _ = h.record(u64::from(v));
                }
                let _ = h.record(us);
                *self = Self::Many(Box::new(h));
            }
            Self::Many(h) => {
                let _ = h.record(us);
            }
        }
    }

    /// The 99th percentile of the waits recorded (nearest rank while inline), `None`
    /// before the first.
    pub(crate) fn p99(&self) -> Option<Duration> {
        match self {
            Self::Few { len, micros } => {
                let mut sorted = *micros;
                let kept = &mut sorted[..usize::from(*len)];
                kept.sort_unstable();
                // Nearest rank: the smallest value with at least 99% of samples at or below.
                let rank = (kept.len() * 99).div_ceil(100);
                let v = *kept.get(rank.checked_sub(1)?)?;
                Some(Duration::from_micros(u64::from(v)))
            }
            Self::Many(h) => (!h.is_empty()).then(|| Duration::from_micros(h.value_at_quantile(0.99))),
        }
    }

    /// True once a histogram has been allocated.
    #[cfg(test)]
    fn is_histogram(&self) -> bool {
        matches!(self, Self::Many(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn no_wait_has_no_p99_and_a_few_waits_allocate_nothing_and_give_their_largest() {
        let mut w = TenantWaits::default();
        assert_eq!(w.p99(), None);
        for n in [3, 9, 1, 4, 2, 7, 5, 6] {
            w.record(ms(n));
        }
        assert!(!w.is_histogram(), "{FEW} waits stay inline");
        assert_eq!(w.p99(), Some(ms(9)));
    }

    #[test]
    fn the_wait_after_the_few_moves_every_wait_into_a_histogram() {
        let mut w = TenantWaits::default();
        for _ in 0..FEW {
            w.record(ms(1));
        }
        w.record(ms(40));
        assert!(w.is_histogram());
        // Nine samples: the p99 is the largest, the inline ones were replayed beneath it.
        let p99 = w.p99().unwrap();
        assert!(p99.abs_diff(ms(40)) <= Duration::from_micros(400), "{p99:?}");
        for _ in 0..1_000 {
            w.record(ms(2));
        }
        let p99 = w.p99().unwrap();
        assert!(p99.abs_diff(ms(2)) <= Duration::from_micros(20), "{p99:?}");
    }

    #[test]
    fn inline_waits_stay_small() {
        assert!(
            std::mem::size_of::<TenantWaits>() <= 40,
            "{}",
            std::mem::size_of::<TenantWaits>()
        );
    }
}
