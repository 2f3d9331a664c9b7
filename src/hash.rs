//! The hash maps of the scheduler's per-job path (tenant and resource lookups).
//!
//! Every job looks its tenant up several times between submission and release (its fair
//! queue, its tenant's fairness ledger, its quotas) and its resource once. With std's
//! SipHash-1-3 those lookups were about an eighth of the instructions of an empty job
//! (callgrind, issue 9). foldhash hashes a short name in a few instructions and is still
//! seeded per process, so a tenant cannot choose names that collide by construction in
//! every process.

/// A `HashMap` with foldhash's fast, per-process seeded hasher.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
