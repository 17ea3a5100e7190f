//! Envoy-style circuit breaking by thresholds: requests and retries in flight per destination.
//! An attempt takes a [`Slot`] before it is sent and gives it back when it ends (the slot is
//! dropped); when a threshold is reached the attempt is refused and the proxy fast-fails it with
//! 503 `circuit_open` instead of queueing more work on a struggling upstream.
//!
//! This is Envoy's breaker (overload protection, no failure counting); ejecting failing endpoints is
//! outlier detection, a separate policy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::policy::CircuitBreaker;

/// Requests and retries in flight to one destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InFlight {
    /// Attempts in flight (first tries and retries).
    pub requests: u32,
    /// Retries in flight.
    pub retries: u32,
}

/// The in-flight counts of every destination of one proxy.
#[derive(Clone, Debug, Default)]
pub struct Breakers {
    inner: Arc<Mutex<BTreeMap<String, InFlight>>>,
}

/// A slot held by one attempt; dropping it frees it.
#[derive(Debug)]
pub struct Slot {
    breakers: Breakers,
    service: String,
    retry: bool,
}

impl Breakers {
    /// Take a slot for an attempt to `service` (a retry if `retry`) under thresholds `cb`
    /// (none: unlimited, but still counted). `None` when a threshold is reached.
    pub fn admit(&self, service: &str, cb: Option<&CircuitBreaker>, retry: bool) -> Option<Slot> {
        let mut all = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let f = all.entry(service.to_string()).or_default();
        if let Some(cb) = cb
            && (f.requests >= cb.max_requests || (retry && f.retries >= cb.max_retries))
        {
            return None;
        }
        f.requests += 1;
        if retry {
            f.retries += 1;
        }
        Some(Slot {
            breakers: self.clone(),
            service: service.to_string(),
            retry,
        })
    }

    /// What is in flight to `service` now.
    pub fn in_flight(&self, service: &str) -> InFlight {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
            .copied()
            .unwrap_or_default()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut all = self
            .breakers
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(f) = all.get_mut(&self.service) {
            f.requests = f.requests.saturating_sub(1);
            if self.retry {
                f.retries = f.retries.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the order of admissions and completions, a breaker never has more requests or
        /// retries in flight than its thresholds, and a refused attempt changes nothing.
        #[test]
        fn never_admits_beyond_limits(
            max_requests in 1u32..10,
            max_retries in 0u32..5,
            ops in proptest::collection::vec((any::<bool>(), any::<bool>(), any::<usize>()), 0..200),
        ) {
            let cb = CircuitBreaker { max_requests, max_retries };
            let b = Breakers::default();
            let mut held: Vec<Slot> = Vec::new();
            for (admit, retry, pick) in ops {
                if admit {
                    let before = b.in_flight("db");
                    match b.admit("db", Some(&cb), retry) {
                        Some(s) => held.push(s),
                        None => prop_assert_eq!(b.in_flight("db"), before),
                    }
                } else if !held.is_empty() {
                    held.swap_remove(pick % held.len());
                }
                let f = b.in_flight("db");
                prop_assert!(f.requests <= max_requests && f.retries <= max_retries, "{:?}", f);
                prop_assert_eq!(f.requests as usize, held.len());
            }
            held.clear();
            prop_assert_eq!(b.in_flight("db"), InFlight::default());
        }
    }
}
