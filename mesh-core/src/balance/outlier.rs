//! Outlier detection: the health half of an endpoint (Envoy/Istio `outlierDetection`, Linkerd's
//! consecutive failure accrual). It decides which endpoints a balancer may pick; how to pick
//! among them is `choose.rs`.
//!
//! `consecutive_failures` failures eject an endpoint for `base_ejection × times ejected`
//! (capped at `max_ejection`), never more than `max_ejection_percent` of the endpoints at once
//! (at least one may always be ejected, as Envoy). When the time is up the endpoint is on
//! probation (half-open): it gets one request; success restores it, failure ejects it again for
//! longer.

use std::time::Duration;

use tokio::time::Instant;

use super::Pool;

/// Outlier detection settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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

/// What happened to an endpoint's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealthKind {
    /// Taken out of rotation.
    Ejected,
    /// Its ejection ran out; it gets one probe.
    Probation,
    /// Its probe succeeded.
    Restored,
}

impl HealthKind {
    /// The name reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ejected => "ejected",
            Self::Probation => "probation",
            Self::Restored => "restored",
        }
    }
}

impl std::fmt::Display for HealthKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    /// What happened.
    pub kind: HealthKind,
}

/// One endpoint's health.
#[derive(Clone, Debug, Default)]
pub(super) struct Health {
    consecutive_failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
    probation: bool,
    probe_in_flight: bool,
}

impl Health {
    /// Ejected at `now`.
    pub(super) fn ejected_at(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|t| t > now)
    }

    /// May be picked: not ejected, and not a probation whose one probe is already out.
    pub(super) fn usable(&self) -> bool {
        self.ejected_until.is_none() && !(self.probation && self.probe_in_flight)
    }

    /// An ejection that has run out by `now` becomes a probation; `true` when that happened.
    pub(super) fn expire(&mut self, now: Instant) -> bool {
        if self.ejected_until.is_some_and(|t| t <= now) {
            self.ejected_until = None;
            self.probation = true;
            return true;
        }
        false
    }

    /// Picked: on probation, this request is the probe.
    pub(super) fn picked(&mut self) {
        if self.probation {
            self.probe_in_flight = true;
        }
    }

    /// The request was cancelled: a probe is no longer out.
    pub(super) fn cancelled(&mut self) {
        self.probe_in_flight = false;
    }

    /// Record an outcome under `od`; `ejected_now` of the pool's `n` endpoints are ejected.
    /// Returns the change of state, if any.
    pub(super) fn record(
        &mut self,
        failed: bool,
        od: &OutlierDetection,
        now: Instant,
        ejected_now: usize,
        n: usize,
    ) -> Option<HealthKind> {
        let was_probe = self.probation && self.probe_in_flight;
        if was_probe {
            self.probe_in_flight = false;
        }
        if !failed {
            self.consecutive_failures = 0;
            if was_probe {
                self.probation = false;
                return Some(HealthKind::Restored);
            }
            return None;
        }
        self.consecutive_failures += 1;
        let cap = ((n as u64 * u64::from(od.max_ejection_percent)) / 100).max(1) as usize;
        // A failed probe is ejected again at once; otherwise the max-percent cap applies.
        if was_probe
            || (self.consecutive_failures >= od.consecutive_failures.max(1) && ejected_now < cap)
        {
            self.ejections += 1;
            let t = od
                .base_ejection
                .saturating_mul(self.ejections)
                .min(od.max_ejection);
            self.ejected_until = Some(now + t);
            self.consecutive_failures = 0;
            self.probation = false;
            return Some(HealthKind::Ejected);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{b, rt};
    use super::super::{Balancer, LbPolicy};
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Ejection never exceeds the max percent (at least one), whatever fails.
        #[test]
        fn ejection_respects_max_percent(n in 1usize..30, pct in 0u32..100, fails in proptest::collection::vec(any::<usize>(), 0..300)) {
            rt().block_on(async {
                let b = b(2);
                let od = OutlierDetection { consecutive_failures: 1, base_ejection: Duration::from_secs(30), max_ejection: Duration::from_secs(300), max_ejection_percent: pct };
                let cap = ((n * pct as usize) / 100).max(1);
                for f in fails {
                    let p = b.pick(&Pool::of("svc"), n, &LbPolicy::Random, None, None).unwrap();
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
                    let p = b.pick(&Pool::of("svc"), n, &rr, None, None).unwrap();
                    let fail = p.index < k;
                    p.finish(fail, &rr, Some(&od));
                }
                prop_assert_eq!(b.ejected(&Pool::of("svc")), k);
                // Every pick now lands on a healthy endpoint.
                for _ in 0..n {
                    let p = b.pick(&Pool::of("svc"), n, &rr, None, None).unwrap();
                    prop_assert!(p.index >= k, "picked ejected endpoint {}", p.index);
                    p.finish(false, &rr, Some(&od));
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
                let p = b.pick(&Pool::of("svc"), 2, &rr, None, None).unwrap();
                let fail = p.index == 0;
                p.finish(fail, &rr, Some(&od));
            }
            assert_eq!(b.ejected(&Pool::of("svc")), 1);
            for _ in 0..5 {
                let p = b.pick(&Pool::of("svc"), 2, &rr, None, None).unwrap();
                assert_eq!(p.index, 1, "ejected endpoint is not picked");
                p.finish(false, &rr, Some(&od));
            }
            tokio::time::advance(Duration::from_millis(1001)).await;
            let mut probed = false;
            for _ in 0..4 {
                let p = b.pick(&Pool::of("svc"), 2, &rr, None, None).unwrap();
                probed |= p.index == 0;
                p.finish(false, &rr, Some(&od));
            }
            assert!(probed);
            let kinds: Vec<_> = b.events().iter().map(|e| e.kind.as_str()).collect();
            assert_eq!(kinds, ["ejected", "probation", "restored"]);
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
                let p = b.pick(&Pool::of("svc"), 3, &rr, None, None).unwrap();
                p.finish(true, &rr, Some(&od));
            }
            assert_eq!(b.ejected(&Pool::of("svc")), 3);
            let mut seen = [0; 3];
            for _ in 0..30 {
                let p = b
                    .pick(&Pool::of("svc"), 3, &rr, None, None)
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
                let p = b.pick(&Pool::of("svc"), 2, &rr, None, None).unwrap();
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
}
