//! The load generator's coordinated-omission correction, on a real loopback server that stalls
//! once for 500 ms while 100 requests a second are due on one HTTP/1.1 connection.
//!
//! The requests due during the stall cannot be sent until it ends; measured from when they were
//! due, the j-th of them waited about 500 − 10·j ms. So about 40 answers are slower than 100 ms.
//! A generator that timed each request from its actual send (closed loop, "coordinated
//! omission") would see one slow answer and a flattering tail.
#![allow(clippy::disallowed_methods)] // a real-socket test on the wall clock

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bench::load::{LoadSpec, run};
use http::{Request, Response};
use hyper::body::Incoming;
use mesh_core::body::{self, Body};
use mesh_core::net::{Network, TokioNet};
use mesh_core::registry::Protocol;
use mesh_core::server::serve_http;

static SEEN: AtomicU32 = AtomicU32::new(0);

/// Answers at once, except the 100th request (1 s into the run), which takes 500 ms.
async fn stalls_once(_: Request<Incoming>) -> Response<Body> {
    if SEEN.fetch_add(1, Ordering::SeqCst) == 100 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Response::new(body::full("ok"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_is_charged_to_every_request_due_during_it() {
    let addr = SocketAddr::from(([127, 0, 0, 1], 21_960));
    let listener = TokioNet.bind(addr).await.unwrap();
    tokio::spawn(serve_http(
        TokioNet,
        listener,
        stalls_once,
        Arc::new(|_| {}),
    ));
    let spec = LoadSpec {
        target: addr,
        host: "echo".into(),
        path: "/".into(),
        protocol: Protocol::Http1,
        rate_rps: 100.0,
        connections: 1,
        duration: Duration::from_millis(2500),
        warmup: Duration::from_millis(500),
        max_requests: None,
        timeout: Duration::from_secs(5),
    };
    let r = tokio::task::spawn_blocking(move || run(&spec))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.ok, r.due, "{:?}", r.errors);
    let h = &r.histogram;
    let slow = h.count_between(100_000, u64::MAX);
    assert!(
        slow >= 35,
        "only {slow} answers over 100 ms: the stall was not charged to the requests due in it"
    );
    assert!(
        (480_000..1_000_000).contains(&h.max()),
        "max {} µs",
        h.max()
    );
    // Half-way through the stall about half the waiting requests had been due for 250 ms.
    let over_250 = h.count_between(250_000, u64::MAX);
    assert!(
        (20..=45).contains(&over_250),
        "{over_250} answers over 250 ms"
    );
}
