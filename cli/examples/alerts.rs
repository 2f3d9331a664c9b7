//! Runs the alerts scenario (issue 7) and prints its report (the same as
//! `weir simulate --scenario config/alerts.toml`):
//! `cargo run --release --example alerts [-- path/to/alerts.toml]`.

use weir_cli::alerts::{run_all, AlertsScenario, ALERTS_TOML};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let text = match std::env::args().nth(1) {
        Some(path) => std::fs::read_to_string(path)?,
        None => ALERTS_TOML.to_string(),
    };
    let report = run_all(&AlertsScenario::from_toml_str(&text)?)?;
    print!("{}", report.table());
    Ok(())
}
