//! criterion micro-benchmarks of the proxy's hot path, each named for what it measures:
//! - `stack/get_through_two_sidecars_in_memory`: one GET through client sidecar → server sidecar
//!   → app over in-memory pipes (no sockets, no kernel): the proxy's own cost per request;
//! - `route_match/*`, `lb_pick/*`, `retry_budget/*`, `breaker/*`, `headers/*`: single decisions;
//! - `tls/handshake_full`, `tls/handshake_resumed`: an mTLS handshake in memory, fresh and resumed.
//!
//! `cargo bench -p mesh-core --bench hot_path`. Real-socket latency and the comparison with
//! nginx and HAProxy are `meshsim bench`.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // benchmarks run on the wall clock

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_core::balance::{Balancer, LbPolicy};
use mesh_core::breaker::Breakers;
use mesh_core::net::Network;
use mesh_core::policy::{CircuitBreaker, RouteMatch, RoutePolicy, ServicePolicy};
use mesh_core::proxy::{Proxy, ProxyConfig};
use mesh_core::registry::{Endpoint, Protocol, Registry, ServiceEntry};
use mesh_core::retry::RetryBudget;
use rand::SeedableRng;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;

/// A network of in-memory pipes: connect hands one end to the listener bound at the address.
#[derive(Clone, Default)]
struct MemNet {
    listeners: Arc<Mutex<BTreeMap<SocketAddr, mpsc::UnboundedSender<DuplexStream>>>>,
}

impl Network for MemNet {
    type Stream = DuplexStream;
    type Listener = tokio::sync::Mutex<mpsc::UnboundedReceiver<DuplexStream>>;

    async fn bind(&self, addr: SocketAddr) -> io::Result<Self::Listener> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.listeners.lock().unwrap().insert(addr, tx);
        Ok(tokio::sync::Mutex::new(rx))
    }
    async fn accept(&self, l: &Self::Listener) -> io::Result<(Self::Stream, SocketAddr)> {
        let s = l
            .lock()
            .await
            .recv()
            .await
            .ok_or(io::ErrorKind::BrokenPipe)?;
        Ok((s, SocketAddr::from(([127, 0, 0, 1], 1))))
    }
    async fn connect(&self, addr: SocketAddr) -> io::Result<Self::Stream> {
        let tx = self
            .listeners
            .lock()
            .unwrap()
            .get(&addr)
            .cloned()
            .ok_or(io::ErrorKind::ConnectionRefused)?;
        let (a, b) = tokio::io::duplex(64 * 1024);
        tx.send(b).map_err(|_| io::ErrorKind::ConnectionRefused)?;
        Ok(a)
    }
    fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, fut: F) {
        tokio::spawn(fut);
    }
}

fn a(p: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], p))
}

