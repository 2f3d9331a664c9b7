//! What one slot grant costs: in weir's core, and in the shared-counter pattern the
//! incident's patch used (a counter in Redis: `INCR`, compare with the cap, `DECR` to
//! release; two round trips per grant).

use std::time::{Duration, Instant};

use weir::{Event, Scheduler};

use super::workload;

/// Nanoseconds per release + grant in the core: a pool of one slot with a backlog of
/// `backlog` waiting jobs; each step completes the running job and polls, which grants
/// the next. Repeated for `rounds` backlogs; submission is outside the timed part. Timed
/// in the thread's CPU time where the OS reports it (Linux), so time spent descheduled
/// on a busy machine is not counted.
pub fn core_release_grant_ns(backlog: usize, rounds: usize) -> f64 {
    let mut core: Scheduler<()> = Scheduler::new(workload::config(1, backlog as u64 + 1));
    let now = Duration::ZERO;
    let spec = workload::spec();
    let mut events = Vec::with_capacity(4);
    let mut elapsed = Duration::ZERO;
    let mut steps = 0u64;
    for _ in 0..rounds {
        for _ in 0..backlog {
            core.submit(spec.clone(), (), now);
        }
        core.poll(now, &mut events);
        let (wall, cpu) = (Instant::now(), thread_cpu_time());
        while let Some(Event::Granted { key, .. }) = events.pop() {
            events.clear();
            core.complete(key, weir::OutcomeKind::Completed, now)
                .expect("the granted job is running");
            core.poll(now, &mut events);
            steps += 1;
        }
        elapsed += match (cpu, thread_cpu_time()) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => wall.elapsed(),
        };
    }
    elapsed.as_nanos() as f64 / steps.max(1) as f64
}

/// CPU time of the calling thread (`/proc/thread-self/schedstat`, Linux).
fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(
        text.split_whitespace().next()?.parse().ok()?,
    ))
}

/// The shared-counter pattern's cost on the Redis at `url`, measured for `duration`:
/// each grant is `INCR` (refused and undone with `DECR` if over `cap`), each release a
/// `DECR`. Returns nanoseconds per grant + release, or the connection error.
pub fn redis_counter_ns(url: &str, cap: i64, duration: Duration) -> Result<f64, String> {
    let client = redis::Client::open(url).map_err(|e| format!("redis URL {url:?}: {e}"))?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .map_err(|e| format!("cannot reach redis at {url}: {e}"))?;
    let key = format!("weir:bench:slots:{}", std::process::id());
    let cmd = |name: &str| {
        let mut c = redis::cmd(name);
        c.arg(&key);
        c
    };
    let start = Instant::now();
    let mut grants = 0u64;
    while start.elapsed() < duration {
        let held: i64 = cmd("INCR").query(&mut conn).map_err(|e| e.to_string())?;
        if held > cap {
            let _: i64 = cmd("DECR").query(&mut conn).map_err(|e| e.to_string())?;
            continue;
        }
        let _: i64 = cmd("DECR").query(&mut conn).map_err(|e| e.to_string())?;
        grants += 1;
    }
    let elapsed = start.elapsed();
    let _: i64 = cmd("DEL").query(&mut conn).map_err(|e| e.to_string())?;
    Ok(elapsed.as_nanos() as f64 / grants.max(1) as f64)
}
