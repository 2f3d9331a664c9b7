//! Resident memory: the process's current and peak RSS, and what one queued job costs.
//!
//! Figures come from `/proc/self/status` (Linux). `weir bench` runs each measured phase
//! in a child process of its own, so a phase's peak RSS is that phase's alone and not
//! left over from an earlier one.

use std::time::Duration;

use weir::JobError;

use super::workload;
use weir_actors::Runtime;

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`); `None` where the file or
/// field is missing (not Linux).
pub fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: u64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Current resident set size in bytes.
pub fn rss() -> Option<u64> {
    status_bytes("VmRSS")
}

/// Peak resident set size of this process so far, in bytes.
pub fn peak_rss() -> Option<u64> {
    status_bytes("VmHWM")
}

/// CPU time used so far by this process's live threads (from each thread's
/// `/proc/self/task/*/schedstat`, in nanoseconds). On a machine shared with other work
/// this is steadier than wall-clock time: it counts only the time our threads ran.
pub fn cpu_time() -> Option<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        }; // the thread ended
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// CPU time of the calling thread so far (`/proc/thread-self/schedstat`), if readable.
pub fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(
        text.split_whitespace().next()?.parse().ok()?,
    ))
}

/// Jobs submitted between two drains of the supervisor's mailbox while queueing.
const CHUNK: usize = 10_000;

/// RSS growth per queued job in weir: a pool of one slot held by a job that never ends,
/// then `n` jobs submitted one by one (their handles kept, as a caller keeps them), all
/// waiting. Submission pauses every `CHUNK` jobs until the supervisor has taken them in,
/// so the figure is the steady cost of waiting jobs, not of a full mailbox.
/// Returns bytes per job. Call inside an actix system.
///
/// With `tenants` set, every job is its own tenant (`tenant-0`, `tenant-1`, ...), so the
/// figure includes what the core keeps per tenant (its fair-queue turn, its fairness
/// ledger entry) and the tenant's name, which the caller allocates.
///
/// # Panics
/// If a job is refused (the config sizes `max_queued` to fit).
pub async fn weir_queued(n: usize, tenants: bool) -> Option<f64> {
    let runtime = Runtime::start(workload::config(1, n as u64 + 1)).expect("a valid config");
    let blocker = runtime
        .submit(workload::spec(), |_| async {
            std::future::pending::<()>().await;
            Ok::<_, JobError>(())
        })
        .expect("accepted");
    let _ = runtime.stats().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before = rss()?;
    let mut handles = Vec::with_capacity(n);
    for chunk in 0..n.div_ceil(CHUNK) {
        for i in chunk * CHUNK..((chunk + 1) * CHUNK).min(n) {
            let spec = if tenants {
                weir::JobSpec::new(format!("tenant-{i}"), "store")
            } else {
                workload::spec()
            };
            let h = runtime
                .submit(spec, |_| async { Ok::<_, JobError>(()) })
                .expect("the config sizes max_queued to fit");
            handles.push(h);
        }
        let _ = runtime.stats().await;
    }
    let stats = runtime.stats().await;
    assert_eq!(stats.queued(), n as u64, "every job waits behind the blocker");
    let after = rss()?;
    drop(blocker);
    Some(after.saturating_sub(before) as f64 / n as f64)
}

/// The tokio counterpart of [`weir_queued`]: a `Semaphore` of one permit held forever,
/// then `n` spawned tasks waiting for it (their join handles kept). Call inside a tokio
/// runtime.
pub async fn tokio_queued(n: usize) -> Option<f64> {
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
    let held = semaphore.clone().acquire_owned().await.expect("never closed");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before = rss()?;
    let mut handles = Vec::with_capacity(n);
    for chunk in 0..n.div_ceil(CHUNK) {
        for _ in chunk * CHUNK..((chunk + 1) * CHUNK).min(n) {
            let semaphore = semaphore.clone();
            handles.push(tokio::spawn(async move {
                let _permit = semaphore.acquire().await.expect("never closed");
            }));
        }
        // Let the workers poll the new tasks so each is really waiting on the semaphore.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after = rss()?;
    drop(held);
    Some(after.saturating_sub(before) as f64 / n as f64)
}
