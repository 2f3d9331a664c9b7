//! Resilience policies in the scheduler core on virtual time (issue 5): the rate limit
//! admits no more than its rate over any window, the breaker routes to the fallback and
//! comes back, retries sleep without a slot and honour Retry-After. No clock, no actors:
//! `now` is a number the test moves.

use std::time::Duration;

use proptest::prelude::*;
use weir::testing::RateLimit;
use weir::RateLimitConfig;
use weir::{BreakerState, Config, Event, JobKey, JobSpec, OutcomeKind, Scheduler};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn grants(core: &mut Scheduler<u32>, now: Duration) -> Vec<(JobKey, u32)> {
    let mut events = Vec::new();
    core.poll(now, &mut events);
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::Granted { key, payload, .. } => Some((key, payload)),
            _ => None,
        })
        .collect()
}

/// Checks that every half-open window of length `per` holds at most `max` instants.
fn assert_rate(times: &[Duration], per: Duration, max: usize) {
    for (i, start) in times.iter().enumerate() {
        let inside = times[i..].iter().take_while(|t| **t < *start + per).count();
        assert!(
            inside <= max,
            "{inside} grants in the window from {start:?} (max {max})"
        );
    }
}

proptest! {
    /// The limiter alone, asked at arbitrary instants: admissions never exceed
    /// `floor(requests x safety_factor)` in any window of length `per`.
    #[test]
    fn rate_limit_admits_no_more_than_its_rate_over_any_window(
        requests in 1u32..50,
        per_ms in 10u64..5_000,
        factor in 0.1f64..=1.0,
        gaps in proptest::collection::vec(0u64..200, 1..400),
    ) {
        let cfg = RateLimitConfig { requests, per: ms(per_ms), safety_factor: factor, burst: 1, ..RateLimitConfig::default() };
        let max = cfg.effective_requests() as usize;
        let mut limit = RateLimit::new(&cfg);
        let mut now = Duration::ZERO;
        let mut admitted = Vec::new();
        for gap in gaps {
            now += ms(gap);
            match limit.check(now) {
                Ok(()) => admitted.push(now),
                Err(at) => prop_assert!(at > now, "a refusal names a later instant"),
            }
        }
        assert_rate(&admitted, ms(per_ms), max);
    }

    /// The whole scheduler with a rate-limited resource, jobs arriving and finishing at
    /// random: grants obey the rate, and a refusal always leaves a future wake-up.
    #[test]
    fn scheduler_grants_obey_the_rate_and_always_leave_a_wake_up(
        arrivals in proptest::collection::vec((0u64..300, 1u32..4), 1..60),
        run_ms in 1u64..500,
    ) {
        let cfg = Config::from_toml_str(
            "[resources.api]\nmax_concurrent = 3\nslot_wait_timeout = \"1h\"\n\
             rate_limit = { requests = 10, per = \"1s\", safety_factor = 0.8 }\n\
             jitter = { min = 0.9, max = 1.6, seed = 3 }\n",
        ).unwrap();
        let mut core: Scheduler<u32> = Scheduler::new(cfg);
        let mut now = Duration::ZERO;
        let mut running: Vec<(Duration, JobKey)> = Vec::new();
        let mut granted_at = Vec::new();
        let mut submitted = 0u32;
        for (gap, n) in arrivals {
            let until = now + ms(gap);
            // Step through every due instant up to the next arrival.
            loop {
                let next_done = running.iter().map(|(t, _)| *t).min();
                let next = [core.next_deadline(), next_done].into_iter().flatten().min();
                match next {
                    Some(t) if t <= until => {
                        prop_assert!(t >= now, "no wake-up in the past");
                        now = t;
                    }
                    _ => break,
                }
                running.retain(|(t, key)| {
                    if *t <= now { core.complete(*key, OutcomeKind::Completed, now).unwrap(); false } else { true }
                });
                for (key, _) in grants(&mut core, now) {
                    granted_at.push(now);
                    running.push((now + ms(run_ms), key));
                }
            }
            now = until;
            for _ in 0..n {
                core.submit(JobSpec::new("t", "api"), submitted, now);
                submitted += 1;
            }
            for (key, _) in grants(&mut core, now) {
                granted_at.push(now);
                running.push((now + ms(run_ms), key));
            }
            if core.waiting() > 0 && core.in_flight(&"api".into()) < 3 {
                prop_assert!(core.next_deadline().is_some_and(|t| t > now), "a blocked job has a wake-up");
            }
        }
        assert_rate(&granted_at, Duration::from_secs(1), 8);
        prop_assert!(core.in_flight(&"api".into()) <= 3);
    }
}

