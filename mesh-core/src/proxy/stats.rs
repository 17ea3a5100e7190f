//! What a proxy counts: requests per direction, responses by status class, failures by reason.
//! Counters are named strings in an ordered map so a snapshot is deterministic and self-describing;
//! the telemetry issue exposes them in Prometheus form.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::time::Instant;

/// A proxy's counters, and per-second series of the timed ones.
#[derive(Debug)]
pub struct ProxyStats {
    counters: Mutex<BTreeMap<String, u64>>,
    series: Mutex<BTreeMap<String, BTreeMap<u64, u64>>>,
    epoch: Instant,
}

impl Default for ProxyStats {
    fn default() -> Self {
        Self::new(Instant::now()) // tokio clock; allow-nondeterminism
    }
}

impl ProxyStats {
    /// Counters whose series count seconds from `epoch`.
    pub fn new(epoch: Instant) -> Self {
        Self {
            counters: Mutex::default(),
            series: Mutex::default(),
            epoch,
        }
    }

    /// Where the per-second series (and span start times) count from.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Add one to `name`, and to its series at the current second.
    pub fn incr_timed(&self, name: &str) {
        self.incr(name);
        let sec = Instant::now() // tokio clock; allow-nondeterminism
            .saturating_duration_since(self.epoch)
            .as_secs();
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        // Look up before inserting: the name is allocated once, not on every request.
        match series.get_mut(name) {
            Some(s) => *s.entry(sec).or_insert(0) += 1,
            None => {
                series.insert(name.to_string(), BTreeMap::from([(sec, 1)]));
            }
        }
    }

    /// Per-second series of the timed counters: name → second → count.
    pub fn series(&self) -> BTreeMap<String, BTreeMap<u64, u64>> {
        self.series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

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
