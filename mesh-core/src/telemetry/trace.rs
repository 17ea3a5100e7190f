//! W3C Trace Context (`traceparent`) and the spans a proxy records, one per hop.
//!
//! Every request through a sidecar gets a span: its trace id comes from the incoming
//! `traceparent` when one is valid, else a new trace starts (as the W3C spec says to do with an
//! invalid header); the span's id goes out as the parent in the `traceparent` of the forwarded
//! request, so the next hop (or the app, which must copy the header onto its own calls, as with
//! every mesh) continues the trace. `tracestate` passes through untouched.
//!
//! Ids come from a ChaCha stream seeded by the proxy's seed, so in simulation the same seed
//! gives the same traces. This is not an exporter: the simulator writes OTLP-JSON from the
//! recorded spans (`sim::telemetry`); a real deployment would add an OTLP exporter here.

use http::HeaderValue;

/// The propagation header.
pub const TRACEPARENT: &str = "traceparent";

/// A parsed `traceparent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// 16 bytes, never all zero.
    pub trace_id: u128,
    /// The caller's span, 8 bytes, never zero.
    pub parent_id: u64,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

/// Parse a `traceparent` value (version 00, or a later version read as 00 per the spec's
/// forward-compatibility rule). Anything malformed is `None`: the caller starts a new trace.
pub fn parse(v: &HeaderValue) -> Option<TraceContext> {
    let s = v.to_str().ok()?;
    let mut parts = s.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |p: &str, n: usize| {
        p.len() == n
            && p.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !lower_hex(version, 2)
        || version == "ff"
        || !lower_hex(trace, 32)
        || !lower_hex(parent, 16)
        || !lower_hex(flags, 2)
    {
        return None;
    }
    // Version 00 has exactly four fields; a later version may append more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let trace_id = u128::from_str_radix(trace, 16).ok()?;
    let parent_id = u64::from_str_radix(parent, 16).ok()?;
    if trace_id == 0 || parent_id == 0 {
        return None;
    }
    Some(TraceContext {
        trace_id,
        parent_id,
        flags: u8::from_str_radix(flags, 16).ok()?,
    })
}

/// The `traceparent` naming `span_id` as the parent for the next hop.
pub fn header(trace_id: u128, span_id: u64, flags: u8) -> HeaderValue {
    HeaderValue::from_str(&format!("00-{trace_id:032x}-{span_id:016x}-{flags:02x}"))
        .expect("hex digits and dashes are a valid header value")
}

/// One hop of one request through one proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    /// The trace.
    pub trace_id: u128,
    /// This span.
    pub span_id: u64,
    /// The caller's span; 0 for a trace's root.
    pub parent_id: u64,
    /// `outbound` (client side) or `inbound` (server side).
    pub direction: crate::hop::Direction,
    /// The destination service (outbound) or this proxy's own (inbound).
    pub service: String,
    /// `GET /path`.
    pub name: String,
    /// Start, µs after the proxy's epoch.
    pub start_us: u64,
    /// Duration, µs.
    pub duration_us: u64,
    /// Status the proxy answered with.
    pub status: u16,
    /// The proxy's own failure reason, if it failed the request.
    pub reason: Option<&'static str>,
    /// Attempts the proxy made (outbound; 1 inbound).
    pub attempts: u32,
}

/// Where a proxy hands each finished span when it does not keep them itself: the embedder
/// decides what to keep (the simulator keeps only traces its report can show, so a long run's
/// memory stays flat).
#[derive(Clone)]
pub struct SpanSink(pub std::sync::Arc<dyn Fn(Span) + Send + Sync>);

impl std::fmt::Debug for SpanSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpanSink")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_spec_examples() {
        let v = HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let c = parse(&v).unwrap();
        assert_eq!(c.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(c.parent_id, 0x00f067aa0ba902b7);
        assert_eq!(c.flags, 1);
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(parse(&HeaderValue::from_static(bad)), None, "{bad}");
        }
        // A later version may carry more fields; the first four are read as version 00.
        let v =
            HeaderValue::from_static("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x");
        assert!(parse(&v).is_some());
    }

    proptest! {
        #[test]
        fn header_round_trips(t in 1u128.., s in 1u64.., f: u8) {
            let c = parse(&header(t, s, f)).unwrap();
            prop_assert_eq!(c, TraceContext { trace_id: t, parent_id: s, flags: f });
        }
    }
}
