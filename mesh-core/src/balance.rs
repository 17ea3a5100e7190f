//! Endpoint selection and per-endpoint health, for one proxy.
//!
//! Balancers (all deterministic given the proxy's seeded RNG):
//! - **round robin** (Envoy's default);
//! - **random**;
//! - **least request**, power of two choices on requests in flight (Istio's default since 1.14);
//! - **peak EWMA**, power of two choices on `rtt_ewma × (in flight + 1)`, where the EWMA jumps to
//!   any slower sample at once and decays towards faster ones (linkerd2-proxy; default RTT 30 ms,
//!   decay 10 s);
//! - **ring hash** on a request header (Envoy's `RING_HASH`, 64 points per endpoint, FNV-1a).
//!
//! Outlier detection (Envoy/Istio `outlierDetection`, Linkerd's consecutive failure accrual) is
//! kept here too because it decides which endpoints a balancer may pick: `consecutive_5xx`
//! failures eject an endpoint for `base_ejection × times ejected` (capped), never more than
//! `max_ejection_percent` of the endpoints (at least one may always be ejected, as Envoy). When the
//! time is up the endpoint is on probation (half-open): it gets one request; success restores it,
//! failure ejects it again for longer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

/// How to choose among a service's endpoints.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum LbPolicy {
    /// In turn.
    #[default]
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// Power of two choices on requests in flight.
    LeastRequest,
    /// Power of two choices on peak-EWMA latency × load.
    PeakEwma {
        /// RTT assumed before any sample (Linkerd: 30 ms).
        default_rtt: Duration,
        /// Decay time of the average (Linkerd: 10 s).
        decay: Duration,
    },
    /// Consistent hashing of a request header's value (random when the header is absent).
    RingHash {
        /// The header hashed.
        header: String,
    },
}

/// Outlier detection settings.
#[derive(Clone, Debug, PartialEq)]
pub struct OutlierDetection {
    /// Consecutive failures (5xx or gateway errors) that eject an endpoint (Envoy: 5).
    pub consecutive_failures: u32,
    /// Ejection time per ejection so far (Envoy: 30 s).
    pub base_ejection: Duration,
    /// Longest ejection (Envoy: 300 s).
    pub max_ejection: Duration,
    /// Largest share of endpoints ejected at once, percent (Envoy: 10).
    pub max_ejection_percent: u32,
}

/// The index drawn from `weights` in proportion to each, with one draw from `rng`; `None` when
/// they sum to zero. Traffic splits and the simulator's route mix both draw this way, so a
/// seed means the same choice in both.
pub fn weighted_index<R: Rng>(
    rng: &mut R,
    weights: impl Iterator<Item = u32> + Clone,
) -> Option<usize> {
    let total: u64 = weights.clone().map(u64::from).sum();
    if total == 0 {
        return None;
    }
    let mut x = rng.random_range(0..total);
    for (i, w) in weights.enumerate() {
        if x < u64::from(w) {
            return Some(i);
        }
        x -= u64::from(w);
    }
    None
}

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

/// An ejection or return, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthEvent {
    /// When.
    pub at: Instant,
    /// The pool the endpoint belongs to.
    pub pool: Pool,
    /// Endpoint index within the pool, in the registry's order.
    pub endpoint: usize,
    /// `ejected`, `probation`, `restored`.
    pub kind: &'static str,
}

#[derive(Clone, Debug)]
struct Endpoint {
    active: u32,
    ewma_us: f64,
    ewma_at: Option<Instant>,
    consecutive_failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
    probation: bool,
    probe_in_flight: bool,
}

