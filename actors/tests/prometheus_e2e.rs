//! The shipped alerts and dashboard against a real Prometheus (issue 25): the example
//! service's router on a loopback port, a Prometheus (Debian's `prometheus` package,
//! installed by scripts/test) of its own on another, with a temp config and data dir,
//! scraping it every second and evaluating deploy/prometheus/weir-rules.yml.
//!
//! The rules are a copy whose `for:` durations and rate windows are shortened (5m windows
//! to 15s, 30m to 2m, 10m to 30s; every `for:` to 2s), so that minutes of alerting fit in
//! seconds; thresholds and expressions are the shipped ones. The promtool unit tests
//! (weir-rules.test.yml, run by scripts/test) cover the real durations.
//!
//! Under a normal load (one query at a time, a few users within their quotas) no alert
//! fires. Under the overload (slots saturated, one user far over its quota, a failing
//! downstream that opens the breaker) WeirResourceSaturated, WeirQuotaRefusalsHigh and
//! WeirBreakerOpen fire. Then every query of every panel of deploy/grafana/weir.json
//! returns a series from that Prometheus.

#[path = "../examples/service/app.rs"]
#[allow(dead_code, unreachable_pub)]
mod app;
#[path = "common/redis_server.rs"]
#[allow(dead_code, unreachable_pub)]
mod redis_server;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use serde_json::Value;
use weir_actors::Runtime;

/// The alerts the overload must fire.
const OVERLOAD_ALERTS: [&str; 3] = [
    "WeirResourceSaturated",
    "WeirQuotaRefusalsHigh",
    "WeirBreakerOpen",
];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free loopback port")
        .port()
}

/// A Prometheus child process on 127.0.0.1 with its own temp dir; killed (by its PID,
/// through its `Child`) and its dir removed when dropped.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Prometheus {
    fn start(target: &str, rules: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "weir-prometheus-e2e-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("rules.yml"), rules).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: weir\n    static_configs:\n      - targets: ['{target}']\n",
            dir.join("rules.yml").display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian's prometheus package; scripts/test installs it)");
        Self {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The shipped rules with shortened `for:` and windows (see the module docs).
fn shortened_rules() -> String {
    let rules = include_str!("../../deploy/prometheus/weir-rules.yml");
    let mut out = String::new();
    for line in rules.lines() {
        let line = match line.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 2s", &line[..line.len() - line.trim_start().len()]),
            None => line
                .replace("[5m]", "[15s]")
                .replace("[30m]", "[2m]")
                .replace("[10m]", "[30s]"),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The example's configuration with what this test needs: 4 slots (so a dozen clients
/// saturate them), a breaker on the query resource with a short window, and the quotas
/// shared through Redis (so the dashboard's Redis panels have a backend to show).
fn config(redis: &str) -> weir::Config {
    let text = include_str!("../examples/service/service.toml")
        .replace("max_concurrent = 100", "max_concurrent = 4")
        .replace(
            "slot_lease_timeout = \"30s\"",
            "slot_lease_timeout = \"30s\"\n\
             breaker = { error_rate = 0.5, window = \"2s\", min_calls = 5, cooldown = \"60s\" }",
        )
        .replace(
            "scope = \"tenant\"",
            &format!("scope = \"tenant\"\nbackend = \"redis\"\nurl = \"{redis}\""),
        )
        .replace(
            "scope = \"global\"",
            &format!("scope = \"global\"\nbackend = \"redis\"\nurl = \"{redis}\""),
        );
    weir::Config::from_toml_str(&text).unwrap()
}

struct Client {
    http: reqwest::Client,
    service: String,
    prometheus: String,
}

impl Client {
    async fn query(&self, user: &str, body: &str) -> reqwest::StatusCode {
        self.http
            .post(format!("{}/query", self.service))
            .header("x-user-id", user)
            .body(body.to_string())
            .send()
            .await
            .map(|r| r.status())
            .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR)
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let r = self
            .http
            .get(format!("{}{path}{}", self.prometheus, query_string(query)))
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], "success", "{path} {query:?}: {body}");
        body["data"].clone()
    }

    /// The alerts firing now.
    async fn firing(&self) -> BTreeSet<String> {
        let data = self.api("/api/v1/alerts", &[]).await;
        data["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| a["labels"]["alertname"].as_str().unwrap().to_string())
            .collect()
    }

    /// The alerts that fired at any time in the last `range` (Prometheus's own
    /// `ALERTS` series).
    async fn fired_within(&self, range: Duration) -> BTreeSet<String> {
        let q = format!(
            "count by (alertname) (max_over_time(ALERTS{{alertstate=\"firing\"}}[{}s]))",
            range.as_secs().max(1)
        );
        let data = self.api("/api/v1/query", &[("query", &q)]).await;
        data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["metric"]["alertname"].as_str().unwrap().to_string())
            .collect()
    }
}

/// `?k=v&..`, percent-encoded (reqwest's `query` feature is not enabled here).
fn query_string(pairs: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let joined: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    if joined.is_empty() {
        String::new()
    } else {
        format!("?{}", joined.join("&"))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Every `expr` of every panel of the dashboard, with Grafana's variables filled in.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(include_str!("../../deploy/grafana/weir.json"))
        .expect("deploy/grafana/weir.json is valid JSON");
    let vars: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(
        vars.contains(&"datasource") && vars.contains(&"resource"),
        "{vars:?}"
    );
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$resource", ".*");
            out.push((panel["title"].as_str().unwrap().to_string(), expr));
        }
    }
    assert!(out.len() > 20, "{out:?}");
    out
}

