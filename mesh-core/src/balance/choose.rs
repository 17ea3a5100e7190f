//! How a balancer chooses among a pool's usable endpoints, one function per policy choice and
//! the per-endpoint latency estimate peak EWMA needs. Which endpoints are usable is
//! `outlier.rs`; the state they share and the pick's lifetime are `mod.rs`.

use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use super::ServiceState;

/// How to choose among a service's endpoints.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
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

impl LbPolicy {
    /// The RTT an endpoint is assumed to have before its first sample.
    pub(super) fn default_rtt(&self) -> Duration {
        match self {
            Self::PeakEwma { default_rtt, .. } => *default_rtt,
            _ => Duration::from_millis(30),
        }
    }
}

/// Peak EWMA of an endpoint's latency (linkerd2-proxy): it jumps to any slower sample at once
/// and decays towards faster ones.
#[derive(Clone, Debug)]
pub(super) struct Ewma {
    us: f64,
    at: Option<Instant>,
}

impl Ewma {
    pub(super) fn new(default_rtt: Duration) -> Self {
        Self {
            us: default_rtt.as_micros() as f64,
            at: None,
        }
    }

    /// The estimate at `now`. Between samples it decays towards zero, so an idle endpoint gets
    /// tried again.
    fn at(&self, now: Instant, decay: Duration, default_rtt: Duration) -> f64 {
        match self.at {
            None => default_rtt.as_micros() as f64,
            Some(at) => {
                let elapsed = now.saturating_duration_since(at).as_secs_f64();
                self.us * (-elapsed / decay.as_secs_f64().max(1e-3)).exp()
            }
        }
    }

    /// Take a sample of `rtt_us` at `now`.
    pub(super) fn observe(
        &mut self,
        rtt_us: f64,
        now: Instant,
        decay: Duration,
        default_rtt: Duration,
    ) {
        let prev = self.at(now, decay, default_rtt);
        self.us = if rtt_us > prev {
            rtt_us
        } else {
            let w = (-(now
                .saturating_duration_since(self.at.unwrap_or(now))
                .as_secs_f64())
                / decay.as_secs_f64().max(1e-3))
            .exp();
            prev * w + rtt_us * (1.0 - w)
        };
        self.at = Some(now);
    }
}

/// Points each endpoint places on the hash ring (Envoy's `RING_HASH` default is larger; 64
/// spreads keys evenly enough for the pools a scenario holds).
const RING_POINTS: usize = 64;

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

/// One of `candidates` (never empty) under `policy`; `hash_key` is the ring-hash header's value.
pub(super) fn choose(
    policy: &LbPolicy,
    st: &mut ServiceState,
    candidates: &[usize],
    rng: &mut ChaCha8Rng,
    now: Instant,
    hash_key: Option<&[u8]>,
) -> usize {
    match policy {
        LbPolicy::RoundRobin => {
            let i = candidates[st.cursor % candidates.len()];
            st.cursor = st.cursor.wrapping_add(1);
            i
        }
        LbPolicy::Random => candidates[rng.random_range(0..candidates.len())],
        LbPolicy::LeastRequest | LbPolicy::PeakEwma { .. } => {
            power_of_two(policy, st, candidates, rng, now)
        }
        LbPolicy::RingHash { .. } => match hash_key {
            None => candidates[rng.random_range(0..candidates.len())],
            Some(key) => ring_hash(st, candidates, key),
        },
    }
}

/// Two distinct candidates drawn at random; the cheaper wins (the first on a tie).
fn power_of_two(
    policy: &LbPolicy,
    st: &ServiceState,
    candidates: &[usize],
    rng: &mut ChaCha8Rng,
    now: Instant,
) -> usize {
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
            LbPolicy::PeakEwma { decay, default_rtt } => {
                e.ewma.at(now, *decay, *default_rtt) * f64::from(e.active + 1)
            }
            _ => f64::from(e.active),
        }
    };
    if cost(b) < cost(a) { b } else { a }
}

/// The first usable endpoint at or after `key`'s place on the ring (built on first use).
fn ring_hash(st: &mut ServiceState, candidates: &[usize], key: &[u8]) -> usize {
    if st.ring.is_empty() {
        let n = st.endpoints.len();
        st.ring = (0..n)
            .flat_map(|i| (0..RING_POINTS).map(move |p| (fnv1a(format!("{i}-{p}").as_bytes()), i)))
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

#[cfg(test)]
mod tests {
    use super::super::tests::{b, rt};
    use super::super::{Balancer, OutlierDetection, Pool};
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Over any whole number of rounds, round robin gives every endpoint the same share.
        #[test]
        fn round_robin_is_fair(len in 1usize..20, rounds in 1usize..20) {
            rt().block_on(async {
                let b = b(1);
                let mut counts = vec![0usize; len];
                for _ in 0..len * rounds {
                    let p = b.pick(&Pool::of("svc"), len, &LbPolicy::RoundRobin, None, None).unwrap();
                    counts[p.index] += 1;
                    p.finish(false, &LbPolicy::RoundRobin, None);
                }
                prop_assert!(counts.iter().all(|&c| c == rounds));
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
                    let first = b.pick(&Pool::of("svc"), n, &lb, Some(k.as_bytes()), None).unwrap();
                    let i = first.index;
                    first.finish(false, &lb, None);
                    let again = b.pick(&Pool::of("svc"), n, &lb, Some(k.as_bytes()), None).unwrap();
                    prop_assert_eq!(again.index, i);
                    again.finish(false, &lb, None);
                }
                Ok(())
            })?;
        }
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
                let p = b.pick(&Pool::of("svc"), 4, &lb, None, None).unwrap();
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
                let p = bal.pick(&Pool::of("svc"), 2, &lr, None, None).unwrap();
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
            let busy = bal.pick(&Pool::of("svc"), 3, &lr, None, None).unwrap();
            let i = busy.index;
            for _ in 0..50 {
                let p = bal.pick(&Pool::of("svc"), 3, &lr, None, None).unwrap();
                assert_ne!(p.index, i, "the busy endpoint won against an idle one");
                p.finish(false, &lr, None);
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
                            .pick(&Pool::of("svc"), n, &lb, Some(k.as_bytes()), None)
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
            b.pick(&Pool::of("svc"), 4, &lb, Some(k2), None)
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
}
