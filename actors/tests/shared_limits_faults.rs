//! Shared quotas and rates when Redis fails (issue 16): stopped mid-run, restarted,
//! paused past a call's timeout; and bad input refused at start, naming the field.
//!
//! One runtime against a real `redis-server` the test starts and stops; the multi-process
//! behaviour is in `shared_limits_multiprocess.rs`.

mod common;

use std::time::Duration;

use common::redis_server::RedisServer;
use weir::{
    BackendKind, Config, JobError, JobSpec, Outcome, QuotaConfig, RateLimitConfig, SharedFailure, SkipReason,
    WindowConfig,
};
use weir_actors::Runtime;

fn run<F: std::future::Future>(f: F) -> F::Output {
    actix_rt::System::new().block_on(f)
}

fn quota_config(url: &str, policy: SharedFailure) -> Config {
    let mut c = Config::default();
    c.scheduler.batch_delay = Duration::ZERO;
    c.quotas.insert(
        "per_user".into(),
        QuotaConfig {
            windows: vec![WindowConfig {
                limit: 10,
                per: Duration::from_secs(60),
            }],
            backend: BackendKind::Redis,
            url: url.into(),
            on_failure: policy,
            ..QuotaConfig::default()
        },
    );
    c
}

fn rate_config(url: &str, policy: SharedFailure) -> Config {
    let mut c = Config::default();
    c.scheduler.batch_delay = Duration::ZERO;
    c.resources.entry("api".into()).or_default().rate_limit = Some(RateLimitConfig {
        requests: 1000,
        per: Duration::from_secs(1),
        burst: 100,
        backend: BackendKind::Redis,
        url: url.into(),
        on_failure: policy,
        ..RateLimitConfig::default()
    });
    c
}

async fn jobs(
    rt: &Runtime,
    tenant: &str,
    resource: &str,
    n: usize,
    wait: Option<Duration>,
) -> Vec<Outcome<()>> {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let mut spec = JobSpec::new(tenant, resource);
            if let Some(w) = wait {
                spec = spec.wait_for_quota().wait_timeout(w);
            }
            rt.submit(spec, |_ctx| async { Ok::<_, JobError>(()) }).unwrap()
        })
        .collect();
    futures::future::join_all(handles).await
}

fn count(outcomes: &[Outcome<()>], f: impl Fn(&Outcome<()>) -> bool) -> usize {
    outcomes.iter().filter(|o| f(o)).count()
}

fn unavailable(o: &Outcome<()>) -> bool {
    matches!(o, Outcome::Skipped(SkipReason::QuotaUnavailable { .. }))
}

fn exceeded(o: &Outcome<()>) -> bool {
    matches!(o, Outcome::Skipped(SkipReason::QuotaExceeded { .. }))
}

