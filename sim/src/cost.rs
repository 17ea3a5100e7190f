//! The proxy's own processing cost, modelled.
//!
//! In simulation CPU work takes no simulated time, so a sidecar would look free. Real sidecars cost
//! tens of microseconds per hop and queue when saturated. This module charges each hop a cost drawn
//! from a per-protocol distribution (a [`Calibration`] file, which the real-socket bench writes) and
//! queues hops behind the proxy's workers (a multi-server FIFO queue in microseconds).
//!
//! A hop arrives at its exact simulated microsecond ([`crate::time`]) and sleeps its whole delay
//! (queueing plus cost), so the proxy's cost holds up the timeline as CPU time would.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use mesh_core::hop::{Direction, HopCost};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The default calibration shipped with the scenarios.
const BUILTIN: &str = include_str!("../../scenarios/calibration/default.toml");

/// A per-hop cost distribution, as percentiles in microseconds.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CostDist {
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
}

impl CostDist {
    /// Draw from the distribution: linear interpolation of the inverse CDF between the given
    /// percentiles, with a floor at 60% of the median and a tail to 1.5× the 99.9th percentile.
    pub fn sample(&self, u: f64) -> f64 {
        let pts = [
            (0.0, self.p50_us * 0.6),
            (0.5, self.p50_us),
            (0.9, self.p90_us),
            (0.99, self.p99_us),
            (0.999, self.p999_us),
            (1.0, self.p999_us * 1.5),
        ];
        for w in pts.windows(2) {
            let ((u0, v0), (u1, v1)) = (w[0], w[1]);
            if u <= u1 {
                return v0 + (v1 - v0) * (u - u0) / (u1 - u0);
            }
        }
        pts[pts.len() - 1].1
    }

    fn check(&self) -> Result<(), String> {
        let v = [self.p50_us, self.p90_us, self.p99_us, self.p999_us];
        if v.iter().any(|x| !x.is_finite() || *x < 0.0) || v.windows(2).any(|w| w[0] > w[1]) {
            return Err(
                "percentiles must be non-negative and non-decreasing (p50 <= p90 <= p99 <= p999)"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Measured proxy costs, as written by the real-socket bench.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// Where the numbers come from (command, machine, date).
    pub source: String,
    /// Per-hop cost by leg: `http1`, `http2`, and with mutual TLS `http1+mtls`, `http2+mtls`.
    pub hop: BTreeMap<String, CostDist>,
    /// What one sidecar costs to run, when the bench measured it.
    #[serde(default)]
    pub footprint: Option<Footprint>,
}

/// One sidecar's measured running cost (real-socket bench, one worker thread).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Footprint {
    /// CPU per request through one sidecar, µs.
    pub cpu_us_per_request: f64,
    /// Resident memory with no traffic, MiB.
    pub rss_idle_mib: f64,
    /// Largest resident memory seen under the bench's load, MiB.
    pub rss_load_mib: f64,
}

impl Calibration {
    /// The calibration shipped in `scenarios/calibration/default.toml`.
    pub fn builtin() -> Self {
        Self::parse(BUILTIN).expect("the shipped calibration file parses")
    }

    /// Read a calibration file.
    ///
    /// Only a regular file of at most [`MAX_CALIBRATION_BYTES`] is read, and an error never
    /// quotes its content: a scenario names the file, and a scenario may come from anyone.
    pub fn load(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read calibration file {shown}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("calibration file {shown} is not a regular file"));
        }
        if meta.len() > MAX_CALIBRATION_BYTES {
            return Err(format!(
                "calibration file {shown} is {} bytes; expected at most {MAX_CALIBRATION_BYTES}",
                meta.len()
            ));
        }
        let src = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read calibration file {shown}: {e}"))?;
        Self::parse(&src).map_err(|e| format!("calibration file {shown}: {e}"))
    }

    fn parse(src: &str) -> Result<Self, String> {
        let c: Calibration = toml::from_str(src).map_err(|e| {
            // The message and the line, never the quoted text toml's Display adds.
            let line = e.span().map_or(0, |s| {
                let before = &src.as_bytes()[..s.start.min(src.len())];
                before.iter().filter(|b| **b == b'\n').count() + 1
            });
            format!("not a calibration file (line {line}: {})", e.message())
        })?;
        for key in ["http1", "http2"] {
            c.hop
                .get(key)
                .ok_or_else(|| format!("missing [hop.{key}]"))?
                .check()
                .map_err(|e| format!("[hop.{key}]: {e}"))?;
        }
        Ok(c)
    }

