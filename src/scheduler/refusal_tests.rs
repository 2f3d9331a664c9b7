//! Issue 26 on the scheduler: an overload refusal with a Retry-After pauses every job of
//! a resource whose rate is learned, a retry waits for that pause and its own backoff,
//! and a refusal stays out of the breaker unless `breaker.count_overload` says so.

use super::tests::{granted, ms, poll};
use super::*;
use crate::breaker::BreakerState;
use crate::job::{JobSpec, OutcomeKind};

fn core(toml: &str) -> Scheduler<u32> {
    Scheduler::new(Config::from_toml_str(toml).unwrap())
}

const LEARNED: &str = r#"
[resources.p]
max_concurrent = 10
rate_limit = { requests = 1000, per = "1s", adaptive = { min = 1, initial = 100 } }
retry = { max_attempts = 3, base = "1ms", cap = "1ms" }
"#;

#[test]
fn a_retry_after_pauses_every_job_of_the_resource() {
    let mut s = core(LEARNED);
    for i in 0..5 {
        s.submit(JobSpec::new("t", "p"), i, ms(0));
    }
    // 100 per second: one grant now, the next at 10 ms.
    let first = granted(&mut poll(&mut s, ms(0)));
    assert_eq!(first.len(), 1);
    s.refused(first[0].0, Some(ms(500)), ms(1)).unwrap();
    s.complete(first[0].0, OutcomeKind::Failed, ms(1)).unwrap();
    // The pacer would have granted at 10 ms; the pause holds everyone to 501 ms.
    for t in [10, 100, 500] {
        assert!(granted(&mut poll(&mut s, ms(t))).is_empty(), "granted at {t} ms");
    }
    assert_eq!(granted(&mut poll(&mut s, ms(501))).len(), 1);
    let stats = s.snapshot(ms(501)).resources["p"].resilience;
    assert_eq!(
        (stats.overloads, stats.rate_cuts, stats.learned_requests),
        (1, 1, Some(90))
    );
}

#[test]
fn a_retry_waits_for_the_pause_and_its_own_backoff() {
    let mut s = core(LEARNED);
    s.submit(JobSpec::new("t", "p"), 0, ms(0));
    let first = granted(&mut poll(&mut s, ms(0)));
    s.refused(first[0].0, Some(ms(300)), ms(2)).unwrap();
    // Its own backoff is at most 1 ms; the resource is paused until 302 ms.
    let at = s.retry(first[0].0, 0, None, ms(2)).unwrap();
    assert_eq!(at, ms(302));
    assert!(granted(&mut poll(&mut s, ms(301))).is_empty());
    assert_eq!(granted(&mut poll(&mut s, ms(302))).len(), 1);
}

fn breaker_core(count_overload: bool) -> Scheduler<u32> {
    core(&format!(
        r#"
        [resources.p]
        max_concurrent = 10
        fallback = "f"
        breaker = {{ error_rate = 0.5, min_calls = 4, count_overload = {count_overload} }}
        [resources.f]
        max_concurrent = 1
        "#
    ))
}

/// Four calls refused as overloaded, of four: the breaker stays closed by default, and
/// opens when it counts overloads. Plain failures open it either way.
#[test]
fn overload_refusals_stay_out_of_the_breaker_unless_it_counts_them() {
    for (count_overload, overload, open) in [(false, true, false), (true, true, true), (false, false, true)] {
        let mut s = breaker_core(count_overload);
        for i in 0..4 {
            s.submit(JobSpec::new("t", "p"), i, ms(0));
        }
        for (key, _) in granted(&mut poll(&mut s, ms(0))) {
            if overload {
                s.refused(key, None, ms(1)).unwrap();
            }
            s.complete(key, OutcomeKind::Failed, ms(1)).unwrap();
        }
        let state = s.snapshot(ms(1)).resources["p"].resilience.breaker;
        let want = if open {
            BreakerState::Open
        } else {
            BreakerState::Closed
        };
        assert_eq!(
            state,
            Some(want),
            "count_overload {count_overload}, overload {overload}"
        );
    }
}

/// A lease time-out still counts, whatever `count_overload` says.
#[test]
fn lease_time_outs_still_open_the_breaker() {
    let mut s = breaker_core(false);
    for i in 0..4 {
        s.submit(JobSpec::new("t", "p"), i, ms(0));
    }
    for (key, _) in granted(&mut poll(&mut s, ms(0))) {
        s.complete(key, OutcomeKind::TimedOut, ms(1)).unwrap();
    }
    let state = s.snapshot(ms(1)).resources["p"].resilience.breaker;
    assert_eq!(state, Some(BreakerState::Open));
}

/// Found by the adaptive-rate property tests: a resource limited until T asked for a
/// wake-up at T, which was merged into an earlier one; when that earlier one found it
/// still limited it asked for nothing, and the resource never woke again.
#[test]
fn a_resource_still_limited_at_an_earlier_wake_asks_for_its_own() {
    let mut s = core(LEARNED);
    for i in 0..3 {
        s.submit(JobSpec::new("t", "p"), i, ms(0));
    }
    let first = granted(&mut poll(&mut s, ms(0)));
    assert_eq!(first.len(), 1);
    // The pacer's next grant is due at 10 ms (a wake-up is set for it). At 2 ms a
    // refusal pauses the resource until 52 ms: that wake-up is merged into the one at 10.
    assert!(granted(&mut poll(&mut s, ms(1))).is_empty());
    s.refused(first[0].0, Some(ms(50)), ms(2)).unwrap();
    s.complete(first[0].0, OutcomeKind::Failed, ms(2)).unwrap();
    assert!(granted(&mut poll(&mut s, ms(2))).is_empty());
    assert!(granted(&mut poll(&mut s, ms(10))).is_empty());
    assert_eq!(
        s.next_deadline(),
        Some(ms(52)),
        "the resource must wake at the pause's end"
    );
    assert_eq!(granted(&mut poll(&mut s, ms(52))).len(), 1);
}
