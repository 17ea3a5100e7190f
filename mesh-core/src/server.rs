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

/// Something that went wrong serving, reported to the caller's counter; never fatal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServeEvent {
    /// `accept` failed (the listener keeps going).
    AcceptError,
    /// A connection ended with a protocol or IO error (malformed request, reset).
    ConnectionError,
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
    loop {
        match net.accept(&listener).await {
            Ok((stream, _peer)) => {
                let handler = handler.clone();
                let on_event = on_event.clone();
                let exec = NetExecutor(net.clone());
                net.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let handler = handler.clone();
                        async move { Ok::<_, Infallible>(handler(req).await) }
                    });
                    let mut builder = auto::Builder::new(exec);
                    builder.http1().timer(TokioTimer::new());
                    builder.http2().timer(TokioTimer::new());
                    if builder
                        .serve_connection(TokioIo::new(stream), svc)
                        .await
                        .is_err()
                    {
                        on_event(ServeEvent::ConnectionError);
                    }
                });
            }
            Err(_) => on_event(ServeEvent::AcceptError),
        }
    }
}
