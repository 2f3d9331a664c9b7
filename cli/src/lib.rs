//! # weir-cli: the `weir` command
//!
//! Not part of what a service links. It holds the tooling around the runtime: the
//! scenario simulators of `weir simulate` ([`simulate`](mod@simulate)), the measurements of
//! `weir bench` ([`bench`](mod@bench)), the long runs of `weir soak` ([`soak`](mod@soak)) and the alerts scenario runner ([`alerts`](mod@alerts)). Everything here
//! drives the public API of `weir-actors`, as a user's program would.

pub mod alerts;
pub mod bench;
pub mod simulate;
pub mod soak;
