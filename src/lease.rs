//! Lease renewal: a long job that is still making progress may extend its lease.
//!
//! A renewal moves the job's lease deadline to `now + lease` (its own lease length). It
//! is accepted only while the job holds its slot under a live lease. Once the lease has
//! expired the job is being stopped; a renewal then fails with [`LeaseError::Expired`]
//! and changes nothing, so a late renewal can never take a slot back or keep a job that
//! outlived its lease running beside the job that got its slot next.

/// Why a lease renewal was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// The lease already expired: the job is being stopped (it ends `TimedOut`).
    #[error("the lease already expired: the job is being stopped and cannot renew")]
    Expired,
    /// The job was cancelled and is being stopped.
    #[error("the job was cancelled and is being stopped")]
    Cancelled,
    /// The job holds no slot right now (it is parked while it waits for children, or
    /// waiting for its slot back), so there is no lease to renew.
    #[error("the job holds no slot (parked or waiting), so it has no lease to renew")]
    NotHeld,
    /// The job has already ended (or the runtime stopped).
    #[error("the job has ended")]
    Ended,
}