/// The `weir_*` series names an expression reads (a histogram's `_bucket` as its name).
fn series_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("weir_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        names.insert(name.strip_suffix("_bucket").unwrap_or(name).to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_shipped_alerts_fire_under_overload_and_not_under_normal_load_and_every_panel_has_data() {
    let redis = redis_server::RedisServer::start();
    let rt = runtime();
    rt.block_on(async {
        let metrics = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Prefix("weir_job_".into()), weir_actors::DURATION_BUCKETS)
            .unwrap()
            .install_recorder()
            .unwrap();
        let runtime = Runtime::start(config(&redis.url())).unwrap();
        let settings = app::Settings {
            latency: Duration::from_millis(300),
            max_body: 1024,
        };
        let router = app::router(runtime.clone(), metrics, settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let prometheus = Prometheus::start(&target, &shortened_rules());
        let client = Arc::new(Client {
            http: reqwest::Client::new(),
            service: format!("http://{target}"),
            prometheus: prometheus.url.clone(),
        });

        // Prometheus is up and scraping the service.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client
                .http
                .get(format!("{}/api/v1/query?query=weir_slots", prometheus.url))
                .send()
                .await;
            if let Ok(r) = ready {
                let body: Value = r.json().await.unwrap_or_default();
                if body["data"]["result"].as_array().is_some_and(|a| !a.is_empty()) {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "prometheus never scraped the service: {}",
                prometheus.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let rules = client.api("/api/v1/rules", &[]).await;
        let loaded = rules["groups"].as_array().unwrap().len();
        assert_eq!(loaded, 2, "both rule groups loaded: {}", prometheus.log());

        // Normal load: one query at a time, five users each within 10 a minute.
        let normal = Instant::now();
        for i in 0..40u32 {
            let status = client.query(&format!("normal{}", i % 5), "{\"q\":1}").await;
            assert_eq!(status, reqwest::StatusCode::OK);
            tokio::time::sleep(Duration::from_millis(100)).await;
            let firing = client.firing().await;
            assert!(firing.is_empty(), "under normal load, firing: {firing:?}");
        }
        // A few more evaluations of the rules after the last of it.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let fired = client.fired_within(normal.elapsed()).await;
        assert!(fired.is_empty(), "under normal load, fired: {fired:?}");

        // Overload, part 1: a dozen clients saturate the 4 slots (each request from a
        // fresh user, so no per-user quota stops them), and one user asks far over its
        // quota. Both alerts must fire while it lasts.
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let mut load = Vec::new();
        for _ in 0..12 {
            let (client, stop, sent) = (client.clone(), stop.clone(), sent.clone());
            load.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = sent.fetch_add(1, Ordering::Relaxed);
                    client.query(&format!("busy{}", n / 8), "{\"q\":1}").await;
                }
            }));
        }
        {
            let (client, stop) = (client.clone(), stop.clone());
            load.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    client.query("greedy", "{\"q\":1}").await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }));
        }
        let overload = Instant::now();
        let mut seen = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(seen.contains("WeirResourceSaturated") && seen.contains("WeirQuotaRefusalsHigh")) {
            assert!(
                Instant::now() < deadline,
                "after 60s of overload only {seen:?} fired"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            seen.extend(client.firing().await);
        }
        stop.store(true, Ordering::Relaxed);
        for task in load {
            task.await.unwrap();
        }

        // Part 2: the downstream fails; past its 2 s window of successes, the breaker
        // sees only failures and opens. Calls made while it is open wait out their 5 s
        // and are skipped for want of a slot.
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Failures until the breaker holds the slots back: the call after the opening
        // waits out its 5 s and gets 503.
        let mut failed = 0;
        loop {
            let status = client.query(&format!("failing{failed}"), "{\"fail\":true}").await;
            if status != reqwest::StatusCode::BAD_GATEWAY {
                assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE);
                break;
            }
            failed += 1;
            assert!(failed <= 10, "10 failures in a row and the breaker did not open");
        }
        assert!(
            failed >= 5,
            "the breaker opened after {failed} failures, under its min_calls"
        );
        let refused: Vec<_> = (0..3u32)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move { client.query(&format!("refused{i}"), "{\"q\":1}").await })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !seen.contains("WeirBreakerOpen") {
            assert!(
                Instant::now() < deadline,
                "the breaker alert never fired; {seen:?} did"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            seen.extend(client.firing().await);
        }
        for call in refused {
            assert_eq!(call.await.unwrap(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
        }
        let fired = client
            .fired_within(overload.elapsed() + Duration::from_secs(1))
            .await;
        for alert in OVERLOAD_ALERTS {
            assert!(
                fired.contains(alert),
                "{alert} did not fire under the overload: {fired:?}"
            );
        }

        // The dashboard: its queries name only series the service exports, and each
        // returns a series from this Prometheus.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let exported = client
            .http
            .get(format!("{}/metrics", client.service))
            .send()
            .await;
        let exported = exported.unwrap().text().await.unwrap();
        let exported: BTreeSet<&str> = exported
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        let mut empty = Vec::new();
        for (title, expr) in dashboard_queries() {
            for name in series_names(&expr) {
                assert!(
                    exported.contains(name.as_str()),
                    "panel {title:?} reads {name}, not exported"
                );
            }
            let data = client.api("/api/v1/query", &[("query", &expr)]).await;
            if data["result"].as_array().is_none_or(|r| r.is_empty()) {
                empty.push((title, expr));
            }
        }
        assert!(empty.is_empty(), "panel queries with no series: {empty:#?}");
        runtime.shutdown(Duration::from_secs(1)).await;
    });
    drop(rt);
}

/// The promtool cases (scripts/test runs them): every alert of the shipped rules has at
/// least one case where it fires and one where it stays silent.
#[test]
fn every_shipped_alert_has_a_firing_and_a_silent_promtool_case() {
    let rules = include_str!("../../deploy/prometheus/weir-rules.yml");
    let tests = include_str!("../../deploy/prometheus/weir-rules.test.yml");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 10, "{alerts:?}");
    let mut cases: Vec<(&str, bool)> = Vec::new();
    let lines: Vec<&str> = tests.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if let Some(name) = line.trim().strip_prefix("alertname: ") {
            let next = lines.get(i + 1).map_or("", |l| l.trim());
            cases.push((name, next != "exp_alerts: []"));
        }
    }
    for alert in alerts {
        assert!(cases.contains(&(alert, true)), "{alert} has no firing case");
        assert!(cases.contains(&(alert, false)), "{alert} has no silent case");
    }
}
