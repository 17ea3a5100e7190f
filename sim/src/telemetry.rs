//! The mesh's own telemetry from a simulated run, exported the way real tools read it: each
//! sidecar's Prometheus exposition at the end of the run (`metrics/<pod>.prom`), the recorded
//! spans as OTLP-JSON (`traces.otlp.json`, opens in Jaeger or any OTLP tool), and, when asked,
//! every sidecar's JSON access log (`access.log.jsonl`).
//!
//! Simulated time has no calendar; span timestamps are simulated time after a fixed instant,
//! [`SIM_EPOCH_UNIX_S`] (2026-01-01T00:00:00Z), so the same seed gives the same file.

use std::collections::BTreeMap;

use mesh_core::hop::Direction;
use mesh_core::telemetry::trace::Span;
use reports::{SpanSummary, TraceSummary};
use serde_json::{Value, json};

/// The Unix time simulated time 0 is written as.
pub const SIM_EPOCH_UNIX_S: u64 = 1_767_225_600;

pub use reports::{EXPORTED_TRACES, REPORTED_TRACES};

/// A span and the sidecar that recorded it.
#[derive(Clone, Debug)]
pub struct HostSpan {
    /// The sidecar's host (`api-0`, `client-3`).
    pub host: String,
    /// Whose sidecar: a service, or `clients`.
    pub owner: String,
    /// The span.
    pub span: Span,
}

/// What a meshed run's sidecars recorded about themselves.
#[derive(Clone, Debug, Default)]
pub struct Telemetry {
    /// Each sidecar's Prometheus text at the end of the run, by host.
    pub metrics: BTreeMap<String, String>,
    /// The spans of the traces the report and the export can show (the slowest, whole; see
    /// `run::spans`), in the order the sidecars are listed, each sidecar's in recording order.
    pub spans: Vec<HostSpan>,
    /// Access-log lines, in the order they were written (when the run asked for them).
    pub access_log: Vec<String>,
}

/// Spans grouped by trace, with the trace's root (a span whose parent is not in the trace).
fn traces(spans: &[HostSpan]) -> Vec<(u128, &HostSpan, Vec<&HostSpan>)> {
    let mut by_trace: BTreeMap<u128, Vec<&HostSpan>> = BTreeMap::new();
    for s in spans {
        by_trace.entry(s.span.trace_id).or_default().push(s);
    }
    by_trace
        .into_iter()
        .filter_map(|(id, mut members)| {
            members.sort_by_key(|s| (s.span.start_us, s.span.span_id));
            let root = *members
                .iter()
                .find(|s| s.span.parent_id == 0)
                .or_else(|| members.first())?;
            Some((id, root, members))
        })
        .collect()
}

/// The `n` slowest traces by root duration (ties by trace id), slowest first.
fn slowest(spans: &[HostSpan], n: usize) -> Vec<(u128, &HostSpan, Vec<&HostSpan>)> {
    let mut all = traces(spans);
    all.sort_by(|a, b| {
        b.1.span
            .duration_us
            .cmp(&a.1.span.duration_us)
            .then(a.0.cmp(&b.0))
    });
    all.truncate(n);
    all
}

/// The report's view of the slowest traces.
pub fn slowest_traces(spans: &[HostSpan], n: usize) -> Vec<TraceSummary> {
    slowest(spans, n)
        .into_iter()
        .map(|(id, root, members)| TraceSummary {
            trace_id: format!("{id:032x}"),
            root: format!("{} → {}", root.span.name, root.span.service),
            start_ms: root.span.start_us / 1000,
            duration_us: root.span.duration_us,
            status: root.span.status,
            spans: members
                .iter()
                .map(|s| SpanSummary {
                    span_id: format!("{:016x}", s.span.span_id),
                    parent_id: if s.span.parent_id == 0 {
                        String::new()
                    } else {
                        format!("{:016x}", s.span.parent_id)
                    },
                    proxy: s.host.clone(),
                    direction: s.span.direction.name().to_string(),
                    service: s.span.service.clone(),
                    offset_us: s.span.start_us.saturating_sub(root.span.start_us),
                    duration_us: s.span.duration_us,
                    status: s.span.status,
                    reason: s.span.reason.unwrap_or_default().to_string(),
                })
                .collect(),
        })
        .collect()
}

fn attr(key: &str, value: Value) -> Value {
    let v = match value {
        Value::Number(n) => json!({ "intValue": n.to_string() }),
        Value::String(s) => json!({ "stringValue": s }),
        other => json!({ "stringValue": other.to_string() }),
    };
    json!({ "key": key, "value": v })
}