const TWO_PROVIDERS: &str = r#"
[resources.primary]
max_concurrent = 2
slot_wait_timeout = "1h"
fallback = "secondary"
breaker = { error_rate = 0.5, window = "60s", min_calls = 4, cooldown = "30s", half_open_probes = 2, half_open_timeout = "10s" }
retry = { max_attempts = 3, base = "1s", cap = "8s" }
jitter = { min = 0.9, max = 1.6, seed = 11 }

[resources.secondary]
max_concurrent = 1
slot_wait_timeout = "1h"
"#;

#[test]
fn breaker_opens_routes_to_the_fallback_and_closes_after_probes() {
    let mut core: Scheduler<u32> = Scheduler::new(Config::from_toml_str(TWO_PROVIDERS).unwrap());
    let primary = "primary".into();
    let secondary = "secondary".into();
    for i in 0..10 {
        core.submit(JobSpec::new("t", "primary"), i, ms(0));
    }
    // Four failures in a row: at the fourth (4/4 >= 50 %, min_calls 4) it opens.
    let mut now = ms(0);
    for round in 0..2 {
        let g = grants(&mut core, now);
        assert_eq!(g.len(), 2, "round {round}");
        now += ms(100);
        for (key, _) in g {
            assert_eq!(
                core.snapshot(now).resources["primary"].resilience.breaker,
                Some(BreakerState::Closed)
            );
            core.complete(key, OutcomeKind::Failed, now).unwrap();
        }
    }
    let snap = core.snapshot(now);
    assert_eq!(
        snap.resources["primary"].resilience.breaker,
        Some(BreakerState::Open)
    );
    assert_eq!(snap.resources["primary"].resilience.opened, 1);
    // The six waiting jobs move to the fallback, which serves them one at a time.
    let g = grants(&mut core, now);
    assert_eq!(g.len(), 1);
    assert_eq!(core.resource_of(g[0].0), Some(&secondary));
    let snap = core.snapshot(now);
    assert_eq!(snap.resources["primary"].resilience.fallbacks, 6);
    assert_eq!(snap.resources["primary"].queued, 0);
    assert_eq!(snap.resources["secondary"].queued, 5);
    core.complete(g[0].0, OutcomeKind::Completed, now).unwrap();
    // New work for primary while it is open goes to the fallback too.
    let late = core.submit(JobSpec::new("t", "primary"), 99, now);
    let g = grants(&mut core, now);
    assert_eq!(g.len(), 1);
    assert_eq!(core.resource_of(late), Some(&secondary));
    assert_eq!(core.in_flight(&primary), 0);
    // After the cooldown, half-open: at most two probes are granted on primary.
    let t = ms(30_400);
    for i in 100..105 {
        core.submit(JobSpec::new("t", "primary"), i, t);
    }
    // Drain the fallback's grant first so primary's probes are what we look at.
    let probes: Vec<_> = grants(&mut core, t)
        .into_iter()
        .filter(|(k, _)| core.resource_of(*k) == Some(&primary))
        .collect();
    assert_eq!(probes.len(), 2, "half-open admits at most the configured probes");
    assert_eq!(
        core.snapshot(t).resources["primary"].resilience.breaker,
        Some(BreakerState::HalfOpen)
    );
    assert!(grants(&mut core, t + ms(1))
        .iter()
        .all(|(k, _)| core.resource_of(*k) != Some(&primary)));
    for (key, _) in probes {
        core.complete(key, OutcomeKind::Completed, t + ms(50)).unwrap();
    }
    let snap = core.snapshot(t + ms(50));
    assert_eq!(
        snap.resources["primary"].resilience.breaker,
        Some(BreakerState::Closed)
    );
    assert_eq!(snap.resources["primary"].resilience.transitions, 3);
    // Closed again: primary takes its full two slots.
    let on_primary = grants(&mut core, t + ms(50))
        .into_iter()
        .filter(|(k, _)| core.resource_of(*k) == Some(&primary))
        .count();
    assert_eq!(on_primary, 2);
}

