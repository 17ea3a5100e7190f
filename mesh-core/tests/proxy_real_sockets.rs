//! The sidecar on real loopback sockets: routing by service name, HTTP version changes between
//! legs, hop-by-hop headers, and upstream failures mapped to 502/503/504 without harm to the proxy.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use mesh_core::error::ProxyError;
use mesh_core::hop::Direction;
use mesh_core::net::TokioNet;
use mesh_core::registry::Protocol;
use mesh_core::testkit::{self, TwoPods};

fn pods(base: u16, mesh_protocol: Protocol) -> TwoPods {
    TwoPods::loopback(base, mesh_protocol, Duration::from_millis(500))
}

async fn up(
    p: &TwoPods,
) -> (
    std::sync::Arc<mesh_core::proxy::ProxyStats>,
    std::sync::Arc<mesh_core::proxy::ProxyStats>,
) {
    let stats = testkit::start(TokioNet, TokioNet, p).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_to_h2_to_h1_with_hop_headers_stripped() {
    let p = pods(21_100, Protocol::Http2);
    let (client, server) = up(&p).await;
    let seen = testkit::call(
        TokioNet,
        p.client_outbound,
        Protocol::Http1,
        "echo",
        "/hello",
    )
    .await;
    assert_eq!(seen.status, StatusCode::OK);
    // The app speaks HTTP/1.1 even though the sidecars spoke HTTP/2 between them.
    assert_eq!(seen.body, "GET /hello HTTP/1.1 host=echo hop=false");
    assert!(
        !seen.resp_hop,
        "response hop-by-hop header must not be forwarded"
    );
    assert_eq!(
        client.snapshot().direction(Direction::Outbound).responses[2],
        1
    );
    assert_eq!(
        server.snapshot().direction(Direction::Inbound).responses[2],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_client_through_h1_mesh() {
    let p = pods(21_110, Protocol::Http1);
    up(&p).await;
    let seen = testkit::call(
        TokioNet,
        p.client_outbound,
        Protocol::Http2,
        "echo.default.svc.cluster.local:80",
        "/x?y=1",
    )
    .await;
    assert_eq!(seen.status, StatusCode::OK);
    assert!(
        seen.body
            .starts_with("GET /x HTTP/1.1 host=echo.default.svc.cluster.local:80"),
        "{}",
        seen.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_service_is_503_no_endpoints() {
    let p = pods(21_120, Protocol::Http2);
    let (client, _) = up(&p).await;
    let seen = testkit::call(TokioNet, p.client_outbound, Protocol::Http1, "nope", "/").await;
    assert_eq!(seen.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.mesh_error.as_deref(), Some("no_endpoints"));
    assert_eq!(
        client
            .snapshot()
            .direction(Direction::Outbound)
            .error(ProxyError::NoEndpoints),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_is_504_and_dead_app_is_503() {
    let p = pods(21_130, Protocol::Http2);
    let (client, _) = up(&p).await;
    let seen = testkit::call(
        TokioNet,
        p.client_outbound,
        Protocol::Http1,
        "echo",
        "/slow",
    )
    .await;
    assert_eq!(seen.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(seen.mesh_error.as_deref(), Some("upstream_timeout"));
    assert_eq!(
        client
            .snapshot()
            .direction(Direction::Outbound)
            .error(ProxyError::UpstreamTimeout),
        1
    );

    // The app is down: the server sidecar cannot reach it and says so with a 503.
    let dead = TwoPods {
        start_app: false,
        ..pods(21_140, Protocol::Http2)
    };
    let (_, server) = up(&dead).await;
    let seen = testkit::call(TokioNet, dead.client_outbound, Protocol::Http1, "echo", "/").await;
    assert_eq!(seen.status, StatusCode::SERVICE_UNAVAILABLE, "{seen:?}");
    assert_eq!(seen.mesh_error.as_deref(), Some("connect_failed"));
    assert_eq!(
        server
            .snapshot()
            .direction(Direction::Inbound)
            .error(ProxyError::ConnectFailed),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connect_is_503_connect_failed() {
    // The registry points at a port nobody listens on: connects are refused.
    let p = TwoPods {
        endpoint: SocketAddr::from(([127, 0, 0, 1], 21_159)),
        ..pods(21_150, Protocol::Http2)
    };
    let (client, _) = up(&p).await;
    let seen = testkit::call(TokioNet, p.client_outbound, Protocol::Http1, "echo", "/").await;
    assert_eq!(seen.status, StatusCode::SERVICE_UNAVAILABLE, "{seen:?}");
    assert_eq!(seen.mesh_error.as_deref(), Some("connect_failed"));
    assert_eq!(
        client
            .snapshot()
            .direction(Direction::Outbound)
            .error(ProxyError::ConnectFailed),
        1
    );
    // Still alive afterwards.
    let again = testkit::call(TokioNet, p.client_outbound, Protocol::Http1, "nope", "/").await;
    assert_eq!(again.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_gets_400_and_the_proxy_survives() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let p = pods(21_160, Protocol::Http2);
    let (client, _) = up(&p).await;
    let mut s = tokio::net::TcpStream::connect(p.client_outbound)
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost echo\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        client
            .snapshot()
            .direction(Direction::Outbound)
            .downstream_errors,
        1
    );
    let seen = testkit::call(
        TokioNet,
        p.client_outbound,
        Protocol::Http1,
        "echo",
        "/after",
    )
    .await;
    assert_eq!(seen.status, StatusCode::OK);
}

/// Raw bytes to `addr`, and what came back before the connection closed (2 s at most).
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_naming_no_service_is_400_no_route() {
    let p = pods(21_170, Protocol::Http2);
    let (client, _) = up(&p).await;
    // HTTP/1.0 may omit Host; with no authority there is no service to route to.
    let text = raw(p.client_outbound, b"GET /x HTTP/1.0\r\n\r\n").await;
    assert!(text.starts_with("HTTP/1.0 400"), "{text}");
    assert!(text.contains("x-mesh-error: no_route"), "{text}");
    assert_eq!(
        client
            .snapshot()
            .direction(Direction::Outbound)
            .error(ProxyError::NoRoute),
        1
    );
    assert_eq!(
        client.snapshot().direction(Direction::Outbound).responses[4],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_closes_without_answering_is_502_upstream_reset() {
    use tokio::io::AsyncReadExt;
    let p = TwoPods {
        start_app: false,
        ..pods(21_180, Protocol::Http2)
    };
    // The app reads the request and closes the connection without a response.
    let app = tokio::net::TcpListener::bind(p.app).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = app.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            drop(s);
        }
    });
    let (_, server) = up(&p).await;
    let seen = testkit::call(TokioNet, p.client_outbound, Protocol::Http1, "echo", "/").await;
    assert_eq!(seen.status, StatusCode::BAD_GATEWAY, "{seen:?}");
    assert_eq!(seen.mesh_error.as_deref(), Some("upstream_reset"));
    assert_eq!(
        server
            .snapshot()
            .direction(Direction::Inbound)
            .error(ProxyError::UpstreamReset),
        1
    );
}
