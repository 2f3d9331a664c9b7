//! Failpoints at the runtime's own steps, so tests can break the supervisor and the
//! workers, not only the jobs (the `fail` crate, compiled in by the `failpoints` cargo
//! feature; without it every check is a constant `false`).
//!
//! Each point is configured with `fail::cfg(name, "return")` (or `"50%return"`,
//! `"3*return"`, ...); a `return` action means "this step fails now":
//!
//! | name | step | what the failure does |
//! | --- | --- | --- |
//! | `weir::dispatch` | the supervisor hands a granted job to a worker | the job is lost in transit: dropped before it runs; it must still end (`Failed`) and return its slot |
//! | `weir::worker::run` | a body thread takes granted jobs | its driver panics and dies with them (`panic` also works); the pool restarts it |
//! | `weir::done::duplicate` | the supervisor handles a job's end | the end is reported twice; the slot must return once |
//! | `weir::done::delay` | the supervisor handles a job's end | the report arrives 50 ms later; the slot stays held until then |
//! | `weir::wake::early` | an actor (the supervisor, a coalescer, recurring checks) arms its wake-up | the timer fires at half the delay (a spurious early wake) |
//! | `weir::wake::late` | an actor (the supervisor, a coalescer, recurring checks) arms its wake-up | the timer fires 50 ms late |

/// True when the failpoint `name` is configured to fail now.
#[cfg(feature = "failpoints")]
pub(crate) fn hit(name: &str) -> bool {
    fail::eval(name, |_| ()).is_some()
}

/// Failpoints are compiled out: no step ever fails on purpose.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn hit(_name: &str) -> bool {
    false
}
