//! Real-socket benchmarks of the proxy: an open-loop load generator (coordinated-omission
//! corrected, hdrhistogram), the direct / one-proxy / two-proxy / mTLS matrix side by side with
//! nginx and HAProxy, criterion micro-benchmarks of the hot path, and the calibration file the
//! simulator's proxy cost model reads (`scenarios/calibration/default.toml`).
//!
//! **Status:** empty seam. The real-socket bench is issue #4; until it lands, the shipped
//! calibration file is a labelled placeholder (its `source` field says so, and every report
//! repeats it). Nothing in this crate is measured yet.
#![forbid(unsafe_code)]
