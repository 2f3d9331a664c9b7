//! The example service over real HTTP (issue 15 item 5): the router of
//! examples/service on a loopback port, a real client. The 11th query of a user in a
//! minute gets 429 with Retry-After equal to the refusal's retry_after rounded up;
//! another user is unaffected; /stats matches `Runtime::usage`; /metrics counts what the
//! clients saw; bad requests get 400 and nothing panics.

#[path = "../examples/service/app.rs"]
#[allow(dead_code, unreachable_pub)]
mod app;

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use reqwest::StatusCode;
use serde_json::Value;
use weir_actors::Runtime;

/// One global recorder per test process (the runtime's supervisor runs on a thread of
/// its own, so a thread-local recorder would not see it).
fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // As the example's main.rs: the durations as histograms.
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Prefix("weir_job_".into()), weir_actors::DURATION_BUCKETS)
                .unwrap()
                .install_recorder()
                .unwrap()
        })
        .clone()
}

/// Starts the service on a loopback port; returns its base URL and its runtime.
async fn start(max_body: usize) -> (String, Runtime) {
    let metrics = recorder();
    let config = weir::Config::from_toml_str(include_str!("../examples/service/service.toml")).unwrap();
    let runtime = Runtime::start(config).unwrap();
    let settings = app::Settings {
        latency: Duration::from_millis(5),
        max_body,
    };
    let router = app::router(runtime.clone(), metrics, settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, runtime)
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn header(r: &reqwest::Response, name: &str) -> Option<u64> {
    r.headers().get(name)?.to_str().ok()?.parse().ok()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// One test function: the two parts share the process's global recorder and the
/// resource name, and the exported counters must be the first part's alone.
#[test]
fn the_example_service_over_http() {
    quotas_answer_429_with_retry_after_and_stats_and_metrics_match_what_clients_saw();
    each_kind_of_bad_request_gets_its_400_and_random_requests_never_fail_the_server();
}

fn quotas_answer_429_with_retry_after_and_stats_and_metrics_match_what_clients_saw() {
    runtime().block_on(async {
        let (url, runtime) = start(1024).await;
        let client = reqwest::Client::new();
        let post = |user: &str| {
            client
                .post(format!("{url}/query"))
                .header("x-user-id", user)
                .body(r#"{"q":"select 1"}"#)
                .send()
        };
        for _ in 0..10 {
            let r = post("alice").await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
        let r = post("alice").await.unwrap();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry_after = header(&r, "retry-after").expect("a Retry-After header");
        assert_eq!(header(&r, "ratelimit-limit"), Some(10));
        assert_eq!(header(&r, "ratelimit-remaining"), Some(0));
        assert_eq!(header(&r, "ratelimit-reset"), Some(retry_after));
        let body: Value = r.json().await.unwrap();
        let exact = body["retry_after"].as_f64().unwrap();
        assert_eq!(retry_after, exact.ceil() as u64, "{body}");
        assert!(exact > 0.0 && exact <= 60.0, "{body}");

        // Another user is not affected.
        let r = post("bob").await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["user"], "bob");

        // /stats/alice is Runtime::usage (times move on between the two reads).
        let served: Value = client
            .get(format!("{url}/stats/alice"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let direct = serde_json::to_value(runtime.usage("alice").await).unwrap();
        for (i, w) in direct["windows"].as_array().unwrap().iter().enumerate() {
            for field in ["quota", "scope", "window", "current", "limit", "remaining"] {
                assert_eq!(served["windows"][i][field], w[field], "windows[{i}].{field}");
            }
        }
        for (i, c) in direct["costs"].as_array().unwrap().iter().enumerate() {
            for field in ["quota", "spent", "reserved", "budget", "remaining"] {
                assert_eq!(served["costs"][i][field], c[field], "costs[{i}].{field}");
            }
        }
        assert_eq!(served["windows"][0]["current"], 10);
        assert_eq!(served["costs"][0]["spent"], 10 * app::cost_of(16));

        let text = client
            .get(format!("{url}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let jobs = |o: &str| {
            metric(
                &text,
                &format!("weir_jobs_total{{resource=\"query\",outcome=\"{o}\"}}"),
            )
        };
        assert_eq!(jobs("completed"), Some(11.0), "{text}");
        assert_eq!(jobs("skipped"), Some(1.0));
        assert_eq!(
            metric(&text, "weir_quota_refusals_total{limit=\"per_user/1m\"}"),
            Some(1.0)
        );
        assert_eq!(
            metric(
                &text,
                "weir_tenant_jobs_total{resource=\"query\",tenant=\"alice\",outcome=\"completed\"}"
            ),
            Some(10.0)
        );

        assert_eq!(
            metric(
                &text,
                "weir_jobs_skipped_total{resource=\"query\",reason=\"quota_exceeded\"}"
            ),
            Some(1.0)
        );
        // Ten of alice's and one of bob's, each at its estimate (the job reports none).
        assert_eq!(
            metric(&text, "weir_quota_cost_charged_total"),
            Some((11 * app::cost_of(16)) as f64)
        );
        the_exposition_passes_promtool_with_help_on_every_series_and_histograms(&text);

        let r = client.get(format!("{url}/health")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let health: Value = r.json().await.unwrap();
        assert_eq!(health["status"], "healthy");

        runtime.shutdown(Duration::from_secs(1)).await;
        let r = client.get(format!("{url}/health")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let health: Value = r.json().await.unwrap();
        assert_eq!(health["checks"]["runtime"], "stopped");
    });
}

/// Issue 25: `promtool check metrics` (Prometheus's own linter: HELP text, units, counter
/// names) exits 0 on the service's /metrics after a load; every series has HELP; the wait
/// and run durations are histograms, not summaries.
fn the_exposition_passes_promtool_with_help_on_every_series_and_histograms(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test installs it)");
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let typed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(typed.len() > 20, "{text}");
    for name in &typed {
        assert!(text.contains(&format!("# HELP {name} ")), "no HELP for {name}");
    }
    for name in ["weir_job_wait_seconds", "weir_job_run_seconds"] {
        assert!(
            text.contains(&format!("# TYPE {name} histogram")),
            "{name} is not a histogram:\n{text}"
        );
        assert!(text.contains(&format!("{name}_bucket{{resource=\"query\",le=\"0.001\"}}")));
    }
}

fn each_kind_of_bad_request_gets_its_400_and_random_requests_never_fail_the_server() {
    let rt = runtime();
    let (url, runtime) = rt.block_on(start(64));
    let client = reqwest::Client::new();
    let send = |user: Option<Vec<u8>>, body: Vec<u8>| {
        let mut req = client.post(format!("{url}/query")).body(body);
        if let Some(user) = user {
            req = req.header(
                "x-user-id",
                reqwest::header::HeaderValue::from_bytes(&user).unwrap(),
            );
        }
        rt.block_on(async {
            let r = req.send().await.unwrap();
            let status = r.status();
            (status, r.text().await.unwrap())
        })
    };
    let (status, text) = send(None, b"{}".to_vec());
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("missing header x-user-id"), "{text}");
    let (status, text) = send(Some(b"al ice".to_vec()), b"{}".to_vec());
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("x-user-id must be"), "{text}");
    let (status, text) = send(Some(b"alice".to_vec()), b"not json".to_vec());
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("body is not JSON"), "{text}");
    let (status, text) = send(Some(b"alice".to_vec()), vec![b' '; 65]);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("body over the limit of 64 bytes"), "{text}");

    let mut runner = TestRunner::new(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = (
        prop::option::of(prop::collection::vec(any::<u8>(), 0..80)),
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..100),
            "[a-z0-9{}\":, ]{0,80}".prop_map(String::into_bytes),
        ],
    );
    runner
        .run(&strategy, |(user, body)| {
            // Values HTTP cannot carry (control bytes) never reach a server.
            let user = user.filter(|u| reqwest::header::HeaderValue::from_bytes(u).is_ok());
            let (status, text) = send(user, body);
            prop_assert!(
                [
                    StatusCode::OK,
                    StatusCode::BAD_REQUEST,
                    StatusCode::TOO_MANY_REQUESTS
                ]
                .contains(&status),
                "{status}: {text}"
            );
            Ok(())
        })
        .unwrap();
    rt.block_on(runtime.shutdown(Duration::from_secs(1)));
}

#[path = "common/redis_server.rs"]
#[allow(dead_code, unreachable_pub)]
mod redis_server;

/// /health turns 503 naming the backend when a `fail_closed` Redis backend is stopped,
/// and 200 again when it returns. Uses its own resource and no jobs, so it leaves the
/// counters of the test above alone.
#[test]
fn health_turns_503_while_a_fail_closed_redis_backend_is_down() {
    let mut redis = redis_server::RedisServer::start();
    runtime().block_on(async {
        let config = weir::Config::from_toml_str(&format!(
            "[backends.shared]\nbackend = \"redis\"\nurl = \"{}\"\non_failure = \"fail_closed\"\n",
            redis.url()
        ))
        .unwrap();
        let runtime = Runtime::start(config).unwrap();
        let settings = app::Settings {
            latency: Duration::from_millis(5),
            max_body: 64,
        };
        let router = app::router(runtime.clone(), recorder(), settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let client = reqwest::Client::new();
        let health = || async {
            let r = client.get(&url).send().await.unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap())
        };
        let (status, body) = health().await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["checks"]["backend:shared"], "ok");

        redis.stop();
        let (status, body) = health().await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["checks"]["backend:shared"], "unreachable (fail_closed)");

        redis.restart();
        let (status, body) = health().await;
        assert_eq!(status, StatusCode::OK, "{body}");
        runtime.shutdown(Duration::from_secs(1)).await;
    });
}
