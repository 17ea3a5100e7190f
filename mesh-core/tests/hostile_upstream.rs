//! An upstream answering with both `Content-Length` and `Transfer-Encoding: chunked` (a
//! smuggling shape): the chunked framing is the message's (RFC 9112 §6.3), so the client gets
//! the whole 65-byte body, not the 2 bytes the stale length would cut it to.

use std::net::SocketAddr;
use std::time::Duration;

use http::StatusCode;
use mesh_core::net::TokioNet;
use mesh_core::registry::Protocol;
use mesh_core::testkit::{self, TwoPods};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_answer_with_a_stale_length_arrives_whole() {
    let base = 21_740;
    let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], base + p));
    let body = "x".repeat(65);
    let app = tokio::net::TcpListener::bind(a(4)).await.unwrap();
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n41\r\n{body}\r\n0\r\n\r\n"
    );
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = app.accept().await else {
                return;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                // One request per connection: read its head, answer, close.
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    for (i, mesh_protocol) in [Protocol::Http1, Protocol::Http2].into_iter().enumerate() {
        let b = |p: u16| SocketAddr::from(([127, 0, 0, 1], base + 10 * (i as u16 + 1) + p));
        let pods = TwoPods {
            client_outbound: b(0),
            client_inbound: b(1),
            server_inbound: b(2),
            server_outbound: b(3),
            app: a(4),
            mesh_protocol,
            request_timeout: Duration::from_secs(2),
            endpoint: b(2),
            start_app: false,
        };
        testkit::start(TokioNet, TokioNet, &pods).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let seen = testkit::call(TokioNet, b(0), Protocol::Http1, "echo", "/").await;
        assert_eq!(seen.status, StatusCode::OK, "{mesh_protocol:?}: {seen:?}");
        assert_eq!(seen.body, body, "{mesh_protocol:?}");
    }
}
