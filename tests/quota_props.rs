//! Quotas on virtual time (issue 6): windows are exact over sliding intervals, a refusal's
//! retry time is exact, and cost stays within its budget but for estimate errors.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use weir::{
    Config, Event, JobSpec, OutcomeKind, QuotaConfig, QuotaRefusal, QuotaScope, Quotas, Scheduler,
    SkipReason, TenantId, WindowConfig,
};

const NS: Duration = Duration::from_nanos(1);

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn windows(spec: &[(u32, u64)]) -> Vec<WindowConfig> {
    spec.iter()
        .map(|&(limit, per)| WindowConfig { limit, per: ms(per) })
        .collect()
}

fn quota(scope: QuotaScope, spec: &[(u32, u64)]) -> QuotaConfig {
    QuotaConfig {
        scope,
        windows: windows(spec),
        ..QuotaConfig::default()
    }
}

/// Most admissions inside any half-open interval of length `per` (the busiest interval
/// starts at an admission).
fn busiest(times: &[Duration], per: Duration) -> usize {
    times
        .iter()
        .map(|&start| times.iter().filter(|&&t| t >= start && t < start + per).count())
        .max()
        .unwrap_or(0)
}

fn retry_after(r: &QuotaRefusal) -> Duration {
    match r {
        QuotaRefusal::NotUntil { retry_after, .. } => *retry_after,
        QuotaRefusal::Never { .. } => panic!("unexpected Never: {r:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// No window admits more than its limit over any interval of its length; a refusal
    /// happens only when admitting would break a window (exact, not fixed buckets); and
    /// its retry time is exact: one nanosecond earlier is refused, at it the check passes.
    #[test]
    fn windows_are_exact_and_retry_after_is_exact(
        spec in prop::collection::vec((1u32..6, 1u64..200), 1..4),
        gaps in prop::collection::vec(0u64..40, 1..300),
    ) {
        let mut cfg = BTreeMap::new();
        cfg.insert("q".to_string(), quota(QuotaScope::Tenant, &spec));
        let mut quotas = Quotas::new(&cfg);
        let tenant = TenantId::new("t");
        let mut now = Duration::ZERO;
        let mut admitted: Vec<Duration> = Vec::new();
        for gap in gaps {
            now += ms(gap);
            match quotas.admit(&tenant, 0, now) {
                Ok(()) => admitted.push(now),
                Err(refusal) => {
                    // Admitting now would break some window.
                    let mut with = admitted.clone();
                    with.push(now);
                    prop_assert!(
                        spec.iter().any(|&(l, p)| busiest(&with, ms(p)) > l as usize),
                        "refused at {now:?} though every window had room"
                    );
                    let wait = retry_after(&refusal);
                    prop_assert!(wait > Duration::ZERO);
                    prop_assert!(quotas.check(&tenant, 0, now + wait - NS).is_err(), "one tick early passed");
                    prop_assert!(quotas.check(&tenant, 0, now + wait).is_ok(), "retry_after did not pass");
                }
            }
        }
        for &(limit, per) in &spec {
            prop_assert!(busiest(&admitted, ms(per)) <= limit as usize);
        }
    }

    /// Tenant and global windows hold together, across many tenants.
    #[test]
    fn tenant_and_global_windows_hold_together(
        arrivals in prop::collection::vec((0usize..5, 0u64..20), 1..400),
    ) {
        let mut cfg = BTreeMap::new();
        cfg.insert("per_user".to_string(), quota(QuotaScope::Tenant, &[(3, 100), (5, 400)]));
        cfg.insert("everyone".to_string(), quota(QuotaScope::Global, &[(8, 150)]));
        let mut quotas = Quotas::new(&cfg);
        let mut now = Duration::ZERO;
        let mut per_tenant: Vec<Vec<Duration>> = vec![Vec::new(); 5];
        let mut all = Vec::new();
        for (tenant, gap) in arrivals {
            now += ms(gap);
            let id = TenantId::new(format!("t{tenant}"));
            match quotas.admit(&id, 0, now) {
                Ok(()) => {
                    per_tenant[tenant].push(now);
                    all.push(now);
                }
                Err(refusal) => {
                    let wait = retry_after(&refusal);
                    prop_assert!(quotas.check(&id, 0, now + wait - NS).is_err());
                    prop_assert!(quotas.check(&id, 0, now + wait).is_ok());
                }
            }
            quotas.sweep(now);
        }
        prop_assert!(busiest(&all, ms(150)) <= 8);
        for times in &per_tenant {
            prop_assert!(busiest(times, ms(100)) <= 3);
            prop_assert!(busiest(times, ms(400)) <= 5);
        }
    }

    /// Jobs one at a time: the actual cost charged inside any window exceeds the budget by
    /// at most one job's estimate error; cost refusals carry an exact retry time.
    #[test]
    fn cost_exceeds_its_budget_by_at_most_one_estimate_error(
        jobs in prop::collection::vec((1u64..50, 0u64..20, 0u64..30, 1u64..50), 1..200),
    ) {
        const BUDGET: u64 = 100;
        const WINDOW: u64 = 500;
        let mut cfg = BTreeMap::new();
        cfg.insert("spend".to_string(), QuotaConfig {
            cost_budget: Some(BUDGET),
            cost_window: Some(ms(WINDOW)),
            ..QuotaConfig::default()
        });
        let mut quotas = Quotas::new(&cfg);
        let tenant = TenantId::new("t");
        let mut now = Duration::ZERO;
        let mut charges: Vec<(Duration, u64)> = Vec::new();
        let mut worst_error = 0;
        for (estimate, error, gap, run) in jobs {
            now += ms(gap);
            match quotas.admit(&tenant, estimate, now) {
                Ok(()) => {
                    now += ms(run);
                    let actual = estimate + error;
                    worst_error = worst_error.max(error);
                    quotas.settle(&tenant, estimate, actual, now);
                    charges.push((now, actual));
                }
                Err(refusal) => {
                    let wait = retry_after(&refusal);
                    prop_assert!(quotas.check(&tenant, estimate, now + wait - NS).is_err());
                    prop_assert!(quotas.check(&tenant, estimate, now + wait).is_ok());
                }
            }
        }
        for &(start, _) in &charges {
            let in_window: u64 = charges
                .iter()
                .filter(|(t, _)| *t >= start && *t < start + ms(WINDOW))
                .map(|(_, a)| a)
                .sum();
            prop_assert!(in_window <= BUDGET + worst_error, "{in_window} charged in a window");
        }
    }

    /// Jobs overlapping: what is charged inside any window exceeds the budget by at most
    /// the estimate errors of the jobs charged in it (reservations stop a second job from
    /// being admitted against money the first has not spent yet).
    #[test]
    fn concurrent_jobs_cannot_spend_reserved_money(
        jobs in prop::collection::vec((1u64..50, 0u64..10, 0u64..30, 1u64..300), 1..200),
    ) {
        const BUDGET: u64 = 120;
        const WINDOW: u64 = 400;
        let mut cfg = BTreeMap::new();
        cfg.insert("spend".to_string(), QuotaConfig {
            scope: QuotaScope::Global,
            cost_budget: Some(BUDGET),
            cost_window: Some(ms(WINDOW)),
            ..QuotaConfig::default()
        });
        let mut quotas = Quotas::new(&cfg);
        let mut now = Duration::ZERO;
        // (ends at, tenant, estimate, actual)
        let mut running: Vec<(Duration, TenantId, u64, u64)> = Vec::new();
        let mut charges: Vec<(Duration, u64, u64)> = Vec::new();
        for (i, (estimate, error, gap, run)) in jobs.into_iter().enumerate() {
            now += ms(gap);
            running.sort_by_key(|r| std::cmp::Reverse(r.0));
            while running.last().is_some_and(|r| r.0 <= now) {
                let (end, tenant, est, actual) = running.pop().unwrap();
                quotas.settle(&tenant, est, actual, end);
                charges.push((end, actual, actual - est));
            }
            let tenant = TenantId::new(format!("t{}", i % 3));
            if quotas.admit(&tenant, estimate, now).is_ok() {
                running.push((now + ms(run), tenant, estimate, estimate + error));
            }
        }
        for &(start, _, _) in &charges {
            let (spent, errors) = charges
                .iter()
                .filter(|(t, _, _)| *t >= start && *t < start + ms(WINDOW))
                .fold((0, 0), |(s, e), (_, a, err)| (s + a, e + err));
            prop_assert!(spent <= BUDGET + errors, "{spent} charged in a window, errors {errors}");
        }
    }
}

#[test]
fn an_eleventh_request_inside_a_minute_is_refused_and_its_retry_after_passes() {
    let mut core: Scheduler<u32> = Scheduler::new(seed_quotas());
    let mut events = Vec::new();
    let mut now = Duration::ZERO;
    for i in 0..10 {
        core.submit(JobSpec::new("alice", "store"), i, now);
        now += Duration::from_secs(3);
    }
    core.poll(now, &mut events);
    assert_eq!(events.len(), 10, "ten requests inside a minute are granted");
    for event in events.drain(..) {
        let Event::Granted { key, .. } = event else {
            panic!("{event:?}")
        };
        core.complete(key, OutcomeKind::Completed, now).unwrap();
    }
    // Eleventh at 30 s: the first (at 0 s) leaves the minute at 60 s.
    core.submit(JobSpec::new("alice", "store"), 10, now);
    core.poll(now, &mut events);
    let Some(Event::Skipped {
        reason, payload: 10, ..
    }) = events.pop()
    else {
        panic!("{events:?}")
    };
    assert_eq!(
        reason,
        SkipReason::QuotaExceeded {
            limit: "per_user/1m".into(),
            retry_after: Duration::from_secs(30),
        }
    );
    // Another tenant is not affected.
    core.submit(JobSpec::new("bob", "store"), 11, now);
    core.poll(now, &mut events);
    assert!(matches!(events.pop(), Some(Event::Granted { payload: 11, .. })));
    // One tick before the retry time is still refused; at it, the retry passes.
    let SkipReason::QuotaExceeded { retry_after, .. } = reason else {
        unreachable!()
    };
    core.submit(JobSpec::new("alice", "store"), 12, now + retry_after - NS);
    core.poll(now + retry_after - NS, &mut events);
    assert!(matches!(events.pop(), Some(Event::Skipped { payload: 12, .. })));
    core.submit(JobSpec::new("alice", "store"), 13, now + retry_after);
    core.poll(now + retry_after, &mut events);
    assert!(matches!(events.pop(), Some(Event::Granted { payload: 13, .. })));
    let usage = core.usage(&TenantId::new("alice"), now + retry_after);
    let minute = &usage.windows[0];
    assert_eq!((minute.current, minute.limit, minute.remaining), (10, 10, 0));
    assert_eq!(usage.windows[1].current, 11, "the hour counts every admission");
}

#[test]
fn a_job_that_waits_for_quota_is_granted_at_its_retry_time() {
    let mut core: Scheduler<u32> = Scheduler::new(seed_quotas());
    let mut events = Vec::new();
    for i in 0..10 {
        core.submit(JobSpec::new("alice", "store"), i, Duration::ZERO);
    }
    core.poll(Duration::ZERO, &mut events);
    assert_eq!(events.len(), 10);
    let now = Duration::from_secs(1);
    let spec = JobSpec::new("alice", "store")
        .wait_for_quota()
        .wait_timeout(Duration::from_secs(120));
    // A wait timeout shorter than the retry time is a refusal at once.
    core.submit(spec.clone().wait_timeout(Duration::from_secs(5)), 11, now);
    events.clear();
    core.poll(now, &mut events);
    assert!(matches!(
        events.pop(),
        Some(Event::Skipped {
            payload: 11,
            reason: SkipReason::QuotaExceeded { .. },
            ..
        })
    ));
    core.submit(spec, 10, now);
    core.poll(now, &mut events);
    assert!(events.is_empty(), "it waits: {events:?}");
    assert_eq!(core.next_deadline(), Some(Duration::from_secs(60)));
    core.poll(Duration::from_secs(60) - NS, &mut events);
    assert!(events.is_empty());
    core.poll(Duration::from_secs(60), &mut events);
    assert!(matches!(events.pop(), Some(Event::Granted { payload: 10, .. })));
}

#[test]
fn cost_is_reserved_at_admission_and_corrected_to_the_actual_cost() {
    let mut core: Scheduler<u32> = Scheduler::new(seed_quotas());
    let mut events = Vec::new();
    let alice = TenantId::new("alice");
    let t0 = Duration::ZERO;
    core.submit(JobSpec::new("alice", "store").estimated_cost(3_000_000), 0, t0);
    core.poll(t0, &mut events);
    let Some(Event::Granted { key, .. }) = events.pop() else {
        panic!()
    };
    // $3 reserved: a $2.50 job does not fit beside it.
    core.submit(JobSpec::new("alice", "store").estimated_cost(2_500_000), 1, t0);
    core.poll(t0, &mut events);
    assert!(matches!(
        events.pop(),
        Some(Event::Skipped { reason: SkipReason::QuotaExceeded { ref limit, .. }, .. }) if limit == "per_user/cost"
    ));
    let cost = &core.usage(&alice, t0).costs[0];
    assert_eq!(
        (cost.spent, cost.reserved, cost.remaining),
        (0, 3_000_000, 2_000_000)
    );
    // It actually cost $1: the correction frees room.
    core.report_cost(key, 1_000_000).unwrap();
    core.complete(key, OutcomeKind::Completed, ms(10)).unwrap();
    let cost = &core.usage(&alice, ms(10)).costs[0];
    assert_eq!(
        (cost.spent, cost.reserved, cost.remaining),
        (1_000_000, 0, 4_000_000)
    );
    core.submit(
        JobSpec::new("alice", "store").estimated_cost(2_500_000),
        2,
        ms(10),
    );
    core.poll(ms(10), &mut events);
    assert!(matches!(events.pop(), Some(Event::Granted { payload: 2, .. })));
    // An estimate over the whole budget can never pass.
    core.submit(JobSpec::new("bob", "store").estimated_cost(6_000_000), 3, ms(10));
    core.poll(ms(10), &mut events);
    assert!(matches!(
        events.pop(),
        Some(Event::Skipped {
            reason: SkipReason::OverBudget {
                budget: 5_000_000,
                ..
            },
            ..
        })
    ));
}

#[test]
fn idle_tenants_are_dropped_once_their_windows_have_passed() {
    let mut core: Scheduler<u32> = Scheduler::new(seed_quotas());
    let mut events = Vec::new();
    for i in 0..1000 {
        core.submit(JobSpec::new(format!("t{i}"), "store"), i, Duration::ZERO);
    }
    core.poll(Duration::ZERO, &mut events);
    for event in events.drain(..) {
        if let Event::Granted { key, .. } = event {
            core.complete(key, OutcomeKind::Completed, Duration::ZERO)
                .unwrap();
        }
    }
    assert_eq!(core.quotas().tracked_tenants(), 1000);
    assert_eq!(
        core.snapshot(Duration::ZERO).quota_tenants,
        1000,
        "the stats say the same"
    );
    let day = Duration::from_secs(24 * 3600);
    core.poll(day - NS, &mut events);
    assert_eq!(core.quotas().tracked_tenants(), 1000, "a day has not passed");
    core.poll(day, &mut events);
    assert_eq!(core.quotas().tracked_tenants(), 0);
    assert_eq!(core.snapshot(day).quota_tenants, 0, "the stats follow the sweep");
}

#[test]
fn quota_config_errors_name_the_field() {
    let err = |text: &str| Config::from_toml_str(text).unwrap_err().to_string();
    assert_eq!(
        err("[quotas.per_user]\nwindows = [{ limit = 0, per = \"1m\" }]\n"),
        "quotas.per_user.windows[0].limit must be between 1 and 1000000, got 0"
    );
    assert!(
        err("[quotas.per_user]\nwindows = [{ limit = 5, per = \"0s\" }]\n")
            .starts_with("quotas.per_user.windows[0].per must be between 1ms and 366days")
    );
    assert_eq!(
        err("[quotas.spend]\ncost_budget = 5\n"),
        "quotas.spend.cost_window must be set when cost_budget is set, got nothing"
    );
    assert_eq!(
        err("[quotas.empty]\n"),
        "quotas.empty.windows must be at least one window, or a cost_budget, got none"
    );
    assert!(
        err("[quotas.x]\nscope = \"planet\"\nwindows = [{ limit = 1, per = \"1s\" }]\n").contains("planet")
    );
    assert!(err("[quotas.x]\nwindows = [{ limit = 1, per = \"1s\", burst = 2 }]\n").contains("burst"));
}

/// The quotas of the seeds' numbers (config/seed-quotas.toml), shared with the runtime's
/// quota tests.
fn seed_quotas() -> weir::Config {
    weir::Config::from_toml_str(include_str!("../config/seed-quotas.toml")).expect("the seed quotas parse")
}
