//! Endpoint selection. Round robin only for now; the policies issue adds random, least-request
//! P2C, peak-EWMA P2C and ring hash behind the same [`Balancer`] type.
//!
//! Round robin needs no randomness, so it is deterministic under the simulator by construction.
//! Per-service cursors live in an ordered map so the state is reproducible to inspect.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Picks an endpoint index for a service.
#[derive(Debug, Default)]
pub struct Balancer {
    cursors: Mutex<BTreeMap<String, usize>>,
}

impl Balancer {
    /// A balancer with every cursor at the first endpoint.
    pub fn new() -> Self {
        Self::default()
    }

    /// The index of the next endpoint of `service`, among `len` endpoints; `None` when there are none.
    pub fn pick(&self, service: &str, len: usize) -> Option<usize> {
        if len == 0 {
            return None;
        }
        let mut cursors = self.cursors.lock().unwrap_or_else(|p| p.into_inner());
        let cursor = cursors.entry(service.to_string()).or_insert(0);
        let idx = *cursor % len;
        *cursor = cursor.wrapping_add(1);
        Some(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Over any whole number of rounds, round robin gives every endpoint the same share.
        #[test]
        fn round_robin_is_fair(len in 1usize..20, rounds in 1usize..20) {
            let b = Balancer::new();
            let mut counts = vec![0usize; len];
            for _ in 0..len * rounds {
                counts[b.pick("svc", len).unwrap()] += 1;
            }
            prop_assert!(counts.iter().all(|&c| c == rounds));
        }
    }

    #[test]
    fn no_endpoints_no_pick() {
        assert_eq!(Balancer::new().pick("svc", 0), None);
    }
}
