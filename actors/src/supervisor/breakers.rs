//! The breaker state each resource's last slot refusal saw, shared with the public handle
//! so that a caller words a refusal ("the breaker is open" or "no slot") without a whole
//! [`Runtime::stats`](crate::Runtime::stats) round trip: under overload every refusal
//! would otherwise cost a snapshot.
//!
//! The supervisor writes a resource's state before it resolves the refused job's outcome,
//! so a caller that reads it after the outcome arrived sees the state at its own refusal
//! (or at a later one of the same resource).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use weir::{BreakerState, ResourceId};

/// Per resource with a breaker: its state at the resource's latest `NoSlot` refusal.
#[derive(Debug, Default)]
pub(crate) struct RefusalBreakers {
    states: Mutex<HashMap<ResourceId, BreakerState>>,
}

/// What the supervisor and the handle share.
pub(crate) type SharedRefusalBreakers = Arc<RefusalBreakers>;

impl RefusalBreakers {
    /// A job of `resource` was refused a slot while its breaker was `state`.
    pub(crate) fn refused(&self, resource: &ResourceId, state: BreakerState) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        match states.get_mut(resource) {
            Some(s) => *s = state,
            None => {
                states.insert(resource.clone(), state);
            }
        }
    }

    /// True when `resource`'s breaker was open at its latest refusal (asked by the tower
    /// layer, so unused without the `tower` feature).
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn was_open(&self, resource: &ResourceId) -> bool {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.get(resource) == Some(&BreakerState::Open)
    }
}
