//! Real-socket benchmarks of the proxy: an open-loop load generator (coordinated-omission
//! corrected, hdrhistogram), the direct / one-proxy / two-proxy / mTLS matrix side by side with
//! nginx and HAProxy, criterion micro-benchmarks of the hot path, and the calibration file the
//! simulator's proxy cost model reads (`scenarios/calibration/default.toml`).
//!
//! - [`load`]: the open-loop load generator (also `meshsim load`).
//! - [`matrix`]: direct / meshsim one hop / two hops / nginx / HAProxy, HTTP/1.1 and HTTP/2, at
//!   several rates, with CPU and memory of each proxy process (`meshsim bench`,
//!   `cargo bench -p bench --bench matrix`).
//! - [`sidecar`]: one sidecar as its own process (`meshsim sidecar`, the `sidecar` binary).
//! - [`peers`], [`procstat`], [`upstream`]: the processes around the proxy under test.
//!
//! Libraries: hyper's client connections for the generator (the same HTTP stack the proxy uses,
//! so no second implementation's quirks), hdrhistogram for µs-precision percentiles and the
//! `.hgrm` output, nginx and HAProxy from Debian's packages as peers (`bench/install-peers.sh`).

pub mod cli;
pub mod crosscheck;
pub mod load;
pub mod matrix;
pub mod peers;
pub mod procstat;
pub mod sidecar;
pub mod upstream;
