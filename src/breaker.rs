//! A circuit breaker per resource: closed, open, half-open, decided from outcomes and an
//! explicit `now`.
//!
//! # Implementation details
//!
//! * **Closed**: every call is admitted. Outcomes go into a sliding window of
//!   `window` split into 20 buckets, so memory is fixed however many calls
//!   run; a call is forgotten once its bucket is a whole window old. After each outcome,
//!   if the window holds at least `min_calls` outcomes and `failures / calls >=
//!   error_rate`, the breaker opens.
//! * **Open** until `cooldown` has passed: nothing is admitted; [`Breaker::check`]
//!   says until when, so the caller schedules one wake-up instead of polling.
//! * **Half-open**: at most `half_open_probes` calls are admitted. When that many have
//!   succeeded the breaker closes with an empty window; any failure reopens it. If the
//!   probes have not all resolved within `half_open_timeout` of the first one, the
//!   breaker reopens, so a hung probe cannot wedge it.
//!
//! Each admission hands out a [`Permit`] stamped with the breaker's epoch (bumped at
//! every transition); an outcome counts only if its permit is of the current epoch, so
//! calls that started before the breaker opened cannot reopen or close it later.
//!
//! Hand-written: the state machine is small and must take `now` as a parameter and
//! return its next deadline; the maintained breaker crates read a clock themselves.

use std::fmt;
use std::time::Duration;

use crate::config::resilience::BreakerConfig;

/// Buckets of the sliding window.
pub(crate) const BUCKETS: usize = 20;

/// The state of a breaker; serialized as `"closed"`, `"open"` or `"half_open"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls flow; outcomes are counted.
    #[default]
    Closed,
    /// Calls are refused until the cooldown ends.
    Open,
    /// A bounded number of probe calls decide whether to close or reopen.
    HalfOpen,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        })
    }
}

/// Leave to make one call, from [`Breaker::admit`]; hand it back with the outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Permit {
    epoch: u32,
}

/// A change of state, for stats and tracing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transition {
    /// State before.
    pub(crate) from: BreakerState,
    /// State after.
    pub(crate) to: BreakerState,
    /// When.
    pub(crate) at: Duration,
    /// Outcomes in the window when it happened.
    pub(crate) calls: u64,
    /// Failures among them.
    pub(crate) failures: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    index: u64,
    calls: u64,
    failures: u64,
}

#[derive(Clone, Copy, Debug)]
enum State {
    Closed,
    Open {
        until: Duration,
    },
    HalfOpen {
        admitted: u32,
        succeeded: u32,
        deadline: Option<Duration>,
    },
}

/// A circuit breaker (see the module docs).
#[derive(Debug)]
pub(crate) struct Breaker {
    cfg: BreakerConfig,
    state: State,
    epoch: u32,
    width: Duration,
    buckets: [Bucket; BUCKETS],
    transitions: u64,
}

impl Breaker {
    /// A closed breaker for a validated configuration.
    pub(crate) fn new(cfg: BreakerConfig) -> Self {
        let width = (cfg.window / BUCKETS as u32).max(Duration::from_nanos(1));
        Self {
            cfg,
            state: State::Closed,
            epoch: 0,
            width,
            buckets: [Bucket::default(); BUCKETS],
            transitions: 0,
        }
    }

    /// Takes new settings while it runs. Its state (closed, open until the same instant,
    /// half-open with its probes out) and the permits it gave stay valid; the window's
    /// outcomes are kept unless `window` changed, whose buckets then mean other spans
    /// of time and are emptied. Returns true when the window was emptied.
    pub(crate) fn reconfigure(&mut self, cfg: BreakerConfig) -> bool {
        let width = (cfg.window / BUCKETS as u32).max(Duration::from_nanos(1));
        let emptied = width != self.width;
        if emptied {
            self.width = width;
            self.buckets = [Bucket::default(); BUCKETS];
        }
        self.cfg = cfg;
        emptied
    }

    /// Whether an overload refusal counts as a failure (`count_overload`).
    pub(crate) fn counts_overload(&self) -> bool {
        self.cfg.count_overload
    }

    /// The state as of the last call (call [`Breaker::tick`] to bring it to `now`).
    pub(crate) fn state(&self) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Outcomes and failures in the window ending at `now`.
    pub(crate) fn window(&self, now: Duration) -> (u64, u64) {
        let current = self.bucket_index(now);
        self.buckets
            .iter()
            .filter(|b| b.index + (BUCKETS as u64) > current && b.index <= current)
            .fold((0, 0), |(c, f), b| (c + b.calls, f + b.failures))
    }

    fn bucket_index(&self, now: Duration) -> u64 {
        (now.as_nanos() / self.width.as_nanos()) as u64
    }

