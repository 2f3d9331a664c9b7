//! Unit tests of the scheduler on virtual time, and the helpers the other modules' tests
//! share (`ms`, `poll`, `granted`).

use super::*;
use crate::job::{JobSpec, OutcomeKind, SkipReason};

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The events of one poll at `now`.
pub(super) fn poll(s: &mut Scheduler<u32>, now: Duration) -> Vec<Event<u32>> {
    let mut out = Vec::new();
    s.poll(now, &mut out);
    out
}

/// The grants among `events` (taken out), with their payloads.
pub(super) fn granted(events: &mut Vec<Event<u32>>) -> Vec<(JobKey, u32)> {
    events
        .drain(..)
        .filter_map(|e| match e {
            Event::Granted { key, payload, .. } => Some((key, payload)),
            _ => None,
        })
        .collect()
}

fn core(cap: u32, lease: Duration) -> Scheduler<u32> {
    let mut config = Config::default();
    config.scheduler.max_concurrent = cap;
    config.scheduler.slot_lease_timeout = lease;
    Scheduler::new(config)
}

#[test]
fn a_lease_deadline_of_an_earlier_grant_does_not_expire_a_regrant() {
    let mut s = core(1, ms(100));
    let mut ev = Vec::new();
    let key = s.submit(JobSpec::new("t", "r"), 1, ms(0));
    s.poll(ms(0), &mut ev);
    assert_eq!(granted(&mut ev).len(), 1);
    s.park(key, ms(10)).unwrap();
    s.unpark(key, 2, ms(50)).unwrap();
    s.poll(ms(50), &mut ev);
    assert_eq!(granted(&mut ev), vec![(key, 2)]);
    // The first grant's deadline (100 ms) passes: the regrant (lease until 150 ms) stands.
    s.poll(ms(120), &mut ev);
    assert!(ev.is_empty(), "{ev:?}");
    s.poll(ms(150), &mut ev);
    assert!(matches!(ev.as_slice(), [Event::LeaseExpired { key: k }] if *k == key));
}

#[test]
fn lease_expiry_keeps_the_slot_until_the_job_stops() {
    let mut s = core(1, ms(100));
    let mut ev = Vec::new();
    let first = s.submit(JobSpec::new("t", "r"), 1, ms(0));
    s.submit(JobSpec::new("t", "r").wait_timeout(ms(1000)), 2, ms(0));
    s.poll(ms(0), &mut ev);
    ev.clear();
    s.poll(ms(100), &mut ev);
    assert!(matches!(ev.as_slice(), [Event::LeaseExpired { .. }]));
    ev.clear();
    s.poll(ms(200), &mut ev);
    assert!(
        granted(&mut ev).is_empty(),
        "no second grant while the first has not stopped"
    );
    s.complete(first, OutcomeKind::TimedOut, ms(250)).unwrap();
    s.poll(ms(250), &mut ev);
    assert_eq!(granted(&mut ev).len(), 1);
    assert_eq!(
        s.complete(first, OutcomeKind::Completed, ms(260)),
        Err(CoreError::UnknownJob)
    );
}

#[test]
fn wait_timeout_skips_and_requeue_keeps_waiting() {
    let mut s = core(1, ms(10_000));
    let mut ev = Vec::new();
    s.submit(JobSpec::new("t", "r"), 1, ms(0));
    s.submit(JobSpec::new("t", "r").wait_timeout(ms(100)), 2, ms(0));
    s.submit(
        JobSpec::new("t", "r")
            .wait_timeout(ms(100))
            .requeue_on_wait_timeout(),
        3,
        ms(0),
    );
    s.poll(ms(0), &mut ev);
    ev.clear();
    s.poll(ms(100), &mut ev);
    assert!(matches!(
        ev.as_slice(),
        [Event::Skipped {
            payload: 2,
            reason: SkipReason::NoSlot,
            ..
        }]
    ));
    assert_eq!(s.waiting(), 1, "the requeued job still waits");
    let snap = s.snapshot(ms(100));
    assert_eq!(snap.resources["r"].outcomes.skipped, 1);
    assert_eq!(snap.resources["r"].queued, 1);
}

