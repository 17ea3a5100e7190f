//! The spans a run keeps: only those the report and the OTLP export can show.
//!
//! Both show the [`crate::telemetry::EXPORTED_TRACES`] slowest traces by root duration (ties by
//! trace id). Every sidecar hands its finished spans here ([`SpanStore::sink`]); a trace's
//! spans wait until its root (the span with no parent) finishes, and the trace is then kept
//! only while it ranks among the slowest finished roots. A trace ranked out can never rank in
//! again (later traces only push it further down), so its spans are dropped and its id
//! remembered, so that a span finishing after its root (a hop still running when the caller
//! gave up) is dropped too rather than taken for a trace of its own. What is kept holds every
//! span of the slowest traces (plus any trace that never got a root, which is never dropped),
//! in the same order (sidecar, then recording order), so choosing the slowest from it gives
//! what choosing from every span gave: reports are byte-identical to keeping every span.
//!
//! Memory: the kept traces, the traces still open (bounded by requests in flight) and about
//! 20-30 bytes per dropped trace id (16-byte ids in a B-tree). Keeping every span cost ~1.2 KB
//! per request: a two-hour soak grew by 135 MB. `mesh_core::proxy::MAX_SPANS` does not apply
//! here (it bounds a proxy that keeps its own spans).
//!
//! Not here: choosing the slowest traces for the report (`crate::telemetry`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use mesh_core::telemetry::trace::{Span, SpanSink};

/// Spans of the traces that can still be among the slowest.
pub(super) struct SpanStore {
    inner: Mutex<Inner>,
}

struct Inner {
    /// How many rooted traces to keep.
    keep: usize,
    /// Spans by trace: (sidecar index, arrival number, span).
    traces: BTreeMap<u128, Vec<(usize, u64, Span)>>,
    /// Finished roots of kept traces, slowest first.
    ranked: BTreeSet<(Reverse<u64>, u128)>,
    /// Traces ranked out.
    dropped: BTreeSet<u128>,
    arrivals: u64,
}

impl SpanStore {
    /// A store keeping the `keep` slowest rooted traces (and every trace without a root).
    pub(super) fn new(keep: usize) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Inner {
                keep,
                traces: BTreeMap::new(),
                ranked: BTreeSet::new(),
                dropped: BTreeSet::new(),
                arrivals: 0,
            }),
        })
    }

    /// The sink for the sidecar at `sidecar` (its index among the run's sidecars).
    pub(super) fn sink(self: &Arc<Self>, sidecar: usize) -> SpanSink {
        let store = self.clone();
        SpanSink(Arc::new(move |span| store.record(sidecar, span)))
    }

    fn record(&self, sidecar: usize, span: Span) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let id = span.trace_id;
        if s.dropped.contains(&id) {
            return;
        }
        let root = (span.parent_id == 0).then_some(span.duration_us);
        let n = s.arrivals;
        s.arrivals += 1;
        let members = s.traces.entry(id).or_default();
        // One root per trace: a second would be ranked twice.
        let first_root = root.is_some() && !members.iter().any(|(_, _, m)| m.parent_id == 0);
        members.push((sidecar, n, span));
        if let (Some(duration), true) = (root, first_root) {
            s.ranked.insert((Reverse(duration), id));
            if s.ranked.len() > s.keep
                && let Some((_, out)) = s.ranked.pop_last()
            {
                s.traces.remove(&out);
                s.dropped.insert(out);
            }
        }
    }

    /// Every kept span with its sidecar's index, by sidecar and then in recording order.
    pub(super) fn spans(&self) -> Vec<(usize, Span)> {
        let s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<(usize, u64, Span)> = s.traces.values().flatten().cloned().collect();
        all.sort_by_key(|(sidecar, n, _)| (*sidecar, *n));
        all.into_iter()
            .map(|(sidecar, _, span)| (sidecar, span))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_core::hop::Direction;

    fn span(trace: u128, id: u64, parent: u64, duration_us: u64) -> Span {
        Span {
            trace_id: trace,
            span_id: id,
            parent_id: parent,
            direction: Direction::Outbound,
            service: "s".into(),
            name: "GET /".into(),
            start_us: id,
            duration_us,
            status: 200,
            reason: None,
            attempts: 1,
        }
    }

    #[test]
    fn only_the_slowest_traces_stay_and_late_spans_of_dropped_ones_are_dropped() {
        let store = SpanStore::new(2);
        let (a, b) = (store.sink(0), store.sink(1));
        // Trace 1: a child, then its root (10 µs).
        (b.0)(span(1, 11, 10, 5));
        (a.0)(span(1, 10, 0, 10));
        // Traces 2 (30 µs) and 3 (20 µs): trace 1 is ranked out.
        (a.0)(span(2, 20, 0, 30));
        (a.0)(span(3, 30, 0, 20));
        // A late child of trace 1 is dropped; one of trace 3 is kept.
        (b.0)(span(1, 12, 10, 50));
        (b.0)(span(3, 31, 30, 1));
        // A trace without a root is kept.
        (b.0)(span(4, 40, 99, 1));
        let kept: Vec<(usize, u128, u64)> = store
            .spans()
            .into_iter()
            .map(|(h, s)| (h, s.trace_id, s.span_id))
            .collect();
        assert_eq!(kept, [(0, 2, 20), (0, 3, 30), (1, 3, 31), (1, 4, 40)]);
    }
}
