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

/// Wait (up to 3 s) until `dir` has counted `n` downstream resets, then a little more, so a
/// count past `n` would show.
async fn settle(stats: &mesh_core::proxy::ProxyStats, dir: Direction, n: u64) {
    for _ in 0..300 {
        if stats
            .snapshot()
            .direction(dir)
            .error(ProxyError::DownstreamReset)
            >= n
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
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
    let (client, server) = testkit::start(TokioNet, TokioNet, &pods).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let broken: [&[u8]; 2] = [
        // A chunk size that is not hex.
        b"POST / HTTP/1.1\r\nhost: echo\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        // Promises 100 bytes, sends 5 and goes away.
        b"POST / HTTP/1.1\r\nhost: echo\r\ncontent-length: 100\r\n\r\nhello",
    ];
    // Both legs: the app's outbound calls (the client sidecar forwards to a healthy peer) and
    // a caller straight at the server sidecar's inbound port (it forwards to a healthy app).
    for (port, stats, dir) in [
        (a(0), &client, Direction::Outbound),
        (a(2), &server, Direction::Inbound),
    ] {
        // The server's inbound leg also sees the outbound phase's broken bodies, cut off by
        // the client sidecar: it counts them too, as its own downstream's failure (2 of them,
        // once they have arrived).
        let arriving = match dir {
            Direction::Outbound => 0,
            Direction::Inbound => 2,
        };
        settle(stats, dir, arriving).await;
        let before = stats
            .snapshot()
            .direction(dir)
            .error(ProxyError::DownstreamReset);
        for req in broken {
            let mut s = tokio::net::TcpStream::connect(port).await.unwrap();
            s.write_all(req).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            // The second client resets mid-body; the first is left to read what it gets.
            let mut buf = [0u8; 256];
            let _ = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
            drop(s);
        }
        settle(stats, dir, before + 2).await;
        let c = stats.snapshot();
        let d = c.direction(dir);
        assert_eq!(d.error(ProxyError::UpstreamReset), 0, "{dir:?} {d:?}");
        assert_eq!(
            d.error(ProxyError::DownstreamReset) - before,
            2,
            "{dir:?} {d:?}"
        );
    }
    // A whole request still goes through.
    let ok = testkit::call(TokioNet, a(0), Protocol::Http1, "echo", "/").await;
    assert_eq!(ok.status, http::StatusCode::OK, "{ok:?}");
}

/// `OPTIONS *` and `CONNECT host:port` name no resource a sidecar can forward: each is answered
/// 400 `bad_target` by the sidecar itself, on both legs, and no destination is charged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_is_not_a_path_is_refused_by_the_sidecar() {
    let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], 21_880 + p));
    let pods = TwoPods::loopback(21_880, Protocol::Http1, Duration::from_secs(2));
    let (client, server) = testkit::start(TokioNet, TokioNet, &pods).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let requests: [&[u8]; 2] = [
        b"OPTIONS * HTTP/1.1\r\nhost: echo\r\n\r\n",
        b"CONNECT echo:80 HTTP/1.1\r\nhost: echo:80\r\n\r\n",
    ];
    for (port, stats, dir) in [
        (a(0), &client, Direction::Outbound),
        (a(2), &server, Direction::Inbound),
    ] {
        for req in requests {
            let mut s = tokio::net::TcpStream::connect(port).await.unwrap();
            s.write_all(req).await.unwrap();
            let mut buf = vec![0u8; 1024];
            let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
            assert!(head.starts_with("http/1.1 400"), "{dir:?}: {head}");
            assert!(head.contains("x-mesh-error: bad_target"), "{dir:?}: {head}");
        }
        let c = stats.snapshot();
        let d = c.direction(dir);
        assert_eq!(d.error(ProxyError::BadTarget), 2, "{dir:?} {d:?}");
        let others: u64 = ProxyError::ALL
            .into_iter()
            .filter(|e| *e != ProxyError::BadTarget)
            .map(|e| d.error(e))
            .sum();
        assert_eq!(others, 0, "{dir:?} {d:?}");
    }
}

/// Over TLS the protocol ALPN settled is the only one served: a client that agreed on `h2`
/// and then writes an HTTP/1.1 request gets no HTTP/1.1 answer (it used to be sniffed and
/// served); one that agreed on `http/1.1` is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_only_the_protocol_alpn_agreed_is_served() {
    use mesh_core::identity::SpiffeId;
    use mesh_core::limits::Limits;
    use mesh_core::server::serve_inbound;
    use mesh_core::tls::{CertAuthority, MeshTls, Validity};
    let ca = CertAuthority::new("cluster.local").unwrap();
    let id = SpiffeId::workload("cluster.local", "default", "echo").unwrap();
    let cert = ca.issue_svid(&id, Validity::ALWAYS).unwrap();
    let tls = MeshTls::from_pem(ca.ca_pem(), &cert.cert_pem, &cert.key_pem).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], 21_890));
    let listener = TokioNet.bind(addr).await.unwrap();
    tokio::spawn(serve_inbound(
        TokioNet,
        listener,
        Some(tls.clone()),
        Arc::new(|_, _| true),
        Limits::default(),
        None,
        testkit::echo,
        Arc::new(|_| {}),
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let answer = |alpn: &'static [u8]| {
        let mut config = (*tls.client()).clone();
        config.alpn_protocols = vec![alpn.to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut s = connector
                .connect(mesh_core::tls::server_name(), tcp)
                .await
                .expect("handshake");
            assert_eq!(s.get_ref().1.alpn_protocol(), Some(alpn));
            s.write_all(b"GET / HTTP/1.1\r\nhost: echo\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut got = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut got)).await;
            String::from_utf8_lossy(&got).into_owned()
        }
    };
    let h1 = answer(b"http/1.1").await;
    assert!(h1.starts_with("HTTP/1.1 200"), "{h1}");
    let h2 = answer(b"h2").await;
    assert!(
        !h2.contains("HTTP/1.1"),
        "served HTTP/1.1 after agreeing on h2: {h2}"
    );
}
