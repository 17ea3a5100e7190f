//! The vendored h2 (`vendor/h2`, see `vendor/README.md`) measures how long it remembers a stream
//! it reset on tokio's clock, not the wall clock.
//!
//! Why it matters: when a per-try timeout cancels an HTTP/2 request, h2 sends RST_STREAM and
//! remembers the stream for `reset_stream_duration` (1 s) so that the server's late answer is
//! dropped quietly; once it has forgotten, the late answer draws a second RST_STREAM. Upstream h2
//! timed that second with `std::time::Instant`, so in a simulation the number of packets depended
//! on how fast the host ran (metastable-budget.toml's packet count differed between processes on
//! a loaded machine). With tokio's clock it follows simulated time, and on real sockets it is
//! the system clock as before.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const RST_STREAM: u8 = 0x3;
const CANCEL: u32 = 0x8;

/// One frame from `io`: (type, flags, stream id, payload).
async fn frame(io: &mut DuplexStream) -> (u8, u8, u32, Vec<u8>) {
    let mut head = [0u8; 9];
    io.read_exact(&mut head).await.unwrap();
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0; len];
    io.read_exact(&mut payload).await.unwrap();
    (head[3], head[4], stream, payload)
}

/// The server's late answer to stream 1: HEADERS `:status 200` (HPACK index 8), end of stream.
async fn late_answer(io: &mut DuplexStream) {
    io.write_all(&[0, 0, 1, 0x1, 0x5, 0, 0, 0, 1, 0x88])
        .await
        .unwrap();
}

/// Whatever the client writes within 100 ms of tokio time, if anything.
async fn client_says(io: &mut DuplexStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    tokio::time::timeout(Duration::from_millis(100), frame(io))
        .await
        .ok()
}

#[tokio::test(start_paused = true)]
async fn a_reset_stream_is_remembered_for_tokio_time_not_wall_clock_time() {
    let (client_io, mut server) = tokio::io::duplex(1 << 16);
    let (client, conn) = h2::client::Builder::new()
        .reset_stream_duration(Duration::from_secs(1))
        .handshake::<_, bytes::Bytes>(client_io)
        .await
        .unwrap();
    tokio::spawn(conn);

    // The server's side of the handshake: the preface, then settings both ways.
    let mut preface = [0u8; 24];
    server.read_exact(&mut preface).await.unwrap();
    assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    server
        .write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0, 0, 0, 0, 0x4, 0x1, 0, 0, 0, 0])
        .await
        .unwrap();

    // A request, then the caller gives up on it (what a per-try timeout does).
    let mut client = client.ready().await.unwrap();
    let req = http::Request::get("http://svc/").body(()).unwrap();
    let (response, _) = client.send_request(req, true).unwrap();
    loop {
        let (kind, _, stream, _) = frame(&mut server).await;
        if kind == 0x1 && stream == 1 {
            break; // the request's HEADERS (the client's SETTINGS and its ACK may come first)
        }
    }
    drop(response);
    let (kind, _, stream, payload) = frame(&mut server).await;
    assert_eq!((kind, stream), (RST_STREAM, 1));
    assert_eq!(u32::from_be_bytes(payload[..4].try_into().unwrap()), CANCEL);

    // More than the reset memory passes on the wall clock, none on tokio's: the late answer is
    // still dropped quietly. (Upstream h2 answered it with RST_STREAM STREAM_CLOSED here.)
    std::thread::sleep(Duration::from_millis(1200));
    late_answer(&mut server).await;
    assert_eq!(
        client_says(&mut server).await,
        None,
        "the client forgot the reset stream on the wall clock"
    );

    // Once the memory has run out on tokio's clock, a late answer does draw a reply: the check
    // above could see one.
    tokio::time::advance(Duration::from_millis(1100)).await;
    late_answer(&mut server).await;
    let reply = client_says(&mut server).await;
    assert!(
        reply.is_some(),
        "after 1 s of tokio time the client still ignored the stream"
    );
}
