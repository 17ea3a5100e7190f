//! A request's hop through the proxy, recorded exactly once: golden metrics, span and access
//! record when the proxy answers, or 499 `downstream_cancelled` on drop when the caller left
//! first.

use super::*;

/// One request's hop through the proxy, for its metrics, span and access record. Recorded
/// exactly once: by [`Hop::record`] when the proxy answers, or on drop when the request was
/// cancelled first (the caller went away or an outer timeout fired), as Envoy's 499 / `DC`.
pub(super) struct Hop<'a, N: Network> {
    pub(super) proxy: &'a Proxy<N>,
    pub(super) dir: Direction,
    /// Borrowed from the config on inbound, so the hot path allocates no name per request.
    pub(super) service: std::borrow::Cow<'a, str>,
    pub(super) started: tokio::time::Instant,
    /// (trace, span, parent span).
    pub(super) ids: (u128, u64, u64),
    /// Method and path, when a span or access record will need them.
    pub(super) described: Option<(String, String)>,
    pub(super) peer: Option<SocketAddr>,
    /// The caller's SPIFFE ID, when it came over mTLS.
    pub(super) peer_identity: Option<Arc<str>>,
    pub(super) route: String,
    pub(super) armed: bool,
}

impl<N: Network> Hop<'_, N> {
    pub(super) fn record(
        &mut self,
        status: u16,
        reason: Option<&'static str>,
        duration_us: u64,
        attempts: u32,
    ) {
        if !std::mem::replace(&mut self.armed, false) {
            return;
        }
        let p = self.proxy;
        p.golden
            .finish(self.dir, &self.service, status, reason, duration_us);
        let Some((method, path)) = self.described.take() else {
            return;
        };
        let tel = &p.cfg.telemetry;
        let (trace_id, span_id, parent_id) = self.ids;
        let start_us = self
            .started
            .saturating_duration_since(p.stats.epoch())
            .as_micros() as u64;
        if tel.record_spans {
            let span = Span {
                trace_id,
                span_id,
                parent_id,
                direction: self.dir,
                service: self.service.to_string(),
                name: format!("{method} {path}"),
                start_us,
                duration_us,
                status,
                reason,
                attempts,
            };
            if let Some(sink) = &tel.span_sink {
                (sink.0)(span);
            } else {
                let mut spans = p.spans.lock().unwrap_or_else(|e| e.into_inner());
                if spans.len() < MAX_SPANS {
                    spans.push(span);
                } else {
                    drop(spans);
                    p.stats.update(|c| c.spans_dropped += 1);
                }
            }
        }
        if let Some(log) = &tel.access_log {
            // This proxy's own identity is the source outbound and the destination inbound.
            let (source_identity, destination_identity) = match self.dir {
                Direction::Outbound => (tel.identity.clone(), None),
                Direction::Inbound => (
                    self.peer_identity.as_deref().map(str::to_string),
                    tel.identity.clone(),
                ),
            };
            let kept = (log.0)(&AccessRecord {
                start_us,
                direction: self.dir.name(),
                source_identity,
                source_address: self.peer.map(|a| a.to_string()).unwrap_or_default(),
                destination_service: self.service.to_string(),
                destination_identity,
                route: if self.route.is_empty() {
                    "default".into()
                } else {
                    std::mem::take(&mut self.route)
                },
                method,
                path,
                status,
                duration_us,
                attempts,
                reason,
                trace_id: format!("{trace_id:032x}"),
            });
            if !kept {
                p.stats.update(|c| c.access_log_dropped += 1);
            }
        }
    }
}

impl<N: Network> Drop for Hop<'_, N> {
    fn drop(&mut self) {
        if self.armed {
            let us = self.started.elapsed().as_micros() as u64;
            self.record(499, Some("downstream_cancelled"), us, 0);
        }
    }
}
