//! A downstream with a rate limit nobody is told, as a real TCP server on loopback, for
//! the multi-process adaptive-rate runs (issue 26): several processes reach the same one.
//!
//! It serves at most `max_concurrent` calls at once and accepts at most `requests` calls
//! in any sliding window of `per`. Over its rate it answers 429 with the exact Retry-After
//! (when the oldest call in the window leaves it) and announces a pause until then; over
//! its concurrency it answers a plain 429. It counts from its own side: calls, 429s, and
//! calls that arrived while a pause it had announced was still running.
//!
//! The protocol is one line each way on a connection, many calls per connection:
//! `CALL\n`, answered `200\n`, `429 RETRY_AFTER_US\n` (rate) or `429 0\n` (concurrency).
//! Written by hand rather than with an HTTP stack: the test needs a counting server and a
//! two-line protocol, not HTTP, and std threads keep it off the children's runtimes.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The downstream's limits, which no weir configuration is told.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Calls accepted in any window of `per`.
    pub requests: u32,
    /// The rate's window.
    pub per: Duration,
    /// Calls served at once.
    pub max_concurrent: u32,
    /// How long an accepted call takes.
    pub latency: Duration,
}

/// What the downstream counted, from its side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every call that arrived.
    pub calls: u64,
    /// Calls answered 429 (over the rate or over the concurrency).
    pub refusals: u64,
    /// Of those, refused over the rate (with a Retry-After).
    pub rate_refusals: u64,
    /// Calls that arrived after a 429 with a Retry-After was sent and before it ran out.
    pub calls_in_pause: u64,
    /// The most calls served at once.
    pub peak_concurrency: u64,
}

#[derive(Debug)]
struct State {
    limits: Limits,
    /// Arrival times of the accepted calls still inside the window.
    window: VecDeque<Instant>,
    in_flight: u32,
    /// The end of the latest pause announced with a Retry-After.
    pause_until: Option<Instant>,
    counts: Counts,
}

/// What one call is answered, decided under the lock.
enum Answer {
    Served,
    RateLimited(Duration),
    Busy,
}

impl State {
    fn arrive(&mut self, now: Instant) -> Answer {
        self.counts.calls += 1;
        if self.pause_until.is_some_and(|end| now < end) {
            self.counts.calls_in_pause += 1;
        }
        while self
            .window
            .front()
            .is_some_and(|&t| now.duration_since(t) >= self.limits.per)
        {
            self.window.pop_front();
        }
        if self.window.len() >= self.limits.requests as usize {
            let oldest = self.window[0];
            let retry_after = (oldest + self.limits.per).saturating_duration_since(now);
            let end = now + retry_after;
            self.pause_until = Some(self.pause_until.map_or(end, |p| p.max(end)));
            self.counts.refusals += 1;
            self.counts.rate_refusals += 1;
            return Answer::RateLimited(retry_after);
        }
        if self.in_flight >= self.limits.max_concurrent {
            self.counts.refusals += 1;
            return Answer::Busy;
        }
        self.window.push_back(now);
        self.in_flight += 1;
        self.counts.peak_concurrency = self.counts.peak_concurrency.max(u64::from(self.in_flight));
        Answer::Served
    }
}

/// The running server; its threads end with the process.
#[derive(Debug, Clone)]
pub struct RateDownstream {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl RateDownstream {
    /// Binds a free loopback port and serves there on its own threads.
    pub fn start(limits: Limits) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let state = Arc::new(Mutex::new(State {
            limits,
            window: VecDeque::new(),
            in_flight: 0,
            pause_until: None,
            counts: Counts::default(),
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Self { addr, state }
    }

    /// Where the children connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it has counted so far.
    pub fn counts(&self) -> Counts {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).counts
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_nodelay(true);
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let latency = state.lock().unwrap_or_else(|e| e.into_inner()).limits.latency;
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        if line.trim() != "CALL" {
            return;
        }
        let answer = state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .arrive(Instant::now());
        let reply = match answer {
            Answer::Served => {
                std::thread::sleep(latency);
                state.lock().unwrap_or_else(|e| e.into_inner()).in_flight -= 1;
                "200\n".to_string()
            }
            Answer::RateLimited(after) => format!("429 {}\n", after.as_micros().max(1)),
            Answer::Busy => "429 0\n".to_string(),
        };
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}
