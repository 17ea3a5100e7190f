//! Mutual TLS between two sidecars on real loopback sockets: the request crosses with both sides
//! authenticated; a peer without a certificate from the mesh CA is refused at the handshake,
//! counted, and the proxy keeps serving.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use mesh_core::net::{Network, TokioNet};
use mesh_core::proxy::{Proxy, ProxyConfig, ProxyStats};
use mesh_core::registry::Protocol;
use mesh_core::server::serve_http;
use mesh_core::testkit;
use mesh_core::tls::{MeshTls, TestCa};

fn a(p: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], p))
}

/// Access-log lines of both sidecars.
type Lines = Arc<std::sync::Mutex<Vec<String>>>;

/// Client sidecar on base, server sidecar's inbound on base+2, app on base+4.
async fn mesh(
    base: u16,
    client_tls: MeshTls,
    server_tls: MeshTls,
    protocol: Protocol,
) -> (Arc<ProxyStats>, Arc<ProxyStats>, Lines) {
    let lines: Lines = Arc::default();
    let sink = {
        let lines = lines.clone();
        mesh_core::telemetry::access::AccessLog(Arc::new(move |r| {
            lines.lock().unwrap().push(r.to_json())
        }))
    };
    let app = TokioNet.bind(a(base + 4)).await.unwrap();
    tokio::spawn(serve_http(TokioNet, app, testkit::echo, Arc::new(|_| {})));
    let reg = testkit::one_service("echo", a(base + 2), protocol);
    let cfg = |out: u16, inb: u16, tls: MeshTls| ProxyConfig {
        admin_addr: None,
        telemetry: mesh_core::telemetry::TelemetryConfig {
            access_log: Some(sink.clone()),
            ..Default::default()
        },
        outbound_addr: a(out),
        inbound_addr: a(inb),
        app_addr: a(base + 4),
        app_protocol: Protocol::Http1,
        connect_timeout: Duration::from_secs(1),
        request_timeout: Some(Duration::from_secs(2)),
        seed: 1,
        inbound_rate_limit: None,
        inbound_route_limits: Vec::new(),
        stats_epoch: None,
        tls: Some(tls),
    };
    let client = Proxy::new(TokioNet, cfg(base, base + 1, client_tls), reg.clone(), None);
    let server = Proxy::new(TokioNet, cfg(base + 3, base + 2, server_tls), reg, None);
    let stats = (client.stats(), server.stats(), lines);
    tokio::spawn(async move { client.run().await });
    tokio::spawn(async move { server.run().await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_cross_mtls_on_both_protocols() {
    let ca = TestCa::new("cluster.local").unwrap();
    for (i, protocol) in [Protocol::Http1, Protocol::Http2].into_iter().enumerate() {
        let base = 21_400 + 10 * i as u16;
        let (client, server, lines) = mesh(
            base,
            ca.mesh_tls("client").unwrap(),
            ca.mesh_tls("echo").unwrap(),
            protocol,
        )
        .await;
        for _ in 0..3 {
            let seen = testkit::call(TokioNet, a(base), Protocol::Http1, "echo", "/tls").await;
            assert_eq!(seen.status, StatusCode::OK, "{seen:?}");
            assert!(
                seen.body.starts_with("GET /tls HTTP/1.1 host=echo"),
                "{}",
                seen.body
            );
        }
        assert_eq!(client.get("outbound.responses.2xx"), 3);
        assert_eq!(server.get("inbound.responses.2xx"), 3);
        assert_eq!(server.get("inbound.tls_handshake_errors"), 0);
        // The server's access log names the caller by the SPIFFE ID in its client certificate.
        let inbound: Vec<serde_json::Value> = lines
            .lock()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|r: &serde_json::Value| r["direction"] == "inbound")
            .collect();
        assert_eq!(inbound.len(), 3);
        for r in inbound {
            assert_eq!(
                r["source_identity"], "spiffe://cluster.local/ns/default/sa/client",
                "{r}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_outside_the_trust_domain_is_refused_and_counted() {
    let ca = TestCa::new("cluster.local").unwrap();
    let rogue = TestCa::new("cluster.local").unwrap();
    let base = 21_440;
    let (client, server, _) = mesh(
        base,
        rogue.mesh_tls("client").unwrap(),
        ca.mesh_tls("echo").unwrap(),
        Protocol::Http1,
    )
    .await;
    let seen = testkit::call(TokioNet, a(base), Protocol::Http1, "echo", "/").await;
    assert_eq!(seen.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.mesh_error.as_deref(), Some("connect_failed"));
    assert!(client.get("outbound.error.connect_failed") >= 1);
    // The caller gives up first (it distrusts the server's CA); the server counts its side of
    // the failed handshake when the alert reaches it.
    eventually(|| server.get("inbound.tls_handshake_errors") >= 1).await;

    // Plain HTTP to the mTLS port: refused at the handshake too, and the server keeps going.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(a(base + 2)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: echo\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut buf)).await;
    assert!(
        !buf.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    eventually(|| server.get("inbound.tls_handshake_errors") >= 2).await;
    assert_eq!(server.get("inbound.requests"), 0);
}

/// Wait up to 2 s for `cond`, failing the test if it never holds.
async fn eventually(cond: impl Fn() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition never held within 2 s");
}
