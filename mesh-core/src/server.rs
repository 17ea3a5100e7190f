//! Serving HTTP on any [`Network`]: accept connections, speak HTTP/1.1 or HTTP/2 (detected from the
//! connection preface, so h2c with prior knowledge works), call a handler per request.
//! Used by the proxy's listeners and by anything else that serves on the boundary (the simulator's
//! app models), so connection handling is written once, and so are its bounds ([`crate::limits`]):
//! connections past the limit are closed at accept, connections that never get a request
//! through or sit idle are closed by a per-connection watchdog, each counted by reason.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::body::Body;
use crate::limits::Slots;
pub use crate::limits::{CloseReason, Limits};
use crate::net::{NetExecutor, Network};

mod drain;
mod watch;
use drain::Stop;
pub use drain::{DEFAULT_GRACE, Drain, DrainTrigger, drain};
use watch::{Activity, Watched};

/// The address a request came from, put in its extensions by the listener.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// The SPIFFE ID of the peer's mTLS certificate, put in a request's extensions by the listener.
#[derive(Clone, Debug)]
pub struct PeerIdentity(pub Arc<str>);

/// Something that went wrong serving, reported to the caller's counter; never fatal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServeEvent {
    /// `accept` failed (the listener keeps going).
    AcceptError,
    /// A connection ended with a protocol or IO error (malformed request, reset).
    ConnectionError,
    /// A TLS handshake failed (no client certificate, untrusted CA, not TLS at all), and why.
    TlsHandshakeError(crate::tls::TlsFailure),
    /// The listener closed a connection itself, at a limit ([`crate::limits`]).
    Closed(CloseReason),
    /// A request's header block was over [`Limits::max_header_bytes`]: answered 431 by the
    /// listener, never handed on.
    HeadersTooLarge,
}

/// The size of a request's header block as Envoy counts it against `max_request_headers_kb`:
/// names and values, plus the request target.
fn header_bytes<B>(req: &Request<B>) -> usize {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    req.headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum::<usize>()
        + target
}

fn too_large() -> Response<Body> {
    let mut resp = Response::new(crate::body::full("request header block too large\n"));
    *resp.status_mut() = http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    // HTTP/1.1: the connection may be out of step with a client that sends such things.
    resp.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    resp
}

/// Accept on `listener` forever, serving each connection with `handler`.
pub async fn serve_http<N, F, Fut>(
    net: N,
    listener: N::Listener,
    handler: F,
    on_event: Arc<dyn Fn(ServeEvent) + Send + Sync>,
) where
    N: Network,
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    serve_http_with(net, listener, Limits::default(), None, handler, on_event).await
}

/// As [`serve_http`], within `limits` instead of the defaults.
pub async fn serve_http_with<N, F, Fut>(
    net: N,
    listener: N::Listener,
    limits: Limits,
    drain: Option<Drain>,
    handler: F,
    on_event: Arc<dyn Fn(ServeEvent) + Send + Sync>,
) where
    N: Network,
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    serve(
        net,
        listener,
        Security::Plain,
        None,
        limits,
        drain,
        handler,
        on_event,
    )
    .await
}

/// As [`serve_http`], over TLS: each connection's handshake first (a failed handshake is a
/// [`ServeEvent::TlsHandshakeError`] and closes only that connection).
pub async fn serve_https<N, F, Fut>(
    net: N,
    listener: N::Listener,
    tls: Arc<rustls::ServerConfig>,
    handler: F,
    on_event: Arc<dyn Fn(ServeEvent) + Send + Sync>,
) where
    N: Network,
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    serve(
        net,
        listener,
        Security::Tls(acceptor),
        None,
        Limits::default(),
        None,
        handler,
        on_event,
    )
    .await
}

/// Whether to serve a connection from this address, whose peer proved this SPIFFE ID (if it
/// spoke mTLS); asked once per connection, before any request is read. The caller counts what
/// it refuses.
pub type Admit = Arc<dyn Fn(std::net::SocketAddr, Option<&str>) -> bool + Send + Sync>;

