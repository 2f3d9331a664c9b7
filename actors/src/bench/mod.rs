//! `weir bench`: throughput and latency of weir against baselines, in one run.
//!
//! Not built yet (issue 9): the command reports so and exits with status 2.

/// Arguments of `weir bench`.
#[derive(Debug, Default, clap::Args)]
pub struct BenchArgs {}

/// Runs `weir bench`. Returns the process exit code.
pub fn run(_args: &BenchArgs) -> Result<u8, String> {
    Err("weir bench is not built yet (issue 9)".into())
}