#[test]
fn a_resuming_parent_is_its_own_stage_never_skipped_and_stopped_not_removed_on_cancel() {
    let mut s = core(1, ms(10_000));
    let mut ev = Vec::new();
    let parent = s.submit(JobSpec::new("t", "r").wait_timeout(ms(100)), 1, ms(0));
    s.poll(ms(0), &mut ev);
    assert_eq!(granted(&mut ev), vec![(parent, 1)]);
    s.park(parent, ms(10)).unwrap();
    let other = s.submit(JobSpec::new("t", "r"), 2, ms(10));
    s.poll(ms(10), &mut ev);
    assert_eq!(granted(&mut ev), vec![(other, 2)]);
    s.unpark(parent, 3, ms(20)).unwrap();
    assert!(matches!(s.jobs[parent.index()].stage, Stage::Resuming { since } if since == ms(20)));
    assert_eq!(s.started(), vec![parent, other]);
    // Far past its own wait timeout: a resuming parent is never skipped.
    s.poll(ms(5_000), &mut ev);
    assert!(ev.is_empty(), "{ev:?}");
    assert_eq!(s.cancel(parent), Cancelled::Running);
    // Its task stops while it waits for its slot: the core forgets it, nothing leaks.
    s.complete(parent, OutcomeKind::Cancelled, ms(5_001)).unwrap();
    assert_eq!(s.waiting(), 0);
    assert_eq!(s.snapshot(ms(5_001)).resources["r"].queued, 0);
    s.complete(other, OutcomeKind::Completed, ms(5_002)).unwrap();
    s.poll(ms(5_002), &mut ev);
    assert!(ev.is_empty(), "{ev:?}");
    assert_eq!(s.live_jobs(), 0);
}

