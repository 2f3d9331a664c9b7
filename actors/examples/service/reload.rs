//! Reloads the configuration file on SIGHUP: the runtime takes the new limits live
//! (`Runtime::reconfigure`), or refuses them and keeps the old ones; either way the
//! outcome is logged, naming what changed or the field that was wrong.

use std::path::{Path, PathBuf};

use weir_actors::Runtime;

/// Reloads `file` (or, without one, the built-in configuration) each time the process
/// gets SIGHUP, until the signal stream ends.
#[cfg(unix)]
pub(crate) async fn on_sighup(runtime: Runtime, file: Option<PathBuf>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(e) => {
            eprintln!("config reload on SIGHUP unavailable: {e}");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        eprintln!("{}", reload(&runtime, file.as_deref()).await);
    }
}

/// SIGHUP does not exist here: nothing to listen for.
#[cfg(not(unix))]
pub(crate) async fn on_sighup(_runtime: Runtime, _file: Option<PathBuf>) {}

/// Loads the configuration again (file, then `WEIR__` variables, as at start) and
/// applies it; returns the line to log.
pub(crate) async fn reload(runtime: &Runtime, file: Option<&Path>) -> String {
    let loaded = match file {
        Some(path) => weir_actors::load_config(Some(path)),
        None => weir::Config::from_toml_str(include_str!("service.toml")),
    };
    let applied = match loaded {
        Ok(config) => runtime.reconfigure(config).await,
        Err(e) => Err(e),
    };
    match applied {
        Ok(changes) if changes.is_empty() => "config reloaded: nothing changed".to_string(),
        Ok(changes) => format!("config reloaded: {changes}"),
        Err(e) => format!("config reload refused, the old configuration keeps running: {e}"),
    }
}
