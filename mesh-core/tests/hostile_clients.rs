//! A client that breaks its own request (malformed chunked framing, a reset mid-body) is the
//! failure's cause: the sidecar counts it as `downstream_reset` (400 where an answer can still
//! be sent), never as the upstream's `upstream_reset`, and the endpoint is not marked failed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use mesh_core::error::ProxyError;
use mesh_core::hop::Direction;
use mesh_core::net::{Network, TokioNet};
use mesh_core::registry::Protocol;
use mesh_core::testkit::{self, TwoPods};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An app that reads the whole body before it answers, as most do.
async fn reads_body(req: Request<Incoming>) -> Response<mesh_core::body::Body> {
    let n = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().len(),
        Err(_) => 0,
    };
    Response::new(mesh_core::body::full(format!("{n} bytes")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_breaks_its_body_is_charged_for_it() {
    let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], 21_870 + p));
    let pods = TwoPods {
        start_app: false,
        ..TwoPods::loopback(21_870, Protocol::Http1, Duration::from_secs(2))
    };
    let app = TokioNet.bind(a(4)).await.unwrap();
    tokio::spawn(mesh_core::server::serve_http(
        TokioNet,
        app,
        reads_body,
        Arc::new(|_| {}),
    ));
    let (client, _) = testkit::start(TokioNet, TokioNet, &pods).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let broken: [&[u8]; 2] = [
        // A chunk size that is not hex.
        b"POST / HTTP/1.1\r\nhost: echo\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        // Promises 100 bytes, sends 5 and goes away.
        b"POST / HTTP/1.1\r\nhost: echo\r\ncontent-length: 100\r\n\r\nhello",
    ];
    for req in broken {
        let mut s = tokio::net::TcpStream::connect(a(0)).await.unwrap();
        s.write_all(req).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The second client resets mid-body; the first is left to read what it gets.
        let mut buf = [0u8; 256];
        let _ = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
        drop(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = client.snapshot();
    let out = c.direction(Direction::Outbound);
    assert_eq!(out.error(ProxyError::UpstreamReset), 0, "{out:?}");
    assert_eq!(out.error(ProxyError::DownstreamReset), 2, "{out:?}");
    // A whole request still goes through.
    let ok = testkit::call(TokioNet, a(0), Protocol::Http1, "echo", "/").await;
    assert_eq!(ok.status, http::StatusCode::OK, "{ok:?}");
}
