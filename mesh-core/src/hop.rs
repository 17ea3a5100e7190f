//! A hook through which a harness charges the proxy's own processing cost.
//!
//! On real sockets the proxy's CPU time is real and no hook is installed. In simulation CPU work
//! costs no simulated time, so the simulator installs a [`HopCost`] that delays each request by a
//! modelled per-hop cost (with queueing when the proxy is saturated). The simulated clock has
//! microsecond resolution, so the delay is slept in full and nothing travels in headers (an earlier
//! design carried unslept sub-millisecond remainders in a response header, which a real upstream
//! could forge).

use std::future::Future;
use std::pin::Pin;

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
    /// Delay the request as the model says.
    fn charge(&self, direction: Direction) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}