#[test]
fn fail_open_admits_and_counts_every_admission_while_redis_is_down_and_resumes_after_a_restart() {
    let mut server = RedisServer::start();
    let url = server.url();
    run(async {
        let rt = Runtime::start(quota_config(&url, SharedFailure::FailOpen)).unwrap();
        let before = jobs(&rt, "alice", "db", 10, None).await;
        assert_eq!(count(&before, Outcome::is_completed), 10);
        server.stop();
        // Over alice's 10/min, but nobody can check: every one is admitted and counted.
        let down = jobs(&rt, "alice", "db", 20, None).await;
        assert_eq!(count(&down, Outcome::is_completed), 20);
        assert_eq!(rt.backend_stats().await["quotas"].fail_open_admissions, 20);
        server.restart();
        // The same process, no restart: once its backoff lets it reconnect, Redis checks
        // again (a probe tenant's admission is counted by Redis, not failed open).
        let grants = rt.backend_stats().await["quotas"].grants;
        for _ in 0..300 {
            jobs(&rt, "probe", "db", 1, None).await;
            if rt.backend_stats().await["quotas"].grants > grants {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            rt.backend_stats().await["quotas"].grants > grants,
            "never reconnected"
        );
        let after = jobs(&rt, "bob", "db", 12, None).await;
        assert_eq!(count(&after, Outcome::is_completed), 10, "{after:?}");
        assert_eq!(count(&after, exceeded), 2, "{after:?}");
        rt.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn fail_closed_admits_none_while_redis_is_down() {
    let mut server = RedisServer::start();
    let url = server.url();
    run(async {
        let rt = Runtime::start(quota_config(&url, SharedFailure::FailClosed)).unwrap();
        assert_eq!(
            count(&jobs(&rt, "alice", "db", 3, None).await, Outcome::is_completed),
            3
        );
        server.stop();
        let refused = jobs(&rt, "alice", "db", 5, None).await;
        assert_eq!(count(&refused, unavailable), 5, "{refused:?}");
        // A job that waits for its quota waits for Redis, within its wait timeout only.
        let waited = jobs(&rt, "alice", "db", 2, Some(Duration::from_millis(300))).await;
        assert_eq!(count(&waited, unavailable), 2, "{waited:?}");
        assert_eq!(rt.backend_stats().await["quotas"].fail_open_admissions, 0);
        rt.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn fail_open_local_holds_the_local_limits_while_redis_is_down() {
    let mut server = RedisServer::start();
    let url = server.url();
    run(async {
        let rt = Runtime::start(quota_config(&url, SharedFailure::FailOpenLocal)).unwrap();
        assert_eq!(
            count(&jobs(&rt, "alice", "db", 4, None).await, Outcome::is_completed),
            4
        );
        server.stop();
        // This process admitted 4 of alice's 10/min through Redis; alone it allows 6 more.
        let down = jobs(&rt, "alice", "db", 10, None).await;
        assert_eq!(count(&down, Outcome::is_completed), 6, "{down:?}");
        assert_eq!(count(&down, exceeded), 4, "{down:?}");
        assert_eq!(rt.backend_stats().await["quotas"].fail_open_admissions, 6);
        rt.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn a_paused_redis_holds_no_job_past_its_wait_timeout() {
    let server = RedisServer::start();
    let url = server.url();
    run(async {
        let rt = Runtime::start(quota_config(&url, SharedFailure::FailClosed)).unwrap();
        assert_eq!(
            count(&jobs(&rt, "alice", "db", 1, None).await, Outcome::is_completed),
            1
        );
        let mut conn = server.connection();
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(5000)
            .arg("ALL")
            .query(&mut conn)
            .unwrap();
        let outcome = jobs(&rt, "alice", "db", 1, Some(Duration::from_millis(300))).await;
        // It ended while Redis was still paused: not held until Redis answered (a PING
        // gets no answer within 200 ms).
        let mut probe = server.connection();
        probe.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let still_paused = redis::cmd("PING").query::<String>(&mut probe).is_err();
        assert!(unavailable(&outcome[0]), "{outcome:?}");
        assert!(still_paused, "the job's outcome waited for the pause to end");
        let _: () = redis::cmd("CLIENT").arg("UNPAUSE").query(&mut conn).unwrap();
        rt.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn a_shared_rate_fails_closed_or_open_as_configured_while_redis_is_down() {
    let mut server = RedisServer::start();
    let url = server.url();
    run(async {
        let closed = Runtime::start(rate_config(&url, SharedFailure::FailClosed)).unwrap();
        let open = Runtime::start(rate_config(&url, SharedFailure::FailOpen)).unwrap();
        assert_eq!(
            count(&jobs(&closed, "t", "api", 3, None).await, Outcome::is_completed),
            3
        );
        assert_eq!(
            count(&jobs(&open, "t", "api", 3, None).await, Outcome::is_completed),
            3
        );
        server.stop();
        let none = jobs(&closed, "t", "api", 3, Some(Duration::from_millis(300))).await;
        assert_eq!(
            count(&none, |o| matches!(o, Outcome::Skipped(SkipReason::NoSlot))),
            3,
            "{none:?}"
        );
        let all = jobs(&open, "t", "api", 3, None).await;
        assert_eq!(count(&all, Outcome::is_completed), 3, "{all:?}");
        assert_eq!(open.backend_stats().await["api"].fail_open_admissions, 3);
        assert_eq!(closed.backend_stats().await["api"].fail_open_admissions, 0);
        closed.shutdown(Duration::from_secs(1)).await;
        open.shutdown(Duration::from_secs(1)).await;
    });
}

#[test]
fn an_unreachable_url_is_refused_at_start_naming_the_field() {
    // Nothing listens on port 1.
    let e = Runtime::start(quota_config("redis://127.0.0.1:1", SharedFailure::FailOpen)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("quotas.per_user.url must be a reachable Redis server"),
        "{e}"
    );
    let e = Runtime::start(rate_config("redis://127.0.0.1:1", SharedFailure::FailOpen)).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("resources.api.rate_limit.url must be a reachable Redis server"),
        "{e}"
    );
}

fn from_file(text: &str) -> Result<Config, weir::ConfigError> {
    let path = std::env::temp_dir().join(format!("weir-shared-{}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let got = weir_actors::load_config_from(Some(&path), std::iter::empty());
    let _ = std::fs::remove_file(&path);
    got
}

#[test]
fn bad_shared_limit_fields_are_refused_naming_the_field() {
    let base = "[quotas.q]\nwindows = [{ limit = 10, per = \"1m\" }]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n";
    let cases = [
        ("key_prefix = 5\n", "quotas.q.key_prefix"),
        (
            "key_prefix = \"a{b\"\n",
            "quotas.q.key_prefix must be non-empty, without '{' or '}'",
        ),
        (
            "on_failure = \"sometimes\"\n",
            "quotas.q.on_failure: unknown variant `sometimes`, expected one of `fail_open`, `fail_closed`, `fail_open_local`",
        ),
    ];
    for (extra, want) in cases {
        let e = from_file(&format!("{base}{extra}")).unwrap_err();
        assert!(e.to_string().contains(want), "{extra}: {e}");
    }
    let e = from_file(&base.replace("limit = 10", "limit = 0")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("quotas.q.windows[0].limit must be between 1 and"),
        "{e}"
    );
    let e = from_file(&base.replace("redis://127.0.0.1:6379", "http://x")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("quotas.q.url must be a redis:// or rediss:// URL"),
        "{e}"
    );
    let e = from_file(
        "[resources.api]\nrate_limit = { requests = 5, backend = \"redis\", url = \"redis://h\", key_prefix = [] }\n",
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with("resources.api.rate_limit.key_prefix"),
        "{e}"
    );
}

#[test]
fn a_reported_cost_replaces_the_estimate_in_the_shared_budget() {
    let server = RedisServer::start();
    let url = server.url();
    let mut config = Config::default();
    config.scheduler.batch_delay = Duration::ZERO;
    config.quotas.insert(
        "spend".into(),
        QuotaConfig {
            scope: weir::QuotaScope::Global,
            cost_budget: Some(10),
            cost_window: Some(Duration::from_secs(3600)),
            backend: BackendKind::Redis,
            url: url.clone(),
            ..QuotaConfig::default()
        },
    );
    let charges = |server: &RedisServer| -> Vec<String> {
        redis::cmd("ZRANGE")
            .arg("weir:quota:spend:g:cost")
            .arg(0)
            .arg(-1)
            .query(&mut server.connection())
            .unwrap()
    };
    let admitted = run(async {
        let rt = Runtime::start(config).unwrap();
        let mut admitted = 0;
        // Estimated 5, each really costs 1: charged at its estimate, settled to 1 when it
        // ends. Without settling, 2 would fit in 10; with it, 6 (5 settled at 1, + 5).
        for i in 0..8 {
            let spec = JobSpec::new("t", "db").estimated_cost(5);
            let outcome = rt
                .submit(spec, |ctx| async move {
                    ctx.report_cost(1);
                    Ok::<_, JobError>(())
                })
                .unwrap()
                .await;
            if !outcome.is_completed() {
                break;
            }
            admitted += 1;
            // The settlement travels after the outcome: wait until Redis has it.
            for _ in 0..200 {
                if charges(&server).iter().filter(|c| c.ends_with(":1")).count() > i {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        rt.shutdown(Duration::from_secs(1)).await;
        admitted
    });
    assert_eq!(admitted, 6);
    let left = charges(&server);
    assert_eq!(left.iter().filter(|c| c.ends_with(":1")).count(), 6, "{left:?}");
}
