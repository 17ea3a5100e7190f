//! Clients choose the `Host` header, so it must not choose what the proxy keeps: counters and
//! metric series are per configured service (as Envoy's are per cluster). Hundreds of made-up
//! names, and one carrying credentials, all land under `unknown`, and none reaches `/metrics`.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use mesh_core::net::TokioNet;
use mesh_core::proxy::UNKNOWN_SERVICE;
use mesh_core::registry::Protocol;
use mesh_core::testkit::{self, TwoPods};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_hosts_create_no_series() {
    let base = 21_720;
    let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], base + p));
    let pods = TwoPods::loopback(base, Protocol::Http1, Duration::from_millis(500));
    let (client, _) = testkit::start(TokioNet, TokioNet, &pods).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ok = testkit::call(TokioNet, a(0), Protocol::Http1, "echo", "/").await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    let mut names: Vec<String> = (0..300).map(|i| format!("made-up-{i}")).collect();
    names.push("user:secret@echo".into());
    for name in &names {
        let seen = testkit::call(TokioNet, a(0), Protocol::Http1, name, "/").await;
        assert_ne!(seen.status, StatusCode::OK, "{name}: {seen:?}");
    }
    let c = client.snapshot();
    let keys: Vec<&String> = c.services.keys().collect();
    assert_eq!(keys, ["echo", UNKNOWN_SERVICE], "{keys:?}");
    let text =
        mesh_core::telemetry::metrics::exposition(&Default::default(), &c, &Default::default());
    assert!(
        !text.contains("made-up") && !text.contains("secret"),
        "{text}"
    );
}

/// One request, one destination: two `Host` headers are refused (400 `bad_authority`), and in
/// absolute form the URI's authority wins over `Host` (RFC 9112 §3.2.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_names_one_destination() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let base = 21_850;
    let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], base + p));
    let pods = TwoPods::loopback(base, Protocol::Http1, Duration::from_millis(500));
    testkit::start(TokioNet, TokioNet, &pods).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let raw = |req: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(a(0)).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
        String::from_utf8_lossy(&buf).into_owned()
    };
    let two = raw("GET / HTTP/1.1\r\nhost: echo\r\nhost: other\r\nconnection: close\r\n\r\n").await;
    assert!(two.starts_with("HTTP/1.1 400"), "{two}");
    assert!(two.contains("x-mesh-error: bad_authority"), "{two}");
    let uri_wins =
        raw("GET http://echo/x HTTP/1.1\r\nhost: made-up\r\nconnection: close\r\n\r\n").await;
    assert!(uri_wins.starts_with("HTTP/1.1 200"), "{uri_wins}");
    let not_host =
        raw("GET http://made-up/x HTTP/1.1\r\nhost: echo\r\nconnection: close\r\n\r\n").await;
    assert!(!not_host.starts_with("HTTP/1.1 200"), "{not_host}");
}
