//! weir as a tokio service embeds it: `Runtime::start` called from a multi-threaded tokio
//! runtime, and jobs submitted and awaited by that runtime's tasks, so every submission
//! and every outcome crosses threads. The baseline is what the same tasks would do
//! without weir: tokio `Semaphore` + `spawn`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use weir_actors::Runtime;

use super::workload;

/// `submitters` tasks of the current (multi-threaded tokio) runtime each submit their
/// share of `n` empty jobs one by one, then await their outcomes. Returns the time from
/// the first submission to the last outcome.
///
/// # Panics
/// If a job is refused or does not complete, or a task panics.
pub async fn weir_embedded(runtime: &Runtime, submitters: usize, n: usize) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = shares(submitters, n)
        .map(|share| {
            let runtime = runtime.clone();
            tokio::spawn(async move { workload::weir_flood(&runtime, share).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("a submitting task does not panic");
    }
    start.elapsed()
}

/// The baseline of [`weir_embedded`]: the same tasks spawn their share of `n` empty tasks
/// that each hold one of `cap` permits of one semaphore, then await them (not
/// `workload::tokio_flood` per task, which would give each task a semaphore of its own).
///
/// # Panics
/// If a task panics.
pub async fn tokio_embedded(submitters: usize, n: usize, cap: usize) -> Duration {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(cap));
    let start = Instant::now();
    let tasks: Vec<_> = shares(submitters, n)
        .map(|share| {
            let semaphore = semaphore.clone();
            tokio::spawn(async move {
                let mut handles = Vec::with_capacity(share);
                for _ in 0..share {
                    let semaphore = semaphore.clone();
                    handles.push(tokio::spawn(async move {
                        let _permit = semaphore.acquire().await.expect("never closed");
                    }));
                }
                for handle in handles {
                    handle.await.expect("an empty task does not panic");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a submitting task does not panic");
    }
    start.elapsed()
}

/// `n` split into `parts` shares that differ by at most one.
fn shares(parts: usize, n: usize) -> impl Iterator<Item = usize> {
    let parts = parts.max(1);
    (0..parts).map(move |i| n / parts + usize::from(i < n % parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        for (parts, n) in [(1, 10), (3, 10), (32, 20_000), (32, 5), (0, 7)] {
            let s: Vec<usize> = shares(parts, n).collect();
            assert_eq!(s.iter().sum::<usize>(), n);
            assert!(s.iter().max().unwrap() - s.iter().min().unwrap() <= 1);
        }
    }
}
