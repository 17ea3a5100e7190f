//! The listener and proxy limits ([`mesh_core::limits`]) on loopback, as a hostile or careless
//! client meets them: silent, half-open and slow connections are closed at the first-request
//! deadline; idle ones at the idle timeout; one past the connection limit at accept; oversized
//! header blocks get 431; requests past the in-flight limit get a fast 503 `overloaded`, and
//! the proxy serves normally once the flood ends. Each closure is counted by reason.
//!
//! Short limits keep the test quick; the defaults are checked in the module's unit tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use http::StatusCode;
use mesh_core::hop::Direction;
use mesh_core::limits::{CloseReason, Limits};
use mesh_core::net::{Network, TokioNet};
use mesh_core::proxy::ProxyStats;
use mesh_core::registry::Protocol;
use mesh_core::testkit::{self, TwoPods};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn pods(base: u16, request_timeout: Duration) -> (TwoPods, impl Fn(u16) -> SocketAddr) {
    let a = move |p: u16| SocketAddr::from(([127, 0, 0, 1], base + p));
    (TwoPods::loopback(base, Protocol::Http1, request_timeout), a)
}

/// Connections the client sidecar's outbound listener closed for `why`.
fn closed(stats: &ProxyStats, why: CloseReason) -> u64 {
    let c = stats.snapshot();
    let d = c.direction(Direction::Outbound);
    d.connections_closed.get(&why).copied().unwrap_or(0)
}

/// How long until the peer closes `s` (EOF or reset), reading and discarding what it sends;
/// `None` if it is still open after `limit`.
async fn closes_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
    .map(|_| t0.elapsed())
}

