//! Serving HTTP on any [`Network`]: accept connections, speak HTTP/1.1 or HTTP/2 (detected from the
//! connection preface, so h2c with prior knowledge works), call a handler per request.
//! Used by the proxy's listeners and by anything else that serves on the boundary (the simulator's
//! app models), so connection handling is written once.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

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
    serve(net, listener, None, handler, on_event).await
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
    serve(net, listener, Some(acceptor), handler, on_event).await
}

async fn serve<N, F, Fut>(
    net: N,
    listener: N::Listener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handler: F,
    on_event: Arc<dyn Fn(ServeEvent) + Send + Sync>,
) where
    N: Network,
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        match net.accept(&listener).await {
            Ok((stream, peer)) => {
                let handler = handler.clone();
                let on_event = on_event.clone();
                let exec = NetExecutor(net.clone());
                let tls = tls.clone();
                net.spawn(async move {
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
                    let served = match tls {
                        None => {
                            builder
                                .serve_connection(TokioIo::new(stream), service(None))
                                .await
                        }
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(s) => {
                                let identity = s
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|c| c.first())
                                    .and_then(crate::tls::spiffe_id)
                                    .map(Arc::from);
                                builder
                                    .serve_connection(TokioIo::new(s), service(identity))
                                    .await
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
            Err(_) => on_event(ServeEvent::AcceptError),
        }
    }
}