/// A sidecar's inbound listener: as [`serve_http`] without `tls`; with it, accepting what
/// `tls`'s mode says at the time each connection arrives ([`crate::tls::Mode`]): mutual TLS
/// only, either (told apart by the first byte), or plaintext only. A plaintext connection in
/// strict mode is refused and counted as a failed handshake (`plaintext`). Every connection
/// that gets this far is then put to `admit` (connection-time authorization,
/// [`crate::authz::l4`]); a refused one is closed unread.
// Each input is a different concern of the listener (what it speaks, whom it admits, its
// limits, its drain, what it serves, what it reports); a struct would only rename them.
#[allow(clippy::too_many_arguments)]
pub async fn serve_inbound<N, F, Fut>(
    net: N,
    listener: N::Listener,
    tls: Option<crate::tls::MeshTls>,
    admit: Admit,
    limits: Limits,
    drain: Option<Drain>,
    handler: F,
    on_event: Arc<dyn Fn(ServeEvent) + Send + Sync>,
) where
    N: Network,
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let security = match tls {
        Some(tls) => Security::Mesh(tls),
        None => Security::Plain,
    };
    serve(
        net,
        listener,
        security,
        Some(admit),
        limits,
        drain,
        handler,
        on_event,
    )
    .await
}

/// What a listener accepts.
#[derive(Clone)]
enum Security {
    Plain,
    Tls(tokio_rustls::TlsAcceptor),
    Mesh(crate::tls::MeshTls),
}

