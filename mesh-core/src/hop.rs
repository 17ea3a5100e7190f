//! A hook through which a harness charges the proxy's own processing cost.
//!
//! On real sockets the proxy's CPU time is real and no hook is installed. In simulation CPU work
//! costs no simulated time, so the simulator installs a [`HopCost`] that delays each request by a
//! modelled per-hop cost (with queueing when the proxy is saturated). The simulated clock ticks in
//! whole milliseconds, so the hook may return a sub-millisecond *residual* that it did not sleep;
//! the proxy adds it to the [`RESIDUAL_HEADER`] of the response, and whoever measures latency adds
//! the header's value back. That keeps latency accounting at microsecond precision.

use std::future::Future;
use std::pin::Pin;

/// Response header carrying latency, in microseconds, that was charged but not slept.
pub const RESIDUAL_HEADER: &str = "x-meshsim-residual-us";

/// Which side of the sidecar a hop is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// From the local app towards another service.
    Outbound,
    /// From another pod towards the local app.
    Inbound,
}

impl Direction {
    /// Both directions, outbound first (the order of every per-direction table and output).
    pub const ALL: [Direction; 2] = [Direction::Outbound, Direction::Inbound];

    /// The direction's name in metrics labels, counters and access logs.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }

    /// The direction's place in [`Direction::ALL`], for per-direction arrays.
    pub fn index(self) -> usize {
        match self {
            Direction::Outbound => 0,
            Direction::Inbound => 1,
        }
    }
}

/// Charges the proxy's processing cost for one hop.
pub trait HopCost: Send + Sync + 'static {
    /// Delay the request as the model says; resolve to the residual microseconds not slept.
    fn charge(&self, direction: Direction) -> Pin<Box<dyn Future<Output = u64> + Send>>;
}

/// Add `residual_us` to the residual header of `headers`.
pub fn add_residual(headers: &mut http::HeaderMap, residual_us: u64) {
    if residual_us == 0 {
        return;
    }
    let prior = read_residual(headers);
    if let Ok(v) = http::HeaderValue::from_str(&(prior + residual_us).to_string()) {
        headers.insert(RESIDUAL_HEADER, v);
    }
}

/// The residual microseconds recorded in `headers` (0 when absent or malformed).
pub fn read_residual(headers: &http::HeaderMap) -> u64 {
    headers
        .get(RESIDUAL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
