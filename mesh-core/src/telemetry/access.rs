//! Access logs: one structured record per request per proxy hop, written as one JSON line
//! (Envoy's and Istio's JSON access-log shape, trimmed to what a mesh user reads): who called
//! whom, which route, status, duration, how many attempts, and the proxy's reason when it
//! failed the request itself. Where the record goes is the embedder's: the simulator keeps them
//! per run, `meshsim sidecar --access-log` writes them to a file or stdout.
//!
//! Off unless a sink is configured (Istio's default too: `meshConfig.accessLogFile` is empty).

use std::sync::Arc;

use serde::Serialize;

/// One request through one proxy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccessRecord {
    /// When the request arrived, µs after the proxy's epoch.
    pub start_us: u64,
    /// `outbound` or `inbound`.
    pub direction: &'static str,
    /// The calling workload's SPIFFE ID: this proxy's own on outbound; on inbound, the one in
    /// the peer's mTLS client certificate (absent without mTLS).
    pub source_identity: Option<String>,
    /// The caller's address as this proxy saw it.
    pub source_address: String,
    /// The destination service.
    pub destination_service: String,
    /// The destination workload's SPIFFE ID: this proxy's own on inbound, absent on outbound.
    pub destination_identity: Option<String>,
    /// The route that matched (`default` when none did).
    pub route: String,
    /// Request method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Status answered.
    pub status: u16,
    /// Arrival to response headers, µs.
    pub duration_us: u64,
    /// Attempts made (retries included); 0 when the proxy refused before trying.
    pub attempts: u32,
    /// The proxy's failure reason (`connect_failed`, `circuit_open`, `rate_limited`, …), absent
    /// when the status came from upstream.
    pub reason: Option<&'static str>,
    /// The W3C trace id.
    pub trace_id: String,
}

impl AccessRecord {
    /// The record as one JSON line (no trailing newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an access record always serialises")
    }
}

/// Where access records go. The sink must not block (a slow reader must never stall the data
/// plane): it answers `false` when it dropped the record, which the proxy counts
/// (`access_log_dropped`).
#[derive(Clone)]
pub struct AccessLog(pub Arc<dyn Fn(&AccessRecord) -> bool + Send + Sync>);

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessLog(..)")
    }
}