    fn go(&mut self, to: State, now: Duration) -> Transition {
        let from = self.state();
        let (calls, failures) = self.window(now);
        self.state = to;
        self.epoch = self.epoch.wrapping_add(1);
        self.transitions += 1;
        if matches!(to, State::Closed) {
            self.buckets = [Bucket::default(); BUCKETS];
        }
        Transition {
            from,
            to: self.state(),
            at: now,
            calls,
            failures,
        }
    }

    fn open(&mut self, now: Duration) -> Transition {
        self.go(
            State::Open {
                until: now + self.cfg.cooldown,
            },
            now,
        )
    }

    /// Applies the transitions that time alone causes (cooldown over: half-open;
    /// half-open timeout passed: open again).
    pub(crate) fn tick(&mut self, now: Duration) -> Option<Transition> {
        match self.state {
            State::Open { until } if now >= until => Some(self.go(
                State::HalfOpen {
                    admitted: 0,
                    succeeded: 0,
                    deadline: None,
                },
                now,
            )),
            State::HalfOpen {
                deadline: Some(d), ..
            } if now >= d => Some(self.open(now)),
            _ => None,
        }
    }

    /// Whether a call could be admitted now (call [`Breaker::tick`] first). A refusal
    /// carries the instant worth asking again (the end of the cooldown, or the half-open
    /// timeout while every probe is out); `None` means only an outcome can change it.
    pub(crate) fn check(&self) -> Result<(), Option<Duration>> {
        match self.state {
            State::Closed => Ok(()),
            State::Open { until } => Err(Some(until)),
            State::HalfOpen {
                admitted, deadline, ..
            } => {
                if admitted < self.cfg.half_open_probes {
                    Ok(())
                } else {
                    Err(deadline)
                }
            }
        }
    }

    /// Admits one call at `now`, or refuses as [`Breaker::check`] does.
    pub(crate) fn admit(&mut self, now: Duration) -> Result<Permit, Option<Duration>> {
        self.check()?;
        if let State::HalfOpen {
            admitted, deadline, ..
        } = &mut self.state
        {
            *admitted += 1;
            deadline.get_or_insert(now + self.cfg.half_open_timeout);
        }
        Ok(Permit { epoch: self.epoch })
    }

    /// Records the outcome of an admitted call; returns the transition it caused.
    pub(crate) fn record(&mut self, permit: Permit, success: bool, now: Duration) -> Option<Transition> {
        if let Some(t) = self.tick(now) {
            // The state moved on since the call started: its outcome is stale.
            return Some(t);
        }
        if permit.epoch != self.epoch {
            return None;
        }
        match &mut self.state {
            State::Closed => {
                let index = self.bucket_index(now);
                let bucket = &mut self.buckets[(index % BUCKETS as u64) as usize];
                if bucket.index != index {
                    *bucket = Bucket {
                        index,
                        ..Bucket::default()
                    };
                }
                bucket.calls += 1;
                bucket.failures += u64::from(!success);
                let (calls, failures) = self.window(now);
                let over = calls >= u64::from(self.cfg.min_calls)
                    && failures as f64 >= self.cfg.error_rate * calls as f64;
                (over && failures > 0).then(|| self.open(now))
            }
            State::Open { .. } => None,
            State::HalfOpen { succeeded, .. } => {
                if !success {
                    return Some(self.open(now));
                }
                *succeeded += 1;
                (*succeeded >= self.cfg.half_open_probes).then(|| self.go(State::Closed, now))
            }
        }
    }

    /// A call that ended without an outcome worth counting (cancelled, parked): in
    /// half-open its probe place is given back.
    pub(crate) fn forget(&mut self, permit: Permit) {
        if permit.epoch != self.epoch {
            return;
        }
        if let State::HalfOpen { admitted, .. } = &mut self.state {
            *admitted = admitted.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            error_rate: 0.05,
            window: Duration::from_secs(120),
            min_calls: 20,
            cooldown: Duration::from_secs(60),
            half_open_probes: 2,
            half_open_timeout: Duration::from_secs(10),
            count_overload: false,
        }
    }

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn opens_at_the_threshold_and_not_before() {
        let mut b = Breaker::new(cfg());
        // 1 failure in 19 calls: over 5 %, but under min_calls.
        let p = b.admit(s(0)).unwrap();
        assert_eq!(b.record(p, false, s(0)), None);
        for i in 1..19 {
            let p = b.admit(s(i)).unwrap();
            assert_eq!(b.record(p, true, s(i)), None, "call {i}");
        }
        assert_eq!(b.state(), BreakerState::Closed);
        // The 20th call makes 1/20 = 5 %: at the threshold, it opens.
        let p = b.admit(s(19)).unwrap();
        let t = b.record(p, true, s(19)).expect("opens");
        assert_eq!(
            (t.from, t.to, t.calls, t.failures),
            (BreakerState::Closed, BreakerState::Open, 20, 1)
        );
        assert_eq!(b.check(), Err(Some(s(79))));
    }

