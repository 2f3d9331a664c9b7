//! The example service's SIGHUP reload (issue 17): a changed file is applied live and
//! logged field by field; a bad one is refused naming the field, and the old
//! configuration keeps running.

mod common;

// The test drives `reload` directly; `on_sighup` is the binary's.
#[allow(dead_code)]
#[path = "../examples/service/reload.rs"]
mod reload;

use std::path::PathBuf;

use common::paused;
use weir_actors::Runtime;

const SERVICE: &str = include_str!("../examples/service/service.toml");

fn file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("weir-reload-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_reload_applies_the_changed_file_and_a_bad_one_keeps_the_old_config() {
    paused(async {
        let runtime = Runtime::start(weir::Config::from_toml_str(SERVICE).unwrap()).unwrap();
        let lowered = file(
            "lowered",
            &SERVICE.replace("max_concurrent = 100", "max_concurrent = 40"),
        );
        assert_eq!(
            reload::reload(&runtime, Some(&lowered)).await,
            "config reloaded: resources.query.max_concurrent: 100 -> 40"
        );
        assert_eq!(runtime.stats().await.resources["query"].cap, 40);
        let bad = file(
            "bad",
            &SERVICE.replace("max_concurrent = 100", "max_concurrent = 0"),
        );
        let line = reload::reload(&runtime, Some(&bad)).await;
        assert!(
            line.starts_with("config reload refused, the old configuration keeps running: resources.query.max_concurrent must be"),
            "{line}"
        );
        assert_eq!(runtime.config().resources["query"].max_concurrent, Some(40));
        assert_eq!(
            reload::reload(&runtime, Some(&lowered)).await,
            "config reloaded: nothing changed"
        );
        let _ = std::fs::remove_file(lowered);
        let _ = std::fs::remove_file(bad);
        runtime.shutdown(std::time::Duration::ZERO).await;
    });
}