impl Endpoint {
    fn new(default_rtt: Duration) -> Self {
        Self {
            active: 0,
            ewma_us: default_rtt.as_micros() as f64,
            ewma_at: None,
            consecutive_failures: 0,
            ejections: 0,
            ejected_until: None,
            probation: false,
            probe_in_flight: false,
        }
    }
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

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Finalise (SplitMix64) so nearby keys spread over the ring.
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const RING_POINTS: usize = 64;

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
    /// [`Pick::finish`] under the outlier settings). `None` when there are no endpoints.
    pub fn pick(
        &self,
        pool: &Pool,
        n: usize,
        policy: &LbPolicy,
        hash_key: Option<&[u8]>,
    ) -> Option<Pick> {
        if n == 0 {
            return None;
        }
        let now = Instant::now(); // tokio clock (simulated under sim); allow-nondeterminism
        let default_rtt = match policy {
            LbPolicy::PeakEwma { default_rtt, .. } => *default_rtt,
            _ => Duration::from_millis(30),
        };
        let mut inner = self.lock();
        let Inner { pools, rng, events } = &mut *inner;
        let st = pools.entry(pool.clone()).or_default();
        if st.endpoints.len() != n {
            st.endpoints = vec![Endpoint::new(default_rtt); n];
            st.ring.clear();
        }
        // Ejections that have run out become probations (half-open).
        for (i, e) in st.endpoints.iter_mut().enumerate() {
            if e.ejected_until.is_some_and(|t| t <= now) {
                e.ejected_until = None;
                e.probation = true;
                events.push(HealthEvent {
                    at: now,
                    pool: pool.clone(),
                    endpoint: i,
                    kind: "probation",
                });
            }
        }
        let usable =
            |e: &Endpoint| e.ejected_until.is_none() && !(e.probation && e.probe_in_flight);
        let candidates: Vec<usize> = (0..n).filter(|&i| usable(&st.endpoints[i])).collect();
        // Envoy's panic mode: with nothing usable, ignore health rather than fail every request.
        let candidates = if candidates.is_empty() {
            (0..n).collect()
        } else {
            candidates
        };
        let index = match policy {
            LbPolicy::RoundRobin => {
                let i = candidates[st.cursor % candidates.len()];
                st.cursor = st.cursor.wrapping_add(1);
                i
            }
            LbPolicy::Random => candidates[rng.random_range(0..candidates.len())],
            LbPolicy::LeastRequest | LbPolicy::PeakEwma { .. } => {
                let a = candidates[rng.random_range(0..candidates.len())];
                let b = if candidates.len() > 1 {
                    let mut b = a;
                    while b == a {
                        b = candidates[rng.random_range(0..candidates.len())];
                    }
                    b
                } else {
                    a
                };
                let cost = |i: usize| -> f64 {
                    let e = &st.endpoints[i];
                    match policy {
                        LbPolicy::PeakEwma { decay, .. } => {
                            let ewma = decayed(e, now, *decay, default_rtt);
                            ewma * f64::from(e.active + 1)
                        }
                        _ => f64::from(e.active),
                    }
                };
                if cost(b) < cost(a) { b } else { a }
            }
            LbPolicy::RingHash { .. } => match hash_key {
                None => candidates[rng.random_range(0..candidates.len())],
                Some(key) => {
                    if st.ring.is_empty() {
                        st.ring = (0..n)
                            .flat_map(|i| {
                                (0..RING_POINTS)
                                    .map(move |p| (fnv1a(format!("{i}-{p}").as_bytes()), i))
                            })
                            .collect();
                        st.ring.sort_unstable();
                    }
                    let h = fnv1a(key);
                    let start = st.ring.partition_point(|(p, _)| *p < h);
                    // Walk the ring to the first usable endpoint.
                    (0..st.ring.len())
                        .map(|k| st.ring[(start + k) % st.ring.len()].1)
                        .find(|i| candidates.contains(i))
                        .unwrap_or(candidates[0])
                }
            },
        };
        let e = &mut st.endpoints[index];
        e.active += 1;
        if e.probation {
            e.probe_in_flight = true;
        }
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
                    .filter(|e| e.ejected_until.is_some_and(|t| t > now))
                    .count()
            })
            .unwrap_or(0)
    }
}

