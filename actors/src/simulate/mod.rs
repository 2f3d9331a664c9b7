//! `weir simulate`: reproduces the incident against a simulated downstream.
//!
//! Not built yet (issue 3): the command reports so and exits with status 2.

/// Arguments of `weir simulate`.
#[derive(Debug, Default, clap::Args)]
pub struct SimulateArgs {}

/// Runs `weir simulate`. Returns the process exit code.
pub fn run(_args: &SimulateArgs) -> Result<u8, String> {
    Err("weir simulate is not built yet (issue 3)".into())
}
