//! The adaptive limit of the core on virtual time (issue 17): a hand-written shell drives
//! the real [`Scheduler`] against a simulated store that refuses every call over its own
//! limit, with a backlog that never runs dry. Properties: the limit stays within
//! `[min, ceiling]` whatever the store does; under a constant store limit `L` with
//! overload signals AIMD converges to within 10 % of `L` and stays there; with no
//! overload and flat latency it reaches the ceiling; it never drops below `min`.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use weir::{
    AdaptiveAlgorithm, AdaptiveConfig, Config, Event, JobKey, JobSpec, OutcomeKind, ResourceConfig,
    ResourceId, Scheduler,
};

const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);
/// A refused call is submitted again this much later (a retry's backoff).
const BACKOFF: Duration = Duration::from_millis(10);

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// The resource under test and its adaptive settings.
#[derive(Clone, Copy, Debug)]
struct Setup {
    algorithm: AdaptiveAlgorithm,
    min: u32,
    initial: u32,
    ceiling: u32,
}

impl Setup {
    fn core(&self) -> Scheduler<()> {
        let mut config = Config::default();
        config.scheduler.slot_lease_timeout = WEEK;
        config.scheduler.slot_wait_timeout = WEEK;
        config.resources.insert(
            "store".into(),
            ResourceConfig {
                max_concurrent: Some(self.ceiling),
                adaptive: Some(AdaptiveConfig {
                    algorithm: self.algorithm,
                    min: self.min,
                    initial: Some(self.initial),
                }),
                ..ResourceConfig::default()
            },
        );
        config.validate().expect("the setup is valid");
        Scheduler::new(config)
    }
}

/// The simulated downstream: its limit at an instant (it refuses a call that arrives while
/// that many are in progress) and its latency for a call that finds `in_flight` in
/// progress (`n` numbers the call, for a deterministic spread).
struct Store<L, T> {
    limit: L,
    latency: T,
}

/// What a run saw: the limit after every instant at which something happened, and when
/// calls were made and refused.
struct Run {
    limits: Vec<(Duration, u32)>,
    calls: Vec<Duration>,
    refused: Vec<Duration>,
}

impl Run {
    fn count(times: &[Duration], from: Duration) -> f64 {
        times.iter().filter(|&&t| t >= from).count() as f64
    }
}

/// Runs a backlog of `2 x ceiling` calls (each one that completes is replaced) against
/// `store` until `until`. Refused calls report overload and come back after [`BACKOFF`].
fn run<L, T>(setup: Setup, store: Store<L, T>, until: Duration) -> Run
where
    L: Fn(Duration) -> u32,
    T: Fn(u32, u64) -> Duration,
{
    let mut core = setup.core();
    let spec = || JobSpec::new("t", "store");
    for _ in 0..2 * setup.ceiling {
        core.submit(spec(), (), Duration::ZERO);
    }
    let resource = ResourceId::new("store");
    // Calls in progress at the store, by when they end (then by call number).
    let mut ends: BTreeMap<(Duration, u64), JobKey> = BTreeMap::new();
    let mut out = Vec::new();
    let (mut now, mut in_store) = (Duration::ZERO, 0u32);
    let mut seen = Run {
        limits: Vec::new(),
        calls: Vec::new(),
        refused: Vec::new(),
    };
    loop {
        core.poll(now, &mut out);
        for event in out.drain(..) {
            let Event::Granted { key, .. } = event else {
                continue;
            };
            seen.calls.push(now);
            if in_store >= (store.limit)(now) {
                seen.refused.push(now);
                core.overloaded(key, now).expect("a granted call");
                core.complete(key, OutcomeKind::Failed, now)
                    .expect("a granted call");
                core.submit_at(spec(), (), now + BACKOFF, now);
            } else {
                in_store += 1;
                let n = seen.calls.len() as u64;
                let rtt = (store.latency)(in_store, n);
                ends.insert((now + rtt, n), key);
            }
        }
        let limit = core.limit(&resource).expect("the resource exists");
        seen.limits.push((now, limit));
        let next = [ends.keys().next().map(|&(at, _)| at), core.next_deadline()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next.filter(|&t| t <= until) else {
            break;
        };
        now = next.max(now);
        while let Some(entry) = ends.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            in_store -= 1;
            core.complete(key, OutcomeKind::Completed, now)
                .expect("a running call");
            core.submit(spec(), (), now);
        }
    }
    seen
}

/// Latency `base` ms, growing by `growth` times `base` at `at_load` calls in progress,
/// spread by up to 10 % from call to call.
fn latency(base: u64, growth: f64, at_load: u32) -> impl Fn(u32, u64) -> Duration {
    move |in_flight, n| {
        let load = f64::from(in_flight) / f64::from(at_load.max(1));
        let spread = 1.0 + (n.wrapping_mul(2_654_435_761) % 100) as f64 / 1000.0;
        ms(base).mul_f64((1.0 + growth * load) * spread)
    }
}

