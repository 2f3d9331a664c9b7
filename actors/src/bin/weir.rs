//! The `weir` command line: `weir simulate` and `weir bench`.

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
    Simulate(weir_actors::simulate::SimulateArgs),
    /// Measure weir's throughput and latency against baselines in the same run.
    Bench(weir_actors::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Simulate(args) => weir_actors::simulate::run(args).map_err(|e| e.to_string()),
        Command::Bench(args) => weir_actors::bench::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("weir: {message}");
            ExitCode::from(2)
        }
    }
}