fn stack(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let net = MemNet::default();
    let clients = rt.block_on(async {
        let app = net.bind(a(8080)).await.unwrap();
        tokio::spawn(mesh_core::server::serve_http(
            net.clone(),
            app,
            |_req| async { http::Response::new(mesh_core::body::full("ok")) },
            Arc::new(|_| {}),
        ));
        let mut reg = Registry::new();
        reg.insert(
            "echo",
            ServiceEntry {
                protocol: Protocol::Http2,
                endpoints: vec![Endpoint {
                    addr: a(15006),
                    pod: "echo-0".into(),
                    zone: "a".into(),
                    subset: String::new(),
                    identity: None,
                }],
            },
        );
        let reg = mesh_core::config::fixed(reg, &mesh_core::policy::Policies::default());
        let cfg = |out: u16, inb: u16| ProxyConfig {
            authorization: Vec::new(),
            custom_authorizer: None,
            identity_by_address: false,
            network_policies: Vec::new(),
            limits: Default::default(),
            admin_addr: None,
            telemetry: Default::default(),
            outbound_addr: a(out),
            inbound_addr: a(inb),
            app_addr: a(8080),
            ..ProxyConfig::conventional(a(0).ip())
        };
        for (out, inb) in [(15001, 15007), (15002, 15006)] {
            let p = Proxy::new(net.clone(), cfg(out, inb), reg.clone(), None);
            tokio::spawn(async move {
                let _ = p.run().await;
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        mesh_core::client::HttpClients::new(net.clone(), Duration::from_secs(1))
    });
    c.bench_function("stack/get_through_two_sidecars_in_memory", |b| {
        b.to_async(&rt).iter(|| async {
            let req = http::Request::get(format!("http://{}/", a(15001)))
                .header("host", "echo")
                .body(mesh_core::body::empty())
                .unwrap();
            let resp = clients.get(Protocol::Http1).request(req).await.unwrap();
            assert!(resp.status().is_success());
            http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap();
        })
    });
}

fn decisions(c: &mut Criterion) {
    let routes = (0..4)
        .map(|i| RoutePolicy {
            name: format!("r{i}"),
            matcher: RouteMatch {
                path_prefix: Some(format!("/api/v{i}")),
                method: Some(http::Method::GET),
                headers: vec![("x-canary".into(), "1".into())],
            },
            ..RoutePolicy::default()
        })
        .collect();
    let mut policies = mesh_core::policy::Policies::default();
    policies.services.insert(
        "svc".into(),
        ServicePolicy {
            routes,
            ..ServicePolicy::default()
        },
    );
    let snapshot = mesh_core::config::Snapshot::new(1, Registry::new(), &policies);
    let req = http::Request::get("/api/v3/items")
        .header("x-canary", "1")
        .body(())
        .unwrap();
    c.bench_function("route_match/last_of_4_routes", |b| {
        b.iter(|| snapshot.policy_for("svc", std::hint::black_box(&req)).0)
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    for (name, lb) in [
        ("round_robin", LbPolicy::RoundRobin),
        ("least_request_p2c", LbPolicy::LeastRequest),
        (
            "peak_ewma_p2c",
            LbPolicy::PeakEwma {
                default_rtt: Duration::from_millis(30),
                decay: Duration::from_secs(10),
            },
        ),
        (
            "ring_hash",
            LbPolicy::RingHash {
                header: "x-user".into(),
            },
        ),
    ] {
        let bal = Balancer::new(rand_chacha::ChaCha8Rng::seed_from_u64(1));
        let pool = mesh_core::balance::Pool::of("svc");
        c.bench_function(&format!("lb_pick/{name}_16_endpoints"), |b| {
            b.iter(|| {
                let p = bal.pick(&pool, 16, &lb, Some(b"alice"), None).unwrap();
                p.finish(false, &lb, None);
            })
        });
    }
    let budget = RetryBudget::new(&mesh_core::policy::Budget {
        ratio: 0.2,
        min_per_sec: 10,
        ttl: Duration::from_secs(10),
    });
    c.bench_function("retry_budget/deposit_and_withdraw", |b| {
        b.iter(|| {
            budget.deposit();
            std::hint::black_box(budget.withdraw())
        })
    });
    let breakers = Breakers::default();
    let cb = CircuitBreaker::envoy_defaults();
    c.bench_function("breaker/admit_and_release", |b| {
        b.iter(|| drop(breakers.admit("svc", Some(&cb), false)))
    });
    let mut headers = http::HeaderMap::new();
    for (k, v) in [
        ("host", "svc"),
        ("connection", "keep-alive, x-hop"),
        ("keep-alive", "timeout=5"),
        ("x-hop", "1"),
        ("te", "trailers"),
        ("accept", "*/*"),
        ("user-agent", "bench"),
        ("x-request-id", "abc"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("content-type", "application/json"),
        ("accept-encoding", "gzip"),
        ("upgrade", "h2c"),
    ] {
        headers.insert(k, http::HeaderValue::from_static(v));
    }
    c.bench_function("headers/strip_hop_by_hop_of_12", |b| {
        b.iter(|| {
            let mut h = headers.clone();
            mesh_core::proxy::headers::strip_hop_by_hop(&mut h);
            h
        })
    });
}

/// Drive a client and a server connection to the end of the handshake, in memory.
fn handshake(client: Arc<rustls::ClientConfig>, server: Arc<rustls::ServerConfig>) -> bool {
    let mut c = rustls::ClientConnection::new(client, mesh_core::tls::server_name()).unwrap();
    let mut s = rustls::ServerConnection::new(server).unwrap();
    let mut buf = Vec::new();
    while c.is_handshaking() || s.is_handshaking() {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        s.read_tls(&mut buf.as_slice()).unwrap();
        s.process_new_packets().unwrap();
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        c.read_tls(&mut buf.as_slice()).unwrap();
        c.process_new_packets().unwrap();
    }
    // Let the client take the server's session tickets, for resumption next time.
    buf.clear();
    while s.wants_write() {
        s.write_tls(&mut buf).unwrap();
    }
    c.read_tls(&mut buf.as_slice()).unwrap();
    c.process_new_packets().unwrap();
    c.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
}

fn tls(c: &mut Criterion) {
    let ca = mesh_core::tls::CertAuthority::new("cluster.local").unwrap();
    let client = ca.mesh_tls("client").unwrap();
    let server = ca.mesh_tls("server").unwrap();
    // Without resumption every handshake is a full one (certificate exchange both ways).
    let mut fresh = (*client.client()).clone();
    fresh.resumption = rustls::client::Resumption::disabled();
    let fresh = Arc::new(fresh);
    c.bench_function("tls/handshake_full", |b| {
        b.iter(|| assert!(!handshake(fresh.clone(), server.server())))
    });
    let shared = client.client();
    let _ = handshake(shared.clone(), server.server());
    c.bench_function("tls/handshake_resumed", |b| {
        b.iter(|| assert!(handshake(shared.clone(), server.server())))
    });
}

criterion_group!(benches, stack, decisions, tls);
criterion_main!(benches);
