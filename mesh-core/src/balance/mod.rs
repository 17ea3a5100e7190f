//! Endpoint selection and per-endpoint health, for one proxy.
//!
//! Balancers (all deterministic given the proxy's seeded RNG), in `choose.rs`:
//! - **round robin** (Envoy's default);
//! - **random**;
//! - **least request**, power of two choices on requests in flight (Istio's default since 1.14);
//! - **peak EWMA**, power of two choices on `rtt_ewma × (in flight + 1)`, where the EWMA jumps to
//!   any slower sample at once and decays towards faster ones (linkerd2-proxy; default RTT 30 ms,
//!   decay 10 s);
//! - **ring hash** on a request header (Envoy's `RING_HASH`, 64 points per endpoint, FNV-1a).
//!
//! Outlier detection (`outlier.rs`) decides which endpoints a balancer may pick; when none may,
//! Envoy's panic mode picks among all of them. This file holds the state they share per pool
//! and a pick's lifetime: [`Balancer::pick`] takes a load slot, [`Pick::finish`] reports the
//! outcome, dropping an unfinished [`Pick`] (a cancelled request) only gives the slot back.
//! `weighted.rs` is the one weighted draw traffic splits use; it keeps no state.
//!
//! # Layout
//! - `choose.rs`: [`LbPolicy`] and one choice function per policy, peak EWMA's estimate.
//! - `outlier.rs`: [`OutlierDetection`], an endpoint's health, [`HealthEvent`].
//! - `weighted.rs`: [`weighted_index`].

mod choose;
mod outlier;
mod weighted;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use choose::Ewma;
pub use choose::LbPolicy;
use outlier::Health;
pub use outlier::{HealthEvent, HealthKind, OutlierDetection};
pub use weighted::weighted_index;

/// What the balancer keeps state for: one service's endpoints, or one subset's when a traffic
/// split chose the subset first. Displayed `service` or `service@subset`, as reports name it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pool {
    /// The destination service.
    pub service: String,
    /// The subset a split chose, if one did.
    pub subset: Option<String>,
}

impl Pool {
    /// All of `service`'s endpoints.
    pub fn of(service: &str) -> Self {
        Self {
            service: service.to_string(),
            subset: None,
        }
    }

    /// The endpoints of `service` labelled `subset`.
    pub fn subset(service: &str, subset: &str) -> Self {
        Self {
            service: service.to_string(),
            subset: Some(subset.to_string()),
        }
    }
}

impl std::fmt::Display for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.subset {
            Some(sub) => write!(f, "{}@{sub}", self.service),
            None => f.write_str(&self.service),
        }
    }
}

#[derive(Clone, Debug)]
struct Endpoint {
    /// Requests in flight.
    active: u32,
    ewma: Ewma,
    health: Health,
}

#[derive(Debug, Default)]
struct ServiceState {
    endpoints: Vec<Endpoint>,
    cursor: usize,
    ring: Vec<(u64, usize)>,
}

#[derive(Debug)]
struct Inner {
    pools: BTreeMap<Pool, ServiceState>,
    rng: ChaCha8Rng,
    events: Vec<HealthEvent>,
}

/// Picks endpoints and tracks their load and health.
#[derive(Clone, Debug)]
pub struct Balancer {
    inner: Arc<Mutex<Inner>>,
}

/// One request in flight to an endpoint; report how it went with [`Pick::finish`].
#[derive(Debug)]
pub struct Pick {
    balancer: Balancer,
    pool: Pool,
    /// The chosen endpoint's index.
    pub index: usize,
    started: Instant,
    done: bool,
}

