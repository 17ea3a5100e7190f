//! The IO boundary holds: the very code `mesh-core` tests on real loopback sockets
//! (`mesh_core::testkit`: client sidecar → server sidecar → app) serves requests in simulation,
//! across two simulated hosts, with the same results.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::StatusCode;
use mesh_core::hop::Direction;
use mesh_core::registry::Protocol;
use mesh_core::testkit::{self, TwoPods};
use sim::substrate::Harness;

fn pods(protocol: Protocol) -> TwoPods {
    let client: IpAddr = [10, 0, 0, 2].into();
    let server: IpAddr = [10, 0, 0, 3].into();
    TwoPods {
        client_outbound: SocketAddr::new([127, 0, 0, 1].into(), 15001),
        client_inbound: SocketAddr::new(client, 15006),
        server_inbound: SocketAddr::new(server, 15006),
        server_outbound: SocketAddr::new([127, 0, 0, 1].into(), 15001),
        app: SocketAddr::new([127, 0, 0, 1].into(), 8080),
        mesh_protocol: protocol,
        request_timeout: Duration::from_millis(500),
        endpoint: SocketAddr::new(server, 15006),
        start_app: true,
    }
}

fn world() -> Harness {
    let mut h = Harness::new();
    h.host("client", [10, 0, 0, 2].into())
        .host("server", [10, 0, 0, 3].into());
    h
}

#[test]
fn same_proxy_code_serves_in_simulation() {
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let p = pods(protocol);
        let seen = world()
            .run(1, Duration::from_secs(10), move |nets| async move {
                let (client, server) = (nets[0].clone(), nets[1].clone());
                let stats = testkit::start(client.clone(), server, &p).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
                let ok = testkit::call(
                    client.clone(),
                    p.client_outbound,
                    Protocol::Http1,
                    "echo",
                    "/hello",
                )
                .await;
                let slow = testkit::call(
                    client.clone(),
                    p.client_outbound,
                    Protocol::Http1,
                    "echo",
                    "/slow",
                )
                .await;
                let none =
                    testkit::call(client, p.client_outbound, Protocol::Http2, "nope", "/").await;
                (
                    ok,
                    slow,
                    none,
                    stats.0.snapshot().direction(Direction::Outbound).responses[5],
                )
            })
            .expect("finishes within the limit");
        let (ok, slow, none, fives) = seen;
        assert_eq!(ok.status, StatusCode::OK, "{protocol:?}");
        assert_eq!(ok.body, "GET /hello HTTP/1.1 host=echo hop=false");
        assert!(!ok.resp_hop);
        assert_eq!(slow.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(none.mesh_error.as_deref(), Some("no_endpoints"));
        assert_eq!(fives, 2);
    }
}

#[test]
fn simulated_time_not_wall_time() {
    // Forty /slow requests, each timing out after 500 ms of simulated time one after another: 20 s
    // on the simulated clock, exactly the timeouts plus the network's ticks. On a real clock the
    // same would take 20 s of wall time; in simulation it takes a fraction of that, which is what
    // this test checks (a harness that slept for real would fail the wall-time bound).
    let p = pods(Protocol::Http2);
    // The harness itself is measured here, on the real clock, on purpose.
    #[allow(clippy::disallowed_methods)]
    let wall = std::time::Instant::now(); // allow-nondeterminism
    let elapsed = world()
        .run(1, Duration::from_secs(60), move |nets| async move {
            let (client, server) = (nets[0].clone(), nets[1].clone());
            testkit::start(client.clone(), server, &p).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            let t0 = tokio::time::Instant::now(); // simulated clock; allow-nondeterminism
            for _ in 0..40 {
                let r = testkit::call(
                    client.clone(),
                    p.client_outbound,
                    Protocol::Http1,
                    "echo",
                    "/slow",
                )
                .await;
                assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
            }
            t0.elapsed()
        })
        .expect("finishes");
    let wall = wall.elapsed();
    assert!(
        elapsed >= Duration::from_millis(40 * 500) && elapsed < Duration::from_millis(40 * 520),
        "{elapsed:?}"
    );
    assert!(
        wall < Duration::from_secs(10),
        "20 s of simulated time took {wall:?} of wall time"
    );
}
