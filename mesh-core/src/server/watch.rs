//! One connection's watchdog: what it has done (bytes moved, handshake finished, requests
//! served and in flight) and the deadline that follows from it ([`crate::limits`]).
//!
//! The stream wrapper notes activity as bytes pass; the watchdog's timer fires at the
//! first-request deadline and then at the next deadline or after a period (the shorter of the
//! idle and stream-idle timeouts), whichever is sooner; each time the watchdog looks at the
//! notes and names the reason if the connection is past its deadline, else re-arms.
//! It is not a request timeout: a request in flight keeps its connection alive as long as
//! bytes move, either way, within the stream-idle timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Duration, Instant};

use crate::limits::{CloseReason, Limits};

/// What one connection has done, shared by its stream, its requests and its watchdog.
pub(crate) struct Activity {
    /// When the connection was accepted (tokio's clock: simulated time in the simulator).
    opened: Instant,
    /// Microseconds after `opened` of the last byte read or written.
    last_us: AtomicU64,
    handshaken: AtomicBool,
    served: AtomicBool,
    in_flight: AtomicUsize,
    /// The watchdog's timer. Requests move it without waking anyone (a wake-up would be an
    /// extra poll of some task, and in the simulator that can reorder what happens within one
    /// instant); it fires at the first-request deadline, then at most once per period
    /// (`look_every`), and the watchdog looks again each time.
    timer: Mutex<Pin<Box<tokio::time::Sleep>>>,
    /// How often the watchdog looks again once requests have come: the shorter of the idle and
    /// the stream-idle timeouts.
    look_every: Duration,
}

impl Activity {
    pub(crate) fn new(limits: &Limits) -> Arc<Self> {
        let opened = Instant::now(); // tokio clock; allow-nondeterminism
        Arc::new(Self {
            opened,
            last_us: AtomicU64::new(0),
            handshaken: AtomicBool::new(false),
            served: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            timer: Mutex::new(Box::pin(tokio::time::sleep_until(
                opened + limits.first_request_timeout,
            ))),
            look_every: limits.idle_timeout.min(limits.stream_idle_timeout),
        })
    }

    fn touch(&self) {
        let us = self.opened.elapsed().as_micros() as u64;
        self.last_us.fetch_max(us, Ordering::Relaxed);
    }

    fn timer(&self) -> std::sync::MutexGuard<'_, Pin<Box<tokio::time::Sleep>>> {
        self.timer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn arm(&self, at: Instant) {
        self.timer().as_mut().reset(at);
    }

    /// The TLS handshake (if any) is done.
    pub(crate) fn handshaken(&self) {
        self.handshaken.store(true, Ordering::Relaxed);
    }

    /// A request head arrived; the returned guard marks it in flight until dropped (when its
    /// response has gone out).
    pub(crate) fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if !self.served.swap(true, Ordering::Relaxed) {
            // Past the first-request deadline's reason to exist: next look a period from now.
            self.arm(Instant::now() + self.look_every); // tokio clock; allow-nondeterminism
        }
        InFlight(self.clone())
    }

    /// When the connection is due to close and why, as things stand now.
    fn due(&self, limits: &Limits) -> (Instant, CloseReason) {
        if !self.served.load(Ordering::Relaxed) {
            let reason = if self.handshaken.load(Ordering::Relaxed) {
                CloseReason::HeaderTimeout
            } else {
                CloseReason::HandshakeTimeout
            };
            return (self.opened + limits.first_request_timeout, reason);
        }
        let last = self.opened + Duration::from_micros(self.last_us.load(Ordering::Relaxed));
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            // Requests in flight keep the connection only while something moves.
            return (
                last + limits.stream_idle_timeout,
                CloseReason::StreamIdleTimeout,
            );
        }
        (last + limits.idle_timeout, CloseReason::IdleTimeout)
    }

    /// Resolves when the connection should close, with why.
    pub(crate) async fn expired(&self, limits: &Limits) -> CloseReason {
        loop {
            std::future::poll_fn(|cx| self.timer().as_mut().poll(cx)).await;
            let now = Instant::now(); // tokio clock; allow-nondeterminism
            match self.due(limits) {
                (at, reason) if now >= at => return reason,
                // At the latest a period from now: a request ending does not move the timer,
                // and after it the (shorter) idle deadline may apply.
                (at, _) => self.arm(at.min(now + self.look_every)),
            }
        }
    }
}

/// One request in flight on a connection.
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that notes on its connection's [`Activity`] every time bytes pass.
pub(crate) struct Watched<S> {
    pub(crate) inner: S,
    pub(crate) activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            first_request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ..Limits::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_times_out_at_the_handshake_or_the_header() {
        let a = Activity::new(&limits());
        let t0 = Instant::now();
        assert_eq!(a.expired(&limits()).await, CloseReason::HandshakeTimeout);
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
        let a = Activity::new(&limits());
        a.handshaken();
        assert_eq!(a.expired(&limits()).await, CloseReason::HeaderTimeout);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_with_nothing_moving_ends_at_the_stream_idle_timeout() {
        let a = Activity::new(&limits());
        let t0 = Instant::now();
        let _req = a.request();
        // Bytes at 100 s move the deadline.
        tokio::time::sleep(Duration::from_secs(100)).await;
        a.touch();
        assert_eq!(a.expired(&limits()).await, CloseReason::StreamIdleTimeout);
        assert_eq!(t0.elapsed(), Duration::from_secs(100 + 300));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_activity_and_never_under_a_request() {
        let a = Activity::new(&limits());
        let t0 = Instant::now();
        let req = a.request();
        // A request in flight for longer than the idle timeout keeps the connection: the
        // watchdog runs all along and looks again each period.
        let watchdog = tokio::spawn({
            let a = a.clone();
            async move { a.expired(&limits()).await }
        });
        tokio::time::sleep(Duration::from_secs(150)).await;
        assert!(!watchdog.is_finished());
        drop(req);
        assert_eq!(watchdog.await.unwrap(), CloseReason::IdleTimeout);
        assert_eq!(t0.elapsed(), Duration::from_secs(150 + 60));
    }
}