    /// The distribution for a leg protocol.
    pub fn for_protocol(&self, p: mesh_core::registry::Protocol) -> &CostDist {
        let key = match p {
            mesh_core::registry::Protocol::Http1 => "http1",
            mesh_core::registry::Protocol::Http2 => "http2",
        };
        &self.hop[key]
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Largest calibration file read (the shipped ones are under 4 KiB).
pub const MAX_CALIBRATION_BYTES: u64 = 1 << 20;

/// What `proxies` sidecars carrying `hops` requests in `sim_time_ms` cost, by our measured
/// footprint and by published figures (sources: `shared/reference/mesh-defaults.md` §5).
pub fn fleet_cost(
    f: &Footprint,
    source: &str,
    proxies: u64,
    hops: u64,
    sim_time_ms: u64,
) -> reports::FleetCost {
    let secs = (sim_time_ms as f64 / 1000.0).max(1e-3);
    let proxy_rps = hops as f64 / secs;
    let n = proxies as f64;
    let published = vec![
        reports::PublishedFleet {
            mesh: "Istio 1.24 sidecar".into(),
            memory_mib: round3(n * 60.0),
            cpu_cores: Some(round3(proxy_rps / 1000.0 * 0.20)),
            basis: "0.20 vCPU and 60 MB per sidecar at 1,000 rps, 2 workers (istio.io performance and scalability page)".into(),
        },
        reports::PublishedFleet {
            mesh: "Istio 1.9-1.16 sidecar".into(),
            memory_mib: round3(n * 40.0),
            cpu_cores: Some(round3(proxy_rps / 1000.0 * 0.35)),
            basis: "0.35 vCPU and 40 MB per 1,000 rps through the proxy (istio.io v1.9-v1.16)".into(),
        },
        reports::PublishedFleet {
            mesh: "Linkerd 2.11.1 proxy".into(),
            memory_mib: round3(n * 26.3),
            cpu_cores: None,
            basis: "26.3 MB max proxy memory at 2,000 rps (Buoyant benchmark, 2021-11-29); no CPU per rps published as a number".into(),
        },
    ];
    reports::FleetCost {
        proxies,
        proxy_rps: round3(proxy_rps),
        memory_mib: round3(n * f.rss_load_mib),
        cpu_cores: round3(hops as f64 * f.cpu_us_per_request / 1e6 / secs),
        source: source.to_string(),
        published,
    }
}

/// Queue state of one proxy.
#[derive(Debug)]
struct ProxyCpu {
    rng: ChaCha8Rng,
    /// When each worker is next free, µs since the simulation started.
    free_at_us: Vec<u64>,
    busy_us: u64,
    hops: u64,
    queued_hops: u64,
}

/// The cost model of one simulated proxy.
#[derive(Clone, Debug)]
pub struct SimHopCost {
    dist: CostDist,
    cpu: Arc<Mutex<ProxyCpu>>,
}

/// What a proxy's cost model saw over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTally {
    /// Hops charged.
    pub hops: u64,
    /// Hops that waited for a worker.
    pub queued_hops: u64,
    /// Total modelled CPU time, µs.
    pub busy_us: u64,
}

impl SimHopCost {
    /// A model drawing from `dist` with `workers` servers and its own RNG stream.
    pub fn new(dist: CostDist, workers: u32, seed: u64) -> Self {
        Self {
            dist,
            cpu: Arc::new(Mutex::new(ProxyCpu {
                rng: ChaCha8Rng::seed_from_u64(seed),
                free_at_us: vec![0; workers.max(1) as usize],
                busy_us: 0,
                hops: 0,
                queued_hops: 0,
            })),
        }
    }

    /// Decide the delay of a hop arriving at `now_us`: returns the µs the hop is delayed.
    #[cfg(test)]
    fn admit(&self, now_us: u64) -> u64 {
        let mut cpu = self.cpu.lock().unwrap_or_else(|p| p.into_inner());
        let u: f64 = cpu.rng.random();
        self.admit_with(&mut cpu, now_us, u)
    }

    fn admit_with(&self, cpu: &mut ProxyCpu, now_us: u64, u: f64) -> u64 {
        let cost = self.dist.sample(u).round().max(1.0) as u64;
        let (idx, free) = cpu
            .free_at_us
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|&(i, t)| (t, i))
            .expect("at least one worker");
        let start = free.max(now_us);
        if start > now_us {
            cpu.queued_hops += 1;
        }
        cpu.free_at_us[idx] = start + cost;
        cpu.busy_us += cost;
        cpu.hops += 1;
        start + cost - now_us
    }

    /// What this proxy's model charged so far.
    pub fn tally(&self) -> CpuTally {
        let cpu = self.cpu.lock().unwrap_or_else(|p| p.into_inner());
        CpuTally {
            hops: cpu.hops,
            queued_hops: cpu.queued_hops,
            busy_us: cpu.busy_us,
        }
    }
}