    #[test]
    fn stays_closed_just_under_the_threshold() {
        let mut b = Breaker::new(cfg());
        for i in 0..20 {
            let p = b.admit(s(i)).unwrap();
            assert_eq!(b.record(p, true, s(i)), None);
        }
        // 1 failure in 21 calls is under 5 %.
        let p = b.admit(s(20)).unwrap();
        assert_eq!(b.record(p, false, s(20)), None);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.window(s(20)), (21, 1));
        // A second failure makes 2/22, over 5 %: it opens.
        let p = b.admit(s(21)).unwrap();
        assert_eq!(b.record(p, false, s(21)).map(|t| t.to), Some(BreakerState::Open));
    }

    #[test]
    fn old_failures_leave_the_window() {
        let mut b = Breaker::new(cfg());
        for i in 0..19 {
            let p = b.admit(s(i)).unwrap();
            b.record(p, i != 0, s(i));
        }
        // 200 s later the early failure is out of the 120 s window.
        let p = b.admit(s(200)).unwrap();
        assert_eq!(b.record(p, true, s(200)), None);
        assert_eq!(b.window(s(200)), (1, 0));
    }

    fn opened() -> Breaker {
        let mut b = Breaker::new(BreakerConfig {
            min_calls: 1,
            ..cfg()
        });
        let p = b.admit(s(0)).unwrap();
        assert!(b.record(p, false, s(0)).is_some());
        b
    }

    /// Issue 17: new thresholds keep the state and the window; a new window width
    /// empties the window but not the state.
    #[test]
    fn reconfigure_keeps_the_state_and_empties_the_window_only_when_it_changes() {
        let mut b = opened();
        assert!(!b.reconfigure(BreakerConfig {
            error_rate: 0.5,
            ..b.cfg
        }));
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.window(s(0)), (1, 1));
        assert!(b.reconfigure(BreakerConfig {
            window: Duration::from_secs(60),
            ..b.cfg
        }));
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.window(s(0)), (0, 0));
    }

    #[test]
    fn half_open_admits_at_most_the_probes_then_closes() {
        let mut b = opened();
        assert_eq!(b.admit(s(59)), Err(Some(s(60))));
        let t = b.tick(s(60)).expect("half-open");
        assert_eq!(t.to, BreakerState::HalfOpen);
        let p1 = b.admit(s(60)).unwrap();
        let p2 = b.admit(s(60)).unwrap();
        assert_eq!(b.admit(s(61)), Err(Some(s(70))), "only two probes");
        assert_eq!(b.record(p1, true, s(62)), None);
        assert_eq!(
            b.admit(s(62)),
            Err(Some(s(70))),
            "a finished probe frees no place"
        );
        let t = b.record(p2, true, s(63)).expect("closes");
        assert_eq!(t.to, BreakerState::Closed);
        assert!(b.admit(s(63)).is_ok());
        assert_eq!(b.window(s(63)), (0, 0), "closing starts a fresh window");
    }

    #[test]
    fn a_failed_probe_reopens() {
        let mut b = opened();
        b.tick(s(60));
        let p = b.admit(s(60)).unwrap();
        let t = b.record(p, false, s(61)).unwrap();
        assert_eq!(t.to, BreakerState::Open);
        assert_eq!(b.check(), Err(Some(s(121))));
    }

    #[test]
    fn a_hung_probe_cannot_wedge_it() {
        let mut b = opened();
        b.tick(s(60));
        let _hung = b.admit(s(60)).unwrap();
        let _hung2 = b.admit(s(60)).unwrap();
        assert_eq!(b.tick(s(69)), None);
        assert_eq!(b.tick(s(70)).unwrap().to, BreakerState::Open);
        assert_eq!(b.tick(s(130)).unwrap().to, BreakerState::HalfOpen);
        assert!(b.admit(s(130)).is_ok());
    }

    #[test]
    fn stale_outcomes_do_not_count() {
        let mut b = Breaker::new(BreakerConfig {
            min_calls: 1,
            ..cfg()
        });
        let early = b.admit(s(0)).unwrap();
        let p = b.admit(s(0)).unwrap();
        b.record(p, false, s(0)).unwrap();
        b.tick(s(60));
        // A call granted before the breaker opened ends during half-open: ignored.
        assert_eq!(b.record(early, true, s(61)), None);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.admit(s(61)).unwrap();
        b.forget(probe);
        assert!(b.admit(s(61)).is_ok(), "a forgotten probe gives its place back");
    }
}