impl Balancer {
    /// A balancer whose random choices come from `rng`.
    pub fn new(rng: ChaCha8Rng) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                pools: BTreeMap::new(),
                rng,
                events: Vec::new(),
            })),
        }
    }

    /// Ejections, probations and restorations so far, in order.
    pub fn events(&self) -> Vec<HealthEvent> {
        self.lock().events.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Choose one of the `n` endpoints of `pool`; `hash_key` is the ring-hash header's value.
    /// Ejected endpoints are skipped whenever any other is usable (the ejection itself happens in
    /// [`Pick::finish`] under the outlier settings). `pinned` takes that endpoint without a draw
    /// (a retry kept on its first endpoint). `None` when there are no endpoints.
    pub fn pick(
        &self,
        pool: &Pool,
        n: usize,
        policy: &LbPolicy,
        hash_key: Option<&[u8]>,
        pinned: Option<usize>,
    ) -> Option<Pick> {
        if n == 0 {
            return None;
        }
        let now = Instant::now(); // tokio clock (simulated under sim); allow-nondeterminism
        let mut inner = self.lock();
        let Inner { pools, rng, events } = &mut *inner;
        let st = pools.entry(pool.clone()).or_default();
        if st.endpoints.len() != n {
            let fresh = Endpoint {
                active: 0,
                ewma: Ewma::new(policy.default_rtt()),
                health: Health::default(),
            };
            st.endpoints = vec![fresh; n];
            st.ring.clear();
        }
        // Ejections that have run out become probations (half-open).
        for (i, e) in st.endpoints.iter_mut().enumerate() {
            if e.health.expire(now) {
                events.push(HealthEvent {
                    at: now,
                    pool: pool.clone(),
                    endpoint: i,
                    kind: HealthKind::Probation,
                });
            }
        }
        let candidates: Vec<usize> = (0..n)
            .filter(|&i| st.endpoints[i].health.usable())
            .collect();
        // Envoy's panic mode: with nothing usable, ignore health rather than fail every request.
        let candidates = if candidates.is_empty() {
            (0..n).collect()
        } else {
            candidates
        };
        let index = match pinned.filter(|&i| i < n) {
            // Chosen before the balancer was asked (a retry kept on its first endpoint): health
            // and load are still accounted, nothing is drawn.
            Some(i) => i,
            None => choose::choose(policy, st, &candidates, rng, now, hash_key),
        };
        let e = &mut st.endpoints[index];
        e.active += 1;
        e.health.picked();
        drop(inner);
        Some(Pick {
            balancer: self.clone(),
            pool: pool.clone(),
            index,
            started: now,
            done: false,
        })
    }

    /// Endpoints of `pool` ejected now.
    pub fn ejected(&self, pool: &Pool) -> usize {
        let now = Instant::now(); // tokio clock (simulated under sim); allow-nondeterminism
        self.lock()
            .pools
            .get(pool)
            .map(|s| {
                s.endpoints
                    .iter()
                    .filter(|e| e.health.ejected_at(now))
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Pick {
    /// Report the outcome: `failed` for a 5xx or gateway error. Updates load, latency and health.
    pub fn finish(mut self, failed: bool, policy: &LbPolicy, outlier: Option<&OutlierDetection>) {
        self.done = true;
        let now = Instant::now(); // tokio clock (simulated under sim); allow-nondeterminism
        let rtt_us = now.saturating_duration_since(self.started).as_micros() as f64;
        let mut inner = self.balancer.lock();
        let Inner { pools, events, .. } = &mut *inner;
        let Some(st) = pools.get_mut(&self.pool) else {
            return;
        };
        let n = st.endpoints.len();
        let ejected_now = st
            .endpoints
            .iter()
            .filter(|e| e.health.ejected_at(now))
            .count();
        let Some(e) = st.endpoints.get_mut(self.index) else {
            return;
        };
        e.active = e.active.saturating_sub(1);
        if let LbPolicy::PeakEwma { decay, default_rtt } = policy {
            e.ewma.observe(rtt_us, now, *decay, *default_rtt);
        }
        let Some(od) = outlier else { return };
        if let Some(kind) = e.health.record(failed, od, now, ejected_now, n) {
            events.push(HealthEvent {
                at: now,
                pool: self.pool.clone(),
                endpoint: self.index,
                kind,
            });
        }
    }
}

impl Drop for Pick {
    fn drop(&mut self) {
        if !self.done {
            // Cancelled (timeout, client gone): release the load slot, record nothing else.
            let mut inner = self.balancer.lock();
            if let Some(e) = inner
                .pools
                .get_mut(&self.pool)
                .and_then(|s| s.endpoints.get_mut(self.index))
            {
                e.active = e.active.saturating_sub(1);
                e.health.cancelled();
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use rand::SeedableRng;

    pub(crate) fn b(seed: u64) -> Balancer {
        Balancer::new(ChaCha8Rng::seed_from_u64(seed))
    }

    pub(crate) fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }
}