fn decayed(e: &Endpoint, now: Instant, decay: Duration, default_rtt: Duration) -> f64 {
    match e.ewma_at {
        None => default_rtt.as_micros() as f64,
        Some(at) => {
            // Between samples the estimate decays towards zero, so an idle endpoint gets tried again.
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            e.ewma_us * (-elapsed / decay.as_secs_f64().max(1e-3)).exp()
        }
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
            .filter(|e| e.ejected_until.is_some_and(|t| t > now))
            .count();
        let Some(e) = st.endpoints.get_mut(self.index) else {
            return;
        };
        e.active = e.active.saturating_sub(1);
        if let LbPolicy::PeakEwma { decay, default_rtt } = policy {
            let prev = decayed(e, now, *decay, *default_rtt);
            e.ewma_us = if rtt_us > prev {
                rtt_us
            } else {
                let w = (-(now
                    .saturating_duration_since(e.ewma_at.unwrap_or(now))
                    .as_secs_f64())
                    / decay.as_secs_f64().max(1e-3))
                .exp();
                prev * w + rtt_us * (1.0 - w)
            };
            e.ewma_at = Some(now);
        }
        let Some(od) = outlier else { return };
        let was_probe = e.probation && e.probe_in_flight;
        if was_probe {
            e.probe_in_flight = false;
        }
        if !failed {
            e.consecutive_failures = 0;
            if was_probe {
                e.probation = false;
                events.push(HealthEvent {
                    at: now,
                    pool: self.pool.clone(),
                    endpoint: self.index,
                    kind: "restored",
                });
            }
            return;
        }
        e.consecutive_failures += 1;
        let cap = ((n as u64 * u64::from(od.max_ejection_percent)) / 100).max(1) as usize;
        // A failed probe is ejected again at once; otherwise the max-percent cap applies.
        if was_probe
            || (e.consecutive_failures >= od.consecutive_failures.max(1) && ejected_now < cap)
        {
            e.ejections += 1;
            let t = od
                .base_ejection
                .saturating_mul(e.ejections)
                .min(od.max_ejection);
            e.ejected_until = Some(now + t);
            e.consecutive_failures = 0;
            e.probation = false;
            events.push(HealthEvent {
                at: now,
                pool: self.pool.clone(),
                endpoint: self.index,
                kind: "ejected",
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
                e.probe_in_flight = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn b(seed: u64) -> Balancer {
        Balancer::new(ChaCha8Rng::seed_from_u64(seed))
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    }

    proptest! {
        /// Over any whole number of rounds, round robin gives every endpoint the same share.
        #[test]
        fn round_robin_is_fair(len in 1usize..20, rounds in 1usize..20) {
            rt().block_on(async {
                let b = b(1);
                let mut counts = vec![0usize; len];
                for _ in 0..len * rounds {
                    let p = b.pick(&Pool::of("svc"), len, &LbPolicy::RoundRobin, None).unwrap();
                    counts[p.index] += 1;
                    p.finish(false, &LbPolicy::RoundRobin, None);
                }
                prop_assert!(counts.iter().all(|&c| c == rounds));
                Ok(())
            })?;
        }

        /// Ejection never exceeds the max percent (at least one), whatever fails.
        #[test]
        fn ejection_respects_max_percent(n in 1usize..30, pct in 0u32..100, fails in proptest::collection::vec(any::<usize>(), 0..300)) {
            rt().block_on(async {
                let b = b(2);
                let od = OutlierDetection { consecutive_failures: 1, base_ejection: Duration::from_secs(30), max_ejection: Duration::from_secs(300), max_ejection_percent: pct };
                let cap = ((n * pct as usize) / 100).max(1);
                for f in fails {
                    let p = b.pick(&Pool::of("svc"), n, &LbPolicy::Random, None).unwrap();
                    let fail = f % 3 != 0;
                    p.finish(fail, &LbPolicy::Random, Some(&od));
                    prop_assert!(b.ejected(&Pool::of("svc")) <= cap, "{} > {}", b.ejected(&Pool::of("svc")), cap);
                }
                Ok(())
            })?;
        }

        /// And it ejects what it must: with round robin, the `k` endpoints that always fail (as
        /// many as the cap allows) are all ejected, and no healthy one is. A detector that never
        /// ejects, or ejects the wrong endpoints, fails. (Not within `consecutive_failures`
        /// rounds: round robin's cursor runs over the usable endpoints, so each ejection shifts
        /// the rotation and can pass over a failing endpoint for a round; n rounds suffice.)
        #[test]
        fn failing_endpoints_are_ejected_and_healthy_ones_are_not(
            n in 2usize..20,
            pct in 1u32..100,
            consecutive in 1u32..6,
            k_seed in any::<usize>(),
        ) {
            rt().block_on(async {
                let b = b(6);
                let od = OutlierDetection { consecutive_failures: consecutive, base_ejection: Duration::from_secs(30), max_ejection: Duration::from_secs(300), max_ejection_percent: pct };
                let cap = ((n * pct as usize) / 100).max(1);
                // At least one endpoint stays healthy, and no more fail than may be ejected.
                let k = 1 + k_seed % cap.min(n - 1);
                let rr = LbPolicy::RoundRobin;
                for _ in 0..n * n * (consecutive as usize + 1) {
                    let p = b.pick(&Pool::of("svc"), n, &rr, None).unwrap();
                    let fail = p.index < k;
                    p.finish(fail, &rr, Some(&od));
                }
                prop_assert_eq!(b.ejected(&Pool::of("svc")), k);
                // Every pick now lands on a healthy endpoint.
                for _ in 0..n {
                    let p = b.pick(&Pool::of("svc"), n, &rr, None).unwrap();
                    prop_assert!(p.index >= k, "picked ejected endpoint {}", p.index);
                    p.finish(false, &rr, Some(&od));
                }
                Ok(())
            })?;
        }

        /// The same key always lands on the same endpoint while health does not change.
        #[test]
        fn ring_hash_is_sticky(n in 1usize..20, keys in proptest::collection::vec("[a-z]{1,8}", 1..20)) {
            rt().block_on(async {
                let b = b(3);
                let lb = LbPolicy::RingHash { header: "x-user".into() };
                for k in &keys {
                    let first = b.pick(&Pool::of("svc"), n, &lb, Some(k.as_bytes())).unwrap();
                    let i = first.index;
                    first.finish(false, &lb, None);
                    let again = b.pick(&Pool::of("svc"), n, &lb, Some(k.as_bytes())).unwrap();
                    prop_assert_eq!(again.index, i);
                    again.finish(false, &lb, None);
                }
                Ok(())
            })?;
        }
    }

    #[test]
    fn ejected_endpoint_is_skipped_then_probed_then_restored() {
        rt().block_on(async {
            let b = b(4);
            let od = OutlierDetection {
                consecutive_failures: 2,
                base_ejection: Duration::from_secs(1),
                max_ejection: Duration::from_secs(10),
                max_ejection_percent: 50,
            };
            let rr = LbPolicy::RoundRobin;
            // Endpoint 0 fails twice in a row (picks alternate 0, 1, 0, 1).
            for _ in 0..4 {
                let p = b.pick(&Pool::of("svc"), 2, &rr, None).unwrap();
                let fail = p.index == 0;
                p.finish(fail, &rr, Some(&od));
            }
            assert_eq!(b.ejected(&Pool::of("svc")), 1);
            for _ in 0..5 {
                let p = b.pick(&Pool::of("svc"), 2, &rr, None).unwrap();
                assert_eq!(p.index, 1, "ejected endpoint is not picked");
                p.finish(false, &rr, Some(&od));
            }
            tokio::time::advance(Duration::from_millis(1001)).await;
            let mut probed = false;
            for _ in 0..4 {
                let p = b.pick(&Pool::of("svc"), 2, &rr, None).unwrap();
                probed |= p.index == 0;
                p.finish(false, &rr, Some(&od));
            }
            assert!(probed);
            let kinds: Vec<_> = b.events().iter().map(|e| e.kind).collect();
            assert_eq!(kinds, ["ejected", "probation", "restored"]);
        });
    }

    #[test]
    fn peak_ewma_avoids_a_slow_endpoint() {
        rt().block_on(async {
            let b = b(5);
            let lb = LbPolicy::PeakEwma {
                default_rtt: Duration::from_millis(30),
                decay: Duration::from_secs(10),
            };
            let mut to_slow = 0;
            for round in 0..400 {
                let p = b.pick(&Pool::of("svc"), 4, &lb, None).unwrap();
                let slow = p.index == 3;
                to_slow += usize::from(slow && round >= 100);
                tokio::time::advance(Duration::from_millis(if slow { 200 } else { 2 })).await;
                p.finish(false, &lb, None);
            }
            assert!(to_slow < 30, "slow endpoint still got {to_slow} of 300");
        });
    }

    /// Least request: with two endpoints both are always compared, so each new request goes to
    /// the one with fewer in flight (ties either way). Holding every pick open, the two loads
    /// never differ by more than one; random choice would drift apart like a random walk.
    #[test]
    fn least_request_picks_the_less_loaded() {
        rt().block_on(async {
            let bal = b(7);
            let lr = LbPolicy::LeastRequest;
            let mut load = [0i32; 2];
            let mut held = Vec::new();
            for _ in 0..40 {
                let p = bal.pick(&Pool::of("svc"), 2, &lr, None).unwrap();
                load[p.index] += 1;
                assert!(
                    (load[0] - load[1]).abs() <= 1,
                    "loads drifted apart: {load:?}"
                );
                held.push(p);
            }
            // With three endpoints, one held busy is never chosen: every pair drawn holds an
            // idle endpoint, which wins.
            let bal = b(8);
            let busy = bal.pick(&Pool::of("svc"), 3, &lr, None).unwrap();
            let i = busy.index;
            for _ in 0..50 {
                let p = bal.pick(&Pool::of("svc"), 3, &lr, None).unwrap();
                assert_ne!(p.index, i, "the busy endpoint won against an idle one");
                p.finish(false, &lr, None);
            }
        });
    }

    /// Panic mode (Envoy): when every endpoint is ejected, requests are spread over all of them
    /// instead of failing.
    #[test]
    fn all_ejected_means_panic_mode_not_no_endpoints() {
        rt().block_on(async {
            let b = b(9);
            let od = OutlierDetection {
                consecutive_failures: 1,
                base_ejection: Duration::from_secs(30),
                max_ejection: Duration::from_secs(300),
                max_ejection_percent: 100,
            };
            let rr = LbPolicy::RoundRobin;
            for _ in 0..3 {
                let p = b.pick(&Pool::of("svc"), 3, &rr, None).unwrap();
                p.finish(true, &rr, Some(&od));
            }
            assert_eq!(b.ejected(&Pool::of("svc")), 3);
            let mut seen = [0; 3];
            for _ in 0..30 {
                let p = b
                    .pick(&Pool::of("svc"), 3, &rr, None)
                    .expect("panic mode still picks");
                seen[p.index] += 1;
                drop(p);
            }
            assert_eq!(seen, [10, 10, 10]);
        });
    }

    /// Each ejection of the same endpoint lasts base × times ejected, up to the cap: 1 s, 2 s,
    /// 3 s, then 3 s again (base 1 s, max 3 s), seen as when its probe comes back.
    #[test]
    fn re_ejection_grows_to_its_cap() {
        rt().block_on(async {
            let b = b(10);
            let od = OutlierDetection {
                consecutive_failures: 1,
                base_ejection: Duration::from_secs(1),
                max_ejection: Duration::from_secs(3),
                max_ejection_percent: 50,
            };
            let rr = LbPolicy::RoundRobin;
            // Endpoint 0 fails every time it is picked; endpoint 1 never does.
            let step = |b: &Balancer| {
                let p = b.pick(&Pool::of("svc"), 2, &rr, None).unwrap();
                let fail = p.index == 0;
                p.finish(fail, &rr, Some(&od));
                fail
            };
            while !step(&b) {}
            for expected_s in [1u64, 2, 3, 3] {
                assert_eq!(b.ejected(&Pool::of("svc")), 1);
                tokio::time::advance(Duration::from_millis(expected_s * 1000 - 1)).await;
                assert_eq!(
                    b.ejected(&Pool::of("svc")),
                    1,
                    "still ejected just before {expected_s} s"
                );
                tokio::time::advance(Duration::from_millis(1)).await;
                assert_eq!(
                    b.ejected(&Pool::of("svc")),
                    0,
                    "back on probation at {expected_s} s"
                );
                // The probe fails: ejected again, for longer.
                while !step(&b) {}
            }
        });
    }

    /// Ring hash walks past an ejected endpoint to the next one on the ring (only the ejected
    /// endpoint's keys move), and when an endpoint is added only keys the new one takes move.
    #[test]
    fn ring_hash_skips_ejected_endpoints_and_survives_membership_change() {
        rt().block_on(async {
            let b = b(11);
            let lb = LbPolicy::RingHash {
                header: "x-user".into(),
            };
            let keys: Vec<String> = (0..200).map(|k| format!("user-{k}")).collect();
            let place = |b: &Balancer, n: usize| -> Vec<usize> {
                keys.iter()
                    .map(|k| {
                        let p = b
                            .pick(&Pool::of("svc"), n, &lb, Some(k.as_bytes()))
                            .unwrap();
                        let i = p.index;
                        p.finish(false, &lb, None);
                        i
                    })
                    .collect()
            };
            let before = place(&b, 4);
            assert!(
                (0..4).all(|i| before.contains(&i)),
                "every endpoint gets keys"
            );
            // Eject endpoint 2.
            let od = OutlierDetection {
                consecutive_failures: 1,
                base_ejection: Duration::from_secs(30),
                max_ejection: Duration::from_secs(300),
                max_ejection_percent: 50,
            };
            let k2 = keys[before.iter().position(|&i| i == 2).unwrap()].as_bytes();
            b.pick(&Pool::of("svc"), 4, &lb, Some(k2))
                .unwrap()
                .finish(true, &lb, Some(&od));
            assert_eq!(b.ejected(&Pool::of("svc")), 1);
            let ejected = place(&b, 4);
            for (was, now) in before.iter().zip(&ejected) {
                if *was == 2 {
                    assert_ne!(*now, 2, "an ejected endpoint is skipped");
                } else {
                    assert_eq!(was, now, "keys of healthy endpoints stay put");
                }
            }
            // A fifth endpoint joins (health resets with the new membership).
            let grown = place(&b, 5);
            let moved = before.iter().zip(&grown).filter(|(w, n)| w != n).count();
            for (was, now) in before.iter().zip(&grown) {
                assert!(was == now || *now == 4, "a key moved between old endpoints");
            }
            assert!(moved > 0 && moved < keys.len() / 2, "{moved} keys moved");
        });
    }

    /// Each index comes up in proportion to its weight (4 standard errors over 20,000 draws);
    /// a zero weight never does, and all-zero weights draw nothing.
    #[test]
    fn weighted_index_draws_in_proportion() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let w = [1u32, 0, 3];
        let mut seen = [0u32; 3];
        let n = 20_000;
        for _ in 0..n {
            seen[weighted_index(&mut rng, w.iter().copied()).unwrap()] += 1;
        }
        assert_eq!(seen[1], 0);
        let share = f64::from(seen[0]) / f64::from(n);
        let tol = 4.0 * (0.25f64 * 0.75 / f64::from(n)).sqrt();
        assert!((share - 0.25).abs() < tol, "{share}");
        assert_eq!(weighted_index(&mut rng, [0u32, 0].into_iter()), None);
    }
}