/// A stream whose first byte was read to tell TLS from plaintext, and is given back first.
struct Rewound<S> {
    first: Option<u8>,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewound<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if buf.remaining() > 0
            && let Some(b) = self.first.take()
        {
            buf.put_slice(&[b]);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewound<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serve connection `$conn` to its end or, when `$drain` (a [`Stop`], if any: an mTLS mode
/// change or the listener's drain) fires first, finish what is in flight and close; when
/// `$expired` (the watchdog) says it is past a limit, close it (gracefully when idle, at once if
/// it never got a request through or has stalled) and count why.
/// A macro: hyper-util's connection future has bounds a generic function would have to restate
/// whole.
///
/// The race keeps the shape it had before the watchdog joined it (two branches, unbiased under
/// a mesh mode, a plain await otherwise, now a biased race): a biased race or a third branch
/// moved `mtls-root-rotation`'s propagation delay by 1 ms. An unbiased `select!` draws from the
/// runtime's random stream, shared by every task on the simulated host, and the order of polls
/// within one instant is part of what a seed reproduces.
macro_rules! until_done {
    ($conn:expr, $drain:expr, $expired:expr, $on_event:expr) => {{
        let mut conn = std::pin::pin!($conn);
        let mesh = $drain.is_some();
        // `None`: the mode changed or the listener drains; `Some`: a limit.
        let stop = async {
            match $drain {
                Some(d) => tokio::select! {
                    biased;
                    _ = d.changed() => None,
                    why = $expired.as_mut() => Some(why),
                },
                None => Some($expired.as_mut().await),
            }
        };
        let first = if mesh {
            tokio::select! {
                r = conn.as_mut() => Ok(r),
                why = stop => Err(why),
            }
        } else {
            tokio::select! {
                biased;
                r = conn.as_mut() => Ok(r),
                why = stop => Err(why),
            }
        };
        match first {
            Ok(r) => r,
            Err(why) => {
                if let Some(why) = why {
                    $on_event(ServeEvent::Closed(why));
                }
                if matches!(why, None | Some(CloseReason::IdleTimeout)) {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                } else {
                    Ok(())
                }
            }
        }
    }};
}

// Each input is a different concern of the listener (what it speaks, whom it admits, its
// limits, its drain, what it serves, what it reports); a struct would only rename them.
#[allow(clippy::too_many_arguments)]
async fn serve<N, F, Fut>(
    net: N,
    listener: N::Listener,
    security: Security,
    admit: Option<Admit>,
    limits: Limits,
    mut drain: Option<Drain>,
    handler: F,
    on_event: Arc<dyn Fn(ServeEvent) + Send + Sync>,
) where
    N: Network,
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let limits = Arc::new(limits);
    let slots = Slots::default();
    // After a failed accept, wait before the next: an exhausted file-descriptor table fails
    // every accept at once, and retrying at once spins a core without serving anyone. Errors
    // that concern one connection only (it was reset or aborted before we took it) retry at once.
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        // Once a drain starts, accept nothing more (without a drain the accept is awaited
        // alone, as the simulator's runs always have).
        let accepted = match drain.as_mut() {
            None => net.accept(&listener).await,
            Some(d) => tokio::select! {
                biased;
                _ = d.wait() => break,
                r = net.accept(&listener) => r,
            },
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                // Load shedding at accept: past the limit a connection is closed unread, and
                // counted, rather than queued or left waiting for a descriptor.
                let Some(slot) = slots.take(limits.max_connections) else {
                    drop(stream);
                    on_event(ServeEvent::Closed(CloseReason::Overflow));
                    continue;
                };
                let handler = handler.clone();
                let on_event = on_event.clone();
                let exec = NetExecutor(net.clone());
                let security = security.clone();
                let admit = admit.clone();
                let limits = limits.clone();
                let draining = drain.clone();
                net.spawn(async move {
                    let _slot = slot;
                    let activity = Activity::new(&limits);
                    // The watchdog runs in the connection's own task (one more task per
                    // connection would reorder a simulation's run queue); its timer fires only
                    // at deadlines, never as requests come and go.
                    let expired = activity.expired(&limits);
                    let mut expired = std::pin::pin!(expired);
                    let stream = Watched {
                        inner: stream,
                        activity: activity.clone(),
                    };
                    let admitted =
                        |identity: Option<&str>| admit.as_ref().is_none_or(|a| a(peer, identity));
                    // Each request learns where it came from and, over mTLS, the peer's SPIFFE ID;
                    // the connection knows it is in flight until its response has gone out.
                    let service = |identity: Option<Arc<str>>| {
                        let handler = handler.clone();
                        let activity = activity.clone();
                        let on_event = on_event.clone();
                        let max_header_bytes = limits.max_header_bytes;
                        hyper::service::service_fn(move |mut req: Request<Incoming>| {
                            let in_flight = activity.request();
                            let oversized = header_bytes(&req) > max_header_bytes;
                            req.extensions_mut().insert(PeerAddr(peer));
                            if let Some(id) = &identity {
                                req.extensions_mut().insert(PeerIdentity(id.clone()));
                            }
                            let handler = handler.clone();
                            let on_event = on_event.clone();
                            async move {
                                if oversized {
                                    on_event(ServeEvent::HeadersTooLarge);
                                    return Ok::<_, Infallible>(too_large());
                                }
                                let resp = handler(req).await;
                                // In flight until its body has gone out: a response that stalls
                                // after its head is what the stream-idle timeout is for.
                                Ok::<_, Infallible>(
                                    resp.map(|b| crate::body::holding(b, in_flight)),
                                )
                            }
                        })
                    };
                    let mut builder = auto::Builder::new(exec);
                    // No `Date` of our own: a proxy passes the origin's through, and hyper would
                    // read it from the wall clock, which in simulation changes the bytes (HPACK
                    // encodes a new date differently) and so the packets from run to run.
                    builder
                        .http1()
                        .timer(TokioTimer::new())
                        .auto_date_header(false)
                        .header_read_timeout(limits.header_read_timeout)
                        .max_headers(limits.max_headers);
                    builder
                        .http2()
                        .timer(TokioTimer::new())
                        .auto_date_header(false)
                        .max_concurrent_streams(limits.max_concurrent_streams)
                        .max_header_list_size(limits.max_header_bytes as u32);
                    // Under a mesh mode, the connection drains when the mode changes; with a
                    // drain, when the listener drains.
                    let mode_changes = match &security {
                        Security::Mesh(tls) => Some(tls.mode_changes()),
                        _ => None,
                    };
                    let mut stop = Stop::of(mode_changes, draining);
                    // What to do with this connection: plaintext, or TLS with this acceptor.
                    let (acceptor, stream) = match security {
                        Security::Plain => (
                            None,
                            Rewound {
                                first: None,
                                inner: stream,
                            },
                        ),
                        Security::Tls(a) => (
                            Some(a),
                            Rewound {
                                first: None,
                                inner: stream,
                            },
                        ),
                        Security::Mesh(tls) => {
                            let mut stream = stream;
                            let mut first = [0u8; 1];
                            match within(
                                stream.read_exact(&mut first),
                                expired.as_mut(),
                                &*on_event,
                            )
                            .await
                            {
                                None => return,
                                Some(Err(_)) => {
                                    on_event(ServeEvent::ConnectionError);
                                    return;
                                }
                                Some(Ok(_)) => {}
                            }
                            // The mode as of the first byte, marked seen: only a later change
                            // drains this connection.
                            let mode = match stop.as_mut().and_then(|s| s.mode.as_mut()) {
                                Some(d) => *d.borrow_and_update(),
                                None => tls.mode(),
                            };
                            let is_tls = first[0] == crate::tls::TLS_HANDSHAKE;
                            let stream = Rewound {
                                first: Some(first[0]),
                                inner: stream,
                            };
                            match (mode, is_tls) {
                                (crate::tls::Mode::Strict, false) => {
                                    on_event(ServeEvent::TlsHandshakeError(
                                        crate::tls::TlsFailure::Plaintext,
                                    ));
                                    return;
                                }
                                (crate::tls::Mode::Disabled, _) | (_, false) => (None, stream),
                                (_, true) => {
                                    (Some(tokio_rustls::TlsAcceptor::from(tls.server())), stream)
                                }
                            }
                        }
                    };
                    let served = match acceptor {
                        None => {
                            activity.handshaken();
                            if !admitted(None) {
                                return;
                            }
                            let conn =
                                builder.serve_connection(TokioIo::new(stream), service(None));
                            until_done!(conn, stop.as_mut(), expired, on_event)
                        }
                        Some(acceptor) => {
                            match within(acceptor.accept(stream), expired.as_mut(), &*on_event)
                                .await
                            {
                                None => return,
                                Some(Ok(s)) => {
                                    activity.handshaken();
                                    let identity = s
                                        .get_ref()
                                        .1
                                        .peer_certificates()
                                        .and_then(|c| c.first())
                                        .and_then(crate::tls::spiffe_id)
                                        .map(Arc::<str>::from);
                                    if !admitted(identity.as_deref()) {
                                        return;
                                    }
                                    // The protocol ALPN settled is the only one served: a
                                    // client that agreed on h2 and then speaks HTTP/1.1 (or the
                                    // reverse) fails the connection instead of being sniffed
                                    // into the other protocol (RFC 7301 §3.2, RFC 9113 §3.2).
                                    let builder = match s.get_ref().1.alpn_protocol() {
                                        Some(b"h2") => builder.http2_only(),
                                        Some(b"http/1.1") => builder.http1_only(),
                                        _ => builder,
                                    };
                                    let conn = builder
                                        .serve_connection(TokioIo::new(s), service(identity));
                                    until_done!(conn, stop.as_mut(), expired, on_event)
                                }
                                Some(Err(e)) => {
                                    on_event(ServeEvent::TlsHandshakeError(
                                        crate::tls::TlsFailure::of(&e),
                                    ));
                                    return;
                                }
                            }
                        }
                    };
                    if served.is_err() {
                        on_event(ServeEvent::ConnectionError);
                    }
                });
            }
            Err(e) => {
                on_event(ServeEvent::AcceptError);
                use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
                if !matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted) {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            }
        }
    }
    // Draining: new connections are refused from here on; the open ones finish what they have
    // in flight and close. Past the grace period the rest are counted and left to the caller
    // (a graceful HTTP/1.1 close waits for a response still going out; the grace bounds it).
    drop(listener);
    if let Some(d) = drain {
        let deadline = tokio::time::Instant::now() + d.grace();
        while slots.held() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        for _ in 0..slots.held() {
            on_event(ServeEvent::Closed(CloseReason::DrainTimeout));
        }
    }
}

/// `fut`, unless the connection's deadline comes first (then counted, and `None`): handshakes
/// and first bytes run under the first-request deadline too.
async fn within<T>(
    fut: impl Future<Output = T>,
    expired: Pin<&mut impl Future<Output = CloseReason>>,
    on_event: &(dyn Fn(ServeEvent) + Send + Sync),
) -> Option<T> {
    tokio::select! {
        biased;
        r = fut => Some(r),
        why = expired => {
            on_event(ServeEvent::Closed(why));
            None
        }
    }
}

/// First wait after a failed accept; it doubles per failure in a row.
pub const ACCEPT_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(5);
/// Longest wait after failed accepts (what hyper's and tokio's examples use for EMFILE).
pub const ACCEPT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(1);
