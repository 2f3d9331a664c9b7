//! An HTTP service that runs each query as a weir job under multi-tier limits.
//!
//! ```text
//! cargo run --release --example service -- --listen 127.0.0.1:8080 [--config FILE]
//! curl -X POST -H 'x-user-id: alice' -d '{"q":1}' localhost:8080/query
//! curl -X POST -H 'x-user-id: alice' -d '{"fail":true}' localhost:8080/query  # 502: the downstream fails
//! curl localhost:8080/stats/alice; curl localhost:8080/health; curl localhost:8080/metrics
//! kill -HUP <pid>   # reloads --config live, or logs why not and keeps the old one
//! ```

mod app;
mod reload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use weir_actors::Runtime;

#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A weir configuration file (default: examples/service/service.toml, built in).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Latency of each query's downstream call, in milliseconds.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    max_body: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let config = match &args.config {
        Some(path) => weir_actors::load_config(Some(path))?,
        None => weir::Config::from_toml_str(include_str!("service.toml"))?,
    };
    // Installed before the runtime starts: its supervisor registers and describes its
    // series then. The wait and run durations get buckets, so they are exported as
    // histograms (which add up across replicas) rather than per-process summaries.
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Prefix("weir_job_".into()), weir_actors::DURATION_BUCKETS)?
        .install_recorder()?;
    let runtime = Runtime::start(config)?;
    let settings = app::Settings {
        latency: Duration::from_millis(args.latency_ms),
        max_body: args.max_body,
    };
    tokio::spawn(reload::on_sighup(runtime.clone(), args.config.clone()));
    let router = app::router(runtime.clone(), metrics, settings);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    runtime.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
