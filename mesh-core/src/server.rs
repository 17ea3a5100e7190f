//! Serving HTTP on any [`Network`]: accept connections, speak HTTP/1.1 or HTTP/2 (detected from the
//! connection preface, so h2c with prior knowledge works), call a handler per request.
//! Used by the proxy's listeners and by anything else that serves on the boundary (the simulator's
//! app models), so connection handling is written once.

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
use crate::net::{NetExecutor, Network};

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
    serve(net, listener, Security::Plain, None, handler, on_event).await
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
pub async fn serve_inbound<N, F, Fut>(
    net: N,
    listener: N::Listener,
    tls: Option<crate::tls::MeshTls>,
    admit: Admit,
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
    serve(net, listener, security, Some(admit), handler, on_event).await
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

/// Serve connection `$conn` to its end or, when `$drain` (a mode watch, if any) changes first,
/// finish what is in flight and close. A macro: hyper-util's connection future has bounds a
/// generic function would have to restate whole.
macro_rules! until_drained {
    ($conn:expr, $drain:expr) => {{
        let mut conn = std::pin::pin!($conn);
        match $drain {
            None => conn.await,
            Some(drain) => tokio::select! {
                r = conn.as_mut() => r,
                _ = drain.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            },
        }
    }};
}

async fn serve<N, F, Fut>(
    net: N,
    listener: N::Listener,
    security: Security,
    admit: Option<Admit>,
    handler: F,
    on_event: Arc<dyn Fn(ServeEvent) + Send + Sync>,
) where
    N: Network,
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    // After a failed accept, wait before the next: an exhausted file-descriptor table fails
    // every accept at once, and retrying at once spins a core without serving anyone. Errors
    // that concern one connection only (it was reset or aborted before we took it) retry at once.
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        match net.accept(&listener).await {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                let handler = handler.clone();
                let on_event = on_event.clone();
                let exec = NetExecutor(net.clone());
                let security = security.clone();
                let admit = admit.clone();
                net.spawn(async move {
                    let admitted =
                        |identity: Option<&str>| admit.as_ref().is_none_or(|a| a(peer, identity));
                    // Each request learns where it came from and, over mTLS, the peer's SPIFFE ID.
                    let service = |identity: Option<Arc<str>>| {
                        let handler = handler.clone();
                        hyper::service::service_fn(move |mut req: Request<Incoming>| {
                            req.extensions_mut().insert(PeerAddr(peer));
                            if let Some(id) = &identity {
                                req.extensions_mut().insert(PeerIdentity(id.clone()));
                            }
                            let handler = handler.clone();
                            async move { Ok::<_, Infallible>(handler(req).await) }
                        })
                    };
                    let mut builder = auto::Builder::new(exec);
                    // No `Date` of our own: a proxy passes the origin's through, and hyper would
                    // read it from the wall clock, which in simulation changes the bytes (HPACK
                    // encodes a new date differently) and so the packets from run to run.
                    builder
                        .http1()
                        .timer(TokioTimer::new())
                        .auto_date_header(false);
                    builder
                        .http2()
                        .timer(TokioTimer::new())
                        .auto_date_header(false);
                    // Under a mesh mode, the connection drains when the mode changes.
                    let mut drain = match &security {
                        Security::Mesh(tls) => Some(tls.mode_changes()),
                        _ => None,
                    };
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
                            if stream.read_exact(&mut first).await.is_err() {
                                on_event(ServeEvent::ConnectionError);
                                return;
                            }
                            // The mode as of the first byte, marked seen: only a later change
                            // drains this connection.
                            let mode = match drain.as_mut() {
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
                            if !admitted(None) {
                                return;
                            }
                            let conn =
                                builder.serve_connection(TokioIo::new(stream), service(None));
                            until_drained!(conn, drain.as_mut())
                        }
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(s) => {
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
                                let conn =
                                    builder.serve_connection(TokioIo::new(s), service(identity));
                                until_drained!(conn, drain.as_mut())
                            }
                            Err(e) => {
                                on_event(ServeEvent::TlsHandshakeError(
                                    crate::tls::TlsFailure::of(&e),
                                ));
                                return;
                            }
                        },
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
}

/// First wait after a failed accept; it doubles per failure in a row.
pub const ACCEPT_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(5);
/// Longest wait after failed accepts (what hyper's and tokio's examples use for EMFILE).
pub const ACCEPT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(1);
