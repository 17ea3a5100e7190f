//! The fast test server every configuration ends at: answers any request with 200 and a fixed
//! 128-byte body, over HTTP/1.1 or h2c (detected per connection), on its own thread and
//! current-thread runtime so it never competes with the load generator's runtime.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // a real server on its own OS thread

use std::net::SocketAddr;
use std::sync::Arc;

use http::Response;
use mesh_core::body::{self, Body};
use mesh_core::net::{Network, TokioNet};
use mesh_core::server::serve_http;

/// The body every answer carries.
pub const BODY: &[u8; 128] = &[b'x'; 128];

async fn answer(_req: http::Request<hyper::body::Incoming>) -> Response<Body> {
    Response::new(body::full(&BODY[..]))
}

/// Serve on `addr` until the process ends. Returns once the listener is bound.
pub fn spawn(addr: SocketAddr) -> std::io::Result<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("upstream".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                match TokioNet.bind(addr).await {
                    Ok(l) => {
                        let _ = tx.send(Ok(()));
                        serve_http(TokioNet, l, answer, Arc::new(|_| {})).await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })?;
    rx.recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("upstream thread died")))
}