fn algorithm() -> impl Strategy<Value = AdaptiveAlgorithm> {
    prop_oneof![Just(AdaptiveAlgorithm::Aimd), Just(AdaptiveAlgorithm::Gradient2)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Whatever the store's limit does (it jumps between values, 0 included: every call
    /// refused), the limit stays within [min, ceiling].
    #[test]
    fn the_limit_stays_within_min_and_ceiling(
        algorithm in algorithm(),
        ceiling in 2u32..120,
        min_share in 0.0f64..1.0,
        initial_share in 0.0f64..1.0,
        steps in proptest::collection::vec(0u32..150, 1..6),
        base in 20u64..200,
        growth in 0.0f64..2.0,
    ) {
        let min = 1 + ((f64::from(ceiling - 1)) * min_share) as u32;
        let initial = min + ((f64::from(ceiling - min)) * initial_share) as u32;
        let setup = Setup { algorithm, min, initial, ceiling };
        let step = Duration::from_secs(20);
        let limit = |t: Duration| steps[((t.as_secs() / step.as_secs()) as usize).min(steps.len() - 1)];
        let store = Store { limit, latency: latency(base, growth, ceiling) };
        let seen = run(setup, store, step * steps.len() as u32);
        for &(at, l) in &seen.limits {
            prop_assert!((min..=ceiling).contains(&l), "limit {l} at {at:?} outside [{min}, {ceiling}]");
        }
    }

    /// A store that refuses every call drives the limit down to min, never below.
    #[test]
    fn it_never_drops_below_min(
        algorithm in algorithm(),
        ceiling in 2u32..200,
        min_share in 0.0f64..1.0,
        base in 20u64..200,
    ) {
        let min = 1 + ((f64::from(ceiling - 1)) * min_share) as u32;
        let setup = Setup { algorithm, min, initial: ceiling, ceiling };
        let store = Store { limit: |_| 0, latency: latency(base, 0.0, ceiling) };
        let seen = run(setup, store, Duration::from_secs(10));
        prop_assert!(seen.limits.iter().all(|&(_, l)| l >= min));
        prop_assert_eq!(seen.limits.last().map(|&(_, l)| l), Some(min));
        prop_assert!(!seen.refused.is_empty());
    }

    /// Under a constant store limit L, with overload signals and latency that grows with
    /// load, AIMD reaches [0.9 L, 1.1 L] and stays there: from below (it grows while
    /// the limit is in use) and from above (a ceiling far over L).
    #[test]
    fn aimd_converges_to_within_ten_percent_of_a_constant_store_limit(
        store_limit in 10u32..100,
        ceiling_over in 1.2f64..3.0,
        min_share in 0.0f64..0.5,
        from_above in any::<bool>(),
        base in 50u64..300,
        growth in 0.0f64..1.0,
    ) {
        let ceiling = (f64::from(store_limit) * ceiling_over) as u32;
        let min = 1 + (f64::from(store_limit) * min_share) as u32;
        let initial = if from_above { ceiling } else { min };
        let setup = Setup { algorithm: AdaptiveAlgorithm::Aimd, min, initial, ceiling };
        // Slowest round trip at the store's limit, spread included.
        let rtt = ms(base).mul_f64((1.0 + growth) * 1.1);
        // It grows by about one slot per round trip at full use.
        let settle = rtt * (store_limit + 20);
        let until = settle + rtt * 100;
        let store = Store { limit: |_| store_limit, latency: latency(base, growth, store_limit) };
        let seen = run(setup, store, until);
        let (low, high) = (0.9 * f64::from(store_limit), 1.1 * f64::from(store_limit));
        for &(at, l) in seen.limits.iter().filter(|(at, _)| *at >= settle) {
            prop_assert!(
                (low..=high).contains(&f64::from(l)),
                "limit {l} at {at:?} outside [{low}, {high}] (L = {store_limit})"
            );
        }
        // Settled, it probes once per sawtooth: cut to 0.9 L, one slot per round trip
        // back over L, so about one refusal per 0.1 L round trips of L calls (twice that
        // allowed).
        let sawtooth = 0.1 * f64::from(store_limit) * f64::from(store_limit);
        let (calls, refused) = (Run::count(&seen.calls, settle), Run::count(&seen.refused, settle));
        let allowed = 2.0 * calls / sawtooth + 2.0;
        prop_assert!(refused <= allowed, "{refused} of {calls} refused once settled, {allowed} allowed");
    }

    /// With no overload and flat latency, the limit grows to the ceiling and stays there.
    #[test]
    fn with_no_overload_and_flat_latency_it_reaches_the_ceiling(
        algorithm in algorithm(),
        ceiling in 2u32..100,
        min in 1u32..3,
        base in 20u64..200,
    ) {
        let min = min.min(ceiling);
        let setup = Setup { algorithm, min, initial: min, ceiling };
        let store = Store { limit: |_| u32::MAX, latency: latency(base, 0.0, ceiling) };
        // AIMD: one slot per round trip; Gradient2: 0.8 slot per window of 1 s and
        // 10 calls (at one call in flight a window lasts 10 round trips).
        let until = Duration::from_secs(30) + ms(base * 11) * (ceiling * 2) + Duration::from_secs(u64::from(ceiling) * 2);
        let seen = run(setup, store, until);
        prop_assert!(seen.refused.is_empty());
        let last = seen.limits.last().map(|&(_, l)| l);
        prop_assert_eq!(last, Some(ceiling), "{:?}", &seen.limits[seen.limits.len().saturating_sub(3)..]);
    }
}