/// Issue 17: jobs moved to the fallback while the primary's breaker was open come back
/// once it has closed, one per free slot of the primary and oldest first, while the
/// fallback keeps serving the others: nobody idles while the backlog lasts.
#[test]
fn a_closed_primary_takes_back_the_oldest_jobs_it_lent_while_the_fallback_keeps_serving() {
    let mut core: Scheduler<u32> = Scheduler::new(Config::from_toml_str(TWO_PROVIDERS).unwrap());
    let primary = "primary".into();
    let secondary = "secondary".into();
    for i in 0..10 {
        core.submit(JobSpec::new("t", "primary"), i, ms(0));
    }
    let mut now = ms(0);
    for _ in 0..2 {
        let g = grants(&mut core, now);
        now += ms(100);
        for (key, _) in g {
            core.complete(key, OutcomeKind::Failed, now).unwrap();
        }
    }
    // Open: jobs 4 to 9 move to the fallback, which starts 4.
    let g = grants(&mut core, now);
    assert_eq!(g.iter().map(|(_, p)| *p).collect::<Vec<_>>(), vec![4]);
    let on_fallback = g[0].0;
    // Half-open after the cooldown: new work probes the primary, and the probes succeed.
    let t = ms(30_400);
    for i in 100..102 {
        core.submit(JobSpec::new("t", "primary"), i, t);
    }
    let probes = grants(&mut core, t);
    assert_eq!(probes.iter().map(|(_, p)| *p).collect::<Vec<_>>(), vec![100, 101]);
    assert!(
        probes.iter().all(|(k, _)| core.resource_of(*k) == Some(&primary)),
        "nothing is taken back while half-open"
    );
    for (key, _) in probes {
        core.complete(key, OutcomeKind::Completed, t + ms(50)).unwrap();
    }
    // Closed, with two free slots and an empty queue: it takes back the two oldest.
    let back = grants(&mut core, t + ms(50));
    assert_eq!(back.iter().map(|(_, p)| *p).collect::<Vec<_>>(), vec![5, 6]);
    assert!(back.iter().all(|(k, _)| core.resource_of(*k) == Some(&primary)));
    let snap = core.snapshot(t + ms(50));
    assert_eq!(snap.resources["primary"].resilience.returned, 2);
    assert_eq!(snap.resources["primary"].resilience.fallbacks, 6);
    assert_eq!(snap.resources["secondary"].queued, 3);
    // The fallback serves the next of what is left, not what was taken back.
    core.complete(on_fallback, OutcomeKind::Completed, t + ms(60))
        .unwrap();
    let next = grants(&mut core, t + ms(60));
    assert_eq!(next.iter().map(|(_, p)| *p).collect::<Vec<_>>(), vec![7]);
    assert_eq!(core.resource_of(next[0].0), Some(&secondary));
    // Both drain the rest; every job ends once.
    let mut running: Vec<JobKey> = back.iter().chain(next.iter()).map(|(k, _)| *k).collect();
    let mut done = 0;
    let mut at = t + ms(100);
    while let Some(key) = running.pop() {
        core.complete(key, OutcomeKind::Completed, at).unwrap();
        done += 1;
        running.extend(grants(&mut core, at).into_iter().map(|(k, _)| k));
        at += ms(10);
    }
    assert_eq!(done, 5);
    assert_eq!(core.live_jobs(), 0);
    let snap = core.snapshot(at);
    assert_eq!(snap.outcomes().completed, 8);
    assert_eq!(snap.outcomes().failed, 4, "the four that opened the breaker");
}

