//! The README and the guide's chapters, compiled and run as doc tests so their code cannot rot.
//!
//! Only built under `cfg(doctest)`: each module below carries one Markdown file as its
//! documentation, so `cargo test -p weir-actors --doc` runs every Rust block in it.

#[doc = include_str!("../../README.md")]
mod readme {}
#[doc = include_str!("../../docs/README.md")]
mod guide {}
#[doc = include_str!("../../docs/architecture.md")]
mod architecture {}
#[doc = include_str!("../../docs/configuration.md")]
mod configuration {}
#[doc = include_str!("../../docs/resilience.md")]
mod resilience {}
#[doc = include_str!("../../docs/quotas.md")]
mod quotas {}
#[doc = include_str!("../../docs/scaling-out.md")]
mod scaling_out {}
#[doc = include_str!("../../docs/adaptive-limits.md")]
mod adaptive_limits {}
#[doc = include_str!("../../docs/fair-sharing.md")]
mod fair_sharing {}
#[doc = include_str!("../../docs/coalescing.md")]
mod coalescing {}
#[doc = include_str!("../../docs/observability.md")]
mod observability {}
#[doc = include_str!("../../docs/alerts.md")]
mod alerts {}
#[doc = include_str!("../../docs/performance.md")]
mod performance {}
#[doc = include_str!("../../docs/guarantees.md")]
mod guarantees {}
#[doc = include_str!("../../docs/soak.md")]
mod soak {}
#[doc = include_str!("../../docs/simulate.md")]
mod simulate {}
