//! The adaptive rate of the core on virtual time (issue 26): a hand-written shell drives
//! the real [`Scheduler`] against a simulated provider that admits calls at its own true
//! rate (GCRA with a small burst) and refuses the rest with a 429 whose Retry-After is
//! the instant it would admit again, with a backlog that never runs dry. Properties: the
//! learned rate stays within `[min, ceiling]` whatever the provider does; against a
//! constant true rate it settles within 10 % of it; after the true rate drops, the burst
//! of refusals ends within a bounded time; no call reaches the provider during a pause a
//! Retry-After announced.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use weir::{
    AdaptiveRateConfig, Config, Event, JobKey, JobSpec, OutcomeKind, RateLimitConfig, ResourceConfig,
    ResourceId, Scheduler,
};

const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);
/// A call the provider admits takes this long.
const LATENCY: Duration = Duration::from_millis(20);
/// Jobs kept waiting: enough that the rate, not the backlog, bounds the calls.
const BACKLOG: u32 = 64;

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v)
}

/// The simulated provider: a GCRA at `rate(now)` calls per second with a burst of
/// `burst`, so a caller above its rate is refused, told exactly when to come back.
struct Provider<R> {
    rate: R,
    burst: u32,
    tat: Duration,
}

impl<R: Fn(Duration) -> f64> Provider<R> {
    /// `Ok` if the call at `now` is admitted, else the Retry-After.
    fn call(&mut self, now: Duration) -> Result<(), Duration> {
        let interval = secs(1.0 / (self.rate)(now).max(1e-3));
        let allowed = self.tat.saturating_sub(interval * (self.burst - 1));
        if now < allowed {
            return Err(allowed - now);
        }
        self.tat = self.tat.max(now) + interval;
        Ok(())
    }
}

/// What a run saw: the learned rate (per second) after every instant at which something
/// happened, when calls were made, and the refusals with the pause each announced.
#[derive(Default)]
struct Run {
    rates: Vec<(Duration, u64)>,
    calls: Vec<Duration>,
    refused: Vec<(Duration, Duration)>,
}

impl Run {
    fn calls_in(&self, from: Duration, to: Duration) -> usize {
        self.calls.iter().filter(|&&t| t >= from && t < to).count()
    }

    fn refused_in(&self, from: Duration, to: Duration) -> usize {
        self.refused.iter().filter(|&&(t, _)| t >= from && t < to).count()
    }

    /// The learned rate averaged over time in `[from, to)`.
    fn mean_rate(&self, from: Duration, to: Duration) -> f64 {
        let mut sum = 0.0;
        for pair in self.rates.windows(2) {
            let (a, rate) = pair[0];
            let b = pair[1].0;
            let (a, b) = (a.max(from), b.min(to));
            if b > a {
                sum += rate as f64 * (b - a).as_secs_f64();
            }
        }
        sum / (to - from).as_secs_f64()
    }
}

fn core(min: u32, initial: u32, ceiling: u32) -> Scheduler<()> {
    let mut config = Config::default();
    config.scheduler.slot_lease_timeout = WEEK;
    config.scheduler.slot_wait_timeout = WEEK;
    config.resources.insert(
        "provider".into(),
        ResourceConfig {
            max_concurrent: Some(BACKLOG),
            rate_limit: Some(RateLimitConfig {
                requests: ceiling,
                per: Duration::from_secs(1),
                adaptive: Some(AdaptiveRateConfig {
                    min,
                    initial: Some(initial),
                }),
                ..RateLimitConfig::default()
            }),
            ..ResourceConfig::default()
        },
    );
    config.validate().expect("the setup is valid");
    Scheduler::new(config)
}