impl HopCost for SimHopCost {
    fn charge(&self, _direction: Direction) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let delay_us = {
            let mut cpu = self.cpu.lock().unwrap_or_else(|p| p.into_inner());
            let u: f64 = cpu.rng.random();
            self.admit_with(&mut cpu, crate::time::now_us(), u)
        };
        Box::pin(crate::time::sleep_us(delay_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dist() -> CostDist {
        CostDist {
            p50_us: 40.0,
            p90_us: 60.0,
            p99_us: 120.0,
            p999_us: 400.0,
        }
    }

    #[test]
    fn builtin_calibration_parses() {
        let c = Calibration::builtin();
        assert!(c.hop.contains_key("http1") && c.hop.contains_key("http2"));
    }

    #[test]
    fn sample_hits_the_given_percentiles() {
        let d = dist();
        assert_eq!(d.sample(0.5), 40.0);
        assert_eq!(d.sample(0.99), 120.0);
    }

    /// The mean of the piecewise-linear inverse CDF, in closed form: each segment between two
    /// given percentiles contributes its width times the mean of its two ends.
    fn closed_form_mean(d: &CostDist) -> f64 {
        let pts = [
            (0.0, d.p50_us * 0.6),
            (0.5, d.p50_us),
            (0.9, d.p90_us),
            (0.99, d.p99_us),
            (0.999, d.p999_us),
            (1.0, d.p999_us * 1.5),
        ];
        pts.windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
            .sum()
    }

    #[test]
    fn closed_form_mean_of_the_test_distribution() {
        // Written out by hand: 0.5·32 + 0.4·50 + 0.09·90 + 0.009·260 + 0.001·500.
        assert!((closed_form_mean(&dist()) - 46.94).abs() < 1e-9);
    }

    /// `charge()` as the proxy calls it, under the simulator's stepper, with two workers and one
    /// hop per millisecond: no hop can find both workers busy (three arrivals span more than the
    /// largest cost, 600 µs), so nothing queues; the mean cost is the distribution's mean within
    /// four standard errors (costs lie in [24, 600] µs, so σ ≤ 288 µs); and each hop's delay, read
    /// from the simulated clock, is exactly the CPU time charged, to the microsecond.
    #[test]
    fn charge_with_several_workers_costs_the_distribution_and_sleeps_it_exactly() {
        let n = 20_000u64;
        let mut h = crate::substrate::Harness::new();
        h.host("proxy", [10, 0, 0, 1].into());
        let (tally, observed_us) = h
            .run(1, std::time::Duration::from_secs(60), |_| async move {
                let m = SimHopCost::new(dist(), 2, 7);
                let mut observed = 0u64;
                for _ in 0..n {
                    let t0 = crate::time::now_us();
                    m.charge(Direction::Outbound).await;
                    observed += crate::time::now_us() - t0;
                    // Next hop one millisecond later, measured from the start of this one.
                    crate::time::sleep_until_us(t0 + 1000).await;
                }
                (m.tally(), observed)
            })
            .expect("finishes within the limit");
        assert_eq!(tally.hops, n);
        assert_eq!(tally.queued_hops, 0, "{tally:?}");
        let mean = tally.busy_us as f64 / n as f64;
        let tolerance = 4.0 * 288.0 / (n as f64).sqrt();
        assert!(
            (mean - closed_form_mean(&dist())).abs() < tolerance,
            "mean cost {mean} µs, closed form {} ± {tolerance}",
            closed_form_mean(&dist())
        );
        assert_eq!(observed_us, tally.busy_us);
    }

    /// Saturated, one worker: hops charged in the same instant wait for each other, so the k-th
    /// one's delay is at least the k-1 smallest possible costs before it (24 µs each) and the
    /// worker is busy for exactly the sum of what it was charged, each hop charged once.
    #[test]
    fn one_worker_queues_simultaneous_hops() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let m = SimHopCost::new(dist(), 1, 3);
            let delays: Vec<u64> = (0..40).map(|_| m.admit(0)).collect();
            for (k, d) in delays.iter().enumerate() {
                assert!(*d >= 24 * (k as u64 + 1), "hop {k}: {d} µs");
            }
            let t = m.tally();
            assert_eq!(t.queued_hops, 39);
            // The last hop leaves when the worker has done everything: its delay is the busy time.
            assert_eq!(t.busy_us, *delays.last().unwrap());
        });
    }

    proptest! {
        /// The inverse CDF is monotone, so sampled costs keep the calibrated order.
        #[test]
        fn sample_is_monotone(a in 0.0f64..1.0, b in 0.0f64..1.0) {
            let d = dist();
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(d.sample(lo) <= d.sample(hi));
        }

        /// A saturated proxy queues: with one worker, back-to-back hops at the same instant are
        /// delayed by at least the sum of the costs before them, and the busy time adds up.
        #[test]
        fn one_worker_serialises_hops(n in 1usize..50, seed in 0u64..1000) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            rt.block_on(async {
                let m = SimHopCost::new(dist(), 1, seed);
                let mut last = 0;
                for _ in 0..n {
                    let d = m.admit(0);
                    prop_assert!(d > last);
                    last = d;
                }
                let t = m.tally();
                prop_assert_eq!(t.busy_us, last);
                prop_assert_eq!(t.hops as usize, n);
                prop_assert_eq!(t.queued_hops as usize, n - 1);
                Ok(())
            })?;
        }
    }
}
