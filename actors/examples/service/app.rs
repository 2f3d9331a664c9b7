//! The example service's HTTP surface, as a library module: `main.rs` serves it, and
//! tests/service_http.rs starts the same router on a loopback port.
//!
//! axum, not actix-web: weir's runtime is its own actix system (started on a thread of
//! its own when the caller is not inside one), so the HTTP server is free to be the
//! tokio-native one, and axum takes tower layers directly, which is what this example
//! demonstrates: the `/query` route calls a tower service wrapped in
//! `weir_actors::tower::WeirLayer`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use serde_json::json;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};
use weir::{BackendKind, FailurePolicy};
use weir::{BreakerState, TenantId};
use weir_actors::tower::{Call, WeirError, WeirLayer};
use weir_actors::Runtime;

/// The resource every query runs on.
pub(crate) const RESOURCE: &str = "query";

/// One query, as the weir job sees it.
#[derive(Clone, Debug)]
pub(crate) struct Query {
    user: String,
    bytes: usize,
    cost: u64,
    latency: Duration,
    /// The body asked the downstream to fail (`"fail": true`), as a store in an outage
    /// answers: for trying the breaker, the error rate and their alerts.
    fail: bool,
}

/// What the downstream answers a query that asked it to fail.
#[derive(Clone, Debug)]
pub(crate) struct DownstreamError;

impl std::fmt::Display for DownstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the downstream failed the query")
    }
}

/// What `POST /query` answers.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Answer {
    user: String,
    bytes: usize,
    cost_microdollars: u64,
}

/// Settings of the HTTP surface (the limits are the runtime's configuration).
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// How long each query's job takes (the downstream's latency).
    pub latency: Duration,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
}

/// Cost of a query in micro-dollars: a base price plus a price per byte of its body.
pub(crate) fn cost_of(bytes: usize) -> u64 {
    1_000 + 10 * bytes as u64
}

struct App {
    runtime: Runtime,
    metrics: PrometheusHandle,
    query: BoxCloneSyncService<Query, Answer, WeirError<DownstreamError>>,
    settings: Settings,
}

/// The service's routes over `runtime` (which should be started after the Prometheus
/// recorder behind `metrics` was installed).
pub(crate) fn router(runtime: Runtime, metrics: PrometheusHandle, settings: Settings) -> Router {
    let downstream = tower::service_fn(|q: Query| async move {
        tokio::time::sleep(q.latency).await; // the downstream's work
        if q.fail {
            return Err(DownstreamError);
        }
        Ok(Answer {
            user: q.user,
            bytes: q.bytes,
            cost_microdollars: q.cost,
        })
    });
    let layer = WeirLayer::new(runtime.clone(), RESOURCE, |q: &Query| Call {
        tenant: TenantId::new(&q.user),
        estimated_cost: q.cost,
    });
    let app = App {
        runtime,
        metrics,
        query: BoxCloneSyncService::new(layer.layer(downstream)),
        settings,
    };
    Router::new()
        .route("/query", post(query))
        .route("/stats/{name}", get(stats))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .with_state(Arc::new(app))
}

fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

/// Whole seconds, rounded up (a client that waits this long is past the refusal).
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A user id: 1 to 64 characters of `A-Z a-z 0-9 _ - .`.
fn user_id(raw: Option<&HeaderValue>) -> Result<String, String> {
    const RULE: &str = "x-user-id must be 1 to 64 characters of A-Z a-z 0-9 _ - .";
    let raw = raw.ok_or_else(|| "missing header x-user-id".to_string())?;
    let text = raw.to_str().map_err(|_| RULE.to_string())?;
    let ok = (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(text.to_string())
    } else {
        Err(RULE.to_string())
    }
}

async fn query(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    let user = match user_id(headers.get("x-user-id")) {
        Ok(user) => user,
        Err(message) => return bad_request(message),
    };
    let max = app.settings.max_body;
    let bytes = match axum::body::to_bytes(body, max).await {
        Ok(bytes) => bytes,
        Err(_) => return bad_request(format!("body over the limit of {max} bytes")),
    };
    let fail = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(body) => body.get("fail") == Some(&serde_json::Value::Bool(true)),
        Err(e) => return bad_request(format!("body is not JSON: {e}")),
    };
    let q = Query {
        user: user.clone(),
        bytes: bytes.len(),
        cost: cost_of(bytes.len()),
        latency: app.settings.latency,
        fail,
    };
    match app.query.clone().oneshot(q).await {
        Ok(answer) => (StatusCode::OK, Json(answer)).into_response(),
        Err(refusal) => refused(&app, &user, refusal).await,
    }
}