async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_half_open_and_slow_connections_close_at_the_first_request_deadline() {
    let (pods, a) = pods(21_780, Duration::from_secs(1));
    let limits = Limits {
        first_request_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (client, _) = testkit::start_within(TokioNet, TokioNet, &pods, limits).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let openings: [&[u8]; 3] = [
        b"",                                      // connects and says nothing
        b"PRI * HTTP/2.0\r\n",                    // part of the HTTP/2 preface
        b"GET / HTTP/1.1\r\nhost: echo\r\nx-a: ", // slowloris: a header never finished
    ];
    for opening in openings {
        let mut s = TcpStream::connect(a(0)).await.unwrap();
        s.write_all(opening).await.unwrap();
        let took = closes_within(&mut s, Duration::from_secs(3))
            .await
            .unwrap_or_else(|| panic!("{opening:?} still open after 3 s"));
        assert!(took >= Duration::from_millis(250), "{opening:?}: {took:?}");
    }
    assert_eq!(closed(&client, CloseReason::HeaderTimeout), 3);
    // The listener still serves.
    let ok = testkit::call(TokioNet, a(0), Protocol::Http1, "echo", "/").await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_at_the_idle_timeout_on_both_protocols() {
    let (pods, a) = pods(21_790, Duration::from_secs(1));
    let limits = Limits {
        idle_timeout: Duration::from_millis(400),
        ..Limits::default()
    };
    let (client, _) = testkit::start_within(TokioNet, TokioNet, &pods, limits).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // HTTP/1.1 keep-alive: one request, then nothing.
    let mut s = TcpStream::connect(a(0)).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: echo\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let took = closes_within(&mut s, Duration::from_secs(3))
        .await
        .expect("an idle HTTP/1.1 connection is closed");
    assert!(took >= Duration::from_millis(350), "{took:?}");
    // HTTP/2: one stream, then an idle connection that the server ends with GOAWAY.
    let tcp = TcpStream::connect(a(0)).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(format!("http://{}/", a(0)))
        .header("host", "echo")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    drop(resp);
    let ended = tokio::time::timeout(Duration::from_secs(3), conn).await;
    assert!(ended.is_ok(), "an idle HTTP/2 connection is closed");
    assert_eq!(closed(&client, CloseReason::IdleTimeout), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_past_the_limit_is_closed_at_accept_and_the_slot_comes_back() {
    let (pods, a) = pods(21_800, Duration::from_secs(1));
    let limits = Limits {
        max_connections: 4,
        ..Limits::default()
    };
    let (client, _) = testkit::start_within(TokioNet, TokioNet, &pods, limits).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(a(0)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = TcpStream::connect(a(0)).await.unwrap();
    let took = closes_within(&mut extra, Duration::from_secs(2))
        .await
        .expect("the fifth connection is closed");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(closed(&client, CloseReason::Overflow), 1);
    // Closing the held connections frees their slots.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ok = testkit::call(TokioNet, a(0), Protocol::Http1, "echo", "/").await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    assert_eq!(closed(&client, CloseReason::Overflow), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_too_many_request_headers_get_431() {
    let (pods, a) = pods(21_810, Duration::from_secs(1));
    testkit::start(TokioNet, TokioNet, &pods).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let big = "x".repeat(61 * 1024);
    let r = raw(
        a(0),
        format!("GET / HTTP/1.1\r\nhost: echo\r\nx-big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 431"), "{}", &r[..r.len().min(80)]);
    let many: String = (0..101).map(|i| format!("x-h{i}: v\r\n")).collect();
    let r = raw(
        a(0),
        format!("GET / HTTP/1.1\r\nhost: echo\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 431"), "{}", &r[..r.len().min(80)]);
    // Within the limits, the same shapes pass (the next hop adds its own headers, hence 90).
    let fine = "x".repeat(50 * 1024);
    let some: String = (0..90).map(|i| format!("x-h{i}: v\r\n")).collect();
    let r = raw(
        a(0),
        format!(
            "GET / HTTP/1.1\r\nhost: echo\r\nconnection: close\r\nx-fine: {fine}\r\n{some}\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{}", &r[..r.len().min(80)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_in_flight_limit_the_answer_is_a_fast_503_and_service_recovers() {
    // Requests to /slow wait 5 s at the app; the sidecars give up after 500 ms.
    let (pods, a) = pods(21_820, Duration::from_millis(500));
    let limits = Limits {
        max_requests_in_flight: 2,
        ..Limits::default()
    };
    let (client, _) = testkit::start_within(TokioNet, TokioNet, &pods, limits).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let slow: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(testkit::call(
                TokioNet,
                a(0),
                Protocol::Http1,
                "echo",
                "/slow",
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let t0 = Instant::now();
    let shed = testkit::call(TokioNet, a(0), Protocol::Http1, "echo", "/").await;
    let took = t0.elapsed();
    assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE, "{shed:?}");
    assert_eq!(shed.mesh_error.as_deref(), Some("overloaded"));
    assert!(took < Duration::from_millis(200), "{took:?}");
    for s in slow {
        assert_eq!(s.await.unwrap().status, StatusCode::GATEWAY_TIMEOUT);
    }
    // The flood is over: the next request is served.
    let ok = testkit::call(TokioNet, a(0), Protocol::Http1, "echo", "/").await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    let c = client.snapshot();
    assert_eq!(
        c.direction(Direction::Outbound)
            .error(mesh_core::error::ProxyError::Overloaded),
        1,
        "{c:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_is_closed_and_counted() {
    use mesh_core::identity::SpiffeId;
    use mesh_core::server::{ServeEvent, serve_inbound};
    use mesh_core::tls::{CertAuthority, MeshTls, Validity};
    let ca = CertAuthority::new("cluster.local").unwrap();
    let id = SpiffeId::workload("cluster.local", "default", "echo").unwrap();
    let cert = ca.issue_svid(&id, Validity::ALWAYS).unwrap();
    let tls = MeshTls::from_pem(ca.ca_pem(), &cert.cert_pem, &cert.key_pem).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], 21_830));
    let listener = TokioNet.bind(addr).await.unwrap();
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let limits = Limits {
        first_request_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    tokio::spawn(serve_inbound(
        TokioNet,
        listener,
        Some(tls),
        Arc::new(|_, _| true),
        limits,
        None,
        testkit::echo,
        Arc::new(move |e| seen.lock().unwrap().push(e)),
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A TLS record header announcing a ClientHello that never comes.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await.unwrap();
    closes_within(&mut s, Duration::from_secs(3))
        .await
        .expect("a stalled handshake is closed");
    assert_eq!(
        *events.lock().unwrap(),
        [ServeEvent::Closed(CloseReason::HandshakeTimeout)]
    );
}

/// Start `pods` under a 300 ms stream-idle timeout and send `request` straight to the server
/// sidecar's inbound port (`inbound`): one sidecar between the caller and the stalled app, so
/// only its watchdog can cut the connection. The connection must be closed within 1.5 s and
/// counted once as `stream_idle_timeout`; returns the server sidecar's counters.
async fn cut_at_stream_idle(
    pods: &TwoPods,
    inbound: SocketAddr,
    request: &[u8],
) -> mesh_core::proxy::Counters {
    let limits = Limits {
        stream_idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (_, server) = testkit::start_within(TokioNet, TokioNet, pods, limits).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut s = TcpStream::connect(inbound).await.unwrap();
    s.write_all(request).await.unwrap();
    let took = closes_within(&mut s, Duration::from_secs(3))
        .await
        .expect("a stalled connection is closed");
    assert!(took < Duration::from_millis(1_500), "{took:?}");
    let c = server.snapshot();
    let cut = c
        .direction(Direction::Inbound)
        .connections_closed
        .get(&CloseReason::StreamIdleTimeout)
        .copied();
    assert_eq!(cut, Some(1), "{c:?}");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_nothing_moving_is_cut_at_the_stream_idle_timeout() {
    // The app holds /slow for 5 s; the sidecars would wait 10 s; nothing moves after the
    // request, so the stream-idle timeout (300 ms here, 5 min by default) ends it.
    let (pods, a) = pods(21_900, Duration::from_secs(10));
    let c = cut_at_stream_idle(&pods, a(2), b"GET /slow HTTP/1.1\r\nhost: echo\r\n\r\n").await;
    assert_eq!(c.direction(Direction::Inbound).requests, 1, "{c:?}");
    // A request that is answered in time is untouched.
    let ok = testkit::call(TokioNet, a(0), Protocol::Http1, "echo", "/").await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_that_stalls_after_its_head_is_cut_at_the_stream_idle_timeout() {
    // An app that promises 100 bytes, sends 5 and stalls: the response head has gone out, but
    // the response is still in flight, so the stream-idle timeout (300 ms here) applies, not
    // the hour-long idle timeout.
    let (pods, a) = pods(21_910, Duration::from_secs(10));
    let pods = TwoPods {
        start_app: false,
        ..pods
    };
    let app = tokio::net::TcpListener::bind(a(4)).await.unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = app.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhello")
                    .await;
                tokio::time::sleep(Duration::from_secs(10)).await;
            });
        }
    });
    cut_at_stream_idle(&pods, a(2), b"GET / HTTP/1.1\r\nhost: echo\r\n\r\n").await;
}
