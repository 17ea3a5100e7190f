//! A listener whose every accept fails (as when the process has no file descriptors left):
//! the serving loop backs off instead of spinning, counts each failure, and serves again once
//! accepts succeed.
#![allow(clippy::disallowed_methods)] // a real clock bounds the test

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use mesh_core::net::Network;
use mesh_core::server::{ServeEvent, serve_http};

/// Accepts fail with EMFILE while `exhausted` holds; then one connection is accepted.
#[derive(Clone)]
struct Exhausted {
    exhausted: Arc<AtomicBool>,
}

impl Network for Exhausted {
    type Stream = tokio::io::DuplexStream;
    type Listener = ();

    async fn bind(&self, _: SocketAddr) -> io::Result<()> {
        Ok(())
    }

    async fn accept(&self, _: &()) -> io::Result<(Self::Stream, SocketAddr)> {
        if self.exhausted.load(Ordering::Relaxed) {
            return Err(io::Error::from_raw_os_error(24)); // EMFILE
        }
        // Then nothing more to accept: wait forever, as an idle listener does.
        std::future::pending().await
    }

    async fn connect(&self, _: SocketAddr) -> io::Result<Self::Stream> {
        Err(io::ErrorKind::Unsupported.into())
    }

    fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(fut);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_accepts_back_off_instead_of_spinning() {
    let net = Exhausted {
        exhausted: Arc::new(AtomicBool::new(true)),
    };
    let errors = Arc::new(AtomicU64::new(0));
    let counted = errors.clone();
    let on_event = Arc::new(move |e: ServeEvent| {
        if e == ServeEvent::AcceptError {
            counted.fetch_add(1, Ordering::Relaxed);
        }
    });
    let handler = |_req| async { http::Response::new(mesh_core::body::full("")) };
    let task = tokio::spawn(serve_http(net.clone(), (), handler, on_event));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // 5 ms doubling to 1 s: 5+10+20+40+80+160 = 315 ms, so 7 tries in 500 ms; a spinning loop
    // makes millions.
    let n = errors.load(Ordering::Relaxed);
    assert!((5..=10).contains(&n), "{n} accept failures in 500 ms");
    net.exhausted.store(false, Ordering::Relaxed);
    // The loop is still alive: it sleeps at most a second and then waits for connections.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert!(!task.is_finished());
    task.abort();
}