/// A refusal in HTTP terms: 429 for a quota, 503 for no slot or an open breaker, 502 for
/// the downstream's own failure.
async fn refused(app: &App, user: &str, refusal: WeirError<DownstreamError>) -> Response {
    let message = refusal.to_string();
    let exact = refusal.retry_after();
    let retry_after = exact.map(ceil_secs);
    let status = match &refusal {
        WeirError::QuotaExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
        WeirError::NoSlot { .. } | WeirError::BreakerOpen { .. } => StatusCode::SERVICE_UNAVAILABLE,
        WeirError::OverBudget { .. } => StatusCode::TOO_MANY_REQUESTS,
        WeirError::Inner(_) => StatusCode::BAD_GATEWAY,
        WeirError::Stopped(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = json!({
        "error": message,
        "retry_after": exact.map(|d| d.as_secs_f64()),
    });
    let mut response = (status, Json(body)).into_response();
    let headers = response.headers_mut();
    if let Some(secs) = retry_after {
        headers.insert("retry-after", HeaderValue::from(secs));
    }
    if let WeirError::QuotaExceeded { limit, .. } = &refusal {
        // RateLimit-*: the refusing window (the full one of the named quota that resets
        // last), or the cost budget when the limit is one.
        let usage = app.runtime.usage(user).await;
        let quota = limit.split('/').next().unwrap_or_default();
        let window = usage
            .windows
            .iter()
            .filter(|w| w.quota == quota && w.remaining == 0)
            .max_by_key(|w| w.reset);
        let (cap, remaining) = match window {
            Some(w) => (u64::from(w.limit), u64::from(w.remaining)),
            None => usage
                .costs
                .iter()
                .find(|c| c.quota == quota)
                .map_or((0, 0), |c| (c.budget, c.remaining)),
        };
        headers.insert("ratelimit-limit", HeaderValue::from(cap));
        headers.insert("ratelimit-remaining", HeaderValue::from(remaining));
        headers.insert("ratelimit-reset", HeaderValue::from(retry_after.unwrap_or(0)));
    }
    response
}

async fn stats(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    let value = HeaderValue::from_str(&name).ok();
    if let Err(message) = user_id(value.as_ref()) {
        return bad_request(message.replace("x-user-id", "the user name"));
    }
    Json(app.runtime.usage(name).await).into_response()
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let stats = app.runtime.stats().await;
    let mut checks = serde_json::Map::new();
    let mut healthy = true;
    let running = app.runtime.is_running();
    checks.insert("runtime".into(), json!(if running { "ok" } else { "stopped" }));
    healthy &= running;
    // A shared slot backend that fails closed grants nothing while Redis is down: the
    // service cannot serve that resource, so it is unhealthy. (One under
    // fail_open_local still serves, within its local cap.)
    for (name, b) in &app.runtime.config().backends {
        if b.backend != BackendKind::Redis || b.on_failure != FailurePolicy::FailClosed {
            continue;
        }
        let reachable = redis_answers(&b.url).await;
        let check = if reachable {
            "ok"
        } else {
            "unreachable (fail_closed)"
        };
        checks.insert(format!("backend:{name}"), json!(check));
        healthy &= reachable;
    }
    for (name, r) in &stats.resources {
        if r.resilience.breaker == Some(BreakerState::Open) {
            checks.insert(format!("breaker:{name}"), json!("open"));
            healthy = false;
        }
    }
    let status = if healthy { "healthy" } else { "unhealthy" };
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(json!({ "status": status, "checks": checks }))).into_response()
}

/// True when the Redis server at `url` answers PING within half a second.
async fn redis_answers(url: &str) -> bool {
    let ping = async {
        let client = redis::Client::open(url).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING").query_async::<String>(&mut conn).await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), ping).await,
        Ok(Some(_))
    )
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    // Brings the snapshot-derived series up to date before rendering.
    app.runtime.stats().await;
    (
        [("content-type", "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}