/// Runs the backlog against `provider` until `until`; a refused call reports overload
/// with its Retry-After and is replaced by a new job at once (the pause holds it).
fn run<R: Fn(Duration) -> f64>(mut core: Scheduler<()>, mut provider: Provider<R>, until: Duration) -> Run {
    let spec = || JobSpec::new("t", "provider");
    for _ in 0..BACKLOG {
        core.submit(spec(), (), Duration::ZERO);
    }
    let resource = ResourceId::new("provider");
    let mut ends: BTreeMap<(Duration, u64), JobKey> = BTreeMap::new();
    let (mut out, mut now, mut seen) = (Vec::new(), Duration::ZERO, Run::default());
    loop {
        core.poll(now, &mut out);
        for event in out.drain(..) {
            let Event::Granted { key, .. } = event else {
                continue;
            };
            seen.calls.push(now);
            match provider.call(now) {
                Ok(()) => {
                    ends.insert((now + LATENCY, seen.calls.len() as u64), key);
                }
                Err(retry_after) => {
                    seen.refused.push((now, now + retry_after));
                    core.refused(key, Some(retry_after), now).expect("a granted call");
                    core.complete(key, OutcomeKind::Failed, now)
                        .expect("a granted call");
                    core.submit(spec(), (), now);
                }
            }
        }
        let snap = core.snapshot(now);
        let learned = snap.resources[resource.as_str()].resilience.learned_requests;
        seen.rates.push((now, learned.expect("the rate is adaptive")));
        let next = [ends.keys().next().map(|&(at, _)| at), core.next_deadline()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next.filter(|&t| t <= until) else {
            seen.rates.push((until, seen.rates.last().map_or(0, |r| r.1)));
            break;
        };
        now = next.max(now);
        while let Some(entry) = ends.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            core.complete(key, OutcomeKind::Completed, now)
                .expect("a running call");
            core.submit(spec(), (), now);
        }
    }
    seen
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Whatever the true rate does (it jumps between values, down to one call in ten
    /// seconds), the learned rate stays within [min, ceiling].
    #[test]
    fn the_rate_stays_within_min_and_the_ceiling(
        ceiling in 2u32..400,
        min_share in 0.0f64..1.0,
        initial_share in 0.0f64..1.0,
        steps in proptest::collection::vec(0.1f64..500.0, 1..5),
    ) {
        let min = 1 + ((f64::from(ceiling - 1)) * min_share) as u32;
        let initial = min + ((f64::from(ceiling - min)) * initial_share) as u32;
        let step = Duration::from_secs(10);
        let rate = |t: Duration| steps[((t.as_secs() / step.as_secs()) as usize).min(steps.len() - 1)];
        let provider = Provider { rate, burst: 2, tat: Duration::ZERO };
        let seen = run(core(min, initial, ceiling), provider, step * steps.len() as u32);
        for &(at, r) in &seen.rates {
            prop_assert!((u64::from(min)..=u64::from(ceiling)).contains(&r), "rate {r} at {at:?} outside [{min}, {ceiling}]");
        }
    }

    /// Against a constant true rate R (the ceiling ten times higher, the start far below
    /// or above R), the learned rate settles within 10 % of R: its mean over the second
    /// half of the run, and the calls the provider admitted there, are within 10 % of R.
    #[test]
    fn against_a_constant_rate_it_settles_within_ten_percent(
        true_rate in 10u32..300,
        initial_share in 0.05f64..2.0,
        burst in 1u32..5,
    ) {
        let r = f64::from(true_rate);
        let ceiling = true_rate * 10;
        let initial = ((r * initial_share) as u32).clamp(1, ceiling);
        let provider = Provider { rate: |_| r, burst, tat: Duration::ZERO };
        let until = Duration::from_secs(60);
        let seen = run(core(1, initial, ceiling), provider, until);
        let half = until / 2;
        let mean = seen.mean_rate(half, until);
        prop_assert!((mean - r).abs() <= 0.1 * r, "mean learned rate {mean:.1} against {r}");
        let admitted = (seen.calls_in(half, until) - seen.refused_in(half, until)) as f64 / half.as_secs_f64();
        prop_assert!(admitted >= 0.9 * r, "admitted {admitted:.1}/s against {r}");
    }

    /// After the true rate drops from R1 to R2 (a quarter to nine tenths of it), the
    /// burst of refusals ends within 5 s: from then on at most 3 % of the calls are
    /// refused (the probes of a rate that stays near R2).
    #[test]
    fn after_a_drop_the_refusals_stop_within_a_bounded_time(
        high in 20u32..300,
        share in 0.25f64..0.9,
    ) {
        let (r1, r2) = (f64::from(high), f64::from(high) * share);
        let drop = Duration::from_secs(30);
        let rate = move |t: Duration| if t < drop { r1 } else { r2 };
        let provider = Provider { rate, burst: 2, tat: Duration::ZERO };
        let until = Duration::from_secs(60);
        let seen = run(core(1, high, high * 10), provider, until);
        let settled = drop + Duration::from_secs(5);
        let (calls, refused) = (seen.calls_in(settled, until), seen.refused_in(settled, until));
        prop_assert!(calls > 0);
        prop_assert!(refused as f64 <= 0.03 * calls as f64, "{refused} of {calls} refused after {settled:?}");
    }

    /// No call reaches the provider after a refusal and before the end of the pause it
    /// announced (calls granted at the refusal's own instant were made with it).
    #[test]
    fn a_retry_after_is_never_violated(
        steps in proptest::collection::vec(1.0f64..300.0, 1..5),
        burst in 1u32..5,
    ) {
        let step = Duration::from_secs(10);
        let rate = |t: Duration| steps[((t.as_secs() / step.as_secs()) as usize).min(steps.len() - 1)];
        let provider = Provider { rate, burst, tat: Duration::ZERO };
        let seen = run(core(1, 50, 3000), provider, step * steps.len() as u32);
        prop_assert!(!seen.refused.is_empty());
        for &(at, until) in &seen.refused {
            let inside = seen.calls.iter().filter(|&&t| t > at && t < until).count();
            prop_assert_eq!(inside, 0, "calls during the pause {:?}..{:?}", at, until);
        }
    }
}
