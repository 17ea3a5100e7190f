//! What a proxy counts: requests per direction, responses by status class, failures by reason.
//! Counters are named strings in an ordered map so a snapshot is deterministic and self-describing;
//! the telemetry issue exposes them in Prometheus form.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// A proxy's counters.
#[derive(Debug, Default)]
pub struct ProxyStats {
    counters: Mutex<BTreeMap<String, u64>>,
}

impl ProxyStats {
    /// Add one to `name`.
    pub fn incr(&self, name: &str) {
        let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        match c.get_mut(name) {
            Some(v) => *v += 1,
            None => {
                c.insert(name.to_string(), 1);
            }
        }
    }

    /// The counters now, in name order.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The value of one counter (0 if never incremented).
    pub fn get(&self, name: &str) -> u64 {
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}