/// The `n` slowest traces as OTLP-JSON (OTLP/HTTP's JSON encoding of
/// `ExportTraceServiceRequest`): one resource per sidecar, ids in hex, times in Unix ns.
pub fn otlp_json(spans: &[HostSpan], n: usize) -> String {
    let chosen = slowest(spans, n);
    // Resource per sidecar host, in host order.
    let mut by_host: BTreeMap<&str, (&str, Vec<Value>)> = BTreeMap::new();
    let ns = |us: u64| (SIM_EPOCH_UNIX_S * 1_000_000_000 + us * 1000).to_string();
    for (_, _, members) in &chosen {
        for s in members {
            let sp = &s.span;
            let mut attributes = vec![
                attr("meshsim.direction", json!(sp.direction.name())),
                attr("meshsim.destination_service", json!(sp.service)),
                attr("http.response.status_code", json!(sp.status)),
                attr("meshsim.attempts", json!(sp.attempts)),
            ];
            if let Some(r) = sp.reason {
                attributes.push(attr("meshsim.reason", json!(r)));
            }
            let error = sp.status >= 500 || sp.reason.is_some();
            by_host
                .entry(s.host.as_str())
                .or_insert_with(|| (s.owner.as_str(), Vec::new()))
                .1
                .push(json!({
                    "traceId": format!("{:032x}", sp.trace_id),
                    "spanId": format!("{:016x}", sp.span_id),
                    "parentSpanId": if sp.parent_id == 0 { String::new() } else { format!("{:016x}", sp.parent_id) },
                    "name": format!("{} {}", sp.direction.name(), sp.name),
                    // SPAN_KIND_CLIENT = 3 for the caller's side, SPAN_KIND_SERVER = 2.
                    "kind": match sp.direction { Direction::Outbound => 3, Direction::Inbound => 2 },
                    "startTimeUnixNano": ns(sp.start_us),
                    "endTimeUnixNano": ns(sp.start_us + sp.duration_us),
                    "attributes": attributes,
                    // STATUS_CODE_ERROR = 2, STATUS_CODE_UNSET = 0.
                    "status": if error { json!({ "code": 2, "message": sp.reason.unwrap_or("5xx") }) } else { json!({ "code": 0 }) },
                }));
        }
    }
    let resource_spans: Vec<Value> = by_host
        .into_iter()
        .map(|(host, (owner, spans))| {
            json!({
                "resource": { "attributes": [
                    attr("service.name", json!(owner)),
                    attr("host.name", json!(host)),
                    attr("telemetry.sdk.name", json!("meshsim")),
                ]},
                "scopeSpans": [{
                    "scope": { "name": "meshsim-proxy", "version": env!("CARGO_PKG_VERSION") },
                    "spans": spans,
                }],
            })
        })
        .collect();
    let mut s = serde_json::to_string_pretty(&json!({ "resourceSpans": resource_spans }))
        .expect("JSON values serialise");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(trace: u128, id: u64, parent: u64, start: u64, dur: u64) -> HostSpan {
        HostSpan {
            host: format!("h{id}"),
            owner: "svc".into(),
            span: Span {
                trace_id: trace,
                span_id: id,
                parent_id: parent,
                direction: Direction::Outbound,
                service: "db".into(),
                name: "GET /".into(),
                start_us: start,
                duration_us: dur,
                status: 200,
                reason: None,
                attempts: 1,
            },
        }
    }

    #[test]
    fn slowest_first_with_offsets_from_the_root() {
        let spans = vec![
            span(1, 10, 0, 1000, 500),
            span(1, 11, 10, 1100, 300),
            span(2, 20, 0, 5000, 900),
            span(2, 21, 20, 5050, 800),
            span(3, 30, 0, 9000, 100),
        ];
        let t = slowest_traces(&spans, 2);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].trace_id, format!("{:032x}", 2));
        assert_eq!(t[0].duration_us, 900);
        assert_eq!(t[0].spans[1].offset_us, 50);
        assert_eq!(t[0].spans[1].parent_id, format!("{:016x}", 20));
        assert_eq!(t[1].duration_us, 500);
        let otlp: Value = serde_json::from_str(&otlp_json(&spans, 1)).unwrap();
        let rs = otlp["resourceSpans"].as_array().unwrap();
        assert_eq!(rs.len(), 2, "one resource per host of the one trace");
        let s = &rs[0]["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], format!("{:032x}", 2));
        assert_eq!(
            s["startTimeUnixNano"],
            (SIM_EPOCH_UNIX_S * 1_000_000_000 + 5_000_000).to_string()
        );
    }
}
