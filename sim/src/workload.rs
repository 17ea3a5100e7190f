//! Workload generators: the clients outside the mesh's services that put load on it.
//!
//! Open loop: Poisson arrivals at the scenario's rate, split evenly over the client hosts; a request
//! is sent at its arrival time whatever happened to earlier ones, so a slow mesh cannot slow the
//! load down (no coordinated omission). Closed loop: each user sends, waits for the answer, thinks,
//! and sends again. Every request is registered with the collector when sent and closed exactly
//! once: with its response, its failure reason, or `client_timeout`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};

use crate::collect::{Collector, Dispatched, Outcome};
use crate::model::Caller;
use crate::scenario::{RouteSpec, WorkloadSpec};
use crate::substrate::SimNet;
use mesh_core::net::Network;

/// Simulated time since the run started.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: tokio::time::Instant,
}

impl Clock {
    /// A clock whose start is `epoch` (the stepper's).
    pub fn at(epoch: tokio::time::Instant) -> Self {
        Self { epoch }
    }
    /// Milliseconds since the start.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
    /// Microseconds since the start.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
    /// The start.
    pub fn epoch(&self) -> tokio::time::Instant {
        self.epoch
    }
}

/// Everything one client host's generator needs.
#[derive(Clone)]
pub struct Generator {
    /// The client host's network.
    pub net: SimNet,
    /// How it reaches the target.
    pub caller: Arc<Caller>,
    /// The workload.
    pub spec: Arc<WorkloadSpec>,
    /// Where outcomes go.
    pub collector: Arc<Mutex<Collector>>,
    /// What was sent, counted here and nowhere else (the books compare it with the collector).
    pub dispatched: Arc<Mutex<Dispatched>>,
    /// Simulated time.
    pub clock: Clock,
}

impl Generator {
    fn pick_route(&self, rng: &mut ChaCha8Rng) -> usize {
        // The scenario check guarantees a route of weight above 0.
        let weights = self.spec.routes.iter().map(|r| r.weight);
        mesh_core::balance::weighted_index(rng, weights).unwrap_or(self.spec.routes.len() - 1)
    }

    /// Send one request of route `route` and wait for its outcome.
    async fn send(&self, route: usize) {
        let now_us = self.clock.now_us();
        self.dispatched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .count(route, now_us / 1000, self.spec.warmup.as_ms());
        let ticket = self
            .collector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sent(route, now_us);
        let r: &RouteSpec = &self.spec.routes[route];
        let call = self
            .caller
            .call(self.spec.target.get_ref(), &r.method, &r.path, &r.headers);
        let outcome = match tokio::time::timeout(self.spec.timeout.0, call).await {
            Ok(res) => res.failure.map(Outcome::Failed).unwrap_or(Outcome::Ok),
            Err(_) => Outcome::Failed("client_timeout".into()),
        };
        let now = self.clock.now_us();
        self.collector
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .done(ticket, now, outcome);
    }

    /// Open loop at `rate_rps` until the workload's duration.
    pub async fn open_loop(self, rate_rps: f64, mut rng: ChaCha8Rng) {
        let gap = Exp::new(rate_rps / 1e6).expect("validated positive rate");
        let end_us = self.spec.duration.as_us();
        let mut t_us = 0u64;
        loop {
            t_us += gap.sample(&mut rng).round() as u64;
            if t_us >= end_us {
                break;
            }
            crate::time::sleep_until_us(t_us).await;
            let route = self.pick_route(&mut rng);
            let g = self.clone();
            self.net.spawn(async move { g.send(route).await });
        }
    }

    /// One closed-loop user until the workload's duration.
    pub async fn closed_loop(self, mut rng: ChaCha8Rng) {
        let end_ms = self.spec.duration.as_ms();
        // Stagger users over the first 100 ms so they do not all fire on the same tick.
        crate::time::sleep_us(rng.random_range(0..100_000)).await;
        while self.clock.now_ms() < end_ms {
            let route = self.pick_route(&mut rng);
            self.send(route).await;
            if self.spec.think.0 > Duration::ZERO {
                crate::time::sleep_us(self.spec.think.as_us()).await;
            }
        }
    }
}