fn adaptive_core(ceiling: u32, min: u32, initial: u32) -> Scheduler<u32> {
    let mut config = Config::default();
    config.resources.insert(
        "r".into(),
        crate::config::ResourceConfig {
            max_concurrent: Some(ceiling),
            adaptive: Some(crate::config::AdaptiveConfig {
                min,
                initial: Some(initial),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    config.validate().unwrap();
    Scheduler::new(config)
}

/// Issue 17: the grant loop uses the adaptive limit, and a cut below the calls in flight
/// takes no slot back: they finish, and the next grant waits until fewer than the limit
/// are in flight.
#[test]
fn an_overload_cut_preempts_nothing_and_grants_wait_for_the_new_limit() {
    let mut s = adaptive_core(100, 1, 10);
    let mut ev = Vec::new();
    for i in 0..20 {
        s.submit(JobSpec::new("t", "r"), i, ms(0));
    }
    s.poll(ms(0), &mut ev);
    let running = granted(&mut ev);
    assert_eq!(running.len(), 10, "the initial limit, not the ceiling of 100");
    let r = ResourceId::new("r");
    s.overloaded(running[0].0, ms(5)).unwrap();
    assert_eq!(s.limit(&r), Some(9));
    let snap = s.snapshot(ms(5));
    assert_eq!((snap.resources["r"].cap, snap.resources["r"].limit), (100, 9));
    s.complete(running[0].0, OutcomeKind::Failed, ms(5)).unwrap();
    s.poll(ms(5), &mut ev);
    assert!(granted(&mut ev).is_empty(), "9 in flight under a limit of 9");
    // A second refusal from a call granted before the cut does not cut again.
    s.overloaded(running[1].0, ms(6)).unwrap();
    s.complete(running[1].0, OutcomeKind::Failed, ms(6)).unwrap();
    assert_eq!(s.limit(&r), Some(9));
    s.poll(ms(6), &mut ev);
    assert_eq!(granted(&mut ev).len(), 1, "8 in flight under 9: one grant");
    assert_eq!(s.in_flight(&r), 9);
}

/// The overload input refuses a job that holds no slot, and changes nothing on a
/// resource with a fixed cap.
#[test]
fn overload_on_a_fixed_cap_or_a_waiting_job() {
    let mut s = core(2, ms(100));
    let mut ev = Vec::new();
    let a = s.submit(JobSpec::new("t", "r"), 1, ms(0));
    s.submit(JobSpec::new("t", "r"), 2, ms(0));
    let c = s.submit(JobSpec::new("t", "r"), 3, ms(0));
    s.poll(ms(0), &mut ev);
    assert_eq!(s.overloaded(c, ms(1)), Err(CoreError::WrongStage("running")));
    s.overloaded(a, ms(1)).unwrap();
    assert_eq!(s.limit(&ResourceId::new("r")), Some(2));
}

/// Issue 17: a cap lowered below the jobs in flight preempts nothing and is not exceeded
/// once they drain to it; a raised one grants at once; a bad value is refused by name.
#[test]
fn set_max_concurrent_lowers_without_preempting_and_raises_at_once() {
    let mut s = core(4, Duration::from_secs(60));
    let mut ev = Vec::new();
    for i in 0..10 {
        s.submit(JobSpec::new("t", "r"), i, ms(0));
    }
    s.poll(ms(0), &mut ev);
    let running = granted(&mut ev);
    assert_eq!(running.len(), 4);
    let r = ResourceId::new("r");
    s.set_max_concurrent(&r, 2).unwrap();
    assert_eq!(s.in_flight(&r), 4, "nothing preempted");
    s.complete(running[0].0, OutcomeKind::Completed, ms(1)).unwrap();
    s.poll(ms(1), &mut ev);
    assert!(granted(&mut ev).is_empty(), "3 in flight over a cap of 2");
    s.complete(running[1].0, OutcomeKind::Completed, ms(2)).unwrap();
    s.complete(running[2].0, OutcomeKind::Completed, ms(2)).unwrap();
    s.poll(ms(2), &mut ev);
    assert_eq!(granted(&mut ev).len(), 1, "1 in flight under 2: one grant");
    let e = s.set_max_concurrent(&r, 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "resources.r.max_concurrent must be between 1 and 1000000, got 0"
    );
    assert_eq!(s.limit(&r), Some(2), "a refused value changes nothing");
    s.set_max_concurrent(&r, 6).unwrap();
    s.poll(ms(3), &mut ev);
    assert_eq!(granted(&mut ev).len(), 4);
    assert_eq!(s.in_flight(&r), 6);
    assert_eq!(s.snapshot(ms(3)).resources["r"].cap, 6);
}

/// Issue 25: the cost charged counts each admitted job once, at its reported cost (its
/// estimate when it reported none), though a tenant and a global budget both apply; a
/// job that never ran and reported nothing is charged nothing.
#[test]
fn cost_charged_counts_each_admitted_job_once() {
    let config = Config::from_toml_str(
        "[quotas.mine]\nwindows = [{ limit = 100, per = \"1m\" }]\ncost_budget = 1000\ncost_window = \"1day\"\n\
         [quotas.all]\nscope = \"global\"\nwindows = [{ limit = 100, per = \"1m\" }]\ncost_budget = 1000\ncost_window = \"1day\"\n\
         [resources.r]\nmax_concurrent = 1\n",
    )
    .unwrap();
    let mut s: Scheduler<u32> = Scheduler::new(config);
    let reported = s.submit(JobSpec::new("t", "r").estimated_cost(10), 1, ms(0));
    let estimated = s.submit(JobSpec::new("t", "r").estimated_cost(20), 2, ms(0));
    let never_ran = s.submit(JobSpec::new("t", "r").estimated_cost(40), 3, ms(0));
    let mut ev = poll(&mut s, ms(0));
    assert_eq!(granted(&mut ev), vec![(reported, 1)]);
    s.report_cost(reported, 7).unwrap();
    s.complete(reported, OutcomeKind::Completed, ms(1)).unwrap();
    let mut ev = poll(&mut s, ms(1));
    assert_eq!(granted(&mut ev), vec![(estimated, 2)]);
    s.complete(estimated, OutcomeKind::Completed, ms(2)).unwrap();
    assert!(matches!(s.cancel_at(never_ran, ms(2)), Cancelled::Removed(_)));
    assert_eq!(s.quota_cost_charged(), 7 + 20);
}

/// Issue 25: a resource's breaker state is read by name, without a snapshot; a resource
/// without a breaker has none.
#[test]
fn breaker_state_is_read_by_resource() {
    let config = Config::from_toml_str(
        "[resources.flaky]\nbreaker = { error_rate = 0.5, window = \"60s\", min_calls = 2, cooldown = \"30s\" }\n\
         [resources.plain]\nmax_concurrent = 1\n",
    )
    .unwrap();
    let mut s: Scheduler<u32> = Scheduler::new(config);
    let flaky = ResourceId::new("flaky");
    assert_eq!(s.breaker_state(&flaky), Some(crate::BreakerState::Closed));
    assert_eq!(s.breaker_state(&ResourceId::new("plain")), None);
    assert_eq!(s.breaker_state(&ResourceId::new("unknown")), None);
    for (i, at) in [(1, 0), (2, 1)] {
        let key = s.submit(JobSpec::new("t", "flaky"), i, ms(at));
        let mut ev = poll(&mut s, ms(at));
        assert_eq!(granted(&mut ev), vec![(key, i)]);
        s.complete(key, OutcomeKind::Failed, ms(at)).unwrap();
    }
    assert_eq!(s.breaker_state(&flaky), Some(crate::BreakerState::Open));
}
