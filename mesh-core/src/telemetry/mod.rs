//! The mesh's own telemetry, per proxy: the golden signals in Prometheus form ([`metrics`],
//! served at `/metrics` on the admin listener), one span per hop with W3C `traceparent`
//! propagation ([`trace`]), and structured access logs ([`access`]).
//!
//! What the proxy records is the same on real sockets and in simulation; time is tokio's
//! (simulated there). Exporting (OTLP-JSON files, per-pod metric dumps) is the embedder's.

pub mod access;
pub mod metrics;
pub mod trace;

/// What a proxy records beyond its counters and golden signals.
#[derive(Clone, Debug, Default)]
pub struct TelemetryConfig {
    /// This proxy's workload name (the service whose pod it sits in), for inbound metrics.
    pub service: String,
    /// This workload's SPIFFE ID, for access logs.
    pub identity: Option<String>,
    /// Keep every hop's span in memory (the simulator does; a real sidecar without an exporter
    /// only propagates `traceparent`).
    pub record_spans: bool,
    /// With `record_spans`, hand each span here instead of keeping it in the proxy.
    pub span_sink: Option<trace::SpanSink>,
    /// Where access records go; none means no access log.
    pub access_log: Option<access::AccessLog>,
}
