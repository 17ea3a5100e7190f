//! What one listener and one proxy will hold at most, and for how long: the bounds that keep a
//! hostile or careless peer from taking memory, file descriptors or the data plane.
//!
//! Envoy's defaults are the reference; where Envoy sets none (connections, requests in flight)
//! or where matching it would change behaviour the simulator has been validated with, the
//! figure and its reason are given here. `docs/LIMITS.md` is the user-facing table, with what each limit is counted as.
//!
//! | limit | default | Envoy | enforced by |
//! |---|---|---|---|
//! | request header block | 60 KiB | `max_request_headers_kb` 60 | hyper h1 `max_header_size` (431), h2 `max_header_list_size` |
//! | request header count | 100 | `max_headers_count` 100 | hyper h1 `max_headers` (431); h2 by size |
//! | connections per listener | 10,000 | none (overload manager opt-in) | [`crate::server`], closed at accept, counted `overflow` |
//! | first request (handshake + first header block) | 10 s | `listener_filters_timeout` 15 s; Linkerd detect 10 s | [`crate::server`], counted `handshake_timeout` / `header_timeout` |
//! | later header blocks on an HTTP/1.1 connection | 30 s | `request_headers_timeout` off | hyper h1 `header_read_timeout` (also closes an idle keep-alive connection) |
//! | idle connection (no bytes, no request in flight) | 1 h | `idle_timeout` 1 h | [`crate::server`], counted `idle_timeout` |
//! | stalled connection (requests or responses in flight, no bytes either way) | 5 min | `stream_idle_timeout` 5 min | [`crate::server`]: closed at once, counted `stream_idle_timeout`; its requests end `downstream_cancelled` |
//! | HTTP/2 streams per connection | 200 | 2^31−1 | hyper/h2 `max_concurrent_streams` (`REFUSED_STREAM`) |
//! | requests in flight per proxy direction | 10,000 | none (overload manager opt-in) | [`crate::proxy`]: 503 `overloaded`, answered before any upstream work |
//! | buffered bytes per connection | h1 ≈ 400 KiB read buffer; h2 1 MiB windows, 400 KiB send buffer | 1 MiB buffer limit | hyper's own bounds |
//!
//! Not here: a stream-idle timeout (Envoy's 5 min). A request waiting on its upstream is bounded
//! by the route's `timeout`; one whose body stalls is bounded by the connection's idle timeout
//! only when nothing else moves on that connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The bounds of a listener and its proxy. [`Limits::default`] is the table in the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest request header block, start line included (HTTP/1.1), or header list (HTTP/2).
    pub max_header_bytes: usize,
    /// Most request header fields (HTTP/1.1).
    pub max_headers: usize,
    /// Most connections one listener holds; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// From accept to the first request's headers (TLS handshake included).
    pub first_request_timeout: Duration,
    /// For each later request head on an HTTP/1.1 connection, from when the server starts
    /// waiting for it (hyper's `header_read_timeout`, which runs while the connection is idle).
    pub header_read_timeout: Duration,
    /// A connection with no bytes either way and no request in flight for this long is closed
    /// (gracefully: HTTP/2 sends GOAWAY).
    pub idle_timeout: Duration,
    /// A connection with requests in flight and no bytes either way for this long is closed at
    /// once (Envoy's `stream_idle_timeout`, judged per connection: HTTP/2 streams sharing a
    /// connection keep each other alive).
    pub stream_idle_timeout: Duration,
    /// Most concurrent HTTP/2 streams a peer may open on one connection.
    pub max_concurrent_streams: u32,
    /// Most requests in flight per proxy direction; past it the proxy answers 503 `overloaded`.
    pub max_requests_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 60 * 1024,
            max_headers: 100,
            max_connections: 10_000,
            first_request_timeout: Duration::from_secs(10),
            // hyper's own default, kept: 10 s would also close HTTP/1.1 keep-alive connections
            // idle for 10 s, which the simulator's pools were validated without.
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(3600),
            stream_idle_timeout: Duration::from_secs(300),
            // hyper's own default, kept for the same reason (sidecars multiplex one HTTP/2
            // connection per pair, and a lower cap refuses streams the validated runs sent).
            max_concurrent_streams: 200,
            max_requests_in_flight: 10_000,
        }
    }
}

/// Why a listener closed a connection itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CloseReason {
    /// The listener already held [`Limits::max_connections`].
    Overflow,
    /// The TLS handshake did not finish within [`Limits::first_request_timeout`].
    HandshakeTimeout,
    /// No complete request head within [`Limits::first_request_timeout`] (nothing sent, a
    /// partial HTTP/2 preface, a slow header block).
    HeaderTimeout,
    /// Nothing moved for [`Limits::idle_timeout`].
    IdleTimeout,
    /// Still open when its listener's drain ran out of grace ([`crate::server::Drain`]).
    DrainTimeout,
    /// Requests in flight and nothing moved for [`Limits::stream_idle_timeout`].
    StreamIdleTimeout,
}

impl CloseReason {
    /// Every reason, in declaration order.
    pub const ALL: [CloseReason; 6] = [
        CloseReason::Overflow,
        CloseReason::HandshakeTimeout,
        CloseReason::HeaderTimeout,
        CloseReason::IdleTimeout,
        CloseReason::DrainTimeout,
        CloseReason::StreamIdleTimeout,
    ];

    /// A stable snake_case name for counters and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            CloseReason::Overflow => "overflow",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::DrainTimeout => "drain_timeout",
            CloseReason::StreamIdleTimeout => "stream_idle_timeout",
        }
    }
}

/// A count with a ceiling: connections a listener holds, requests a proxy direction has in
/// flight. A slot is given back when its guard drops.
#[derive(Clone, Default)]
pub struct Slots(Arc<AtomicUsize>);

/// One held connection slot.
pub struct Slot(Arc<AtomicUsize>);

impl Slots {
    /// How many slots are held now.
    pub fn held(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    /// A slot, unless `max` are taken.
    pub fn take(&self, max: usize) -> Option<Slot> {
        let mut n = self.0.load(Ordering::Relaxed);
        loop {
            if n >= max {
                return None;
            }
            match self
                .0
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Some(Slot(self.0.clone())),
                Err(now) => n = now,
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_refuse_past_the_maximum_and_come_back() {
        let s = Slots::default();
        let a = s.take(2).unwrap();
        let _b = s.take(2).unwrap();
        assert!(s.take(2).is_none());
        drop(a);
        assert!(s.take(2).is_some());
    }

    #[test]
    fn defaults_are_envoys_where_envoy_has_one() {
        let l = Limits::default();
        assert_eq!(l.max_header_bytes, 60 * 1024);
        assert_eq!(l.max_headers, 100);
        assert_eq!(l.idle_timeout, Duration::from_secs(3600));
    }

    #[test]
    fn close_reasons_are_distinct() {
        let mut r: Vec<_> = CloseReason::ALL.iter().map(|c| c.reason()).collect();
        r.sort_unstable();
        r.dedup();
        assert_eq!(r.len(), CloseReason::ALL.len());
    }
}
