//! The `weir` command line: `weir simulate`, `weir bench` and `weir soak` (the work is in the `weir_cli` library).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "weir",
    version,
    about = "weir: an actor-based job runtime for rate-limited downstreams"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reproduce the incident against a simulated downstream and show the fix.
    Simulate(weir_cli::simulate::SimulateArgs),
    /// Measure weir's throughput and latency against baselines in the same run.
    Bench(weir_cli::bench::BenchArgs),
    /// Run a long mixed workload with faults on the real clock; check counts, caps, slots and memory.
    Soak(weir_cli::soak::SoakArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Simulate(args) => weir_cli::simulate::run(args).map_err(|e| e.to_string()),
        Command::Bench(args) => weir_cli::bench::run(args),
        Command::Soak(args) => weir_cli::soak::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("weir: {message}");
            ExitCode::from(2)
        }
    }
}