#[test]
fn a_retry_sleeps_without_a_slot_within_its_backoff_and_honours_retry_after() {
    let mut core: Scheduler<u32> = Scheduler::new(Config::from_toml_str(TWO_PROVIDERS).unwrap());
    let primary = "primary".into();
    let key = core.submit(JobSpec::new("t", "primary"), 1, ms(0));
    assert_eq!(grants(&mut core, ms(0)).len(), 1);
    // First failure: backoff drawn from [0, 1 s].
    let at = core.retry(key, 1, None, ms(10)).expect("attempts left");
    assert!(at >= ms(10) && at <= ms(1010), "{at:?}");
    assert_eq!(core.in_flight(&primary), 0, "no slot held while sleeping");
    if at > ms(11) {
        assert!(grants(&mut core, at - ms(1)).is_empty(), "not before its release");
    }
    let g = grants(&mut core, at);
    assert_eq!(g.len(), 1);
    assert_eq!(core.attempts(key), Some(2));
    // Second failure with Retry-After 20 s: later than the 2 s ceiling, and honoured.
    let at2 = core.retry(key, 1, Some(Duration::from_secs(20)), at).unwrap();
    assert!(
        at2 >= at + Duration::from_secs(20) && at2 <= at + Duration::from_secs(32),
        "{:?}",
        at2 - at
    );
    assert!(grants(&mut core, at2 - ms(1)).is_empty());
    assert_eq!(grants(&mut core, at2).len(), 1);
    // Third attempt was the last one: the payload comes back and the job ends.
    assert_eq!(core.retry(key, 1, None, at2 + ms(5)), Err(1));
    core.complete(key, OutcomeKind::Failed, at2 + ms(5)).unwrap();
    let snap = core.snapshot(at2 + ms(5));
    let r = &snap.resources["primary"];
    assert_eq!((r.resilience.attempts, r.resilience.retries), (3, 2));
    assert_eq!(r.outcomes.failed, 1, "only the final attempt's outcome counts");
    assert_eq!(r.submitted, 1);
}

#[test]
fn no_retry_on_primary_while_its_breaker_is_open() {
    let text = TWO_PROVIDERS.replace("fallback = \"secondary\"\n", "");
    let mut core: Scheduler<u32> = Scheduler::new(Config::from_toml_str(&text).unwrap());
    let keys: Vec<_> = (0..4)
        .map(|i| core.submit(JobSpec::new("t", "primary"), i, ms(0)))
        .collect();
    grants(&mut core, ms(0));
    core.complete(keys[0], OutcomeKind::Failed, ms(1)).unwrap();
    core.complete(keys[1], OutcomeKind::Failed, ms(1)).unwrap();
    grants(&mut core, ms(1));
    core.complete(keys[2], OutcomeKind::Failed, ms(2)).unwrap();
    // This failure opens the breaker (4 of 4): no retry, and no fallback to go to.
    assert_eq!(core.retry(keys[3], 3, None, ms(2)), Err(3));
    core.complete(keys[3], OutcomeKind::Failed, ms(2)).unwrap();
    let snap = core.snapshot(ms(2));
    assert_eq!(
        snap.resources["primary"].resilience.breaker,
        Some(BreakerState::Open)
    );
    assert_eq!(snap.resources["primary"].resilience.retries, 0);
    assert_eq!(snap.resources["primary"].outcomes.failed, 4);
}

#[test]
fn an_open_breaker_without_fallback_holds_jobs_until_half_open() {
    let text = TWO_PROVIDERS.replace("fallback = \"secondary\"\n", "");
    let mut core: Scheduler<u32> = Scheduler::new(Config::from_toml_str(&text).unwrap());
    for i in 0..6 {
        core.submit(JobSpec::new("t", "primary"), i, ms(0));
    }
    for _ in 0..2 {
        for (key, _) in grants(&mut core, ms(0)) {
            core.complete(key, OutcomeKind::Failed, ms(0)).unwrap();
        }
    }
    assert!(grants(&mut core, ms(1)).is_empty());
    // One wake-up, at the end of the cooldown: not a loop of polls.
    assert_eq!(core.next_deadline(), Some(Duration::from_secs(30)));
    assert!(grants(&mut core, Duration::from_secs(29)).is_empty());
    assert_eq!(grants(&mut core, Duration::from_secs(30)).len(), 2, "two probes");
}

#[test]
fn stagger_delays_first_attempts_within_its_range() {
    let cfg = Config::from_toml_str(
        "[resources.api]\nmax_concurrent = 100\nstagger = { min = \"100ms\", max = \"500ms\" }\n",
    )
    .unwrap();
    let mut core: Scheduler<u32> = Scheduler::new(cfg);
    for i in 0..50 {
        core.submit(JobSpec::new("t", "api"), i, ms(0));
    }
    assert!(grants(&mut core, ms(99)).is_empty());
    let mut granted = 0;
    let mut times = Vec::new();
    while let Some(t) = core.next_deadline() {
        let g = grants(&mut core, t);
        granted += g.len();
        if !g.is_empty() {
            times.push(t);
        }
        if granted == 50 {
            break;
        }
    }
    assert_eq!(granted, 50);
    assert!(times.iter().all(|t| *t >= ms(100) && *t <= ms(500)));
    assert!(times.len() > 10, "spread out, not all at once");
}
